"""Folds, one baseline model asset per classifier (partitioned by fold), metrics over the
baselines and the networks trained so far, comparison."""

import dagster as dg
import pandas as pd
from dagster_duckdb import DuckDBResource

from fvc_dagster.defs.batching import per_fold_asset
from fvc_dagster.defs.partitions import ALL_VIDEOS, DEFAULT_FOLDS, N_FOLDS, folds_partitions
from fvc_dagster.defs.resources import MlflowTracking
from fvc_dagster.defs.training.embeddings import (
    EMBEDDING_MODELS,
    embedding_asset_name,
    embedding_model_assets,
)
from fvc_dagster.defs.training.networks import NETWORKS, network_asset_name, network_assets
from fvc_dagster.defs.warehouse import existing_table
from fvc_dagster.lib.clips.store import png_markdown
from fvc_dagster.lib.evaluation.metrics import (
    PREDICTION_COLUMNS,
    compare_models,
    comparison_markdown,
    fold_metrics_of,
    prediction_rows,
    scores_markdown,
)
from fvc_dagster.lib.features.forensic import HANDCRAFTED_FEATURES, SCALED_FEATURES
from fvc_dagster.lib.models import REGISTRY, TABULAR_MODELS
from fvc_dagster.lib.training.ensemble import (
    BaseLearner,
    embedding_learner,
    stack_fold,
    tabular_learner,
)
from fvc_dagster.lib.training.fold_data import assign_clips, fold_data
from fvc_dagster.lib.training.folds import assign_folds, videos_keeping_their_fold
from fvc_dagster.lib.training.tabular import train_fold

FOLD_SEED = 0
# Runs when upstream data changes, without waiting for videos that failed ingestion. Unlike
# `eager()`, a materialization does not count as handling upstream changes: one that ran while
# its upstream was updated by another run (say folds re-assigned while a baseline was training on
# the old ones) is requested again once it ends. Updates made by a run that also targets the
# asset are ignored, as in `eager()`.
UPDATE_ON_NEW_DATA = (
    dg.AutomationCondition.in_latest_time_window()
    & (dg.AutomationCondition.newly_missing() | dg.AutomationCondition.any_deps_updated()).since(
        dg.AutomationCondition.newly_requested() | dg.AutomationCondition.initial_evaluation()
    )
    & ~dg.AutomationCondition.any_deps_in_progress()
    & ~dg.AutomationCondition.in_progress()
).with_label("update_on_new_data")


@dg.asset(
    group_name="training",
    kinds={"duckdb"},
    automation_condition=UPDATE_ON_NEW_DATA,
)
def cv_folds(
    context: dg.AssetExecutionContext, source_videos: pd.DataFrame, warehouse: DuckDBResource
) -> pd.DataFrame:
    """One row per labelled video: its fold, stratified by label and grouped by cascade. A
    video keeps its fold when new videos come; all are re-assigned when `FVC_FOLDS` changed."""
    previous = existing_table(warehouse, "cv_folds")
    before = _fold_count_before(context, previous)
    if before is not None and before != N_FOLDS:
        context.log.warning(
            f"FVC_FOLDS changed from {before} to {N_FOLDS}: every video's fold is re-assigned; "
            "the models' fold tables hold the old folds until they are re-materialized"
        )
        previous = None
    folds = assign_folds(source_videos, N_FOLDS, FOLD_SEED, previous)
    counts = folds.pivot_table(index="fold", columns="label", values="video_id", aggfunc="count")
    context.add_output_metadata(
        {
            "folds": dg.MetadataValue.int(N_FOLDS),
            "reassigned": dg.MetadataValue.bool(before is not None and before != N_FOLDS),
            "videos": dg.MetadataValue.int(len(folds)),
            "cascades": dg.MetadataValue.int(folds["dup_group"].nunique()),
            "kept_from_previous": dg.MetadataValue.int(videos_keeping_their_fold(folds, previous)),
            "class_counts": dg.MetadataValue.md(counts.fillna(0).astype(int).to_markdown()),
        }
    )
    return folds


