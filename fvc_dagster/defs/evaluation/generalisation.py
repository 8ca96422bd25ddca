"""`generalisation`: every model's cross-validated ROC-AUC beside its ROC-AUC on the test
videos, which no fold trained on, each with its interval."""

import dagster as dg
import pandas as pd
from dagster_duckdb import DuckDBResource

from fvc_dagster.defs.automation import UPDATE_ON_NEW_DATA
from fvc_dagster.defs.evaluation.assets import (
    AUTOMATIC,
    ON_REQUEST,
    current_predictions,
    on_request_predictions,
)
from fvc_dagster.defs.resources import MlflowTracking
from fvc_dagster.defs.warehouse import existing_table
from fvc_dagster.lib.clips.store import png_markdown
from fvc_dagster.lib.evaluation.generalisation import generalisation_markdown, generalisation_of
from fvc_dagster.lib.evaluation.metrics import TEST


@dg.asset(
    group_name="evaluation",
    kinds={"duckdb", "mlflow"},
    ins={
        "model_comparison": dg.AssetIn(),
        "cv_folds": dg.AssetIn(),
        **{m: dg.AssetIn() for m in AUTOMATIC},
    },
    deps=[dg.AssetKey(m) for m in ON_REQUEST],
    automation_condition=UPDATE_ON_NEW_DATA,
)
def generalisation(
    context: dg.AssetExecutionContext,
    model_comparison: pd.DataFrame,
    cv_folds: pd.DataFrame,
    warehouse: DuckDBResource,
    mlflow: MlflowTracking,
    **automatic: pd.DataFrame,
) -> pd.DataFrame:
    """One row per model of the comparison (its order): its cross-validated pooled ROC-AUC
    with 95% interval and chance band, beside its ROC-AUC on the test videos with a 95%
    cascade bootstrap interval; a test video's P(fake) is the mean of the model's fold models'
    P(fake) for it (the `test` rows of its table). A model without test rows, or too few
    classes, says why in `test_note`; a stale model (see `model_comparison`) is left out until
    it is retrained. Its figure in the UI and in an MLflow run of
    `fvc-comparison`."""
    from fvc_dagster.lib.evaluation.figures import generalisation_bars, rgb
    from fvc_dagster.lib.training.tracking import log_figure

    test_rows = current_predictions(automatic, on_request_predictions(warehouse, cv_folds), TEST)
    videos = existing_table(warehouse, "source_videos")
    cascades = videos.set_index("video_id")["dup_group"].dropna()
    current = model_comparison[~model_comparison["stale"].fillna(False).astype(bool)]
    table = generalisation_of(current, test_rows, cascades)
    figure = generalisation_bars(table)
    with mlflow.start_run(
        run_name="generalisation",
        tags={"dagster_run_id": context.run_id},
        experiment=mlflow.comparison_experiment,
    ):
        log_figure(figure, "generalisation")
    context.add_output_metadata(
        {
            "generalisation": dg.MetadataValue.md(generalisation_markdown(table)),
            "cv_vs_test_roc_auc": dg.MetadataValue.md(
                png_markdown(rgb(figure), "cv_vs_test_roc_auc")
            ),
            "test_videos": dg.MetadataValue.int(int(test_rows["video_id"].nunique())),
        }
    )
    return table
