"""Folds, one baseline model asset per classifier (partitioned by fold), metrics over the
baselines and the networks trained so far, comparison."""

import dagster as dg
import pandas as pd
from dagster_duckdb import DuckDBResource

from fvc_dagster.defs.partitions import ALL_VIDEOS, DEFAULT_FOLDS, N_FOLDS, folds_partitions
from fvc_dagster.defs.resources import MlflowTracking
from fvc_dagster.defs.training.networks import NETWORKS, network_asset_name, network_assets
from fvc_dagster.defs.warehouse import existing_table
from fvc_dagster.lib.features import HANDCRAFTED_FEATURES, SCALED_FEATURES
from fvc_dagster.lib.metrics import (
    compare_models,
    comparison_markdown,
    evaluation_row,
    scores_markdown,
)
from fvc_dagster.lib.models import BASELINES
from fvc_dagster.lib.splits import assign_folds, videos_keeping_their_fold
from fvc_dagster.lib.tracking import log_fold_run
from fvc_dagster.lib.training import assign_clips, fold_data, train_fold

FOLD_SEED = 0
# Runs when upstream data changes, without waiting for videos that failed ingestion.
UPDATE_ON_NEW_DATA = dg.AutomationCondition.eager().without(
    ~dg.AutomationCondition.any_deps_missing()
)


@dg.asset(
    pool="duckdb",
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
    pool="duckdb",
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

    @dg.asset(
        name=f"baseline_{model}",
        partitions_def=folds_partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        pool="duckdb",
        group_name="training",
        kinds={"duckdb", "mlflow", "xgboost" if model == "xgboost" else "scikitlearn"},
        metadata={"partition_expr": "fold"},
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
            context.log.info(f"{model} fold {fold_key}: roc_auc={result.scores['roc_auc']:.3f}")
            rows.append(
                evaluation_row(
                    model, fold_key, result.scores, result.n_train, result.n_validation,
                    run.info.run_id,
                )
            )  # fmt: skip
        table = pd.DataFrame(rows)
        context.add_output_metadata({"scores": dg.MetadataValue.md(scores_markdown(table))})
        return table

    _baseline.__doc__ = f"One row per fold: {model} trained on the other folds, scored on this one."
    return _baseline


baseline_assets = [build_baseline_asset(model) for model in BASELINES]


@dg.asset(
    pool="duckdb",
    group_name="training",
    kinds={"duckdb"},
    ins={f"baseline_{m}": dg.AssetIn() for m in BASELINES},
    deps=network_assets,
    automation_condition=UPDATE_ON_NEW_DATA,
)
def fold_metrics(
    context: dg.AssetExecutionContext, warehouse: DuckDBResource, **baselines: pd.DataFrame
) -> pd.DataFrame:
    """One row per model and fold: accuracy, precision, recall, F1, ROC-AUC, PR-AUC, confusion,
    and the weights a network started from. Networks come from their tables as they are: one
    never trained is absent."""
    networks = [existing_table(warehouse, network_asset_name(m)) for m in NETWORKS]
    folds = folds_partitions.get_partition_keys()  # rows of other fold counts are stale
    trained = [t[t["fold"].isin(folds)] for t in networks if t is not None]
    table = pd.concat([*baselines.values(), *trained], ignore_index=True).assign(
        fold=lambda t: t["fold"].astype(int)
    )
    context.add_output_metadata(
        {
            "rows": dg.MetadataValue.int(len(table)),
            "models": dg.MetadataValue.json(sorted(table["model"].unique())),
        }
    )
    return table.sort_values(["model", "fold"]).reset_index(drop=True)


@dg.asset(
    pool="duckdb",
    group_name="training",
    kinds={"duckdb"},
    automation_condition=UPDATE_ON_NEW_DATA,
)
def model_comparison(context: dg.AssetExecutionContext, fold_metrics: pd.DataFrame) -> pd.DataFrame:
    """One row per model (and weights, for networks): mean and std of every metric over the
    folds, best ROC-AUC first."""
    table = compare_models(fold_metrics)
    context.add_output_metadata(
        {
            "comparison": dg.MetadataValue.md(comparison_markdown(table)),
            "best_model": dg.MetadataValue.text(str(table.iloc[0]["model"])),
            "best_roc_auc_mean": dg.MetadataValue.float(float(table.iloc[0]["roc_auc_mean"])),
        }
    )
    return table
