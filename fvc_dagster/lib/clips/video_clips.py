"""Clips of a video: its original clip of K sampled frames and 10 augmented ones, stored
losslessly, then scaled; and the per-clip feature rows of stages 2 and 4."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import cv2
import numpy as np
from threadpoolctl import threadpool_limits

from fvc_dagster.lib.clips.augment import AUG_TYPES, N_AUGMENTATIONS, augment_clip
from fvc_dagster.lib.clips.scaling import ScaledClip
from fvc_dagster.lib.clips.store import CLIP_SUFFIX, read_clip, write_clip
from fvc_dagster.lib.ingest.video import PacketIndex, packet_index_path, sample_frames

ORIGINAL = -1
T = TypeVar("T")
R = TypeVar("R")


def clip_id(video_id: str, aug_index: int) -> str:
    """`<video>__orig` for the original clip, `<video>__aug03` for augmentation 3."""
    return f"{video_id}__orig" if aug_index == ORIGINAL else f"{video_id}__aug{aug_index:02d}"


def _clip_row(video_id: str, aug_index: int, frames: np.ndarray, path: Path, extra: dict) -> dict:
    return {
        "video_id": video_id,
        "clip_id": clip_id(video_id, aug_index),
        "aug_index": aug_index,
        **extra,
        "path": str(path),
        "sha256": write_clip(frames, path),
        "frames": int(frames.shape[0]),
        "width": int(frames.shape[2]),
        "height": int(frames.shape[1]),
    }


@contextlib.contextmanager
def _one_thread_per_worker() -> Iterator[None]:
    """OpenCV and numpy's BLAS on one thread each while the workers already fill the cores.

    Left at a thread per core, each worker's filters and matrix products start threads of
    their own, and the oversubscribed cores ran the 1080p features about 40% slower.
    """
    opencv_threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        with threadpool_limits(limits=1, user_api="blas"):
            yield
    finally:
        cv2.setNumThreads(opencv_threads)


def parallel_map(work: Callable[[T], R], items: Sequence[T]) -> list[R]:
    """`work` over `items` in order, on a thread per core: clip codecs, OpenCV and numpy release
    the GIL, and the clips of a video are independent."""
    if len(items) <= 1:
        return [work(item) for item in items]
    workers = min(len(items), os.cpu_count() or 1)
    with _one_thread_per_worker(), ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(work, items))


def make_clips(
    video_id: str, source_path: Path, frames_per_clip: int, clip_dir: Path
) -> tuple[list[dict], list[np.ndarray]]:
    """Write the original clip and its augmentations; return their rows and first frames.

    Each augmented clip is reproduced bit for bit from the original clip and its row's `params`.
    The source's packet index stored at ingestion is used when present (no second demux).
    """
    index_path = packet_index_path(Path(source_path))
    index = PacketIndex.load(index_path) if index_path.exists() else None
    original = sample_frames(source_path, frames_per_clip, name=video_id, index=index)

    def make(aug_index: int) -> tuple[dict, np.ndarray]:
        if aug_index == ORIGINAL:
            frames, extra = original, {"aug_type": "original", "params": "{}", "seed": None}
        else:
            frames, params, seed = augment_clip(original, video_id, aug_index)
            extra = {"aug_type": AUG_TYPES[aug_index], "params": json.dumps(params), "seed": seed}
        path = clip_dir / f"{clip_id(video_id, aug_index)}{CLIP_SUFFIX}"
        return _clip_row(video_id, aug_index, frames, path, extra), frames[0]

    made = parallel_map(make, [ORIGINAL, *range(N_AUGMENTATIONS)])
    return [row for row, _ in made], [first for _, first in made]


def content_box(clip: dict) -> tuple[int, int, int, int] | None:
    """``(x, y, w, h)`` of the picture inside a scaled clip's canvas; None for other clips."""
    if "content_x" not in clip:
        return None
    x, y, w, h = (int(clip[k]) for k in ("content_x", "content_y", "scaled_width", "scaled_height"))
    return x, y, w, h


def scale_clip(
    clip: dict, scale: Callable[[np.ndarray], ScaledClip], scaled_dir: Path, requested: str
) -> tuple[dict, np.ndarray]:
    """Scale one stored clip, store the result, and return its row and first frame."""
    result = scale(read_clip(Path(clip["path"])))
    x, y, w, h = result.content_box
    path = scaled_dir / f"{clip['clip_id']}{CLIP_SUFFIX}"
    row = {
        "video_id": clip["video_id"],
        "clip_id": clip["clip_id"],
        "aug_index": clip["aug_index"],
        "requested_method": requested,
        "method": result.method,
        "fallback_reason": result.fallback_reason,
        "original_width": result.original_size[0],
        "original_height": result.original_size[1],
        "scaled_width": w,
        "scaled_height": h,
        "canvas_size": int(result.frames.shape[1]),
        "content_x": x,
        "content_y": y,
        "path": str(path),
        "sha256": write_clip(result.frames, path),
    }
    return row, result.frames[0]
