"""The champion registered in MLflow (`champion_model`) and its score for every video
(`video_scores`)."""

import json
from dataclasses import replace
from pathlib import Path
from typing import Literal

import dagster as dg
import pandas as pd
from pydantic import Field

from fvc_dagster.defs.batching import (
    TRAINING_POOL,
    add_video_metadata,
    for_each_video,
    per_video_asset,
    rows_by_video,
)
from fvc_dagster.defs.partitions import ALL_VIDEOS
from fvc_dagster.defs.resources import ClipSampling, ClipScaling, FvcStorage, MlflowTracking
from fvc_dagster.lib.clips.store import read_clip
from fvc_dagster.lib.clips.video_clips import ORIGINAL
from fvc_dagster.lib.evaluation.metrics import comparison_markdown
from fvc_dagster.lib.features.rows import CLIP_FEATURES, clip_features
from fvc_dagster.lib.models import get_spec
from fvc_dagster.lib.serving.detector import VideoInput
from fvc_dagster.lib.serving.mlflow_registry import (
    ALIAS,
    REGISTERED_MODEL,
    champion_version,
    register_detector,
    same_lineage,
)

# The tags that identify what a version was built from: equal tags, nothing new to register.
LINEAGE_KEYS = (
    "model", "weights", "settings", "training_data", "package_version", "source_sha256",
    "frames_per_clip", "scaling", "novelty_threshold",
)  # fmt: skip


class ChampionSelection(dg.Config):
    metric: Literal["roc_auc", "pr_auc", "f1", "accuracy", "precision", "recall"] = Field(
        default="roc_auc",
        description="The mean over folds that ranks the candidates (scored on every fold, "
        "ROC-AUC interval above its chance band); ties: the higher interval low end, then "
        "the name.",
    )


@dg.asset(
    pool=TRAINING_POOL,
    group_name="champion",
    kinds={"mlflow", "duckdb"},
    ins={
        "model_comparison": dg.AssetIn(),
        "generalisation": dg.AssetIn(),
        "fold_metrics": dg.AssetIn(),
        "cv_folds": dg.AssetIn(),
        "augmented_clips": ALL_VIDEOS,
        "handcrafted_features": ALL_VIDEOS,
        "scaled_features": ALL_VIDEOS,
        "scaled_clips": ALL_VIDEOS,
    },
    # A new champion when the comparison or its test scores changed (not on each upstream
    # video, not before any).
    automation_condition=dg.AutomationCondition.eager().allow(
        dg.AssetSelection.assets("model_comparison", "generalisation")
    ),
)
def champion_model(
    context: dg.AssetExecutionContext,
    config: ChampionSelection,
    model_comparison: pd.DataFrame,
    generalisation: pd.DataFrame,
    fold_metrics: pd.DataFrame,
    cv_folds: pd.DataFrame,
    augmented_clips: pd.DataFrame,
    handcrafted_features: pd.DataFrame,
    scaled_features: pd.DataFrame,
    scaled_clips: pd.DataFrame,
    sampling: ClipSampling,
    scaling: ClipScaling,
    storage: FvcStorage,
    mlflow: MlflowTracking,
) -> pd.DataFrame:
    """The best servable model of the comparison (a baseline or a video network: the ensemble
    and the embedding models are ranked, not candidates), refit on every labelled video's
    training clips and
    registered as a new version of `fvc-detector` with the alias `champion` and its lineage
    (code version and commit, training-data fingerprint, CV metrics, Dagster run id) and its
    score on the test videos (`generalisation`). Nothing is registered when the champion's
    lineage has not changed: the current version's test-score tags are updated. The detector
    carries the novelty model of the folds' videos, its threshold flagging about 5% of held-out
    videos."""
    from fvc_dagster.lib.serving.champion import (
        champion_test_tags,
        code_lineage,
        labelled_clips,
        network_settings,
        pick_champion,
        refit_baseline,
        refit_network,
        training_fingerprint,
        training_novelty,
    )

    try:
        best = pick_champion(model_comparison, cv_folds["fold"].nunique(), config.metric)
    except ValueError as exc:
        raise dg.Failure(
            description=f"no champion: {exc}",
            metadata={"comparison": dg.MetadataValue.md(comparison_markdown(model_comparison))},
        ) from exc
    model, metric = str(best["model"]), config.metric
    clips = labelled_clips(augmented_clips, cv_folds)
    client = mlflow.client()
    tabular = get_spec(model).kind == "tabular"
    if tabular:
        settings = {"features": CLIP_FEATURES, "seed": 0}
    else:
        rows = fold_metrics[
            (fold_metrics["model"] == model) & (fold_metrics["weights"] == best["weights"])
        ]
        runs = [client.get_run(run_id).data for run_id in rows["mlflow_run_id"]]
        best_epochs = [int(run.metrics["best_epoch"]) for run in runs]
        settings = network_settings(runs[0].params, best_epochs)
    features = clip_features(handcrafted_features, scaled_features)
    novelty, held_out_flag_rate = training_novelty(features, cv_folds)
    tags = {
        "model": model,
        "weights": str(best["weights"]),
        "settings": json.dumps(settings, sort_keys=True),
        "training_data": training_fingerprint(clips),
        **code_lineage(),
        "frames_per_clip": str(sampling.frames_per_clip),
        "scaling": scaling.method,
        "metric": metric,
        f"cv_{metric}_mean": f"{best[f'{metric}_mean']:.4f}",
        f"cv_{metric}_std": f"{best[f'{metric}_std']:.4f}",
        "cv_folds": str(int(best["folds"])),
        "cv_roc_auc_interval": f"[{best['roc_auc_low']:.4f}, {best['roc_auc_high']:.4f}]",
        "cv_chance_band": f"{best['chance_band']:.4f}",
        "novelty_threshold": f"{novelty.threshold:.4f}",
        "novelty_held_out_flag_rate": f"{held_out_flag_rate:.4f}",
        **champion_test_tags(generalisation, model, str(best["weights"])),
        "dagster_run_id": context.run_id,
    }
    current = champion_version(client)
    if same_lineage(current, tags, LINEAGE_KEYS):
        context.log.info(f"{model} is champion as version {current.version}; nothing changed")
        version, registered = str(current.version), False
        run_id = current.run_id
        for key in ("test_roc_auc", "test_roc_auc_interval", "test_videos"):
            client.set_model_version_tag(REGISTERED_MODEL, version, key, tags[key])
    else:
        context.log.info(f"refitting {model} on {cv_folds['video_id'].nunique()} videos")
        with mlflow.start_run(
            run_name=f"champion-{model}",
            tags={"dagster_run_id": context.run_id, "model": model},
            experiment=mlflow.champion_experiment,
        ) as run:
            if tabular:
                detector = refit_baseline(
                    model, clips, features, CLIP_FEATURES, sampling.frames_per_clip,
                    scaling.method,
                )  # fmt: skip
            else:
                clip_files = {"native": augmented_clips, "scaled": scaled_clips}
                detector = refit_network(
                    model, clips, clip_files, settings, storage.root,
                    sampling.frames_per_clip, scaling.method,
                )  # fmt: skip
            version = register_detector(replace(detector, novelty=novelty), tags)
            run_id = run.info.run_id
        registered = True
        context.log.info(f"{model} registered as {REGISTERED_MODEL} version {version}")
    table = pd.DataFrame(
        [{"registered_model": REGISTERED_MODEL, "version": version, "alias": ALIAS,
          "newly_registered": registered, "mlflow_run_id": run_id, "videos": len(cv_folds),
          "clips": len(clips), **tags}]
    )  # fmt: skip
    context.add_output_metadata(
        {
            "champion": dg.MetadataValue.md(table.T.to_markdown(headers=["", "value"])),
            "model": dg.MetadataValue.text(model),
            "best_in_comparison": dg.MetadataValue.text(str(model_comparison.iloc[0]["model"])),
            "version": dg.MetadataValue.text(version),
            "newly_registered": dg.MetadataValue.bool(registered),
            f"cv_{metric}_mean": dg.MetadataValue.float(float(best[f"{metric}_mean"])),
            "test_roc_auc": dg.MetadataValue.text(tags["test_roc_auc"]),
        }
    )
    return table


