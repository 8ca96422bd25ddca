"""Benchmark the clip pipeline stages against decode floors and naive baselines.

`make bench` runs `python -m bench.run`; `--quick` is a fast smoke test. A synthetic corpus is
encoded into a temporary directory (removed at the end); every stage of every video is timed
with the library next to (a) the decode floor: PyAV doing only the work the stage cannot skip
(open, index, seek and decode the frames it needs, or `read_clip` of the clips it reads),
(b) a naive script doing the same job from the same inputs (`bench.naive`) and (c) where asked,
a reference (a full libx264 re-encode, an FFmpeg scale). Results go to `bench/results/`:
stages.csv, summary.md, stages.png.

Every stage's library result is checked against its naive version (and the floor's frames, and
whatever else can be checked: stored clips against an in-memory recompute, the letterbox against
FFmpeg's scale) right after it is timed; a difference beyond the stated tolerance stops the bench
with a non-zero exit status and a message naming the stage, the video and the values, before any
time is written. summary.md lists the checks made and the largest differences seen.

Timing is single-threaded: after the corpus is encoded the process is pinned to one CPU, so
FFmpeg decoders and encoders get one thread as well; OpenCV, torch and numpy's BLAS are set
to 1 thread.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pandas as pd
import torch
from av.video.frame import PictureType
from threadpoolctl import threadpool_limits
from tqdm import tqdm

from bench import naive
from fvc_dagster.lib.clips.augment import (
    AUG_TYPES,
    N_AUGMENTATIONS,
    apply_augmentation,
    augment_clip,
)
from fvc_dagster.lib.clips.scaling import ScaledClip, VaeScaler, content_size, letterbox
from fvc_dagster.lib.clips.store import CLIP_CODEC, read_clip
from fvc_dagster.lib.clips.video_clips import content_box, make_clips, scale_clip
from fvc_dagster.lib.features.forensic import (
    HANDCRAFTED_FEATURES,
    SCALED_FEATURES,
    CodecCues,
    handcrafted_features,
)
from fvc_dagster.lib.features.rows import clip_feature_row, codec_cues, scaled_feature_row
from fvc_dagster.lib.ingest.video import (
    PacketIndex,
    packet_index_path,
    probe_video,
    sample_frames,
    uniform_indices,
)

RESULTS = Path(__file__).resolve().parent / "results"
K = 16
FPS = 25
FRAMES = 500  # 20 s: a short user-generated video (FVC's run from seconds to minutes)
RESOLUTIONS = ((1280, 720), (1920, 1080))
GOPS = (("long", 250), ("short", 12))
# Targets, all on the path production runs: the features asset computes clip_feature_row on the
# 11 full-resolution stored clips of a video (the original and 10 augmentations, no content box).
FLOOR_TARGET = 1.5  # handcrafted_features: at most this times its decode floor (720p and 1080p)
NAIVE_TARGET = 3.0  # handcrafted_features at 1080p: at least this times faster than naive
REENCODE_TARGET = 0.5  # augmented_clips, "well under" one full re-encode: at most this fraction
# Library vs naive feature values: |library - naive| <= FEATURE_ATOL + FEATURE_RTOL * |library|
# (float32 round-off: per-block cv2.dct vs two matrix products, float32 vs int16 filters).
FEATURE_RTOL, FEATURE_ATOL = 1e-4, 1e-6
# Letterbox (OpenCV INTER_AREA) vs FFmpeg swscale AREA, same frames and content size: different
# filters round differently, so at most this mean |difference| and this share of values off by
# more than SCALE_BIG_DIFF grey levels.
SCALE_MEAN_DIFF, SCALE_BIG_DIFF, SCALE_BIG_SHARE = 0.5, 2, 0.01


# ---------------------------------------------------------------------------------- corpus


@dataclass(frozen=True)
class VideoSpec:
    """One synthetic video of the corpus."""

    name: str
    width: int
    height: int
    gop_name: str
    gop: int
    frames: int
    seed: int

    @property
    def resolution(self) -> str:
        return f"{self.width}x{self.height}"


def corpus_specs(videos: int, frames: int) -> list[VideoSpec]:
    """Each content seed encoded with a long and a short GOP; resolutions alternate by seed."""
    specs = []
    for i in range(videos):
        seed = i // 2
        width, height = RESOLUTIONS[seed % 2]
        gop_name, gop = GOPS[i % 2]
        name = f"v{i:02d}_{height}p_{gop_name}"
        specs.append(VideoSpec(name, width, height, gop_name, gop, frames, seed))
    return specs


def synth_frames(width: int, height: int, frames: int, seed: int):
    """Natural-ish RGB frames: a panning gradient with texture, moving shapes, film grain."""
    rng = np.random.default_rng(seed)
    pad = 48
    h, w = height + 2 * pad, width + 2 * pad
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    phase = rng.uniform(0, 2 * np.pi, 3)
    base = np.stack([127 + 90 * np.sin(x / w * 3 + y / h * 2 + p) for p in phase], axis=-1)
    texture = cv2.GaussianBlur(rng.normal(0, 30, (h, w)).astype(np.float32), (0, 0), 1.5)
    background = np.clip(base + texture[..., None], 0, 255).astype(np.uint8)
    grain = rng.integers(-6, 7, (height + 16, width + 16, 3)).astype(np.int16)
    n = 6
    pos = rng.uniform(0, 1, (n, 2)) * (width, height)
    vel = rng.uniform(-12, 12, (n, 2)) * width / 1280
    radius = (rng.uniform(0.04, 0.12, n) * height).astype(int).tolist()
    colour = rng.integers(0, 256, (n, 3)).tolist()
    for t in range(frames):
        dx = int(pad + pad * 0.9 * np.sin(t / 15))
        dy = int(pad + pad * 0.9 * np.cos(t / 23))
        frame = background[dy : dy + height, dx : dx + width].copy()
        for i in range(n):
            cx, cy = (pos[i] + vel[i] * t) % (width, height)
            if i % 2:
                cv2.circle(frame, (int(cx), int(cy)), int(radius[i]), colour[i], -1, cv2.LINE_AA)
            else:
                box = cv2.boxPoints(((cx, cy), (2.0 * radius[i], radius[i]), 7.0 * t + 30 * i))
                cv2.fillConvexPoly(frame, box.astype(np.int32), colour[i], cv2.LINE_AA)
        ox, oy = rng.integers(0, 16, 2)
        yield cv2.add(frame, grain[oy : oy + height, ox : ox + width], dtype=cv2.CV_8U)


def encode(frames, path: Path, width: int, height: int, gop: int, preset: str) -> None:
    """Encode RGB frames (or decoded VideoFrames) to H.264 (crf 23) in MP4 with PyAV."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {
            "crf": "23",
            "preset": preset,
            "g": str(gop),
            "keyint_min": str(gop),
            "sc_threshold": "0",
        }
        for n, image in enumerate(frames):
            if isinstance(image, np.ndarray):
                image = av.VideoFrame.from_ndarray(image, format="rgb24")
            # Frame n at n / FPS (a decoded frame's own pts and time base would be rescaled);
            # x264 picks the frame types.
            image.pts, image.time_base, image.pict_type = n, Fraction(1, FPS), PictureType.NONE
            container.mux(stream.encode(image))
        container.mux(stream.encode())