def _fold_count_before(
    context: dg.AssetExecutionContext, previous: pd.DataFrame | None
) -> int | None:
    """The fold count the stored assignment was made with: its materialization's `folds`
    (5 before that was recorded, or more if its folds say so); None when there is none."""
    if previous is None or previous.empty:
        return None
    event = context.instance.get_latest_materialization_event(context.asset_key)
    recorded = event and event.asset_materialization.metadata.get("folds")
    if recorded is not None:
        return int(recorded.value)
    return max(DEFAULT_FOLDS, int(previous["fold"].max()) + 1)


CLIP_FEATURES = [*HANDCRAFTED_FEATURES, *SCALED_FEATURES]


@dg.asset(
    group_name="training",
    kinds={"duckdb"},
    ins={"cv_folds": dg.AssetIn(), "augmented_clips": ALL_VIDEOS},
    automation_condition=UPDATE_ON_NEW_DATA,
)
def training_clips(
    context: dg.AssetExecutionContext, cv_folds: pd.DataFrame, augmented_clips: pd.DataFrame
) -> pd.DataFrame:
    """One row per fold and clip: whether the clip trains that fold (every clip of the other
    folds' videos) or validates it (original clips of its held-out videos only)."""
    table = assign_clips(augmented_clips, cv_folds, N_FOLDS)
    counts = table.pivot_table(index="fold", columns="role", values="clip_id", aggfunc="count")
    context.add_output_metadata({"clips_per_fold": dg.MetadataValue.md(counts.to_markdown())})
    return table


def clip_features(handcrafted: pd.DataFrame, scaled: pd.DataFrame) -> pd.DataFrame:
    """Stage 2 and stage 4 features side by side, one row per clip."""
    return handcrafted.merge(scaled.drop(columns=["video_id", "aug_index"]), on="clip_id")


def build_baseline_asset(model: str) -> dg.AssetsDefinition:
    """A fold-partitioned asset that trains `model` on a fold and records its evaluation row."""

    @per_fold_asset(
        name=f"baseline_{model}",
        group_name="training",
        kinds={"duckdb", "mlflow", "xgboost" if model == "xgboost" else "scikitlearn"},
        ins={
            "training_clips": dg.AssetIn(),
            "handcrafted_features": ALL_VIDEOS,
            "scaled_features": ALL_VIDEOS,
        },
        automation_condition=UPDATE_ON_NEW_DATA,
    )
    def _baseline(
        context: dg.AssetExecutionContext,
        training_clips: pd.DataFrame,
        handcrafted_features: pd.DataFrame,
        scaled_features: pd.DataFrame,
        mlflow: MlflowTracking,
    ) -> pd.DataFrame:
        from fvc_dagster.lib.training.tracking import log_fold_figure, log_fold_run

        features = clip_features(handcrafted_features, scaled_features)
        rows = []
        for fold_key in context.partition_keys:
            data = fold_data(training_clips, features, int(fold_key), CLIP_FEATURES)
            with mlflow.start_run(
                run_name=f"{model}-fold{fold_key}",
                tags={"dagster_run_id": context.run_id, "model": model, "fold": fold_key},
            ) as run:
                result = train_fold(model, data)
                log_fold_run(result, model, fold_key, data)
                rows.append(
                    prediction_rows(
                        model, fold_key, data.validation, result.val_probabilities,
                        result.n_train, run.info.run_id,
                    )
                )  # fmt: skip
                log_fold_figure(rows[-1])
            context.log.info(f"{model} fold {fold_key}: roc_auc={result.scores['roc_auc']:.3f}")
        table = pd.concat(rows, ignore_index=True)
        context.add_output_metadata({"scores": dg.MetadataValue.md(scores_markdown(table))})
        return table

    _baseline.__doc__ = (
        f"One row per validation clip of each fold: {model}'s held-out P(fake), trained on the "
        "other folds."
    )
    return _baseline


baseline_assets = [build_baseline_asset(model) for model in TABULAR_MODELS]


