"""Stage 2 and stage 4 features, one row per clip: `handcrafted_features`, `scaled_features`."""

import dagster as dg
import pandas as pd

from fvc_dagster.defs.batching import (
    add_video_metadata,
    for_each_video,
    per_video_asset,
    row_counts,
    rows_by_video,
)
from fvc_dagster.lib.clips.video_clips import parallel_map
from fvc_dagster.lib.features.rows import clip_feature_row, codec_cues, scaled_feature_row


def _per_clip(
    context: dg.AssetExecutionContext, clips: pd.DataFrame, clips_asset: str, row_of
) -> pd.DataFrame:
    """Feature rows for every clip of every video of the run, one video at a time."""
    clips_of = rows_by_video(clips, clips_asset)
    batches, seconds = for_each_video(
        context,
        context.partition_keys,
        lambda video_id: parallel_map(row_of, clips_of(video_id).to_dict("records")),
    )
    add_video_metadata(context, seconds, row_counts(seconds, batches))
    return pd.DataFrame([row for batch in batches for row in batch])


@per_video_asset(group_name="features", kinds={"duckdb", "numpy"})
def handcrafted_features(
    context: dg.AssetExecutionContext, augmented_clips: pd.DataFrame, source_videos: pd.DataFrame
) -> pd.DataFrame:
    """One row per clip: noise residual, 8x8 DCT, sharpness and block-boundary features of its K
    frames, and the codec cues of its source video (15 features)."""
    cues = {row["video_id"]: codec_cues(row) for row in source_videos.to_dict("records")}
    return _per_clip(
        context,
        augmented_clips,
        "augmented_clips",
        lambda clip: clip_feature_row(clip, cues[clip["video_id"]]),
    )


@per_video_asset(group_name="features", kinds={"duckdb", "numpy"})
def scaled_features(context: dg.AssetExecutionContext, scaled_clips: pd.DataFrame) -> pd.DataFrame:
    """One row per scaled clip: edge density, texture uniformity, colour consistency (3),
    blockiness, and whether the clip was up- or downscaled (8 features)."""
    return _per_clip(context, scaled_clips, "scaled_clips", scaled_feature_row)
