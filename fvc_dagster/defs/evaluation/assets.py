"""The evaluation of every model on the folds: `fold_predictions` (every held-out prediction),
`fold_metrics` (per model and fold) and `model_comparison` (per model, with its interval and
chance band, ranked)."""

import dagster as dg
import pandas as pd
from dagster_duckdb import DuckDBResource

from fvc_dagster.defs.automation import UPDATE_ON_NEW_DATA
from fvc_dagster.defs.partitions import folds_partitions
from fvc_dagster.defs.resources import MlflowTracking
from fvc_dagster.defs.warehouse import existing_table
from fvc_dagster.lib.clips.store import png_markdown
from fvc_dagster.lib.evaluation.metrics import (
    PREDICTION_COLUMNS,
    VALIDATION,
    compare_models,
    comparison_markdown,
    fold_metrics_of,
    rows_of_role,
)
from fvc_dagster.lib.models import models_of
from fvc_dagster.lib.training.staleness import Staleness, prediction_staleness

# Models whose assets update themselves and those trained on request, read from their tables.
AUTOMATIC = (*models_of("tabular"), *models_of("ensemble"))
ON_REQUEST = (*models_of("network"), *models_of("embedding"))


def on_request_predictions(
    warehouse: DuckDBResource, cv_folds: pd.DataFrame
) -> dict[str, tuple[pd.DataFrame, Staleness]]:
    """Each trained network's and embedding model's stored predictions of the current folds
    (validation and test rows; rows of folds that no longer exist dropped) and how its
    validation rows disagree with `cv_folds`; a model never trained is absent."""
    folds = folds_partitions.get_partition_keys()
    tables = {m: existing_table(warehouse, m) for m in ON_REQUEST}
    return {
        m: (t[t["fold"].isin(folds)], prediction_staleness(t, cv_folds))
        for m, t in tables.items()
        if t is not None
    }


def current_predictions(
    automatic: dict[str, pd.DataFrame],
    on_request: dict[str, tuple[pd.DataFrame, Staleness]],
    role: str = VALIDATION,
) -> pd.DataFrame:
    """The predictions of `role` (`PREDICTION_COLUMNS`, integer folds; validation: the held-out
    ones, test: those of the test videos) of the automatic models (tabular, ensemble) and of
    the on-request ones that are not stale (`on_request_predictions`)."""
    current = [t for t, staleness in on_request.values() if not staleness.stale]
    table = pd.concat([*automatic.values(), *current], ignore_index=True).pipe(rows_of_role, role)
    return table.assign(fold=table["fold"].astype(int))[PREDICTION_COLUMNS]


@dg.asset(
    group_name="evaluation",
    kinds={"duckdb"},
    ins={**{m: dg.AssetIn() for m in AUTOMATIC}, "cv_folds": dg.AssetIn()},
    deps=[dg.AssetKey(m) for m in ON_REQUEST],
    automation_condition=UPDATE_ON_NEW_DATA,
)
def fold_predictions(
    context: dg.AssetExecutionContext,
    warehouse: DuckDBResource,
    cv_folds: pd.DataFrame,
    **automatic: pd.DataFrame,
) -> pd.DataFrame:
    """One row per model, fold and validation clip: the model's held-out P(fake) for the clip
    (`probability`), its `label`, video and the weights it started from; the ensemble's too.
    Networks and embedding models come from their tables as they are: one never trained is
    absent, and a stale one (its predictions made on other folds or labels) is left out until
    it is retrained."""
    on_request = on_request_predictions(warehouse, cv_folds)
    table = current_predictions(automatic, on_request)
    stale = {m: s.reason for m, (_, s) in on_request.items() if s.stale}
    if stale:
        context.log.warning(f"left out until retrained, stale: {stale}")
    context.add_output_metadata(
        {
            "rows": dg.MetadataValue.int(len(table)),
            "models": dg.MetadataValue.json(sorted(table["model"].unique())),
            "stale_models": dg.MetadataValue.json(stale),
        }
    )
    return table.sort_values(["model", "weights", "fold", "clip_id"]).reset_index(drop=True)


@dg.asset(
    group_name="evaluation",
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
    group_name="evaluation",
    kinds={"duckdb"},
    automation_condition=UPDATE_ON_NEW_DATA,
)
def model_comparison(
    context: dg.AssetExecutionContext,
    fold_metrics: pd.DataFrame,
    fold_predictions: pd.DataFrame,
    cv_folds: pd.DataFrame,
    warehouse: DuckDBResource,
    mlflow: MlflowTracking,
) -> pd.DataFrame:
    """One row per model (and weights, for networks): held-out videos and cascades, mean and
    sample std of every metric over the folds, the pooled held-out ROC-AUC with its 95% cascade
    bootstrap interval and its chance band (`above_chance`: the interval clears it), ranked
    above-chance models first; then each stale network or embedding model (`stale`, and why in
    `stale_reason`), unscored and unranked until it is retrained; its figures (pooled ROC-AUC
    with interval and band, ROC curves, confusion matrices) in the UI and in an MLflow run of
    `fvc-comparison`."""
    from fvc_dagster.lib.evaluation.figures import confusion_matrices, metric_bars, rgb, roc_curves
    from fvc_dagster.lib.training.tracking import log_figure

    stale = [
        t[["model", "weights"]].drop_duplicates().assign(stale_reason=staleness.reason)
        for t, staleness in on_request_predictions(warehouse, cv_folds).values()
        if staleness.stale
    ]
    cascades = cv_folds[["video_id", "dup_group"]]
    table = compare_models(
        fold_metrics,
        fold_predictions.merge(cascades, on="video_id", how="left"),
        pd.concat(stale, ignore_index=True) if stale else None,
    )
    figures = {
        "roc_auc_by_model": metric_bars(table[~table["stale"]]),
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
            "stale_models": dg.MetadataValue.json(
                table[table["stale"]].set_index("model")["stale_reason"].to_dict()
            ),
        }
    )
    return table
