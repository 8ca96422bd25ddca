"""Clip arrays: the ``(K, H, W, 3)`` uint8 RGB contract every stage shares, and resizing them."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np


def check_clip_shape(shape: Sequence[int], min_side: int = 1) -> tuple[int, int, int]:
    """``(K, H, W)`` of a clip shape ``(K, H, W, 3)`` with at least one frame of at least
    ``min_side`` x ``min_side`` pixels; ValueError naming the shape otherwise."""
    shape = tuple(int(s) for s in shape)
    if len(shape) != 4 or shape[3] != 3:
        raise ValueError(f"a clip is a (K, H, W, 3) RGB array, got shape {shape}")
    k, h, w, _ = shape
    if k < 1:
        raise ValueError(f"a clip needs at least one frame, got shape {shape}")
    if h < min_side or w < min_side:
        raise ValueError(f"frames must be at least {min_side}x{min_side}, got {h}x{w}")
    return k, h, w


def check_clip(clip: np.ndarray, min_side: int = 1) -> tuple[int, int, int]:
    """``(K, H, W)`` of a ``(K, H, W, 3)`` uint8 RGB clip (see :func:`check_clip_shape`)."""
    if not isinstance(clip, np.ndarray):
        raise ValueError(f"a clip is a (K, H, W, 3) RGB array, got {type(clip).__name__}")
    if clip.dtype != np.uint8:
        raise ValueError(f"a clip is uint8, got {clip.dtype}")
    return check_clip_shape(clip.shape, min_side)


def resize_frames(clip: np.ndarray, width: int, height: int) -> np.ndarray:
    """Every frame resized to ``(width, height)``: INTER_AREA when shrinking in both directions,
    INTER_CUBIC otherwise; the clip itself (contiguous) when the size already matches."""
    k, src_h, src_w, _ = clip.shape
    if (src_w, src_h) == (width, height):
        return np.ascontiguousarray(clip)
    shrinking = width <= src_w and height <= src_h
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC
    out = np.empty((k, height, width, 3), np.uint8)
    for frame, resized in zip(clip, out, strict=True):
        cv2.resize(frame, (width, height), dst=resized, interpolation=interpolation)
    return out