@per_video_asset(
    group_name="champion",
    kinds={"duckdb", "mlflow"},
    deps=["champion_model"],
    # New videos once their features exist, and every video again when the champion changes;
    # nothing while no champion exists.
    automation_condition=dg.AutomationCondition.eager(),
)
def video_scores(
    context: dg.AssetExecutionContext,
    source_videos: pd.DataFrame,
    handcrafted_features: pd.DataFrame,
    scaled_features: pd.DataFrame,
    augmented_clips: pd.DataFrame,
    scaled_clips: pd.DataFrame,
    mlflow: MlflowTracking,
) -> pd.DataFrame:
    """The champion's P(fake) and label for every video, labelled or not, with the version
    that scored it, and whether the video lies outside what the champion was trained on
    (`novelty`, `out_of_distribution`); from the video's original clip as the pipeline stored
    it (the registered model computes the same from the video file)."""
    model, version = mlflow.load_champion()
    detector = model.unwrap_python_model().detector
    features = clip_features(handcrafted_features, scaled_features)
    features = features[features["aug_index"] == ORIGINAL]
    features_of = rows_by_video(features, "handcrafted_features and scaled_features")
    scaled_of = rows_by_video(scaled_clips[scaled_clips["aug_index"] == ORIGINAL], "scaled_clips")
    native_of = rows_by_video(
        augmented_clips[augmented_clips["aug_index"] == ORIGINAL], "augmented_clips"
    )
    source_of = rows_by_video(source_videos, "source_videos")

    def score(video_id: str) -> dict:
        if detector.kind == "features":
            p = float(detector.feature_probabilities(features_of(video_id))[0])
        elif detector.source == "native":
            native = read_clip(Path(native_of(video_id)["path"].iloc[0]))
            p = float(detector.probabilities([VideoInput({}, None, None, native)])[0])
        else:
            scaled = scaled_of(video_id).iloc[0]
            box = tuple(int(scaled[k]) for k in ("content_x", "content_y", "scaled_width",
                                                  "scaled_height"))  # fmt: skip
            clip = VideoInput({}, read_clip(Path(scaled["path"])), box)
            p = float(detector.probabilities([clip])[0])
        label = source_of(video_id)["label"].iloc[0]
        (novelty,) = detector.novelty_columns(features_of(video_id))
        return {
            "video_id": video_id, "probability_fake": p, "predicted": detector.labels([p])[0],
            "label": label, **novelty, "model": detector.model_name,
            "model_version": str(version.version),
        }  # fmt: skip

    rows, seconds = for_each_video(context, context.partition_keys, score)
    table = pd.DataFrame(rows)
    scored = ["probability_fake", "predicted", "label", "novelty", "out_of_distribution"]
    add_video_metadata(
        context,
        seconds,
        table.set_index("video_id")[scored].to_dict("index"),
        {
            "model": dg.MetadataValue.text(
                f"{REGISTERED_MODEL} v{version.version} ({detector.model_name})"
            ),
            "out_of_distribution": dg.MetadataValue.int(
                int(table["out_of_distribution"].eq(True).sum())
            ),
        },
    )
    return table