# ---------------------------------------------------------------------------- per video


@dataclass
class Video:
    """A corpus video and what its stages produced (the inputs of later stages)."""

    spec: VideoSpec
    path: Path
    work: Path
    cues: CodecCues = field(init=False)
    sampled: np.ndarray | None = None
    rows: list[dict] = field(default_factory=list)
    clips: list[np.ndarray] = field(default_factory=list)
    scaled_rows: list[dict] = field(default_factory=list)
    scaled_canvases: list[np.ndarray] = field(default_factory=list)

    def __post_init__(self) -> None:
        """Probe the video and keep its packet index beside it, as `source_videos` does."""
        probe = probe_video(self.path)
        probe.index.save(packet_index_path(self.path))
        self.cues = codec_cues(probe.as_row())

    def stored_index(self) -> PacketIndex:
        """The packet index kept at probing: what sampling in the pipeline starts from."""
        return PacketIndex.load(packet_index_path(self.path))

    def keep_sampled(self, clip: np.ndarray) -> None:
        self.sampled = clip

    def keep_clips(self, rows: list[dict]) -> None:
        """Store the clip rows of make_clips and their frames (for the in-memory stages)."""
        self.rows, self.clips = rows, [read_clip(Path(r["path"])) for r in rows]

    def keep_scaled(self, rows: list[dict]) -> None:
        """Store the scaled clip rows and their stored canvases (for the checks)."""
        self.scaled_rows = rows
        self.scaled_canvases = [read_clip(Path(row["path"])) for row in rows]


