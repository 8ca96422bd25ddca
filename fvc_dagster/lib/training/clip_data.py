"""The data path of a fold for the video networks: stored clips to batches on the device.

Two sources (`ClipDataset(source=...)`), both sampling T of a clip's K frames uniformly
(`sample_indices`) and yielding uint8 tensors:

``source="scaled"`` (the default): each row's file is a scaled clip
(`<data>/scaled/<video_id>/<clip_id>.avi`, a 256 x 256 letterboxed canvas with the content box
in `content_x, content_y, scaled_width, scaled_height`), resized to P x P:

- ``crop=True`` (the default for "clip" and "clip+flow" models): the content box is cut out of
  the canvas and resized to P x P, so no letterbox bar reaches the network and every pixel is
  picture; the aspect ratio is not kept (a 16:9 box is squeezed).
- ``crop=False`` (the default for "clip+box" models): the whole canvas is resized to P x P, bars
  included, and ``"box"`` gives the content box (x, y, w, h) in pixels of the resized P x P
  frame (float32). `BoxPooled` (``variable_ar_cnn``) reads boxes in pixels of a `canvas`-pixel
  square: build it with ``canvas=P`` (`model_options`) for these boxes.

  Rows without a content box (unscaled clips) are used whole. Spatial resizing is
  ``cv2.resize`` with INTER_AREA when shrinking, INTER_LINEAR when a side grows.

``source="native"``: each row's file is a lossless clip of `augmented_clips`
(`<data>/clips/<video_id>/<clip_id>.avi`, frames at the video's native size), and an item is a
P x P window copied out of it, pixel for pixel: no resampling, no filtering, so the forensic
traces the resize erases (double compression on the 8x8 grid, sharpening halos, blended
seams, a few native pixels wide) reach the network. The window's offsets are multiples of
`GRID` (8) on both axes, so it keeps the source's 8x8 block grid:

- ``crops="centre"`` (validation, scoring): the grid-aligned window nearest the frame's
  centre, the same on every read;
- ``crops="random"`` (training): a grid-aligned window drawn uniformly on every read from
  numpy's global RNG, which the trainer seeds for each item read (from a seed drawn with the
  epoch's order, in its checkpoints), so the draws are the same run to run, across a resume
  and with any number of DataLoader workers.

One window per clip, the same in all its T frames. A clip narrower or shorter than P is not
refused: its pixels sit at the window's top-left (offset 0, so the grid is kept) and the rest
is zero (black); ``"box"`` is the (0, 0, w, h) of the real pixels, so `BoxPooled` ignores the
padding. `with_crops` gives a view of the same rows with the other placement, sharing the
cache (a fold trains on random windows and validates on centre ones of one decoded clip).

"clip+flow" items also hold ``"flow"`` (2, T-1, P, P) float32: `optical_flow` of the item's
frames. Flow of a fixed clip (scaled, or a centre window) is computed once and kept (float16)
in memory and, with `flow_cache_dir`, in an .npy file per clip that later datasets (later
folds, reruns) reuse; flow of a random window is computed on every read.

Clips stay uint8 until they reach the device: `normalise_on_device` converts and normalises
there (4x less to copy than float32). Clips are cached in memory by default, up to
`max_cache_bytes`, so epochs after the first skip decoding: the prepared (T, P, P, 3) clip of a
scaled row or centre window (3 x 16 x 112 x 112 = 0.6 MB), the T sampled native frames of a
clip read for random windows (16 x 360 x 640 x 3 = 11 MB; 4 frames, 2.8 MB). Reading,
cropping and resizing a 16-frame 256 px clip to 112 px takes about 18 ms on one core, a
cached item about 0.3 ms. Next to a network this is small (X3D-M at 16 x 112 trains about 0.9
clips/s on one core: 1.7 % of step time waits for data without the cache, 0.1 % with it), but
it is most of an epoch for tiny networks and on a GPU. With ``num_workers > 0`` each worker
holds its own cache: use persistent workers.

`network_aug_indices` turns a list of augmentation names (a config value) into the
`aug_index` values whose clips train a network.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from fvc_dagster.lib.atomic import replacing
from fvc_dagster.lib.clips.augment import AUG_TYPES
from fvc_dagster.lib.clips.store import read_clip
from fvc_dagster.lib.clips.video_clips import ORIGINAL
from fvc_dagster.lib.models.flow import optical_flow

POSITIVE = "fake"
GRID = 8  # native windows start on multiples of this (the 8x8 block grid of JPEG and H.264)
Source = Literal["scaled", "native"]
Crops = Literal["centre", "random"]
INPUT_KEYS: dict[str, tuple[str, ...]] = {
    "clip": ("clip",),
    "clip+box": ("clip", "box"),
    "clip+flow": ("clip", "flow"),
}


def sample_indices(stored: int, frames: int) -> np.ndarray:
    """`frames` indices spread uniformly over `stored` frames: the centre of each of `frames`
    equal segments (all of them when equal; repeats when more are asked than stored)."""
    if stored < 1 or frames < 1:
        raise ValueError(f"cannot sample {frames} of {stored} frames")
    return np.minimum(((2 * np.arange(frames) + 1) * stored) // (2 * frames), stored - 1)


def row_box(row: Mapping[str, Any]) -> tuple[int, int, int, int] | None:
    """(x, y, w, h) of the picture in a scaled clip's canvas; None for a row without one."""
    keys = ("content_x", "content_y", "scaled_width", "scaled_height")
    if any(k not in row or row[k] is None or row[k] != row[k] for k in keys):  # absent or NaN
        return None
    x, y, w, h = (int(row[k]) for k in keys)
    return x, y, w, h


