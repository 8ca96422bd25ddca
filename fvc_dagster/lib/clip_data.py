"""The data path of a fold for the video networks: stored scaled clips to batches on the device.

`ClipDataset` reads each clip row's file (`<data>/scaled/<video_id>/<clip_id>.avi`, a 256 x 256
letterboxed canvas with the content box in `content_x, content_y, scaled_width, scaled_height`)
with `read_clip`, samples T of its K frames uniformly, resizes to P x P and yields uint8 tensors:

- ``crop=True`` (the default for "clip" and "clip+flow" models): the content box is cut out of
  the canvas and resized to P x P, so no letterbox bar reaches the network and every pixel is
  picture; the aspect ratio is not kept (a 16:9 box is squeezed).
- ``crop=False`` (the default for "clip+box" models): the whole canvas is resized to P x P, bars
  included, and ``"box"`` gives the content box (x, y, w, h) in pixels of the resized P x P
  frame (float32). `BoxPooled` (``variable_ar_cnn``) reads boxes in pixels of a `canvas`-pixel
  square: build it with ``canvas=P`` (`model_options`) for these boxes.

Rows without a content box (unscaled clips) are used whole. Spatial resizing is
``cv2.resize`` with INTER_AREA when shrinking (256 to 112 or 224 px), INTER_LINEAR when a side
grows (a small content box cropped to 224 px). "clip+flow" items also hold ``"flow"``
(2, T-1, P, P) float32: `optical_flow` of the resized clip, computed once per clip and kept
(float16) in memory and, with `flow_cache_dir`, in an .npy file per clip that later datasets
(later folds, reruns) reuse.

Clips stay uint8 until they reach the device: `normalise_on_device` converts and normalises
there (4x less to copy than float32). Decoded, resized clips are cached in memory by default
(uint8: 3 x 16 x 112 x 112 = 0.6 MB a clip, 2.4 MB at 224 px; a demo fold of about 530
training clips holds 320 MB at 112 px), up to `max_cache_bytes`, so epochs after the first skip
decoding: reading, cropping and resizing a 16-frame 256 px clip to 112 px takes about 18 ms on
one core, a cached item about 0.3 ms. Next to a network this is small (X3D-M at 16 x 112 trains
about 0.9 clips/s on one core: 1.7 % of step time waits for data without the cache, 0.1 % with
it), but it is most of an epoch for tiny networks and on a GPU. With
``num_workers > 0`` each worker holds its own cache: use persistent workers.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from fvc_dagster.lib.atomic import replacing
from fvc_dagster.lib.clipstore import read_clip
from fvc_dagster.lib.models.flow import optical_flow

POSITIVE = "fake"
INPUT_KEYS: dict[str, tuple[str, ...]] = {
    "clip": ("clip",),
    "clip+box": ("clip", "box"),
    "clip+flow": ("clip", "flow"),
}
# Per-channel RGB mean and std (in [0, 1]) of each family's pretraining data.
KINETICS_TORCHVISION = ((0.43216, 0.394666, 0.37645), (0.22803, 0.22145, 0.216989))
KINETICS_PYTORCHVIDEO = ((0.45, 0.45, 0.45), (0.225, 0.225, 0.225))
IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
NORMALISATION: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "resnet2d": IMAGENET,
    "r3d": KINETICS_TORCHVISION,
    "r2plus1d": KINETICS_TORCHVISION,
    "two-stream": KINETICS_TORCHVISION,
    "i3d": KINETICS_PYTORCHVIDEO,
    "x3d": KINETICS_PYTORCHVIDEO,
    "slowfast": KINETICS_PYTORCHVIDEO,
    "vit": IMAGENET,
    "timesformer": KINETICS_PYTORCHVIDEO,  # facebook/timesformer-base-finetuned-k400's processor
    "vivit": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),  # [-1, 1], google/vivit-b-16x2-kinetics400's
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


class ClipDataset(Dataset):
    """Clip rows (each with `path`, or `frames` holding the stored clip in memory, `label` and
    optionally the content box columns, `clip_id`, `sha256`) as dicts of tensors: ``clip``
    (3, T, P, P) uint8, ``label`` float32 (1 = fake), ``box`` (4,) float32 when `with_box`,
    ``flow`` (2, T-1, P, P) float32 when `with_flow`.
    Items are in row order; `labels` holds them all."""

    def __init__(
        self,
        rows: Iterable[Mapping[str, Any]] | Any,
        frames: int,
        pixels: int,
        *,
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
        self.frames, self.pixels, self.crop = frames, pixels, crop
        self.with_box, self.with_flow = with_box, with_flow
        self.cache_clips, self.max_cache_bytes = cache_clips, max_cache_bytes
        self.flow_cache_dir = None if flow_cache_dir is None else Path(flow_cache_dir)
        self.flow_fn = flow_fn
        self.labels = np.array([label_value(r["label"]) for r in self.rows], np.float32)
        self._clips: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._flows: dict[int, np.ndarray] = {}
        self._cached_bytes = 0

    @classmethod
    def for_input(
        cls, rows: Any, model_input: str, frames: int, pixels: int, **options: Any
    ) -> ClipDataset:
        """The dataset a model with registry `input` ("clip", "clip+box", "clip+flow") needs:
        the box for clip+box (no crop), the flow for clip+flow (cropped), crop for clip."""
        if model_input not in INPUT_KEYS:
            raise ValueError(f"no clip data for model input {model_input!r}")
        defaults = {
            "crop": model_input != "clip+box",
            "with_box": model_input == "clip+box",
            "with_flow": model_input == "clip+flow",
        }
        return cls(rows, frames, pixels, **{**defaults, **options})

    def __len__(self) -> int:
        return len(self.rows)

    def clip(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """(T, P, P, 3) uint8 frames and the resized box of row `index`, from the cache or read."""
        cached = self._clips.get(index)
        if cached is not None:
            return cached
        row = self.rows[index]
        frames = row["frames"] if "frames" in row else read_clip(Path(row["path"]))
        result = prepare_clip(frames, self.frames, self.pixels, row_box(row), self.crop)
        if self.cache_clips and self._cached_bytes + result[0].nbytes <= self.max_cache_bytes:
            self._clips[index] = result
            self._cached_bytes += result[0].nbytes
        return result

    def flow(self, index: int, clip: np.ndarray) -> np.ndarray:
        """(T-1, P, P, 2) float16 flow of row `index`, computed once (memory, then .npy file)."""
        cached = self._flows.get(index)
        if cached is not None:
            return cached
        path = self._flow_path(index)
        if path is not None and path.exists():
            flow = np.load(path)
        else:
            flow = np.asarray(self.flow_fn(clip), dtype=np.float16)
            if path is not None:
                _save_npy(flow, path)
        self._flows[index] = flow
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
        key = f"{content}|{row_box(row)}|{self.frames}|{self.pixels}|{self.crop}|dis-medium"
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


def normaliser(family: str) -> Callable[[Mapping[str, torch.Tensor]], dict[str, torch.Tensor]]:
    """`normalise_on_device` with the mean and std of a registry family: the trainer's
    `prepare`."""
    if family not in NORMALISATION:
        raise KeyError(f"no normalisation for family {family!r}")
    mean, std = NORMALISATION[family]

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
