"""Clips on disk: lossless FFV1 in Matroska, bit-exact, written atomically, playable anywhere."""

from __future__ import annotations

import base64
import hashlib
import os
import tempfile
from pathlib import Path

import av
import cv2
import numpy as np

CLIP_SUFFIX = ".mkv"
CLIP_FPS = 8  # clips are frame samples; a slow rate makes them easy to inspect in a player


def write_clip(frames: np.ndarray, path: Path) -> str:
    """Write a (K, H, W, 3) RGB clip losslessly and return the file's sha256.

    FFV1 (8-bit RGB) in Matroska with bit-exact muxing: the same frames always give the same bytes.
    """
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"a clip is (K, H, W, 3) uint8, got {frames.shape} {frames.dtype}")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=CLIP_SUFFIX)
    os.close(fd)
    try:
        with av.open(tmp, "w", format="matroska", options={"fflags": "+bitexact"}) as container:
            stream = container.add_stream("ffv1", rate=CLIP_FPS)
            stream.width, stream.height = frames.shape[2], frames.shape[1]
            stream.pix_fmt = "bgr0"  # 8-bit RGB, lossless
            stream.codec_context.options = {"level": "3", "g": "1", "slicecrc": "1"}
            stream.codec_context.thread_count = 1
            stream.codec_context.flags |= av.codec.context.Flags.bitexact
            for n, image in enumerate(frames):
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
                frame.pts = n
                for packet in stream.encode(frame):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
        digest = hashlib.sha256(Path(tmp).read_bytes()).hexdigest()
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return digest


def read_clip(path: Path) -> np.ndarray:
    """The (K, H, W, 3) RGB frames of a stored clip, exactly as written."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(stream)])


def contact_sheet(first_frames: list[np.ndarray], height: int = 72) -> np.ndarray:
    """One row of thumbnails (one per clip) at a common height, for previews."""
    thumbs = [
        cv2.resize(f, (max(1, round(f.shape[1] * height / f.shape[0])), height), cv2.INTER_AREA)
        for f in first_frames
    ]
    return np.concatenate(thumbs, axis=1)


def png_markdown(image: np.ndarray, alt: str) -> str:
    """Markdown that embeds an RGB image as a PNG data URI (rendered by the Dagster UI)."""
    ok, png = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError("PNG encoding failed")
    return f"![{alt}](data:image/png;base64,{base64.b64encode(png.tobytes()).decode()})"
