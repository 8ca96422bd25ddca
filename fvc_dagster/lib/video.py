"""Video probing and frame sampling with PyAV: only the packets and frames a stage needs."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import av
import numpy as np


class VideoError(Exception):
    """A video that cannot be probed or decoded; the message names the video."""


@dataclass(frozen=True)
class VideoProbe:
    """What the container and the packet index say about a video's main stream."""

    duration: float
    fps: float
    frame_count: int
    width: int
    height: int
    codec: str
    bitrate: int | None
    gop: float | None
    rotation: int
    has_audio: bool

    def as_row(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class _PacketIndex:
    frame_pts: np.ndarray  # presentation timestamps of every frame, sorted
    keyframe_pts: np.ndarray  # presentation timestamps of keyframes, sorted
    keyframe_positions: np.ndarray  # frame numbers of keyframes


def _open(path: Path, name: str):
    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError) as exc:
        raise VideoError(f"video {name!r}: cannot open ({exc})") from None
    if not container.streams.video:
        container.close()
        raise VideoError(f"video {name!r}: no video stream")
    return container


def _packet_index(container, name: str) -> _PacketIndex | None:
    """Demux (no decoding) to find every frame's pts and the keyframes; None without timestamps."""
    stream = container.streams.video[0]
    pts, keys = [], []
    try:
        for packet in container.demux(stream):
            if packet.size == 0:
                continue
            if packet.pts is None:
                return None
            pts.append(packet.pts)
            keys.append(packet.is_keyframe)
    except av.FFmpegError as exc:
        raise VideoError(f"video {name!r}: unreadable packets ({exc})") from None
    if not pts:
        raise VideoError(f"video {name!r}: the video stream holds no frames")
    pts_arr = np.asarray(pts, dtype=np.int64)
    order = np.argsort(pts_arr, kind="stable")
    sorted_pts = pts_arr[order]
    key_mask = np.asarray(keys, dtype=bool)[order]
    return _PacketIndex(sorted_pts, sorted_pts[key_mask], np.flatnonzero(key_mask))


def probe_video(path: Path, name: str | None = None) -> VideoProbe:
    """Probe a video from its container and packet index, and decode its first frame.

    Raises VideoError naming the video when it is empty, corrupt or truncated.
    """
    name = name or path.name
    with _open(path, name) as container:
        stream = container.streams.video[0]
        declared_frames = stream.frames
        has_audio = bool(container.streams.audio)
        codec = stream.codec_context.name
        time_base = float(stream.time_base) if stream.time_base else None
        index = _packet_index(container, name)
        if index is not None:
            frame_count = len(index.frame_pts)
            keyframes = index.keyframe_positions
        else:
            container.seek(0)
            frame_count = sum(1 for p in container.demux(stream) if p.size)
            keyframes = np.array([0])
        if declared_frames and frame_count < 0.9 * declared_frames:
            raise VideoError(
                f"video {name!r}: truncated (container declares {declared_frames} frames, "
                f"only {frame_count} are present)"
            )
        rate = stream.average_rate or stream.guessed_rate
        if index is not None and time_base and frame_count > 1:
            span = float(index.frame_pts[-1] - index.frame_pts[0]) * time_base
            fps = (frame_count - 1) / span if span > 0 else float(rate or 0)
            duration = frame_count / fps if fps else 0.0
        else:
            fps = float(rate or 0)
            duration = float(container.duration or 0) / av.time_base
        gop = float(np.diff(keyframes).mean()) if len(keyframes) > 1 else float(frame_count)
        container.seek(0)
        first = _first_frame(container, name)
        bitrate = stream.bit_rate or container.bit_rate or None
        return VideoProbe(
            duration=round(duration, 4),
            fps=round(fps, 4),
            frame_count=frame_count,
            width=first.width,
            height=first.height,
            codec=codec,
            bitrate=int(bitrate) if bitrate else None,
            gop=round(gop, 2),
            rotation=int(first.rotation or 0) % 360,
            has_audio=has_audio,
        )


def _first_frame(container, name: str):
    try:
        return next(container.decode(container.streams.video[0]))
    except (StopIteration, av.FFmpegError) as exc:
        raise VideoError(f"video {name!r}: no decodable frame ({exc or 'empty stream'})") from None


def uniform_indices(frame_count: int, k: int) -> np.ndarray:
    """K frame numbers spread evenly over the video, first and last included."""
    if frame_count <= 0 or k <= 0:
        raise ValueError("frame_count and k must be positive")
    return np.linspace(0, frame_count - 1, k).round().astype(np.int64)


def _to_display(frame, rotation: int) -> np.ndarray:
    rgb = frame.to_ndarray(format="rgb24")
    return np.ascontiguousarray(np.rot90(rgb, k=rotation // 90)) if rotation % 360 else rgb


def sample_frames(path: Path, k: int = 16, name: str | None = None) -> np.ndarray:
    """The K uniformly spaced frames of a video as a (K, H, W, 3) RGB uint8 clip.

    Only the frames up to each target are decoded: the reader seeks to the keyframe before a
    target when one lies between the current position and it, and converts only target frames.
    Frames are turned upright according to the stream's rotation metadata.
    """
    name = name or path.name
    with _open(path, name) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        index = _packet_index(container, name)
        container.seek(0)
        if index is None:
            return _sample_sequential(container, path, k, name)
        targets = uniform_indices(len(index.frame_pts), k)
        target_pts = index.frame_pts[targets]
        slots: dict[int, list[int]] = {}
        for slot, pts in enumerate(target_pts.tolist()):
            slots.setdefault(pts, []).append(slot)
        clip: list[np.ndarray | None] = [None] * k
        position = None  # pts of the last decoded frame
        frames = None
        for pts in sorted(slots):
            key_pts = index.keyframe_pts[np.searchsorted(index.keyframe_pts, pts, "right") - 1]
            if position is None or key_pts > position or pts <= position:
                container.seek(int(key_pts), stream=stream, backward=True, any_frame=False)
                frames = _decode(container.decode(stream), name)
            for frame in frames:
                position = frame.pts
                if frame.pts is None or frame.pts > pts:
                    raise VideoError(f"video {name!r}: frame at pts {pts} could not be decoded")
                if frame.pts == pts:
                    image = _to_display(frame, frame.rotation or 0)
                    for slot in slots[pts]:
                        clip[slot] = image
                    break
            else:
                raise VideoError(f"video {name!r}: truncated before frame at pts {pts}")
        return np.stack(clip)


def _decode(frames, name: str):
    try:
        yield from frames
    except av.FFmpegError as exc:
        raise VideoError(f"video {name!r}: decoding failed ({exc})") from None


def _sample_sequential(container, path: Path, k: int, name: str) -> np.ndarray:
    """Fallback for streams without timestamps: count packets, then decode in order."""
    stream = container.streams.video[0]
    count = sum(1 for p in container.demux(stream) if p.size)
    if count == 0:
        raise VideoError(f"video {name!r}: the video stream holds no frames")
    container.seek(0)
    targets = uniform_indices(count, k)
    wanted = {int(t) for t in targets}
    images: dict[int, np.ndarray] = {}
    for number, frame in enumerate(_decode(container.decode(stream), name)):
        if number in wanted:
            images[number] = _to_display(frame, frame.rotation or 0)
        if number >= targets[-1]:
            break
    missing = wanted - images.keys()
    if missing:
        raise VideoError(f"video {name!r}: truncated, frame {min(missing)} of {count} not decoded")
    return np.stack([images[int(t)] for t in targets])
