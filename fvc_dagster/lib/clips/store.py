"""Clips on disk: lossless UT Video (planar RGB) in AVI, bit-exact, written atomically.

UT Video decodes about 6x and encodes about 3x faster than FFV1 here, at about twice the size;
stages read clips back several times, so decode speed wins. FFmpeg-based players (ffplay, mpv,
VLC) open the files.
"""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import av
import cv2
import numpy as np

from fvc_dagster.lib.atomic import replacing
from fvc_dagster.lib.frames import check_clip
from fvc_dagster.lib.ingest.video import VideoError

CLIP_SUFFIX = ".avi"
CLIP_CODEC, CLIP_PIXEL_FORMAT, CLIP_CONTAINER = "utvideo", "gbrp", "avi"
CLIP_FPS = 8  # clips are frame samples; a slow rate makes them easy to inspect in a player
_PLANE_CHANNELS = (1, 2, 0)  # gbrp planes hold the G, B and R channels of an RGB image


def _planes(frame: av.VideoFrame) -> list[np.ndarray]:
    """Writable (H, W) views of a gbrp frame's G, B and R planes (rows padded to line_size)."""
    return [
        np.frombuffer(plane, np.uint8).reshape(frame.height, plane.line_size)[:, : frame.width]
        for plane in frame.planes
    ]


def _to_gbrp(image: np.ndarray) -> av.VideoFrame:
    """An RGB image as a planar gbrp frame, each channel copied straight into its plane.

    About 4x faster than ``VideoFrame.from_ndarray(image, "gbrp")``, which took a third of
    the time of writing a 1080p clip.
    """
    frame = av.VideoFrame(image.shape[1], image.shape[0], CLIP_PIXEL_FORMAT)
    for plane, channel in zip(_planes(frame), _PLANE_CHANNELS, strict=True):
        np.copyto(plane, image[:, :, channel])
    return frame


def write_clip(frames: np.ndarray, path: Path) -> str:
    """Write a (K, H, W, 3) RGB clip losslessly and return the file's sha256.

    Planar RGB (no colour conversion) and bit-exact muxing: the same frames give the same bytes.
    """
    check_clip(frames)
    with replacing(path) as tmp:
        with av.open(
            str(tmp), "w", format=CLIP_CONTAINER, options={"fflags": "+bitexact"}
        ) as container:
            stream = container.add_stream(CLIP_CODEC, rate=CLIP_FPS)
            stream.width, stream.height = frames.shape[2], frames.shape[1]
            stream.pix_fmt = CLIP_PIXEL_FORMAT
            stream.codec_context.thread_count = 1
            stream.codec_context.flags |= av.codec.context.Flags.bitexact
            for n, image in enumerate(frames):
                frame = _to_gbrp(image)
                frame.pts = n
                for packet in stream.encode(frame):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
        with open(tmp, "rb") as written:
            digest = hashlib.file_digest(written, "sha256").hexdigest()
    return digest


def read_clip(path: Path) -> np.ndarray:
    """The (K, H, W, 3) RGB frames of a stored clip, exactly as written.

    Each decoded frame's planes are interleaved by one ``cv2.merge`` straight into the output
    array, sized from the AVI header's frame count. A missing, unreadable or damaged file (fewer
    frames than its header says) raises :class:`VideoError` naming it.
    """
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            clip = np.empty((stream.frames, stream.height, stream.width, 3), dtype=np.uint8)
            decoded = 0
            for frame in container.decode(stream):
                if decoded == len(clip):
                    raise VideoError(f"clip {path}: more frames than the {len(clip)} of its header")
                g, b, r = _planes(frame)
                cv2.merge((r, g, b), dst=clip[decoded])
                decoded += 1
    except (av.FFmpegError, OSError, IndexError) as exc:  # IndexError: no video stream
        raise VideoError(f"clip {path}: unreadable ({type(exc).__name__}: {exc})") from None
    if decoded != len(clip):
        raise VideoError(f"clip {path}: {decoded} frames, its header says {len(clip)}")
    return clip


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
