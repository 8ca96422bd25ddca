"""Blocking checks of the folds: no cascade straddles folds, every fold holds both classes, no
clip of a held-out video (original, augmented or scaled, as its files say) trains its fold, and
no test video has a fold or trains or validates one."""

import dagster as dg
import pandas as pd
from dagster_duckdb import DuckDBResource

from fvc_dagster.defs.folds.assets import cv_folds, training_clips
from fvc_dagster.defs.partitions import N_FOLDS
from fvc_dagster.defs.resources import FvcStorage, VideoInbox
from fvc_dagster.defs.warehouse import existing_table
from fvc_dagster.lib.ingest.splits import videos_in_test_split
from fvc_dagster.lib.training.fold_data import (
    TRAIN,
    clip_owners,
    leak_report,
    rows_using_test_videos,
)
from fvc_dagster.lib.training.folds import folds_missing_a_class, groups_in_several_folds


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


def _test_videos_used(
    rows: pd.DataFrame, warehouse: DuckDBResource, inbox: VideoInbox
) -> dg.AssetCheckResult:
    """Fails naming every test video that `rows` (cv_folds or training_clips) uses: which videos
    are test is decided again from the stored `source_videos` (each video's archive and declared
    split) and the configured test-archive patterns, not taken from the rows checked."""
    stored = existing_table(warehouse, "source_videos")
    test = videos_in_test_split(stored, inbox.test_archive_patterns)
    used = rows_using_test_videos(rows, test)
    return dg.AssetCheckResult(
        passed=used.empty,
        metadata={
            "test_videos": dg.MetadataValue.int(len(test)),
            "test_videos_used": dg.MetadataValue.json(sorted(used["video_id"].unique())),
            "examples": dg.MetadataValue.json(used.head(20).to_dict("records")),
        },
    )


@dg.asset_check(asset=cv_folds, blocking=True)
def no_test_video_in_folds(
    cv_folds: pd.DataFrame, warehouse: DuckDBResource, inbox: VideoInbox
) -> dg.AssetCheckResult:
    """No test video (metadata `split` test, or an archive matching `FVC_TEST_ARCHIVES`) has a
    fold."""
    return _test_videos_used(cv_folds, warehouse, inbox)


@dg.asset_check(asset=training_clips, blocking=True)
def no_test_video_in_training(
    training_clips: pd.DataFrame, warehouse: DuckDBResource, inbox: VideoInbox
) -> dg.AssetCheckResult:
    """No clip of a test video trains or validates a fold: test videos have `test` rows only."""
    return _test_videos_used(training_clips, warehouse, inbox)
