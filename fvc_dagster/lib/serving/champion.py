"""The champion: the best model of the comparison, refit on every labelled video, with the
lineage that says what it was built from."""

from __future__ import annotations

import hashlib
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fvc_dagster.lib.clips.video_clips import ORIGINAL
from fvc_dagster.lib.evaluation.metrics import METRICS
from fvc_dagster.lib.evaluation.novelty import NoveltyModel, held_out_distances, novelty_flagging
from fvc_dagster.lib.features.rows import CLIP_FEATURES
from fvc_dagster.lib.models import REGISTRY, baseline_pipeline
from fvc_dagster.lib.serving.detector import Detector
from fvc_dagster.lib.training.clip_data import INPUT_KEYS
from fvc_dagster.lib.training.fold_data import POSITIVE, TRAIN
from fvc_dagster.lib.training.tabular import baseline_training_rows

# The fold id of a refit: its clips are every labelled video's, in no CV fold.
REFIT_FOLD = -1
# What the networks' fold runs record in MLflow that `plan_network` takes back.
NETWORK_PARAMS = (
    "epochs", "batch_size", "lr", "frames", "pixels", "weights", "weights_file",
    "grad_accumulation", "epoch_choice", "source", "train_windows", "augmentations",
)  # fmt: skip


def servable(model: str) -> bool:
    """Whether a champion can be refit and scored from a video file alone: the tabular
    baselines and the video networks (the ensemble and the embedding models rank in the
    comparison but are not candidates)."""
    return model in REGISTRY and REGISTRY[model].input in ("features", *INPUT_KEYS)


def pick_champion(
    comparison: pd.DataFrame, n_folds: int, metric: str = "roc_auc", candidate=servable
) -> pd.Series:
    """The champion row of `model_comparison`. Candidates: a `candidate` model (servable from
    a video file by default), not stale, scored on all `n_folds` folds whose ROC-AUC interval
    clears its chance band (`above_chance`). Rule: the highest mean `metric` over folds; ties
    go to the higher low end of the ROC-AUC interval, then to the model name, so the choice
    never depends on row order. ValueError naming why when no model qualifies."""
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; choose from {', '.join(METRICS)}")
    mean = f"{metric}_mean"
    current = comparison[~comparison["stale"].astype(bool)]
    eligible = current[
        current["model"].map(candidate)
        & (current["folds"] == n_folds)
        & current["above_chance"].astype(bool)
    ]
    ranked = eligible.dropna(subset=[mean]).sort_values(
        [mean, "roc_auc_low", "model"], ascending=[False, False, True], na_position="last"
    )
    if ranked.empty:
        raise ValueError(
            f"no candidate model is current, scored on all {n_folds} folds with a mean {metric} "
            "and a ROC-AUC interval above its chance band: train a model that learns (see "
            "model_comparison's above_chance and stale columns)"
        )
    return ranked.iloc[0]


def why_champion(
    comparison: pd.DataFrame, model: str, weights: str, metric: str = "roc_auc", candidate=servable
) -> str:
    """Why `pick_champion` chose `model` (with `weights`) from `comparison`, in a sentence: its
    rule with the champion's numbers, and why each model ranked above it was passed over."""
    rows = comparison.reset_index(drop=True)
    at = rows.index[(rows["model"] == model) & (rows["weights"].astype(str) == weights)][0]
    best = rows.loc[at]
    n_folds = int(best["folds"])
    reason = (
        f"the highest mean {metric} ({best[f'{metric}_mean']:.3f} ± {best[f'{metric}_std']:.3f} "
        f"over {n_folds} folds) of the models servable from a video file, scored on every fold, "
        f"whose ROC-AUC interval [{best['roc_auc_low']:.3f}, {best['roc_auc_high']:.3f}] clears "
        f"its chance band {best['chance_band']:.3f}"
    )
    passed_over = []
    for r in rows.iloc[:at].itertuples():
        if not candidate(r.model):
            why = "not servable from a video file"
        elif r.folds != n_folds:
            why = f"scored on {r.folds} of {n_folds} folds"
        elif not r.above_chance:
            why = "inside its chance band"
        else:
            why = f"lower mean {metric}"
        passed_over.append(f"{r.model} ({why})")
    return reason + (f"; ranked above it: {', '.join(passed_over)}" if passed_over else "")


def champion_test_tags(generalisation: pd.DataFrame, model: str, weights: str) -> dict[str, str]:
    """The champion's score on the test videos as version tags, from its `generalisation`
    row: `test_roc_auc` (the mean of its fold models' P(fake) per test video), its 95%
    cascade bootstrap `test_roc_auc_interval` and `test_videos`; where there is no score, both
    say why (say, "no test videos")."""
    rows = generalisation[
        (generalisation["model"] == model) & (generalisation["weights"] == weights)
    ]
    if rows.empty:
        return {"test_roc_auc": "no test videos", "test_roc_auc_interval": "no test videos",
                "test_videos": "0"}  # fmt: skip
    row = rows.iloc[0]
    why = str(row["test_note"]) or "n/a"
    score = f"{row['test_roc_auc']:.4f}" if pd.notna(row["test_roc_auc"]) else why
    interval = (f"[{row['test_roc_auc_low']:.4f}, {row['test_roc_auc_high']:.4f}]"
                if pd.notna(row["test_roc_auc_low"]) else why)  # fmt: skip
    return {"test_roc_auc": score, "test_roc_auc_interval": interval,
            "test_videos": str(int(row["test_videos"]))}  # fmt: skip


def labelled_clips(clips: pd.DataFrame, folds: pd.DataFrame) -> pd.DataFrame:
    """The clips (`video_id, clip_id, aug_index, sha256`, ...) of every labelled video (those
    with a fold), with their `label`: what a refit trains on. Unlabelled videos are left out."""
    labels = folds[["video_id", "label"]]
    return clips.merge(labels, on="video_id", how="inner", validate="many_to_one")