def prepare_clip(
    frames: np.ndarray,
    n_frames: int,
    pixels: int,
    box: tuple[int, int, int, int] | None,
    crop: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """A stored (K, H, W, 3) clip as (T, P, P, 3) uint8 and the content box (x, y, w, h) in
    pixels of the resized frame (see the module docstring for `crop`)."""
    k, height, width, _ = frames.shape
    frames = frames[sample_indices(k, n_frames)]
    if box is None:
        box = (0, 0, width, height)
    x, y, w, h = box
    if not (x >= 0 and y >= 0 and w > 0 and h > 0 and x + w <= width and y + h <= height):
        raise ValueError(f"content box {box} does not fit a {width}x{height} clip")
    if crop:
        frames = frames[:, y : y + h, x : x + w]
        resized_box = np.array([0, 0, pixels, pixels], np.float32)
    else:
        scale = np.array([pixels / width, pixels / height] * 2, np.float32)
        resized_box = np.array(box, np.float32) * scale
    src_h, src_w = frames.shape[1:3]
    interpolation = cv2.INTER_AREA if pixels <= min(src_h, src_w) else cv2.INTER_LINEAR
    out = np.empty((n_frames, pixels, pixels, 3), np.uint8)
    for frame, dst in zip(frames, out, strict=True):
        if (src_h, src_w) == (pixels, pixels):
            dst[...] = frame
        else:
            cv2.resize(np.ascontiguousarray(frame), (pixels, pixels), dst=dst,
                       interpolation=interpolation)  # fmt: skip
    return out, resized_box


def grid_offset(size: int, pixels: int, crops: Crops) -> int:
    """Where a `pixels`-wide window starts on a side of `size` pixels: a multiple of `GRID`,
    the one nearest the centre ("centre") or one drawn uniformly from numpy's global RNG
    ("random"); 0 when the window covers the side."""
    last = max(0, size - pixels) // GRID  # the last grid-aligned start that fits
    if crops == "centre":  # the grid start nearest (size - pixels) / 2, halves up
        return min(last, (max(0, size - pixels) // 2 + GRID // 2) // GRID) * GRID
    if crops == "random":
        return int(np.random.randint(last + 1)) * GRID
    raise ValueError(f"crops must be 'centre' or 'random', got {crops!r}")


def native_window(frames: np.ndarray, pixels: int, x: int, y: int) -> tuple[np.ndarray, np.ndarray]:
    """The (T, P, P, 3) uint8 window of (T, H, W, 3) frames at (x, y), copied pixel for pixel
    (zero where it passes the frame's right or bottom edge), and the (0, 0, w, h) box of the
    real pixels in it (float32)."""
    _, height, width, _ = frames.shape
    if x % GRID or y % GRID or not (0 <= x < max(1, width) and 0 <= y < max(1, height)):
        raise ValueError(
            f"window at ({x}, {y}) is off the {GRID}-pixel grid of a {width}x{height} clip"
        )
    w, h = min(pixels, width - x), min(pixels, height - y)
    out = np.zeros((len(frames), pixels, pixels, 3), np.uint8)
    out[:, :h, :w] = frames[:, y : y + h, x : x + w]
    return out, np.array([0, 0, w, h], np.float32)


def network_aug_indices(names: Iterable[str]) -> tuple[int, ...]:
    """The `aug_index` values whose clips train a network: the original (-1) and the named
    augmentations (names of `augment.AUG_TYPES`), ascending. An unknown name is an error."""
    names = list(names)
    unknown = sorted(set(names) - set(AUG_TYPES))
    if unknown:
        raise ValueError(f"unknown augmentations {unknown}; known: {', '.join(AUG_TYPES)}")
    return (ORIGINAL, *sorted(AUG_TYPES.index(name) for name in set(names)))


def label_value(label: Any) -> float:
    """1.0 for fake, 0.0 for real (strings), or a number as it is."""
    if isinstance(label, str):
        if label not in ("fake", "real"):
            raise ValueError(f"label must be 'fake' or 'real', got {label!r}")
        return float(label == POSITIVE)
    return float(label)


def _records(rows: Any) -> list[dict[str, Any]]:
    if hasattr(rows, "to_dict"):  # a DataFrame
        return rows.to_dict("records")
    return [dict(r) for r in rows]


class _Cache:
    """Arrays kept in memory up to a byte budget, shared by a dataset and its views."""

    def __init__(self, enabled: bool, max_bytes: int):
        self.enabled, self.max_bytes, self.bytes = enabled, max_bytes, 0
        self.arrays: dict[tuple[str, int], Any] = {}
        self.flows: dict[tuple[str, int], np.ndarray] = {}

    def keep(self, key: tuple[str, int], value: Any, nbytes: int) -> None:
        if self.enabled and self.bytes + nbytes <= self.max_bytes:
            self.arrays[key] = value
            self.bytes += nbytes


class ClipDataset(Dataset):
    """Clip rows as dicts of tensors: ``clip`` (3, T, P, P) uint8, ``label`` float32
    (1 = fake), ``box`` (4,) float32 when `with_box`, ``flow`` (2, T-1, P, P) float32 when
    `with_flow`. Items are in row order; `labels` holds them all.

    Each row has `label` and `path` (or `frames`, the stored clip in memory), optionally
    `clip_id` and `sha256` (they name the flow cache file), and for ``source="scaled"`` the
    content box columns. `crop` applies to scaled rows, `crops` to native ones (see the module
    docstring)."""

    def __init__(
        self,
        rows: Iterable[Mapping[str, Any]] | Any,
        frames: int,
        pixels: int,
        *,
        source: Source = "scaled",
        crops: Crops = "centre",
        crop: bool = True,
        with_box: bool = False,
        with_flow: bool = False,
        cache_clips: bool = True,
        max_cache_bytes: int = 4 << 30,
        flow_cache_dir: str | Path | None = None,
        flow_fn: Callable[[np.ndarray], np.ndarray] = optical_flow,
    ):
        self.rows = _records(rows)
        if frames < 1 or pixels < 1:
            raise ValueError(f"frames and pixels must be positive, got {frames}, {pixels}")
        if with_flow and frames < 2:
            raise ValueError("optical flow needs at least 2 frames")
        if source not in ("scaled", "native"):
            raise ValueError(f"source must be 'scaled' or 'native', got {source!r}")
        if crops not in ("centre", "random") or (source == "scaled" and crops != "centre"):
            raise ValueError(f"crops {crops!r}: 'centre' or 'random' (native clips only)")
        self.frames, self.pixels, self.crop = frames, pixels, crop
        self.source, self.crops = source, crops
        self.with_box, self.with_flow = with_box, with_flow
        self.flow_cache_dir = None if flow_cache_dir is None else Path(flow_cache_dir)
        self.flow_fn = flow_fn
        self.labels = np.array([label_value(r["label"]) for r in self.rows], np.float32)
        self._cache = _Cache(cache_clips, max_cache_bytes)

    @classmethod
    def for_input(
        cls,
        rows: Any,
        model_input: str,
        frames: int,
        pixels: int,
        *,
        source: Source = "scaled",
        **options: Any,
    ) -> ClipDataset:
        """The dataset a model with registry `input` ("clip", "clip+box", "clip+flow") needs
        from `source`: the box for clip+box (scaled: no crop), the flow for clip+flow (scaled:
        cropped), scaled clips cropped for clip."""
        if model_input not in INPUT_KEYS:
            raise ValueError(f"no clip data for model input {model_input!r}")
        defaults = {
            "with_box": model_input == "clip+box",
            "with_flow": model_input == "clip+flow",
        }
        if source == "scaled":
            defaults["crop"] = model_input != "clip+box"
        return cls(rows, frames, pixels, source=source, **{**defaults, **options})

    def with_crops(self, crops: Crops) -> ClipDataset:
        """The same rows with native windows placed by `crops`, sharing this dataset's cache."""
        if self.source != "native" or crops not in ("centre", "random"):
            raise ValueError(f"crops {crops!r}: 'centre' or 'random' (native clips only)")
        view = copy.copy(self)
        view.crops = crops
        return view

    def __len__(self) -> int:
        return len(self.rows)

    def _read(self, index: int) -> np.ndarray:
        row = self.rows[index]
        return row["frames"] if "frames" in row else read_clip(Path(row["path"]))

    def _native_frames(self, index: int, keep: bool) -> np.ndarray:
        """The T sampled native frames of row `index`; kept in the cache when `keep`."""
        cached = self._cache.arrays.get(("frames", index))
        if cached is not None:
            return cached
        stored = self._read(index)
        sampled = np.ascontiguousarray(stored[sample_indices(len(stored), self.frames)])
        if keep:
            self._cache.keep(("frames", index), sampled, sampled.nbytes)
        return sampled

    def clip(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """(T, P, P, 3) uint8 frames and the box of row `index`: from the cache or read."""
        if self.source == "native" and self.crops == "random":
            sampled = self._native_frames(index, keep=True)
            _, height, width, _ = sampled.shape
            x, y = (grid_offset(size, self.pixels, "random") for size in (width, height))
            return native_window(sampled, self.pixels, x, y)
        key = (self.source, index)
        cached = self._cache.arrays.get(key)
        if cached is not None:
            return cached
        if self.source == "native":
            sampled = self._native_frames(index, keep=False)
            _, height, width, _ = sampled.shape
            x, y = (grid_offset(size, self.pixels, "centre") for size in (width, height))
            result = native_window(sampled, self.pixels, x, y)
        else:
            row = self.rows[index]
            result = prepare_clip(self._read(index), self.frames, self.pixels, row_box(row),
                                  self.crop)  # fmt: skip
        self._cache.keep(key, result, result[0].nbytes)
        return result

    def flow(self, index: int, clip: np.ndarray) -> np.ndarray:
        """(T-1, P, P, 2) float16 flow of `clip`, row `index`'s frames: of a fixed clip
        computed once (memory, then .npy file), of a random window every time."""
        if self.crops == "random":
            return np.asarray(self.flow_fn(clip), dtype=np.float16)
        key = (self.source, index)
        cached = self._cache.flows.get(key)
        if cached is not None:
            return cached
        path = self._flow_path(index)
        if path is not None and path.exists():
            flow = np.load(path)
        else:
            flow = np.asarray(self.flow_fn(clip), dtype=np.float16)
            if path is not None:
                _save_npy(flow, path)
        self._cache.flows[key] = flow
        return flow

    def _flow_path(self, index: int) -> Path | None:
        if self.flow_cache_dir is None:
            return None
        row = self.rows[index]
        source = Path(row["path"])
        if row.get("sha256"):
            content = str(row["sha256"])
        else:  # no digest in the row: the file's identity
            stat = source.stat()
            content = f"{source.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
        place = f"{row_box(row)}" if self.source == "scaled" else f"native-centre-{GRID}"
        key = f"{content}|{place}|{self.frames}|{self.pixels}|{self.crop}|dis-medium"
        digest = hashlib.sha256(key.encode()).hexdigest()[:16]
        name = row.get("clip_id") or source.stem
        return self.flow_cache_dir / f"{name}.{self.frames}x{self.pixels}.{digest}.npy"

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        frames, box = self.clip(index)
        item = {
            "clip": torch.from_numpy(frames).permute(3, 0, 1, 2).contiguous(),
            "label": torch.tensor(self.labels[index]),
        }
        if self.with_box:
            item["box"] = torch.from_numpy(box.copy())
        if self.with_flow:
            flow = self.flow(index, frames)
            item["flow"] = torch.from_numpy(flow).permute(3, 0, 1, 2).float()
        return item


def _save_npy(array: np.ndarray, path: Path) -> None:
    with replacing(path) as tmp, open(tmp, "wb") as out:
        np.save(out, array)


def normalise_on_device(
    batch: Mapping[str, torch.Tensor],
    mean: Sequence[float],
    std: Sequence[float],
    keys: Sequence[str] = ("clip",),
) -> dict[str, torch.Tensor]:
    """The batch with each uint8 (B, 3, T, H, W) tensor in `keys` as float32
    ``(x / 255 - mean) / std`` per channel, computed where the batch already is (after the
    transfer, so only uint8 crosses to the GPU). Other entries are passed through."""
    out = dict(batch)
    for key in keys:
        x = batch[key]
        shape = (1, -1) + (1,) * (x.ndim - 2)
        m = torch.as_tensor(mean, dtype=torch.float32, device=x.device).view(shape)
        s = torch.as_tensor(std, dtype=torch.float32, device=x.device).view(shape)
        out[key] = (x.float() / 255 - m) / s
    return out


def normaliser(
    normalisation: tuple[Sequence[float], Sequence[float]],
) -> Callable[[Mapping[str, torch.Tensor]], dict[str, torch.Tensor]]:
    """`normalise_on_device` with a registry row's `(mean, std)` (`ModelSpec.normalisation`):
    the trainer's `prepare`."""
    mean, std = normalisation

    def prepare(batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return normalise_on_device(batch, mean, std)

    return prepare


def model_options(model_input: str, pixels: int) -> dict[str, Any]:
    """`build_model` options the data path needs: `canvas=P` for clip+box models, whose boxes
    are given in pixels of the resized P x P frame."""
    return {"canvas": pixels} if model_input == "clip+box" else {}


def make_loader(
    dataset: Dataset,
    batch_size: int,
    *,
    shuffle: bool = False,
    seed: int = 0,
    num_workers: int = 0,
    pin_memory: bool = False,
) -> DataLoader:
    """A DataLoader whose order comes from its own generator seeded with `seed` (its state is
    `loader.generator.get_state()`), so the same seed gives the same order. `num_workers=0` by
    default: decoding is cheap next to the networks, and the in-memory caches live in the main
    process; with workers they are persistent, so their caches survive epochs."""
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        generator=torch.Generator().manual_seed(seed),
        num_workers=num_workers,
        pin_memory=pin_memory,
        persistent_workers=num_workers > 0,
    )
