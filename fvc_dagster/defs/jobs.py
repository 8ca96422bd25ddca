"""Jobs: the per-video pipeline the sensors launch, and training over all folds."""

import dagster as dg

from fvc_dagster.defs.partitions import folds_partitions, videos_partitions

PER_VIDEO_GROUPS = ("ingest", "clips", "features")

video_pipeline_job = dg.define_asset_job(
    "video_pipeline",
    selection=dg.AssetSelection.groups(*PER_VIDEO_GROUPS),
    partitions_def=videos_partitions,
    description="Every per-video asset for a batch of videos, in one run.",
)

training_job = dg.define_asset_job(
    "training",
    selection=dg.AssetSelection.groups("training"),
    partitions_def=folds_partitions,
    description="Folds, baseline models on a range of folds (all of them in one run by default), "
    "their metrics and the comparison.",
)
