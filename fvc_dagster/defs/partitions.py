"""Partitions: one per video (dynamic, registered by the archive sensor) and one per CV fold."""

import os

import dagster as dg
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)

DEFAULT_FOLDS = 5


def fold_count(value: str | None) -> int:
    """The number of CV folds from `FVC_FOLDS` (unset: 5); at least 2."""
    if value is None or value == "":
        return DEFAULT_FOLDS
    try:
        folds = int(value)
    except ValueError:
        folds = 0
    if folds < 2:
        raise ValueError(f"FVC_FOLDS must be a whole number of at least 2, got {value!r}")
    return folds


# Read when the code location loads: changing it re-assigns every video's fold (cv_folds).
N_FOLDS = fold_count(os.environ.get("FVC_FOLDS"))

videos_partitions = dg.DynamicPartitionsDefinition(name="videos")
folds_partitions = dg.StaticPartitionsDefinition([str(fold) for fold in range(N_FOLDS)])

# Per-video assets run many videos per run; a backfill of hundreds of videos is a few runs.
VIDEO_BATCH_SIZE = 32
video_backfill_policy = dg.BackfillPolicy.multi_run(max_partitions_per_run=VIDEO_BATCH_SIZE)

# A fold-partitioned (or unpartitioned) asset reading every video partition of a per-video one.
ALL_VIDEOS = dg.AssetIn(partition_mapping=dg.AllPartitionMapping())


def partition_range_tags(first: str, last: str) -> dict[str, str]:
    """Run tags that make one run cover the partitions `first`..`last` of its job."""
    return {ASSET_PARTITION_RANGE_START_TAG: first, ASSET_PARTITION_RANGE_END_TAG: last}
