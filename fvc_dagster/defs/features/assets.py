"""`handcrafted_features`: the 15 forensic features of every clip of a video."""

import dagster as dg
import pandas as pd

from fvc_dagster.defs.batching import for_each_video, timing_metadata
from fvc_dagster.defs.partitions import video_backfill_policy, videos_partitions
from fvc_dagster.defs.resources import ClipSampling
from fvc_dagster.lib.clips import original_clip_features
from fvc_dagster.lib.features import HANDCRAFTED_FEATURES


@dg.asset(
    partitions_def=videos_partitions,
    backfill_policy=video_backfill_policy,
    pool="duckdb",
    group_name="features",
    kinds={"duckdb", "numpy"},
    metadata={"partition_expr": "video_id"},
)
def handcrafted_features(
    context: dg.AssetExecutionContext, source_videos: pd.DataFrame, sampling: ClipSampling
) -> pd.DataFrame:
    """One row per clip: noise, DCT, sharpness, blocking and codec features of its K frames."""
    sources = source_videos.set_index("video_id")
    rows, seconds = for_each_video(
        context,
        [v for v in context.partition_keys if v in sources.index],
        lambda video_id: original_clip_features(
            video_id, sources.loc[video_id].to_dict(), sampling.frames_per_clip
        ),
    )
    table = pd.DataFrame(rows)
    context.add_output_metadata(
        {
            **timing_metadata(seconds),
            "rows": dg.MetadataValue.int(len(table)),
            "feature_means": dg.MetadataValue.md(
                table[list(HANDCRAFTED_FEATURES)].mean().to_frame("mean").to_markdown()
            ),
        }
    )
    return table
