"""Video probing and frame sampling with PyAV: only the packets and frames a stage needs."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path

import av
import numpy as np

from fvc_dagster.lib.atomic import replacing


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
    index: PacketIndex = field(repr=False, compare=False)  # for `sample_frames`

    def as_row(self) -> dict:
        """The probe's columns of a `source_videos` row (the packet index is not one)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "index"}


@dataclass(frozen=True)
class PacketIndex:
    """Every frame of a video's main stream, from one demux (no decoding).

    Probing builds it and the pipeline stores it beside the extracted video (`save`), so
    sampling seeks straight to the frames it needs without demuxing the source again.
    """

    frame_count: int
    frame_pts: np.ndarray | None  # presentation timestamps of every frame, sorted; None: no pts
    keyframe_pts: np.ndarray  # presentation timestamps of keyframes, sorted
    keyframe_positions: np.ndarray  # frame numbers of keyframes

    def save(self, path: Path) -> None:
        """Write the index atomically (a temporary name, then a rename)."""
        with replacing(path) as tmp, open(tmp, "wb") as out:
            np.savez(
                out,
                frame_count=self.frame_count,
                frame_pts=np.array([]) if self.frame_pts is None else self.frame_pts,
                has_pts=self.frame_pts is not None,
                keyframe_pts=self.keyframe_pts,
                keyframe_positions=self.keyframe_positions,
            )

    @classmethod
    def load(cls, path: Path) -> PacketIndex:
        with np.load(path) as saved:
            return cls(
                int(saved["frame_count"]),
                saved["frame_pts"] if bool(saved["has_pts"]) else None,
                saved["keyframe_pts"],
                saved["keyframe_positions"],
            )


def packet_index_path(video_path: Path) -> Path:
    """Where the pipeline keeps a video's packet index: beside the video."""
    return video_path.with_name(f"{video_path.name}.packets.npz")


def _open(path: Path, name: str):
    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError) as exc:
        raise VideoError(f"video {name!r}: cannot open ({exc})") from None
    if not container.streams.video:
        container.close()
        raise VideoError(f"video {name!r}: no video stream")
    return container


def _packet_index(container, name: str) -> PacketIndex:
    """Demux the main video stream once: frame count, timestamps and keyframes."""
    stream = container.streams.video[0]
    pts, keys = [], []
    try:
        for packet in container.demux(stream):
            if packet.size:
                pts.append(packet.pts)
                keys.append(packet.is_keyframe)
    except av.FFmpegError as exc:
        raise VideoError(f"video {name!r}: unreadable packets ({exc})") from None
    if not pts:
        raise VideoError(f"video {name!r}: the video stream holds no frames")
    key_mask = np.asarray(keys, dtype=bool)
    if any(p is None for p in pts):  # no timestamps: frames in decode order
        return PacketIndex(len(pts), None, np.array([], np.int64), np.flatnonzero(key_mask))
    pts_arr = np.asarray(pts, dtype=np.int64)
    order = np.argsort(pts_arr, kind="stable")
    sorted_pts = pts_arr[order]
    key_mask = key_mask[order]
    return PacketIndex(len(pts), sorted_pts, sorted_pts[key_mask], np.flatnonzero(key_mask))


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
        frame_count = index.frame_count
        if declared_frames and frame_count < 0.9 * declared_frames:
            raise VideoError(
                f"video {name!r}: truncated (container declares {declared_frames} frames, "
                f"only {frame_count} are present)"
            )
        rate = stream.average_rate or stream.guessed_rate
        if index.frame_pts is not None and time_base and frame_count > 1:
            span = float(index.frame_pts[-1] - index.frame_pts[0]) * time_base
            fps = (frame_count - 1) / span if span > 0 else float(rate or 0)
            duration = frame_count / fps if fps else 0.0
        else:
            fps = float(rate or 0)
            duration = float(container.duration or 0) / av.time_base
        declared = _declared_seconds(container, stream)
        if index.frame_pts is not None and fps and declared and duration < 0.9 * declared:
            raise VideoError(
                f"video {name!r}: truncated (the container declares {declared:.2f} s of video, "
                f"its frames cover {duration:.2f} s)"
            )
        keyframes = index.keyframe_positions
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
            index=index,
        )


def _declared_seconds(container, stream) -> float | None:
    """The video stream's length as the container's header declares it, when it does: the
    stream's own duration, Matroska's per-stream DURATION tag, or the container's duration when
    no audio stream could make it longer."""
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    if tag := stream.metadata.get("DURATION"):  # Matroska: HH:MM:SS.nnnnnnnnn
        try:
            hours, minutes, seconds = tag.split(":")
            return int(hours) * 3600 + int(minutes) * 60 + float(seconds)
        except ValueError:
            return None
    if not container.streams.audio and container.duration:
        return float(container.duration) / av.time_base
    return None


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


def sample_frames(
    path: Path, k: int = 16, name: str | None = None, index: PacketIndex | None = None
) -> np.ndarray:
    """The K uniformly spaced frames of a video as a (K, H, W, 3) RGB uint8 clip.

    `index` is the video's packet index from `probe_video` (demuxed here when not given).
    Only the frames up to each target are decoded: the reader seeks to the keyframe before a
    target when one lies between the current position and it, and converts only target frames.
    Frames are turned upright according to the stream's rotation metadata.
    """
    name = name or path.name
    with _open(path, name) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        if index is None:
            index = _packet_index(container, name)
            container.seek(0)
        if index.frame_pts is None:
            return _sample_sequential(container, index.frame_count, k, name)
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
                _seek(container, stream, int(key_pts), name)
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


def _seek(container, stream, pts: int, name: str) -> None:
    try:
        container.seek(pts, stream=stream, backward=True, any_frame=False)
    except av.FFmpegError as exc:
        raise VideoError(f"video {name!r}: cannot seek to pts {pts} ({exc})") from None


def _decode(frames, name: str):
    try:
        yield from frames
    except av.FFmpegError as exc:
        raise VideoError(f"video {name!r}: decoding failed ({exc})") from None


def _sample_sequential(container, frame_count: int, k: int, name: str) -> np.ndarray:
    """For streams without timestamps: decode in order, keeping the K target frames."""
    targets = uniform_indices(frame_count, k)
    wanted = {int(t) for t in targets}
    images: dict[int, np.ndarray] = {}
    for number, frame in enumerate(_decode(container.decode(container.streams.video[0]), name)):
        if number in wanted:
            images[number] = _to_display(frame, frame.rotation or 0)
        if number >= targets[-1]:
            break
    missing = wanted - images.keys()
    if missing:
        raise VideoError(
            f"video {name!r}: truncated, frame {min(missing)} of {frame_count} not decoded"
        )
    return np.stack([images[int(t)] for t in targets])
