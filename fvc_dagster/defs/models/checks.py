"""The checks on every model asset: each fold's fit was blind to the fold it scores, as the
fit recorded the videos it used (blocking), and its predictions match the current folds (a
warning: a stale model is left out downstream until it is retrained)."""

import dagster as dg
import pandas as pd
from dagster_duckdb import DuckDBResource

from fvc_dagster.defs.models.assets import MODEL_ASSETS
from fvc_dagster.defs.resources import MlflowTracking
from fvc_dagster.defs.warehouse import existing_table
from fvc_dagster.lib.training.fold_data import fit_leaks
from fvc_dagster.lib.training.staleness import prediction_staleness


def fold_fits_blind(model_asset: dg.AssetsDefinition) -> dg.AssetChecksDefinition:
    """A blocking check that every fold of `model_asset` was fit blind to its own videos."""

    @dg.asset_check(
        asset=model_asset,
        name="fit_blind_to_its_fold",
        blocking=True,
        additional_ins={"cv_folds": dg.AssetIn()},
    )
    def _check(
        cv_folds: pd.DataFrame, warehouse: DuckDBResource, mlflow: MlflowTracking
    ) -> dg.AssetCheckResult:
        table = existing_table(warehouse, model_asset.key.path[-1])
        if table is None:
            table = pd.DataFrame(columns=["fold", "mlflow_run_id"])
        runs = dict(zip(table["fold"], table["mlflow_run_id"], strict=True))
        leaks = [
            fit_leaks(int(fold), mlflow.fit_videos(run_id), cv_folds)
            for fold, run_id in sorted(runs.items())
        ]
        found = pd.concat(leaks, ignore_index=True) if leaks else pd.DataFrame()
        return dg.AssetCheckResult(
            passed=bool(runs) and found.empty,
            metadata={
                "folds_checked": dg.MetadataValue.int(len(runs)),
                "leaked_or_stray_videos": dg.MetadataValue.int(len(found)),
                "examples": dg.MetadataValue.json(found.head(20).to_dict("records")),
            },
        )

    _check.__doc__ = (
        "Every fold's fit, as its MLflow run records it (fit_videos.json), trained and chose "
        "its epoch or stacking on no video that cv_folds places in that fold, and scored only "
        "that fold's videos."
    )
    return _check


def predictions_match_folds(model_asset: dg.AssetsDefinition) -> dg.AssetChecksDefinition:
    """A warning check that `model_asset`'s stored predictions match the current `cv_folds`."""

    @dg.asset_check(
        asset=model_asset,
        name="predictions_match_the_folds",
        additional_ins={"cv_folds": dg.AssetIn()},
    )
    def _check(cv_folds: pd.DataFrame, warehouse: DuckDBResource) -> dg.AssetCheckResult:
        table = existing_table(warehouse, model_asset.key.path[-1])
        staleness = None if table is None else prediction_staleness(table, cv_folds)
        return dg.AssetCheckResult(
            passed=staleness is not None and not staleness.stale,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={
                "stale_reason": dg.MetadataValue.text(
                    "no predictions stored" if staleness is None else staleness.reason
                ),
                **{
                    f"{what}_videos": dg.MetadataValue.int(len(getattr(staleness, what, ())))
                    for what in ("unscored", "dropped", "moved", "relabelled")
                },
            },
        )

    _check.__doc__ = (
        "Its stored predictions cover the videos cv_folds places in the folds it scored, each "
        "in that fold and with its current label; a stale model is left out of "
        "fold_predictions, the comparison's ranking, the champion and the ensemble until it is "
        "retrained."
    )
    return _check


fit_blind_checks = [fold_fits_blind(asset) for asset in MODEL_ASSETS]
staleness_checks = [predictions_match_folds(asset) for asset in MODEL_ASSETS]
