"""The folds: `cv_folds` (which fold holds each labelled train video) and `training_clips`
(which clips train and validate each fold, and which test clips each fold's model scores)."""

import dagster as dg
import pandas as pd
from dagster_duckdb import DuckDBResource

from fvc_dagster.defs.automation import UPDATE_ON_NEW_DATA
from fvc_dagster.defs.partitions import ALL_VIDEOS, DEFAULT_FOLDS, N_FOLDS
from fvc_dagster.defs.warehouse import existing_table
from fvc_dagster.lib.ingest.splits import TEST
from fvc_dagster.lib.training.fold_data import assign_clips
from fvc_dagster.lib.training.folds import (
    assign_folds,
    labelled_test_videos,
    videos_keeping_their_fold,
)

FOLD_SEED = 0


@dg.asset(
    group_name="folds",
    kinds={"duckdb"},
    automation_condition=UPDATE_ON_NEW_DATA,
)
def cv_folds(
    context: dg.AssetExecutionContext, source_videos: pd.DataFrame, warehouse: DuckDBResource
) -> pd.DataFrame:
    """One row per labelled train video: its fold, stratified by label and grouped by cascade
    (test videos get none). A video keeps its fold when new videos come; all are re-assigned
    when `FVC_FOLDS` changed."""
    previous = existing_table(warehouse, "cv_folds")
    before = _fold_count_before(context, previous)
    if before is not None and before != N_FOLDS:
        context.log.warning(
            f"FVC_FOLDS changed from {before} to {N_FOLDS}: every video's fold is re-assigned; "
            "the models' fold tables hold the old folds until they are re-materialized"
        )
        previous = None
    folds = assign_folds(source_videos, N_FOLDS, FOLD_SEED, previous)
    left_out = int((source_videos["split"] == TEST).sum())
    counts = folds.pivot_table(index="fold", columns="label", values="video_id", aggfunc="count")
    context.add_output_metadata(
        {
            "folds": dg.MetadataValue.int(N_FOLDS),
            "reassigned": dg.MetadataValue.bool(before is not None and before != N_FOLDS),
            "videos": dg.MetadataValue.int(len(folds)),
            "test_videos_left_out": dg.MetadataValue.int(left_out),
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


@dg.asset(
    group_name="folds",
    kinds={"duckdb"},
    ins={"cv_folds": dg.AssetIn(), "augmented_clips": ALL_VIDEOS, "source_videos": ALL_VIDEOS},
    automation_condition=UPDATE_ON_NEW_DATA,
)
def training_clips(
    context: dg.AssetExecutionContext,
    cv_folds: pd.DataFrame,
    augmented_clips: pd.DataFrame,
    source_videos: pd.DataFrame,
) -> pd.DataFrame:
    """One row per fold and clip: whether the clip trains that fold (every clip of the other
    folds' videos), validates it (original clips of its held-out videos only) or is a test
    clip for its model to score (original clips of the labelled test videos, in every fold)."""
    table = assign_clips(augmented_clips, cv_folds, N_FOLDS, labelled_test_videos(source_videos))
    counts = table.pivot_table(index="fold", columns="role", values="clip_id", aggfunc="count")
    context.add_output_metadata({"clips_per_fold": dg.MetadataValue.md(counts.to_markdown())})
    return table
