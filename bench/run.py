"""Benchmark the clip pipeline stages against decode floors and naive baselines.

`make bench` runs `python -m bench.run`; `--quick` is a fast smoke test. A synthetic corpus is
encoded into a temporary directory (removed at the end); every stage of every video is timed
with the library next to (a) the decode floor, PyAV decoding only what the stage needs, (b) a
naive script doing the same work (`bench.naive`) and (c) where asked, a reference (a full
libx264 re-encode, an FFmpeg scale). Results go to `bench/results/`: stages.csv, summary.md,
stages.png.

Timing is single-threaded: after the corpus is encoded the process is pinned to one CPU, so
FFmpeg decoders and encoders get one thread as well; OpenCV, torch and numpy's BLAS are set
to 1 thread.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import os
import platform
import shutil
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
from fvc_dagster.lib.augment import AUG_TYPES, N_AUGMENTATIONS, augment_clip
from fvc_dagster.lib.clips import (
    clip_feature_row,
    codec_cues,
    content_box,
    make_clips,
    scale_clip,
    scaled_feature_row,
)
from fvc_dagster.lib.clipstore import CLIP_CODEC, read_clip
from fvc_dagster.lib.features import CodecCues, handcrafted_features
from fvc_dagster.lib.scaling import VaeScaler, content_size, letterbox
from fvc_dagster.lib.video import probe_video, sample_frames, uniform_indices

RESULTS = Path(__file__).resolve().parent / "results"
K = 16
FPS = 25
FRAMES = 500  # 20 s: a short user-generated video (FVC's run from seconds to minutes)
RESOLUTIONS = ((1280, 720), (1920, 1080))
GOPS = (("long", 250), ("short", 12))
FLOOR_TARGET = 1.5  # handcrafted_features at 256 px: at most this times its decode floor
NAIVE_TARGET = 3.0  # handcrafted_features at 1080p: at least this times faster than naive
REENCODE_TARGET = 0.5  # "well under" one full re-encode: at most this fraction of it


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
    frame_pts: np.ndarray = field(init=False)
    key_pts: np.ndarray = field(init=False)
    rows: list[dict] = field(default_factory=list)
    clips: list[np.ndarray] = field(default_factory=list)
    scaled_rows: list[dict] = field(default_factory=list)
    scaled_clips: list[np.ndarray] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.cues = codec_cues(probe_video(self.path).as_row())
        with av.open(str(self.path)) as container:
            packets = [(p.pts, p.is_keyframe) for p in container.demux(video=0) if p.size]
        pts = np.array(sorted(packets))
        self.frame_pts, self.key_pts = pts[:, 0], pts[pts[:, 1] == 1, 0]

    def keep_clips(self, rows: list[dict]) -> None:
        """Store the clip rows of make_clips and their frames (for the in-memory stages)."""
        self.rows, self.clips = rows, [read_clip(Path(r["path"])) for r in rows]

    def keep_scaled(self, rows: list[dict]) -> None:
        """Store the scaled clip rows and the pictures inside their canvases (for the naive
        stage, which measures what the library does: the content box)."""
        self.scaled_rows, self.scaled_clips = rows, []
        for row in rows:
            x, y, w, h = content_box(row)
            self.scaled_clips.append(read_clip(Path(row["path"]))[:, y : y + h, x : x + w])


def decode_floor(v: Video) -> list[np.ndarray]:
    """PyAV decoding exactly the K sampled frames: seek to the keyframe before a target when one
    lies ahead of the decoder, decode forward, convert only the targets to RGB."""
    targets = sorted(set(v.frame_pts[uniform_indices(len(v.frame_pts), K)].tolist()))
    images, position, frames = [], None, iter(())
    with av.open(str(v.path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"  # as the library does; one thread once pinned to one CPU
        for pts in targets:
            key = int(v.key_pts[np.searchsorted(v.key_pts, pts, "right") - 1])
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


@dataclass(frozen=True)
class Stage:
    """A pipeline stage: the library call and what it is compared with (each takes a Video)."""

    name: str
    run: Callable[[Video], object]
    floor: Callable[[Video], object] | None = None
    naive: Callable[[Video], object] | None = None
    reference: Callable[[Video], object] | None = None
    keep: Callable[[Video, object], None] | None = None  # stores the result, untimed


STAGES = (
    Stage(
        "sample",
        run=lambda v: sample_frames(v.path, K, name=v.spec.name),
        floor=decode_floor,
        naive=lambda v: naive.sample(v.path, K),
    ),
    Stage(
        "augmented_clips",
        run=lambda v: make_clips(v.spec.name, v.path, K, v.work / "clips")[0],
        floor=decode_floor,
        reference=reencode,
        keep=Video.keep_clips,
    ),
    Stage(
        "handcrafted_features",
        run=lambda v: [clip_feature_row(r, v.cues) for r in v.rows],
        floor=lambda v: read_each(v.rows),
        naive=lambda v: naive.features_stage(v.path, v.clips, v.cues),
    ),
    Stage(
        "handcrafted_compute_1clip",  # the original clip in memory: computation alone
        run=lambda v: handcrafted_features(v.clips[0], v.cues),
        naive=lambda v: naive.handcrafted_features(v.clips[0], v.cues),
    ),
    Stage(
        "scaled_clips",
        run=lambda v: [scale_clip(r, letterbox, v.work / "scaled", "letterbox")[0] for r in v.rows],
        floor=lambda v: read_each(v.rows),
        keep=Video.keep_scaled,
    ),
    Stage(
        "letterbox_only",
        run=lambda v: [letterbox(clip) for clip in v.clips],
        reference=ffmpeg_scale,
    ),
    Stage(
        "handcrafted_features_256",
        run=lambda v: [clip_feature_row(r, v.cues) for r in v.scaled_rows],
        floor=lambda v: read_each(v.scaled_rows),
        naive=lambda v: naive.features_stage(v.path, v.scaled_clips, v.cues),
    ),
    Stage(
        "scaled_features",
        run=lambda v: [scaled_feature_row(r) for r in v.scaled_rows],
        floor=lambda v: read_each(v.scaled_rows),
        naive=lambda v: [
            naive.scaled_features(Path(r["path"]), content_box(r)) for r in v.scaled_rows
        ],
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


def measure(v: Video) -> list[dict]:
    """One row per stage: the library, its floor, the naive baseline and the reference."""
    rows = []
    for stage in STAGES:
        seconds, result = timed(stage.run, v)
        if stage.keep:
            stage.keep(v, result)
        floor, naive_s, ref = (
            timed(fn, v)[0] for fn in (stage.floor, stage.naive, stage.reference)
        )
        rows.append(
            {
                "video": v.spec.name,
                "resolution": v.spec.resolution,
                "gop": v.spec.gop_name,
                "stage": stage.name,
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
    return rows


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
    info: dict[str, str],
    vae: dict[str, float],
    augmentations: dict[str, float],
    frames: int,
) -> str:
    """summary.md: a table per resolution x GOP, the comparisons, the targets, the hardware."""
    lines = [
        "# Stage benchmark",
        "",
        f"{df.video.nunique()} videos, K={K} frames per clip, "
        f"11 clips per video; medians over the videos of each cell. Single-threaded.",
        "",
    ]
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

    def cells(stage: str, col: str, res: str | None = None) -> pd.Series:
        values = med.xs(stage, level="stage")[col]
        return values if res is None else values[values.index.get_level_values(0) == res]

    def listed(values: pd.Series, fmt: str = "{:.3g}x") -> str:
        return ", ".join(f"{r} {g}: {fmt.format(v)}" for (r, g), v in values.items())

    def verdict(values: pd.Series, ok: Callable[[float], bool]) -> str:
        return f"**{'MET' if values.map(ok).all() else 'NOT MET'}** ({listed(values)})"

    decode_share = (
        (df.floor_seconds / df.seconds).groupby([df.resolution, df.gop, df.stage]).median()
    )
    stages = ("handcrafted_features_256", "handcrafted_features", "augmented_clips")
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
        f"{listed(share['handcrafted_features'], '{:.0%}')} of the stage at full resolution, "
        f"{listed(share['handcrafted_features_256'], '{:.0%}')} at 256 px; "
        "the rest is feature computation",
        "- handcrafted features computation alone (original clip in memory, no decoding), "
        f"speedup vs naive: {listed(cells('handcrafted_compute_1clip', 'speedup_vs_naive'))}",
    ]
    for device, seconds in vae.items():
        lines.append(
            f"- VaeScaler on {device} (randomly initialised AutoencoderKL with the sd-vae-ft-mse "
            f"architecture, 256x144 content box): {seconds:.3g} s/frame"
        )
    lines += [
        "",
        "## Targets",
        "",
        f"- handcrafted_features at 256 px within {FLOOR_TARGET}x of its decode floor: "
        + verdict(cells("handcrafted_features_256", "ratio_to_floor"), lambda x: x <= FLOOR_TARGET),
        f"- handcrafted_features at 1080p at least {NAIVE_TARGET}x faster than naive: "
        + verdict(
            cells("handcrafted_features", "speedup_vs_naive", "1920x1080"),
            lambda x: x >= NAIVE_TARGET,
        ),
        f"- 11 augmented clips well under (<= {REENCODE_TARGET}x) one full re-encode: "
        + verdict(reencode_ratio, lambda x: x <= REENCODE_TARGET),
        "",
        "## Machine",
        "",
    ]
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
        ax.axhline(target, color="red", linestyle="--", label=f"{target}x target")
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
        rows = []
        for spec in tqdm(specs, desc="timing stages", unit="video"):
            v = Video(spec, root / f"{spec.name}.mp4", root / spec.name)
            result = measure(v)
            if spec.name != "warmup":  # the first pass warms every code path up
                rows += result
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
    summary = summarise(df[~df.stage.str.startswith("vae_")], info, vae, augmentations, frames)
    RESULTS.mkdir(parents=True, exist_ok=True)
    write_atomic(RESULTS / "stages.csv", lambda p: df.to_csv(p, index=False, float_format="%.6g"))
    write_atomic(RESULTS / "summary.md", lambda p: p.write_text(summary))
    write_atomic(RESULTS / "stages.png", lambda p: plot(df, p))
    print(summary)


if __name__ == "__main__":
    main()
