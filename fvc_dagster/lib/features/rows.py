"""Feature rows of stored clips: the handcrafted features of a clip, the stage-4 features of a
scaled clip, one row per clip, a clip the features cannot measure raised as its video's error;
both side by side (`clip_features`), what the tabular models read."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from fvc_dagster.lib.clips.store import read_clip
from fvc_dagster.lib.clips.video_clips import content_box
from fvc_dagster.lib.features.forensic import (
    HANDCRAFTED_FEATURES,
    SCALED_FEATURES,
    CodecCues,
    handcrafted_features,
    scaled_features,
)
from fvc_dagster.lib.ingest.video import VideoError

# The columns the tabular models read: stage 2 and stage 4 features of a clip.
CLIP_FEATURES = [*HANDCRAFTED_FEATURES, *SCALED_FEATURES]


def codec_cues(source: dict) -> CodecCues:
    """The source video's codec cues, shared by all its clips."""
    bitrate = source.get("bitrate")
    return CodecCues(
        bitrate=None if bitrate is None or bitrate != bitrate else float(bitrate),
        fps=source.get("fps"),
        width=int(source["width"]),
        height=int(source["height"]),
    )


@contextlib.contextmanager
def _features_of(clip: dict) -> Iterator[None]:
    """Turn a clip the features cannot measure (frames under 9x9) into that video's error."""
    try:
        yield
    except ValueError as exc:
        raise VideoError(f"video {clip['video_id']!r}, clip {clip['clip_id']!r}: {exc}") from None


def clip_feature_row(clip: dict, cues: CodecCues) -> dict:
    """The 15 handcrafted features of one stored clip (inside the picture of a scaled clip)."""
    frames = read_clip(Path(clip["path"]))
    with _features_of(clip):
        features = handcrafted_features(frames, cues, content_box(clip))
    return {
        "video_id": clip["video_id"],
        "clip_id": clip["clip_id"],
        "aug_index": clip["aug_index"],
        **features,
    }


def scaled_feature_row(scaled: dict) -> dict:
    """The 8 stage-4 features of one scaled clip, measured inside its content box."""
    frames = read_clip(Path(scaled["path"]))
    return {
        "video_id": scaled["video_id"],
        "clip_id": scaled["clip_id"],
        "aug_index": scaled["aug_index"],
        **scaled_features(
            frames,
            original_size=(scaled["original_width"], scaled["original_height"]),
            scaled_size=(scaled["scaled_width"], scaled["scaled_height"]),
            content_box=content_box(scaled),
        ),
    }


def clip_features(handcrafted: pd.DataFrame, scaled: pd.DataFrame) -> pd.DataFrame:
    """Stage 2 and stage 4 features side by side, one row per clip."""
    return handcrafted.merge(scaled.drop(columns=["video_id", "aug_index"]), on="clip_id")
