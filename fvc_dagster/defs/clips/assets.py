"""Stage 1 and stage 3 clips: `augmented_clips` and `scaled_clips`, per video."""

import dagster as dg
import pandas as pd

from fvc_dagster.defs.batching import (
    add_video_metadata,
    for_each_video,
    per_video_asset,
    rows_by_video,
)
from fvc_dagster.defs.clips.previews import clip_preview
from fvc_dagster.defs.resources import ClipSampling, ClipScaling, FvcStorage
from fvc_dagster.lib.clips.video_clips import make_clips, parallel_map, scale_clip


@per_video_asset(group_name="clips", kinds={"duckdb", "video"})
def augmented_clips(
    context: dg.AssetExecutionContext,
    source_videos: pd.DataFrame,
    sampling: ClipSampling,
    storage: FvcStorage,
) -> pd.DataFrame:
    """One row per clip: the original (aug_index -1) and 10 augmented clips of K frames, with the
    augmentation's type, JSON params and seed, and the lossless clip file."""
    source_of = rows_by_video(source_videos, "source_videos")
    own = {}

    def make(video_id: str) -> list[dict]:
        path = source_of(video_id)["path"].iloc[0]
        rows, first_frames = make_clips(
            video_id, path, sampling.frames_per_clip, storage.clip_store / video_id
        )
        own[video_id] = {"clips": len(rows), "preview": clip_preview(video_id, first_frames)}
        return rows

    batches, seconds = for_each_video(context, context.partition_keys, make)
    table = pd.DataFrame([row for rows in batches for row in rows])
    add_video_metadata(context, seconds, own, {"clips_in_run": len(table)})
    return table


@per_video_asset(group_name="clips", kinds={"duckdb", "video", "pytorch"})
def scaled_clips(
    context: dg.AssetExecutionContext,
    augmented_clips: pd.DataFrame,
    scaling: ClipScaling,
    storage: FvcStorage,
) -> pd.DataFrame:
    """One row per clip scaled to a max dimension of 256 (aspect kept, letterboxed): original and
    scaled sizes, the method asked for and the method actually used (a VAE out of memory falls
    back to letterbox, with the reason)."""
    scale = scaling.scaler()
    clips_of = rows_by_video(augmented_clips, "augmented_clips")
    own = {}

    def scale_video(video_id: str) -> list[dict]:
        out_dir = storage.scaled_store / video_id
        results = parallel_map(
            lambda clip: scale_clip(clip, scale, out_dir, scaling.method),
            clips_of(video_id).to_dict("records"),
        )
        own[video_id] = {"preview": clip_preview(video_id, [frame for _, frame in results])}
        return [row for row, _ in results]

    batches, seconds = for_each_video(context, context.partition_keys, scale_video)
    table = pd.DataFrame([row for rows in batches for row in rows])
    add_video_metadata(
        context,
        seconds,
        own,
        {
            "methods_used": dg.MetadataValue.json(table["method"].value_counts().to_dict()),
            "fallbacks": int(table["fallback_reason"].notna().sum()),
        },
    )
    return table