BASELINE_INS = {f"baseline_{m}": dg.AssetIn() for m in TABULAR_MODELS}


def base_predictions(warehouse: DuckDBResource, baselines: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Every base model's held-out predictions (`PREDICTION_COLUMNS`, integer folds): the
    baselines as loaded, the on-demand models from their tables as they are (one never
    trained is absent; rows of folds that no longer exist are stale and dropped)."""
    on_demand = [
        *(existing_table(warehouse, network_asset_name(m)) for m in NETWORKS),
        *(existing_table(warehouse, embedding_asset_name(m)) for m in EMBEDDING_MODELS),
    ]
    folds = folds_partitions.get_partition_keys()
    trained = [t[t["fold"].isin(folds)] for t in on_demand if t is not None]
    table = pd.concat([*baselines.values(), *trained], ignore_index=True)
    return table.assign(fold=table["fold"].astype(int))[PREDICTION_COLUMNS]


def ensemble_learners(warehouse: DuckDBResource, features: pd.DataFrame) -> list[BaseLearner]:
    """The base learners the ensemble refits inside each fold's training folds: every tabular
    baseline, and XGBoost on the embeddings of each backbone whose model has been trained."""
    learners = [tabular_learner(m, features, CLIP_FEATURES) for m in TABULAR_MODELS]
    trained = [m for m in EMBEDDING_MODELS if existing_table(warehouse, embedding_asset_name(m))
               is not None]  # fmt: skip
    if trained:
        from fvc_dagster.lib.training.embeddings import backbone_embeddings

        stored = existing_table(warehouse, "clip_embeddings")
        for model in trained:
            embeddings, _ = backbone_embeddings(stored, REGISTRY[model].options["backbone"])
            learners.append(embedding_learner(model, embeddings))
    return learners


@per_fold_asset(
    group_name="training",
    kinds={"duckdb", "mlflow", "scikitlearn"},
    ins={
        "training_clips": dg.AssetIn(),
        "handcrafted_features": ALL_VIDEOS,
        "scaled_features": ALL_VIDEOS,
    },
    deps=[*baseline_assets, *embedding_model_assets],
    automation_condition=UPDATE_ON_NEW_DATA,
)
def ensemble(
    context: dg.AssetExecutionContext,
    training_clips: pd.DataFrame,
    handcrafted_features: pd.DataFrame,
    scaled_features: pd.DataFrame,
    warehouse: DuckDBResource,
    mlflow: MlflowTracking,
) -> pd.DataFrame:
    """One row per validation clip of each fold: the stacked P(fake) of the baselines and the
    trained embedding models, every learner and the non-negative meta-learner fit inside the
    fold's training folds (lib/training/ensemble.py)."""
    from fvc_dagster.lib.training.tracking import log_fold_figure, log_stacking_run

    learners = ensemble_learners(warehouse, clip_features(handcrafted_features, scaled_features))
    rows, weights = [], {}
    for fold in context.partition_keys:
        with mlflow.start_run(
            run_name=f"ensemble-fold{fold}",
            tags={"dagster_run_id": context.run_id, "model": "ensemble", "fold": fold},
        ) as run:
            stacked = stack_fold(training_clips, learners, int(fold))
            log_stacking_run(stacked)
            scored = stacked.predictions
            rows.append(
                prediction_rows("ensemble", fold, scored, scored["probability"],
                                len(stacked.record["train"]), run.info.run_id)
            )  # fmt: skip
            log_fold_figure(rows[-1])
        weights[fold] = {m: round(w, 3) for m, w in stacked.weights.items()}
        context.log.info(f"ensemble fold {fold}: stacked {weights[fold]}")
    predictions = pd.concat(rows, ignore_index=True)
    context.add_output_metadata(
        {
            "base_models": dg.MetadataValue.json([b.name for b in learners]),
            "stacked_weights": dg.MetadataValue.md(
                pd.DataFrame(weights).T.rename_axis("fold").to_markdown()
            ),
            "scores": dg.MetadataValue.md(scores_markdown(predictions)),
        }
    )
    return predictions


@dg.asset(
    group_name="training",
    kinds={"duckdb"},
    ins={**BASELINE_INS, "ensemble": dg.AssetIn()},
    deps=[*network_assets, *embedding_model_assets],
    automation_condition=UPDATE_ON_NEW_DATA,
)
def fold_predictions(
    context: dg.AssetExecutionContext,
    warehouse: DuckDBResource,
    ensemble: pd.DataFrame,
    **baselines: pd.DataFrame,
) -> pd.DataFrame:
    """One row per model, fold and validation clip: the model's held-out P(fake) for the clip
    (`probability`), its `label`, video and the weights it started from; the ensemble's too.
    Networks come from their tables as they are: one never trained is absent."""
    base = base_predictions(warehouse, baselines)
    table = pd.concat([base, ensemble.assign(fold=ensemble["fold"].astype(int))])
    table = table[PREDICTION_COLUMNS]
    context.add_output_metadata(
        {
            "rows": dg.MetadataValue.int(len(table)),
            "models": dg.MetadataValue.json(sorted(table["model"].unique())),
        }
    )
    return table.sort_values(["model", "weights", "fold", "clip_id"]).reset_index(drop=True)


@dg.asset(
    group_name="training",
    kinds={"duckdb"},
    automation_condition=UPDATE_ON_NEW_DATA,
)
def fold_metrics(context: dg.AssetExecutionContext, fold_predictions: pd.DataFrame) -> pd.DataFrame:
    """One row per model and fold: accuracy, precision, recall, F1, ROC-AUC, PR-AUC and the
    confusion counts of its held-out predictions, and the weights a network started from."""
    table = fold_metrics_of(fold_predictions)
    context.add_output_metadata({"rows": dg.MetadataValue.int(len(table))})
    return table.sort_values(["model", "fold"]).reset_index(drop=True)


@dg.asset(
    group_name="training",
    kinds={"duckdb"},
    automation_condition=UPDATE_ON_NEW_DATA,
)
def model_comparison(
    context: dg.AssetExecutionContext,
    fold_metrics: pd.DataFrame,
    fold_predictions: pd.DataFrame,
    cv_folds: pd.DataFrame,
    mlflow: MlflowTracking,
) -> pd.DataFrame:
    """One row per model (and weights, for networks): held-out videos and cascades, mean and
    sample std of every metric over the folds, the pooled held-out ROC-AUC with its 95% cascade
    bootstrap interval and its chance band (`above_chance`: the interval clears it), ranked
    above-chance models first; its figures (pooled ROC-AUC with interval and band, ROC curves,
    confusion matrices) in the UI and in an MLflow run of `fvc-comparison`."""
    from fvc_dagster.lib.evaluation.figures import confusion_matrices, metric_bars, rgb, roc_curves
    from fvc_dagster.lib.training.tracking import log_figure

    cascades = cv_folds[["video_id", "dup_group"]]
    table = compare_models(
        fold_metrics, fold_predictions.merge(cascades, on="video_id", how="left")
    )
    figures = {
        "roc_auc_by_model": metric_bars(table),
        "roc_curves": roc_curves(fold_predictions),
        "confusion_matrices": confusion_matrices(fold_predictions),
    }
    with mlflow.start_run(
        run_name="model-comparison",
        tags={"dagster_run_id": context.run_id},
        experiment=mlflow.comparison_experiment,
    ):
        for name, fig in figures.items():
            log_figure(fig, name)
    images = {name: png_markdown(rgb(fig), name) for name, fig in figures.items()}
    context.add_output_metadata(
        {
            **{name: dg.MetadataValue.md(image) for name, image in images.items()},
            "comparison": dg.MetadataValue.md(comparison_markdown(table)),
            "best_model": dg.MetadataValue.text(str(table.iloc[0]["model"])),
            "best_roc_auc_mean": dg.MetadataValue.float(float(table.iloc[0]["roc_auc_mean"])),
            "models_above_chance": dg.MetadataValue.int(int(table["above_chance"].sum())),
        }
    )
    return table