def decode_floor(v: Video) -> list[np.ndarray]:
    """PyAV doing only what sampling K frames cannot skip, as the pipeline does it: load the
    packet index kept at probing, open the file, seek to the keyframe before a target when one
    lies ahead of the decoder, decode forward, convert only the targets to RGB."""
    index = v.stored_index()
    images, position, frames = [], None, iter(())
    with av.open(str(v.path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"  # as the library does; one thread once pinned to one CPU
        frame_pts = index.frame_pts.tolist()
        key_pts = index.keyframe_pts
        targets = sorted({frame_pts[i] for i in uniform_indices(len(frame_pts), K).tolist()})
        for pts in targets:
            key = int(key_pts[np.searchsorted(key_pts, pts, "right") - 1])
            if position is None or key > position:
                container.seek(key, stream=stream, backward=True, any_frame=False)
                frames = container.decode(stream)
            for frame in frames:
                position = frame.pts
                if position == pts:
                    images.append(frame.to_ndarray(format="rgb24"))
                    break
    return images


def read_each(rows: list[dict]) -> None:
    """The decode floor of stages that read stored clips: `read_clip` on each file in turn.

    Each clip is dropped before the next is read, as the library stages do: keeping all 11
    alive costs about 30% more (fresh pages for every clip) and would flatter the ratios.
    """
    for row in rows:
        read_clip(Path(row["path"]))


def reencode(v: Video) -> None:
    """Decode every frame and re-encode the whole video with libx264 (preset medium, crf 23)."""
    with av.open(str(v.path)) as source:
        encode(
            source.decode(video=0),
            v.work / "reencoded.mp4",
            v.spec.width,
            v.spec.height,
            v.spec.gop,
            "medium",
        )


def ffmpeg_scale(v: Video) -> list[np.ndarray]:
    """The clip frames scaled to letterbox's content size by FFmpeg (swscale AREA)."""
    out = []
    for clip in v.clips:
        w, h = content_size(clip.shape[2], clip.shape[1])
        for image in clip:
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            out.append(frame.reformat(w, h, interpolation="AREA", threads=1).to_ndarray())
    return out


# --------------------------------------------------------------------------------- checks


class Mismatch(Exception):
    """A library result differs from what it is checked against beyond the stated tolerance."""


@dataclass(frozen=True)
class Check:
    """One comparison of a stage's library result on one video."""

    stage: str
    video: str
    against: str  # what the library result is compared with
    tolerance: str
    count: int  # values (pixels or features) compared
    max_abs: float
    max_rel: float = float("nan")
    mean_abs: float = float("nan")


def _fail(stage: str, v: Video, against: str, detail: str) -> Mismatch:
    return Mismatch(f"stage {stage!r}, video {v.spec.name!r}: library vs {against}: {detail}")


def check_frames(stage: str, v: Video, against: str, lib, other) -> Check:
    """Pixel-identical frames (the same decoder, or a lossless round trip): ``lib`` and ``other``
    are sequences of arrays (clips or frames) compared pair by pair."""
    lib, other = list(lib), list(other)
    if len(lib) != len(other):
        raise _fail(stage, v, against, f"{len(lib)} vs {len(other)} arrays")
    count = 0
    for i, (a, b) in enumerate(zip(lib, other, strict=True)):
        a, b = np.asarray(a), np.asarray(b)
        if a.shape != b.shape:
            raise _fail(stage, v, against, f"array {i}: shape {a.shape} vs {b.shape}")
        if not np.array_equal(a, b):
            diff = np.abs(a.astype(np.int16) - b)
            where = np.unravel_index(int(np.argmax(diff)), a.shape)
            raise _fail(
                stage,
                v,
                against,
                f"array {i}: pixels differ (max |diff| {int(diff[where])} at "
                f"{tuple(map(int, where))}: {int(a[where])} vs {int(b[where])}; "
                f"{int(np.count_nonzero(diff))} values differ); they must be identical",
            )
        count += a.size
    return Check(stage, v.spec.name, against, "identical", count, 0.0, mean_abs=0.0)


def check_values(
    stage: str, v: Video, against: str, names, lib_rows: list, other_rows: list
) -> Check:
    """Feature rows within FEATURE_ATOL + FEATURE_RTOL * |library| (NaN only where both are)."""
    names = list(names)
    lib = np.array([[row[n] for n in names] if isinstance(row, dict) else row for row in lib_rows])
    other = np.array([row[: len(names)] for row in other_rows], dtype=float)
    if lib.shape != other.shape:
        raise _fail(stage, v, against, f"{lib.shape} vs {other.shape} feature values")
    both_nan = np.isnan(lib) & np.isnan(other)
    diff = np.where(both_nan, 0.0, np.abs(lib - other))
    scale = np.abs(lib)
    bad = ~(diff <= FEATURE_ATOL + FEATURE_RTOL * scale)  # NaN on one side only is bad too
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise _fail(
            stage,
            v,
            against,
            f"clip {i}, {names[j]}: {float(lib[i, j])!r} vs {float(other[i, j])!r} "
            f"(|diff| {diff[i, j]:.3g} > {FEATURE_ATOL:g} + {FEATURE_RTOL:g} * |library|); "
            f"{int(bad.sum())} of {bad.size} values out of tolerance",
        )
    rel = np.divide(diff, scale, out=np.zeros_like(diff), where=scale > 0)
    return Check(
        stage,
        v.spec.name,
        against,
        f"abs {FEATURE_ATOL:g} + rel {FEATURE_RTOL:g}",
        diff.size,
        float(diff.max()),
        float(rel.max()),
        float(diff.mean()),
    )


def check_sample(v: Video, r: dict) -> list[Check]:
    return [
        check_frames("sample", v, "naive (OpenCV, sequential)", r["library"], r["naive"]),
        check_frames("sample", v, "decode floor frames", r["library"], r["floor"]),
    ]


def check_augmented(v: Video, r: dict) -> list[Check]:
    """The stored clips read back: the original equals the sampled frames, each augmentation
    equals apply_augmentation(sampled frames, its row's params) recomputed in memory."""

    def recomputed(row: dict) -> np.ndarray:
        if row["aug_index"] < 0:
            return v.sampled
        return apply_augmentation(v.sampled, json.loads(row["params"]))

    against = "stored clips vs in-memory recompute"
    return [
        check_frames("augmented_clips", v, "decode floor frames", v.sampled, r["floor"]),
        check_frames("augmented_clips", v, against, v.clips, map(recomputed, v.rows)),
    ]


def check_handcrafted(stage: str) -> Callable[[Video, dict], list[Check]]:
    def check(v: Video, r: dict) -> list[Check]:
        return [check_values(stage, v, "naive", HANDCRAFTED_FEATURES, r["library"], r["naive"])]

    return check


def check_compute(v: Video, r: dict) -> list[Check]:
    stage, names = "handcrafted_compute_1clip", HANDCRAFTED_FEATURES
    return [check_values(stage, v, "naive", names, [r["library"]], [r["naive"]])]


def check_scaled_clips(v: Video, r: dict) -> list[Check]:
    """The stored canvases equal letterbox of the stored full-resolution clips, recomputed."""
    recomputed = (letterbox(clip).frames for clip in v.clips)
    against = "stored canvases vs in-memory recompute"
    return [check_frames("scaled_clips", v, against, v.scaled_canvases, recomputed)]


def check_letterbox(v: Video, r: dict) -> Check:
    """Letterbox content vs FFmpeg swscale AREA at the same size (different rounding); the bars
    outside the content box must be black."""
    lib: list[ScaledClip] = r["library"]
    content, bars = [], 0
    for scaled in lib:
        x, y, w, h = scaled.content_box
        content.append(scaled.frames[:, y : y + h, x : x + w].reshape(-1, w, 3))
        bars += int(scaled.frames.sum(dtype=np.int64) - content[-1].sum(dtype=np.int64))
    ours, ref = np.concatenate(content), np.concatenate(r["reference"])
    if ours.shape != ref.shape or bars:
        detail = f"shapes {ours.shape} vs {ref.shape}, sum outside the content boxes {bars}"
        raise _fail("letterbox_only", v, "FFmpeg AREA", detail)
    diff = cv2.absdiff(ours.reshape(-1, 3), ref.reshape(-1, 3))
    mean, big = float(diff.mean()), float(np.count_nonzero(diff > SCALE_BIG_DIFF) / diff.size)
    if mean > SCALE_MEAN_DIFF or big > SCALE_BIG_SHARE:
        raise _fail(
            "letterbox_only",
            v,
            "FFmpeg AREA",
            f"mean |diff| {mean:.3g} (limit {SCALE_MEAN_DIFF}), {big:.2%} of values off by more "
            f"than {SCALE_BIG_DIFF} (limit {SCALE_BIG_SHARE:.0%}), max {int(diff.max())}",
        )
    return Check(
        "letterbox_only",
        v.spec.name,
        "FFmpeg swscale AREA (reference)",
        f"mean <= {SCALE_MEAN_DIFF}, <= {SCALE_BIG_SHARE:.0%} off by > {SCALE_BIG_DIFF}",
        diff.size,
        float(diff.max()),
        mean_abs=mean,
    )


def check_scaled_features(v: Video, r: dict) -> list[Check]:
    names = SCALED_FEATURES[:6]  # the naive version has no is_upscaled / is_downscaled
    return [check_values("scaled_features", v, "naive", names, r["library"], r["naive"])]


# --------------------------------------------------------------------------------- stages


@dataclass(frozen=True)
class Stage:
    """A pipeline stage: the library call and what it is compared with (each takes a Video)."""

    name: str
    run: Callable[[Video], object]
    floor: Callable[[Video], object] | None = None
    naive: Callable[[Video], object] | None = None
    reference: Callable[[Video], object] | None = None
    keep: Callable[[Video, object], None] | None = None  # stores the result, untimed
    # Checks the results ({"library", "floor", "naive", "reference"}) after the timing;
    # raises Mismatch.
    check: Callable[[Video, dict], list[Check]] | None = None


def stored_clips(rows: list[dict]) -> list[tuple[Path, tuple[int, int, int, int] | None]]:
    """(file, content box) of stored clip rows: what the naive feature stage reads."""
    return [(Path(row["path"]), content_box(row)) for row in rows]


STAGES = (
    Stage(
        "sample",
        run=lambda v: sample_frames(v.path, K, name=v.spec.name, index=v.stored_index()),
        floor=decode_floor,
        naive=lambda v: naive.sample(v.path, K),
        keep=Video.keep_sampled,
        check=check_sample,
    ),
    Stage(
        "augmented_clips",
        run=lambda v: make_clips(v.spec.name, v.path, K, v.work / "clips")[0],
        floor=decode_floor,
        reference=reencode,
        keep=Video.keep_clips,
        check=check_augmented,
    ),
    Stage(  # the production path: features of the 11 full-resolution stored clips
        "handcrafted_features",
        run=lambda v: [clip_feature_row(r, v.cues) for r in v.rows],
        floor=lambda v: read_each(v.rows),
        naive=lambda v: naive.features_stage(stored_clips(v.rows), v.cues),
        check=check_handcrafted("handcrafted_features"),
    ),
    Stage(
        "handcrafted_compute_1clip",  # the original clip in memory: computation alone
        run=lambda v: handcrafted_features(v.clips[0], v.cues),
        naive=lambda v: naive.handcrafted_features(v.clips[0], v.cues),
        check=check_compute,
    ),
    Stage(
        "scaled_clips",
        run=lambda v: [scale_clip(r, letterbox, v.work / "scaled", "letterbox")[0] for r in v.rows],
        floor=lambda v: read_each(v.rows),
        keep=Video.keep_scaled,
        check=check_scaled_clips,
    ),
    Stage(
        "letterbox_only",
        run=lambda v: [letterbox(clip) for clip in v.clips],
        reference=ffmpeg_scale,
        check=lambda v, r: [check_letterbox(v, r)],
    ),
    Stage(  # not a production path: features of the 256-px scaled clips, inside the content box
        "handcrafted_features_256",
        run=lambda v: [clip_feature_row(r, v.cues) for r in v.scaled_rows],
        floor=lambda v: read_each(v.scaled_rows),
        naive=lambda v: naive.features_stage(stored_clips(v.scaled_rows), v.cues),
        check=check_handcrafted("handcrafted_features_256"),
    ),
    Stage(
        "scaled_features",
        run=lambda v: [scaled_feature_row(r) for r in v.scaled_rows],
        floor=lambda v: read_each(v.scaled_rows),
        naive=lambda v: [
            naive.scaled_features(Path(r["path"]), content_box(r)) for r in v.scaled_rows
        ],
        check=check_scaled_features,
    ),
)
REFERENCE_NAMES = {"augmented_clips": "x264_medium_reencode", "letterbox_only": "ffmpeg_area_scale"}


def timed(fn: Callable[[Video], object] | None, v: Video) -> tuple[float, object]:
    """(seconds, result) of fn(v) by time.perf_counter, after a garbage collection;
    (NaN, None) without fn."""
    if fn is None:
        return float("nan"), None
    gc.collect()
    start = time.perf_counter()
    result = fn(v)
    return time.perf_counter() - start, result


def measure(v: Video) -> tuple[list[dict], list[Check]]:
    """One row per stage (the library, its floor, the naive baseline and the reference) and the
    checks of its results; raises Mismatch at the first failed check."""
    rows, checks = [], []
    for stage in STAGES:
        results = {}
        seconds, results["library"] = timed(stage.run, v)
        if stage.keep:
            stage.keep(v, results["library"])
        floor, results["floor"] = timed(stage.floor, v)
        naive_s, results["naive"] = timed(stage.naive, v)
        ref, results["reference"] = timed(stage.reference, v)
        if stage.check:
            checks += stage.check(v, results)
        del results
        rows.append(
            {
                "video": v.spec.name,
                "resolution": v.spec.resolution,
                "gop": v.spec.gop_name,
                "stage": stage.name,
                "frames": K * (1 + N_AUGMENTATIONS),
                "seconds": seconds,
                "floor_seconds": floor,
                "naive_seconds": naive_s,
                "ratio_to_floor": seconds / floor,
                "speedup_vs_naive": naive_s / seconds,
                "reference": REFERENCE_NAMES.get(stage.name, ""),
                "reference_seconds": ref,
                "ratio_to_reference": seconds / ref,
            }
        )
    v.sampled, v.clips, v.scaled_canvases = None, [], []
    return rows, checks


def vae_seconds_per_frame(device: str, frames: int = 2) -> float:
    """Seconds per frame of VaeScaler (random AutoencoderKL, sd-vae-ft-mse shape), 256x144 box."""
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    # diffusers' AutoencoderKL() defaults to a one-block toy; this is sd-vae-ft-mse's config.
    vae = AutoencoderKL(
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(128, 256, 512, 512),
        layers_per_block=2,
        latent_channels=4,
        sample_size=256,
    )
    scaler = VaeScaler(vae, device=device, batch_size=frames)
    clip = np.random.default_rng(0).integers(0, 256, (frames, 1080, 1920, 3), dtype=np.uint8)
    scaler.scale(clip[:1])  # warm-up
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    result = scaler.scale(clip)
    if device == "cuda":
        torch.cuda.synchronize()
    assert result.method == "vae" and result.content_box[2:] == (256, 144), result
    return (time.perf_counter() - start) / frames


def augmentation_seconds(shape: tuple[int, int, int, int] = (K, 1080, 1920, 3)) -> dict[str, float]:
    """Best-of-3 seconds of each augmentation on one random clip of `shape`."""
    clip = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    best = {}
    for aug_index in range(N_AUGMENTATIONS):
        times = []
        for _ in range(3):
            start = time.perf_counter()
            augment_clip(clip, "bench", aug_index)
            times.append(time.perf_counter() - start)
        best[AUG_TYPES[aug_index]] = min(times)
    return best


# -------------------------------------------------------------------------------- report


def write_atomic(path: Path, write: Callable[[Path], None]) -> None:
    """write(tmp) then os.replace(tmp, path)."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def machine_info(cpu: int) -> dict[str, str]:
    """CPU model, cores, thread settings, load and library versions, for summary.md."""
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or "unknown",
    )
    return {
        "CPU": model,
        "cores": str(os.cpu_count()),
        "threads used": f"1 (pinned to CPU {cpu}; cv2, torch, OpenBLAS: 1 thread)",
        "load average at start": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "PyAV": av.__version__,
        "FFmpeg (libavcodec)": ".".join(map(str, av.library_versions["libavcodec"])),
        "OpenCV": cv2.__version__,
        "numpy": np.__version__,
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
    }


def cpu_stat() -> tuple[int, int]:
    """(all, stolen) CPU time in jiffies so far, from the `cpu` line of /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return sum(fields), fields[7]


def _fmt(x: float, unit: str = "") -> str:
    return "-" if x != x else f"{x:.3g}{unit}"


def summarise(
    df: pd.DataFrame,
    checks: pd.DataFrame,
    info: dict[str, str],
    vae: dict[str, float],
    augmentations: dict[str, float],
    frames: int,
) -> str:
    """summary.md: the targets, a table per resolution x GOP, the checks, the comparisons, the
    hardware."""
    cols = [
        "seconds",
        "floor_seconds",
        "ratio_to_floor",
        "naive_seconds",
        "speedup_vs_naive",
        "reference_seconds",
        "ratio_to_reference",
    ]
    med = df.groupby(["resolution", "gop", "stage"], sort=False)[cols].median()

    def cells(stage: str, col: str, res: str | None = None) -> pd.Series:
        values = med.xs(stage, level="stage")[col]
        return values if res is None else values[values.index.get_level_values(0) == res]

    def listed(values: pd.Series, fmt: str = "{:.3g}x") -> str:
        return ", ".join(f"{r} {g}: {fmt.format(v)}" for (r, g), v in values.items())

    def verdict(values: pd.Series, ok: Callable[[float], bool]) -> str:
        if values.empty:
            return "**NOT MEASURED** (no video of that kind in this run)"
        return f"**{'MET' if values.map(ok).all() else 'NOT MET'}** ({listed(values)})"

    clip_frames = K * (1 + N_AUGMENTATIONS)
    hf = df[df.stage == "handcrafted_features"]
    feature_ms = (
        ((hf.seconds - hf.floor_seconds) / clip_frames * 1000)
        .groupby([hf.resolution, hf.gop])
        .median()
    )
    read_ms = (hf.floor_seconds / clip_frames * 1000).groupby([hf.resolution, hf.gop]).median()
    lines = [
        "# Stage benchmark",
        "",
        f"{df.video.nunique()} videos, K={K} frames per clip, "
        f"{1 + N_AUGMENTATIONS} clips per video; medians over the videos of each cell. "
        "Single-threaded. Every library result was checked against its naive version (and the "
        "other checks listed below) before these times were written.",
        "",
        "## Targets (on the path production runs)",
        "",
        "`handcrafted_features` is what the features asset runs: `clip_feature_row` on the "
        f"{1 + N_AUGMENTATIONS} full-resolution stored clips of a video ({K} frames each, the "
        "original and the augmentations, no content box); its decode floor is `read_clip` of "
        "the same files.",
        "",
        f"- handcrafted_features within {FLOOR_TARGET}x of its decode floor, 720p and 1080p: "
        + verdict(cells("handcrafted_features", "ratio_to_floor"), lambda x: x <= FLOOR_TARGET),
        f"- handcrafted_features at 1080p at least {NAIVE_TARGET}x faster than naive: "
        + verdict(
            cells("handcrafted_features", "speedup_vs_naive", "1920x1080"),
            lambda x: x >= NAIVE_TARGET,
        ),
        f"- 11 augmented clips well under (<= {REENCODE_TARGET}x) one full re-encode: "
        + verdict(cells("augmented_clips", "ratio_to_reference"), lambda x: x <= REENCODE_TARGET),
        "",
        "handcrafted_features per frame (medians): reading the clip "
        f"{listed(read_ms, '{:.3g} ms')}; the features (stage less floor) "
        f"{listed(feature_ms, '{:.3g} ms')}. The {FLOOR_TARGET}x target needs the features "
        f"to cost at most {FLOOR_TARGET - 1:g}x the read.",
        "",
    ]
    for (res, gop), cell in med.groupby(level=[0, 1], sort=False):
        n = df[(df.resolution == res) & (df.gop == gop)].video.nunique()
        lines += [
            f"## {res}, {gop} GOP ({n} videos)",
            "",
            "| stage | s/video | floor s | ratio to floor | naive s | speedup vs naive "
            "| reference | reference s | ratio to reference |",
            "|" + "---|" * 9,
        ]
        for (_, _, stage), r in cell.iterrows():
            lines.append(
                f"| {stage} | {_fmt(r.seconds)} | {_fmt(r.floor_seconds)} | "
                f"{_fmt(r.ratio_to_floor, 'x')} | {_fmt(r.naive_seconds)} | "
                f"{_fmt(r.speedup_vs_naive, 'x')} | {REFERENCE_NAMES.get(stage, '-')} | "
                f"{_fmt(r.reference_seconds)} | {_fmt(r.ratio_to_reference, 'x')} |"
            )
        lines.append("")

    lines += [
        "## Checks (all passed; made on every video before any time was written)",
        "",
        "| stage | library compared with | tolerance | videos | values per video | "
        "max abs diff | max rel diff | mean abs diff |",
        "|" + "---|" * 8,
    ]
    grouped = checks.groupby(["stage", "against", "tolerance"], sort=False)
    for (stage, against, tolerance), g in grouped:
        lines.append(
            f"| {stage} | {against} | {tolerance} | {g.video.nunique()} | "
            f"{_fmt(g['count'].median())} | {_fmt(g.max_abs.max())} | "
            f"{_fmt(g.max_rel.max())} | {_fmt(g.mean_abs.mean())} |"
        )
    lines += [
        "",
        "Not compared: the x264 re-encode (a lossy timing reference, not the stage's output) and "
        "the decode floors that return no frames (`read_clip` of the stored clips, whose "
        "bit-exactness the stored-clip checks cover).",
        "",
    ]

    decode_share = (
        (df.floor_seconds / df.seconds).groupby([df.resolution, df.gop, df.stage]).median()
    )
    hf256 = "handcrafted_features_256"
    stages = (hf256, "handcrafted_features", "augmented_clips")
    share = {stage: decode_share.xs(stage, level=2) for stage in stages}
    reencode_ratio = cells("augmented_clips", "ratio_to_reference")
    reencode_per_frame = cells("augmented_clips", "reference_seconds") / frames
    break_even = cells("augmented_clips", "seconds") / reencode_per_frame
    lines += [
        "## Comparisons",
        "",
        "- letterbox_only (OpenCV INTER_AREA + canvas) / FFmpeg swscale AREA (threads=1, "
        "from_ndarray + reformat + to_ndarray) on the same clip frames, same content size: "
        f"{listed(cells('letterbox_only', 'ratio_to_reference'))} (below 1: letterbox is faster)",
        f"- augmented_clips (sample + 10 augmentations + 11 {CLIP_CODEC} clips written) / "
        "decoding and re-encoding the full video with libx264 medium crf 23: "
        f"{listed(reencode_ratio)}; "
        "the decode floor is "
        f"{listed(share['augmented_clips'], '{:.0%}')} of augmented_clips",
        f"- the re-encode costs {listed(reencode_per_frame * 1000, '{:.3g} ms')} per frame, so "
        "augmented_clips (whose cost does not grow with the video's length) costs as much as "
        f"re-encoding a video of {listed(break_even, '{:.0f} frames')} at {FPS} fps, and half "
        "as much from twice that length",
        f"- augmentations alone on one {K}-frame 1920x1080 clip (best of 3, ms): "
        + ", ".join(f"{name} {s * 1000:.0f}" for name, s in augmentations.items())
        + f"; {sum(augmentations.values()):.2f} s in all",
        f"- handcrafted_features: reading the 11 {CLIP_CODEC} clips (the floor) is "
        f"{listed(share['handcrafted_features'], '{:.0%}')} of the stage at full resolution; "
        "the rest is feature computation",
        "- handcrafted_features_256 (not a production path: the 256-px scaled clips, inside "
        f"the content box) / its floor: {listed(cells(hf256, 'ratio_to_floor'))}; "
        f"the floor is {listed(share[hf256], '{:.0%}')} of it",
        "- handcrafted features computation alone (original clip in memory, no decoding), "
        f"speedup vs naive: {listed(cells('handcrafted_compute_1clip', 'speedup_vs_naive'))}",
    ]
    for device, seconds in vae.items():
        lines.append(
            f"- VaeScaler on {device} (randomly initialised AutoencoderKL with the sd-vae-ft-mse "
            f"architecture, 256x144 content box): {seconds:.3g} s/frame"
        )
    lines += ["", "## Machine", ""]
    lines += [f"- {k}: {v}" for k, v in info.items()]
    return "\n".join(lines) + "\n"


def plot(df: pd.DataFrame, path: Path) -> None:
    """Grouped bars per stage and resolution x GOP: ratio to floor, and speedup vs naive."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FormatStrFormatter, LogLocator, NullFormatter

    df = df.assign(cell=df.resolution + " " + df.gop + " GOP")
    fig, axes = plt.subplots(2, 1, figsize=(11, 8), constrained_layout=True)
    for ax, col, target, label in (
        (axes[0], "ratio_to_floor", FLOOR_TARGET, "ratio to decode floor, log (lower is better)"),
        (axes[1], "speedup_vs_naive", NAIVE_TARGET, "speedup vs naive, log (higher is better)"),
    ):
        table = df.dropna(subset=[col]).pivot_table(col, "stage", "cell", "median", sort=False)
        table.plot.bar(ax=ax, rot=15, width=0.8)
        ax.axhline(
            target, color="red", linestyle="--", label=f"{target}x target (handcrafted_features)"
        )
        ax.set_ylabel(label)
        ax.set_xlabel("")
        ax.set_yscale("log")
        ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(FormatStrFormatter("%gx"))
        ax.yaxis.set_minor_formatter(NullFormatter())
        ax.grid(axis="y", which="both", alpha=0.3)
        ax.legend(fontsize=8)
    axes[0].set_title("Library stages, single-threaded, medians over videos")
    fig.savefig(path, format="png", dpi=110)
    plt.close(fig)


# ---------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, help="corpus size (default 30; --quick: 6)")
    parser.add_argument(
        "--frames", type=int, help=f"frames per video (default {FRAMES}; --quick: 30)"
    )
    parser.add_argument("--quick", action="store_true", help="small smoke-test run")
    parser.add_argument("--no-vae", action="store_true", help="skip the VaeScaler timing")
    args = parser.parse_args(argv)
    videos = args.videos or (6 if args.quick else 30)
    frames = args.frames or (30 if args.quick else FRAMES)
    start = time.perf_counter()
    root = Path(tempfile.mkdtemp(prefix="fvc-bench-"))
    try:
        specs = [VideoSpec("warmup", 320, 180, "short", 12, 24, 99), *corpus_specs(videos, frames)]
        for spec in tqdm(specs, desc="encoding corpus", unit="video"):
            encode(
                synth_frames(spec.width, spec.height, spec.frames, spec.seed),
                root / f"{spec.name}.mp4",
                spec.width,
                spec.height,
                spec.gop,
                "veryfast",
            )
        cpu = max(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpu})
        cv2.setNumThreads(1)
        torch.set_num_threads(1)
        threadpool_limits(1)  # numpy's OpenBLAS (2 threads by default here)
        info, stat = machine_info(cpu), cpu_stat()
        rows, checks = [], []
        for spec in tqdm(specs, desc="timing stages", unit="video"):
            v = Video(spec, root / f"{spec.name}.mp4", root / spec.name)
            try:
                result, video_checks = measure(v)
            except Mismatch as exc:
                sys.exit(f"bench: check failed, no results written: {exc}")
            if spec.name != "warmup":  # the first pass warms every code path up
                rows += result
                checks += video_checks
            shutil.rmtree(v.work, ignore_errors=True)
        augmentations = augmentation_seconds()
        vae = {}
        if not args.no_vae:
            devices = ["cpu", *(["cuda"] if torch.cuda.is_available() else [])]
            vae = {d: vae_seconds_per_frame(d) for d in tqdm(devices, desc="VAE", unit="device")}
        (total, stolen), (total0, stolen0) = cpu_stat(), stat
    finally:
        shutil.rmtree(root, ignore_errors=True)
    info |= {
        "load average at end": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "CPU stolen by the hypervisor while timing": f"{(stolen - stolen0) / (total - total0):.1%}",
        "corpus": f"{videos} synthetic H.264 videos (crf 23, veryfast), {frames} frames at "
        f"{FPS} fps, GOP {dict(GOPS)}",
        "wall time": f"{time.perf_counter() - start:.0f} s",
    }
    df = pd.DataFrame(rows)
    for device, s in vae.items():
        df.loc[len(df), ["video", "resolution", "stage", "seconds"]] = [
            "random frames",
            "1920x1080",
            f"vae_{device}_per_frame",
            s,
        ]
    summary = summarise(
        df[~df.stage.str.startswith("vae_")],
        pd.DataFrame(checks),
        info,
        vae,
        augmentations,
        frames,
    )
    RESULTS.mkdir(parents=True, exist_ok=True)
    write_atomic(RESULTS / "stages.csv", lambda p: df.to_csv(p, index=False, float_format="%.6g"))
    write_atomic(RESULTS / "summary.md", lambda p: p.write_text(summary))
    write_atomic(RESULTS / "stages.png", lambda p: plot(df, p))
    print(summary)


if __name__ == "__main__":
    main()
