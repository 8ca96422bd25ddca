"""Clips of a video: K sampled frames, identified by video and augmentation index."""

from __future__ import annotations

from pathlib import Path

from fvc_dagster.lib.features import CodecCues, handcrafted_features
from fvc_dagster.lib.video import sample_frames

ORIGINAL = -1


def clip_id(video_id: str, aug_index: int) -> str:
    """`<video>__orig` for the original clip, `<video>__aug03` for augmentation 3."""
    return f"{video_id}__orig" if aug_index == ORIGINAL else f"{video_id}__aug{aug_index:02d}"


def codec_cues(source: dict) -> CodecCues:
    """The source video's codec cues, shared by all its clips."""
    return CodecCues(
        bitrate=source.get("bitrate"),
        fps=source.get("fps"),
        width=int(source["width"]),
        height=int(source["height"]),
    )


def original_clip_features(video_id: str, source: dict, frames_per_clip: int) -> dict:
    """The handcrafted feature row of a video's original clip (its K uniformly sampled frames)."""
    clip = sample_frames(Path(source["path"]), frames_per_clip, name=video_id)
    return {
        "video_id": video_id,
        "clip_id": clip_id(video_id, ORIGINAL),
        "aug_index": ORIGINAL,
        **handcrafted_features(clip, codec_cues(source)),
    }
