"""Blocking checks on the folds: no cascade straddles folds, every fold holds both classes."""

import dagster as dg
import pandas as pd

from fvc_dagster.defs.partitions import N_FOLDS
from fvc_dagster.defs.training.assets import cv_folds
from fvc_dagster.lib.splits import folds_missing_a_class, groups_in_several_folds


@dg.asset_check(asset=cv_folds, blocking=True)
def no_cascade_in_two_folds(cv_folds: pd.DataFrame) -> dg.AssetCheckResult:
    """Every duplicate group (cascade) lies in exactly one fold."""
    straddling = groups_in_several_folds(cv_folds)
    return dg.AssetCheckResult(
        passed=not straddling,
        metadata={
            "straddling_cascades": dg.MetadataValue.json(straddling[:50]),
            "cascades": dg.MetadataValue.int(cv_folds["dup_group"].nunique()),
        },
    )


@dg.asset_check(asset=cv_folds, blocking=True)
def every_fold_has_both_classes(cv_folds: pd.DataFrame) -> dg.AssetCheckResult:
    """Each of the folds holds real and fake videos, so every validation is two-class."""
    missing = folds_missing_a_class(cv_folds, N_FOLDS)
    return dg.AssetCheckResult(
        passed=not missing,
        metadata={
            "folds_missing_a_class": dg.MetadataValue.json({str(k): v for k, v in missing.items()})
        },
    )