def training_novelty(features: pd.DataFrame, folds: pd.DataFrame) -> tuple[NoveltyModel, float]:
    """The novelty model of the videos of `folds` (`cv_folds`: the labelled training videos)
    from their original clips' `CLIP_FEATURES` (`clip_features` rows, as a detector computes
    them from a video file), its threshold calibrated on the folds' held-out videos; and the
    share of those held-out videos it flags."""
    originals = features[features["aug_index"] == ORIGINAL].drop(columns="aug_index")
    rows = folds[["video_id", "fold"]].merge(originals, on="video_id", validate="one_to_one")
    held_out = held_out_distances(rows, rows["fold"], CLIP_FEATURES)
    model = novelty_flagging(rows, held_out, CLIP_FEATURES)
    return model, float((held_out > model.threshold).mean())


def training_fingerprint(clips: pd.DataFrame) -> str:
    """sha256 over the sorted (clip checksum, label) pairs of the clips a refit trains on."""
    pairs = sorted(zip(clips["sha256"].astype(str), clips["label"].astype(str), strict=True))
    digest = hashlib.sha256()
    for sha, label in pairs:
        digest.update(f"{sha}:{label}\n".encode())
    return digest.hexdigest()


def code_lineage() -> dict[str, str]:
    """The code a model was built with, with or without git: the installed package version
    ("unknown" when not installed) and a sha256 over every Python file of the package (its
    path and bytes)."""
    try:
        version = metadata.version("fvc-dagster")
    except metadata.PackageNotFoundError:
        version = "unknown"
    package = Path(__file__).resolve().parents[2]
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        digest.update(f"{path.relative_to(package).as_posix()}\n".encode())
        digest.update(path.read_bytes())
    return {"package_version": version, "source_sha256": digest.hexdigest()}


def refit_baseline(
    model: str,
    clips: pd.DataFrame,
    features: pd.DataFrame,
    feature_names: list[str],
    frames_per_clip: int,
    scaling: str,
    seed: int = 0,
) -> Detector:
    """A tabular baseline fit as in cross-validation (same pipeline, seed and rows: the
    original clip of each video) on every labelled video of `clips` (`labelled_clips`)."""
    rows = clips[["clip_id", "aug_index", "label", "video_id"]].merge(
        features.drop(columns=["video_id", "aug_index"], errors="ignore"), on="clip_id"
    )
    train = baseline_training_rows(rows)
    y = (train["label"] == POSITIVE).to_numpy(int)
    if len(set(y)) < 2:
        raise ValueError("the labelled videos hold a single class: nothing to refit")
    pipeline = baseline_pipeline(model, seed).fit(train[feature_names].to_numpy(float), y)
    return Detector(model, "features", pipeline, frames_per_clip, scaling, list(feature_names))


def refit_rows(clips: pd.DataFrame) -> pd.DataFrame:
    """`training_clips`-shaped rows of a refit (fold `REFIT_FOLD`): every labelled clip trains,
    nothing is held out."""
    columns = ["clip_id", "video_id", "aug_index", "label"]
    return clips[columns].assign(fold=REFIT_FOLD, role=TRAIN)


def refit_epochs(params: dict[str, Any], best_epochs: list[int]) -> int:
    """The epochs a refit trains: those cross-validation chose, the median of the folds' kept
    epochs rounded up (the configured `epochs` when they were fixed)."""
    if params.get("epoch_choice", "inner_fold") == "fixed" or not best_epochs:
        return int(params["epochs"])
    return int(np.ceil(np.median(best_epochs)))


def network_settings(params: dict[str, Any], best_epochs: list[int]) -> dict[str, Any]:
    """`plan_network` settings of a refit from a network's fold runs: one run's MLflow params
    (strings) and every fold's kept epoch; it trains `refit_epochs` with nothing to choose on."""
    out: dict[str, Any] = {}
    for key in NETWORK_PARAMS:
        value = params.get(key)
        if key == "augmentations" and value is not None:  # comma-separated, "" for none
            out[key] = [name for name in value.split(",") if name]
            continue
        if value in (None, "None", ""):
            continue
        if key in ("batch_size", "frames", "pixels", "grad_accumulation"):
            out[key] = int(value)
        elif key == "lr":
            out[key] = float(value)
        elif key != "epochs":
            out[key] = value
    return {**out, "epochs": refit_epochs(params, best_epochs), "epoch_choice": "fixed"}


def refit_network(
    model: str,
    clips: pd.DataFrame,
    clip_files: dict[str, pd.DataFrame],
    settings: dict[str, Any],
    root: Path,
    frames_per_clip: int,
    scaling: str,
) -> Detector:
    """A video network trained with its cross-validation settings (`network_settings`) on
    every labelled clip, reading its clips from `clip_files[source]` (augmented_clips'
    rows for "native", scaled_clips' for "scaled"); resumable like a fold (its checkpoints are
    under `<root>/checkpoints/<model>/fold-1/`)."""
    from fvc_dagster.lib.training.networks import (
        checkpoint_dir,
        fold_clips,
        plan_network,
        train_network,
    )

    plan = plan_network(model, 0, **settings)
    data = fold_clips(
        refit_rows(clips), clip_files[plan.source], [REFIT_FOLD], plan, root / "flow"
    )[REFIT_FOLD]
    _, network, _ = train_network(plan, data, checkpoint_dir(root, plan, data))
    return Detector(
        model, "clip", network.cpu().eval(), frames_per_clip, scaling,
        frames=plan.frames, pixels=plan.pixels, source=plan.source,
    )  # fmt: skip
