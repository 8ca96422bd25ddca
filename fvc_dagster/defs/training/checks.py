"""Blocking checks: no cascade straddles folds, every fold holds both classes, no clip of a
held-out video (original, augmented or scaled, as its files say) trains its fold, and no fold's
labels reach its own stacking meta-learner."""

import dagster as dg
import pandas as pd

from fvc_dagster.defs.partitions import N_FOLDS
from fvc_dagster.defs.resources import FvcStorage
from fvc_dagster.defs.training.assets import cv_folds, training_clips
from fvc_dagster.lib.ensemble import meta_learner_leaks
from fvc_dagster.lib.splits import folds_missing_a_class, groups_in_several_folds
from fvc_dagster.lib.training import TRAIN, clip_owners, leak_report


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


@dg.asset_check(asset=training_clips, blocking=True, additional_ins={"cv_folds": dg.AssetIn()})
def no_held_out_clip_in_training(
    training_clips: pd.DataFrame, cv_folds: pd.DataFrame, storage: FvcStorage
) -> dg.AssetCheckResult:
    """No fold trains on a clip whose files lie under a video it holds out, and every training
    clip has exactly one owner: its clip file and scaled file, under the same video's folder.

    Owners come from the clip and scaled stores (`<store>/<video_id>/<clip_id>.avi`), never from
    a table row. Fails on leaked clips, unknown clips (a file missing from a store) and
    conflicting clips (files under several videos)."""
    report = leak_report(
        training_clips,
        cv_folds,
        {"clips": clip_owners(storage.clip_store), "scaled": clip_owners(storage.scaled_store)},
    )
    found = {
        "leaked": report.leaked[["fold", "clip_id", "video_id", "owner"]],
        "unknown": report.unknown[["fold", "clip_id", "video_id", "missing_from"]],
        "conflicting": report.conflicting,
    }
    return dg.AssetCheckResult(
        passed=report.passed,
        metadata={
            "training_rows": dg.MetadataValue.int(int((training_clips["role"] == TRAIN).sum())),
            **{f"{kind}_clips": dg.MetadataValue.int(len(rows)) for kind, rows in found.items()},
            **{
                f"{kind}_examples": dg.MetadataValue.json(rows.head(20).to_dict("records"))
                for kind, rows in found.items()
            },
        },
    )


@dg.asset_check(
    asset="ensemble",
    blocking=True,
    additional_ins={"ensemble_training_rows": dg.AssetIn(), "cv_folds": dg.AssetIn()},
)
def no_fold_label_in_its_meta_learner(
    ensemble_training_rows: pd.DataFrame, cv_folds: pd.DataFrame
) -> dg.AssetCheckResult:
    """No fold's meta-learner was fit on a clip of a video that `cv_folds` places in that fold:
    the stacked predictions of a fold never saw its labels."""
    leaks = meta_learner_leaks(ensemble_training_rows, cv_folds)
    return dg.AssetCheckResult(
        passed=leaks.empty,
        metadata={
            "meta_training_rows": dg.MetadataValue.int(len(ensemble_training_rows)),
            "leaked_rows": dg.MetadataValue.int(len(leaks)),
            "leaked_examples": dg.MetadataValue.json(leaks.head(20).to_dict("records")),
        },
    )
