"""Partitions: one per video (dynamic, registered by the archive sensor) and one per CV fold."""

import dagster as dg
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)

N_FOLDS = 5

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
