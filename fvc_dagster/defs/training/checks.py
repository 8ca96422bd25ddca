"""Blocking checks: no cascade straddles folds, every fold holds both classes, and no clip of a
held-out video (original, augmented or scaled) trains its fold."""

import dagster as dg
import pandas as pd

from fvc_dagster.defs.partitions import N_FOLDS
from fvc_dagster.defs.training.assets import ALL_VIDEOS, cv_folds, training_clips
from fvc_dagster.lib.splits import folds_missing_a_class, groups_in_several_folds
from fvc_dagster.lib.training import leaked_training_clips


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


@dg.asset_check(
    asset=training_clips,
    blocking=True,
    additional_ins={
        "cv_folds": dg.AssetIn(),
        "augmented_clips": ALL_VIDEOS,
        "scaled_clips": ALL_VIDEOS,
    },
)
def no_held_out_clip_in_training(
    training_clips: pd.DataFrame,
    cv_folds: pd.DataFrame,
    augmented_clips: pd.DataFrame,
    scaled_clips: pd.DataFrame,
) -> dg.AssetCheckResult:
    """No fold trains on any clip whose source video that fold holds out."""
    clip_videos = pd.concat([augmented_clips, scaled_clips])[["clip_id", "video_id"]]
    leaked = leaked_training_clips(training_clips, cv_folds, clip_videos)
    return dg.AssetCheckResult(
        passed=leaked.empty,
        metadata={
            "leaked_clips": dg.MetadataValue.int(len(leaked)),
            "examples": dg.MetadataValue.json(
                leaked[["fold", "clip_id", "source_video"]].head(20).to_dict("records")
            ),
            "training_rows": dg.MetadataValue.int(int((training_clips["role"] == "train").sum())),
        },
    )
