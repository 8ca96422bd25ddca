"""Jobs: the per-video pipeline the sensors launch, baseline training over all folds, and video
networks on request."""

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

networks_job = dg.define_asset_job(
    "networks",
    selection=dg.AssetSelection.groups("networks")
    | dg.AssetSelection.assets("fold_metrics", "model_comparison"),
    partitions_def=folds_partitions,
    description="Video networks on a range of folds (pick them with an asset selection; each "
    "network's hyperparameters in its config), then the metrics and the comparison.",
)
