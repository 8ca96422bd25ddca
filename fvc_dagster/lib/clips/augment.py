"""Seeded, reproducible augmentations of clips (K sampled frames of one video).

A clip is a uint8 array of shape (K, H, W, 3), RGB. Stage 1 turns each video's original clip into
`N_AUGMENTATIONS` augmented clips. Augmentation `i` of video `v` draws its parameters from
`augmentation_seed(v, i)`; the parameters are a JSON-serialisable dict whose `"ops"` list holds
everything the transform needs, so `apply_augmentation(original_clip, params)` rebuilds the
augmented clip bit for bit (same machine and library versions) without the seed.

Plan (index: aug_type): 0 rotation, 1 flip, 2 color_jitter, 3 gaussian_noise, 4 gaussian_blur,
5 affine, 6 elastic, 7 cutout, 8 temporal, 9 combined (2-3 distinct spatial ops plus one temporal
op, in a seeded order). Spatial ops use the same parameters for every frame, so an augmented clip
stays temporally coherent; only the temporal op changes which frames appear where.

Every op returns a new array and never writes into its input. Warps and blurs run per frame with
OpenCV; colour and pixel-wise ops use 8-bit lookup tables and saturating OpenCV arithmetic, which
are several times faster than float numpy on a 1080p clip and give the same rounded results.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from functools import lru_cache

import cv2
import numpy as np
from scipy.special import ndtri

from fvc_dagster.lib.frames import check_clip, check_clip_shape

N_AUGMENTATIONS = 10
PARAMS_VERSION = 1

SPATIAL_OPS: tuple[str, ...] = (
    "rotation",
    "flip",
    "color_jitter",
    "gaussian_noise",
    "gaussian_blur",
    "affine",
    "elastic",
    "cutout",
)
TEMPORAL_OP = "temporal"
AUG_TYPES: tuple[str, ...] = (*SPATIAL_OPS, TEMPORAL_OP, "combined")
# The augmentations that train video networks by default: none, by measurement
# (bench/results/network_input.md: naive_cnn on native 64-px windows of the demo corpus reached
# a mean held-out ROC-AUC of 0.86 on the original clips alone, 0.71 with the five
# augmentations that move or smooth no pixel at the same number of optimizer steps; rotation,
# blur, affine, elastic and combined resample or filter every pixel and erase the traces).
NETWORK_AUGMENTATIONS: tuple[str, ...] = ()
# Those that keep every pixel on its grid and unfiltered: what a network may add.
PIXEL_KEEPING_AUGMENTATIONS = ("color_jitter", "cutout", "flip", "gaussian_noise", "temporal")

# Parameter ranges (closed intervals).
ROTATION_MAX_DEG = 10.0
JITTER_RANGE = (0.8, 1.2)
NOISE_SIGMA_RANGE = (3.0, 10.0)
BLUR_SIGMA_RANGE = (0.5, 2.0)
AFFINE_MAX_TRANSLATE = 0.10  # fraction of width (x) and height (y)
AFFINE_SCALE_RANGE = (0.9, 1.1)
AFFINE_MAX_SHEAR_DEG = 10.0
# Elastic: alpha and sigma are in "reference pixels", where the frame's shorter side is
# ELASTIC_REFERENCE_SIZE reference pixels, so the deformation is the same fraction of the frame at
# any resolution (displacement std ~ 0.16 * alpha / sigma reference px, i.e. ~0.4% of the short
# side, a few % at most).
ELASTIC_ALPHA_RANGE = (20.0, 40.0)
ELASTIC_SIGMA_RANGE = (4.0, 6.0)
ELASTIC_REFERENCE_SIZE = 256
CUTOUT_SIZE_RANGE = (0.10, 0.25)  # fraction of each dimension
CUTOUT_MAX_RECTS = 2
TEMPORAL_MAX_DROP = 0.25  # fraction of the K frames
TEMPORAL_REVERSE_PROB = 0.5
COMBINED_SPATIAL_RANGE = (2, 3)

_DECIMALS = 4  # drawn floats are rounded so the stored JSON is short and exact
_SEED_BOUND = 2**31


def augmentation_seed(video_id: str, aug_index: int) -> int:
    """The seed of augmentation `aug_index` of `video_id`, in [0, 2**31).

    The low 31 bits of the first 8 bytes (big-endian) of sha256("<video_id>:<aug_index>"), so the
    same on every process, platform and Python version (unlike `hash()`).
    """
    digest = hashlib.sha256(f"{video_id}:{aug_index}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % _SEED_BOUND


# --------------------------------------------------------------------------------------------
# Drawing parameters


def _uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return round(float(rng.uniform(low, high)), _DECIMALS)


def _sub_seed(rng: np.random.Generator) -> int:
    return int(rng.integers(0, _SEED_BOUND))


def _draw_rotation(rng: np.random.Generator, shape: tuple[int, ...]) -> dict:
    return {"op": "rotation", "angle_deg": _uniform(rng, -ROTATION_MAX_DEG, ROTATION_MAX_DEG)}


def _draw_flip(rng: np.random.Generator, shape: tuple[int, ...]) -> dict:
    return {"op": "flip", "direction": "horizontal"}


def _draw_color_jitter(rng: np.random.Generator, shape: tuple[int, ...]) -> dict:
    return {
        "op": "color_jitter",
        "brightness": _uniform(rng, *JITTER_RANGE),
        "contrast": _uniform(rng, *JITTER_RANGE),
        "saturation": _uniform(rng, *JITTER_RANGE),
    }


def _draw_gaussian_noise(rng: np.random.Generator, shape: tuple[int, ...]) -> dict:
    return {
        "op": "gaussian_noise",
        "sigma": _uniform(rng, *NOISE_SIGMA_RANGE),
        "noise_seed": _sub_seed(rng),
    }


def _draw_gaussian_blur(rng: np.random.Generator, shape: tuple[int, ...]) -> dict:
    return {"op": "gaussian_blur", "sigma": _uniform(rng, *BLUR_SIGMA_RANGE)}


def _draw_affine(rng: np.random.Generator, shape: tuple[int, ...]) -> dict:
    return {
        "op": "affine",
        "translate_x": _uniform(rng, -AFFINE_MAX_TRANSLATE, AFFINE_MAX_TRANSLATE),
        "translate_y": _uniform(rng, -AFFINE_MAX_TRANSLATE, AFFINE_MAX_TRANSLATE),
        "scale": _uniform(rng, *AFFINE_SCALE_RANGE),
        "shear_deg": _uniform(rng, -AFFINE_MAX_SHEAR_DEG, AFFINE_MAX_SHEAR_DEG),
    }


def _draw_elastic(rng: np.random.Generator, shape: tuple[int, ...]) -> dict:
    return {
        "op": "elastic",
        "alpha": _uniform(rng, *ELASTIC_ALPHA_RANGE),
        "sigma": _uniform(rng, *ELASTIC_SIGMA_RANGE),
        "reference_size": ELASTIC_REFERENCE_SIZE,
        "field_seed": _sub_seed(rng),
    }


def _cutout_extent(size: int) -> tuple[int, int]:
    low = max(1, math.ceil(CUTOUT_SIZE_RANGE[0] * size))
    high = max(low, min(size, math.floor(CUTOUT_SIZE_RANGE[1] * size)))
    return low, high


def _draw_cutout(rng: np.random.Generator, shape: tuple[int, ...]) -> dict:
    _, height, width, _ = shape
    h_low, h_high = _cutout_extent(height)
    w_low, w_high = _cutout_extent(width)
    rects = []
    for _ in range(int(rng.integers(1, CUTOUT_MAX_RECTS + 1))):
        h = int(rng.integers(h_low, h_high + 1))
        w = int(rng.integers(w_low, w_high + 1))
        y = int(rng.integers(0, height - h + 1))
        x = int(rng.integers(0, width - w + 1))
        rects.append({"x": x, "y": y, "w": w, "h": h})
    return {"op": "cutout", "fill": 0, "rects": rects}


def _draw_temporal(rng: np.random.Generator, shape: tuple[int, ...]) -> dict:
    """Drop up to 25% of the frames, duplicate kept frames in place back to K, maybe reverse."""
    k = shape[0]
    n_drop = int(rng.integers(0, math.floor(TEMPORAL_MAX_DROP * k) + 1))
    dropped = np.sort(rng.choice(k, size=n_drop, replace=False)) if n_drop else np.array([], int)
    kept = np.setdiff1d(np.arange(k), dropped)
    extra = np.bincount(rng.choice(len(kept), size=n_drop, replace=True), minlength=len(kept))
    indices = np.repeat(kept, 1 + extra)
    reverse = bool(rng.random() < TEMPORAL_REVERSE_PROB)
    if reverse:
        indices = indices[::-1]
    return {
        "op": "temporal",
        "dropped": [int(i) for i in dropped],
        "reverse": reverse,
        "frame_indices": [int(i) for i in indices],
    }


_DRAW: dict[str, Callable[[np.random.Generator, tuple[int, ...]], dict]] = {
    "rotation": _draw_rotation,
    "flip": _draw_flip,
    "color_jitter": _draw_color_jitter,
    "gaussian_noise": _draw_gaussian_noise,
    "gaussian_blur": _draw_gaussian_blur,
    "affine": _draw_affine,
    "elastic": _draw_elastic,
    "cutout": _draw_cutout,
    "temporal": _draw_temporal,
}


def _draw_combined(rng: np.random.Generator, shape: tuple[int, ...]) -> list[dict]:
    n_spatial = int(rng.integers(COMBINED_SPATIAL_RANGE[0], COMBINED_SPATIAL_RANGE[1] + 1))
    chosen = rng.choice(len(SPATIAL_OPS), size=n_spatial, replace=False)
    ops = [_DRAW[SPATIAL_OPS[int(i)]](rng, shape) for i in chosen]
    temporal = _draw_temporal(rng, shape)
    ops.insert(int(rng.integers(0, n_spatial + 1)), temporal)
    return ops


def draw_params(aug_index: int, seed: int, clip_shape: tuple[int, int, int, int]) -> dict:
    """The parameters of augmentation `aug_index` for a clip of `clip_shape`, drawn from `seed`.

    Returns {"version", "aug_index", "aug_type", "seed", "clip_shape", "ops"}; "ops" is the list
    of op dicts (each with an "op" name) that `apply_augmentation` applies in order. Only
    int/float/bool/str/list/dict values, so it survives a JSON round trip unchanged.
    """
    if not 0 <= aug_index < N_AUGMENTATIONS:
        raise ValueError(f"aug_index must be in [0, {N_AUGMENTATIONS}), got {aug_index}")
    shape = (*check_clip_shape(clip_shape), 3)
    rng = np.random.default_rng(int(seed))
    aug_type = AUG_TYPES[aug_index]
    ops = _draw_combined(rng, shape) if aug_type == "combined" else [_DRAW[aug_type](rng, shape)]
    return {
        "version": PARAMS_VERSION,
        "aug_index": int(aug_index),
        "aug_type": aug_type,
        "seed": int(seed),
        "clip_shape": list(shape),
        "ops": ops,
    }


# --------------------------------------------------------------------------------------------
# Applying ops. Each takes a C-contiguous uint8 (K, H, W, 3) clip and returns a new one.


def _per_frame(clip: np.ndarray, fn: Callable[[np.ndarray, np.ndarray], object]) -> np.ndarray:
    """out[k] = fn(clip[k]) with fn writing into the `dst` frame it is given."""
    out = np.empty_like(clip)
    for k in range(clip.shape[0]):
        fn(clip[k], out[k])
    return out


def _centre(width: int, height: int) -> tuple[float, float]:
    return (width - 1) / 2.0, (height - 1) / 2.0


def _warp(clip: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    _, height, width, _ = clip.shape
    return _per_frame(
        clip,
        lambda src, dst: cv2.warpAffine(
            src,
            matrix,
            (width, height),
            dst=dst,
            flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=(0, 0, 0),
        ),
    )


def _apply_rotation(clip: np.ndarray, op: dict) -> np.ndarray:
    """Rotate counter-clockwise by angle_deg about the frame centre; zero border."""
    _, height, width, _ = clip.shape
    matrix = cv2.getRotationMatrix2D(_centre(width, height), float(op["angle_deg"]), 1.0)
    return _warp(clip, matrix)


def _apply_flip(clip: np.ndarray, op: dict) -> np.ndarray:
    if op.get("direction", "horizontal") != "horizontal":
        raise ValueError(f"unknown flip direction {op['direction']!r}")
    return _per_frame(clip, lambda src, dst: cv2.flip(src, 1, dst=dst))


def _grey_mean(frame: np.ndarray) -> int:
    """PIL's contrast pivot: mean of the ITU-R 601 luma, rounded half up."""
    return int(cv2.mean(cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY))[0] + 0.5)


def _apply_color_jitter(clip: np.ndarray, op: dict) -> np.ndarray:
    """PIL ImageEnhance semantics, in this order, each step rounded and clipped to [0, 255]:

    brightness: x * b;  contrast: m + c * (x - m), m = the frame's mean grey level;
    saturation: g + s * (x - g), g = the pixel's grey level (ITU-R 601 luma).
    Brightness and contrast are per-value maps, so they run as one 8-bit lookup table per frame.
    """
    b, c, s = float(op["brightness"]), float(op["contrast"]), float(op["saturation"])
    values = np.arange(256, dtype=np.float64)
    lut_b = np.clip(np.rint(values * b), 0, 255).astype(np.uint8)
    out = np.empty_like(clip)
    for k in range(clip.shape[0]):
        bright = cv2.LUT(clip[k], lut_b)
        m = _grey_mean(bright)
        lut_c = np.clip(np.rint(m + c * (values - m)), 0, 255).astype(np.uint8)
        contrasted = cv2.LUT(clip[k], lut_c[lut_b])
        if s == 1.0:
            out[k] = contrasted
            continue
        grey = cv2.cvtColor(cv2.cvtColor(contrasted, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
        cv2.addWeighted(contrasted, s, grey, 1.0 - s, 0.0, dst=out[k])
    return out


@lru_cache(maxsize=64)
def _rounded_gaussian_table(sigma: float) -> np.ndarray:
    """table[u] = round(sigma * Phi^-1((u + 0.5) / 65536)) for every 16-bit u, as int16.

    Indexing it with uniform 16-bit draws gives round(N(0, sigma)) exactly up to 2**-16 in
    probability (tails cut at 4.3 sigma), several times faster than drawing float normals. Since
    the frame is integer, rounding the noise instead of the sum changes nothing but ties.
    """
    quantiles = ndtri((np.arange(65536, dtype=np.float64) + 0.5) / 65536.0)
    table = np.rint(sigma * quantiles).astype(np.int16)
    table.setflags(write=False)
    return table


_NOISE_CHUNK = 1 << 16  # values per lookup: keeps numpy's index temporaries in cache


def _apply_gaussian_noise(clip: np.ndarray, op: dict) -> np.ndarray:
    """Add round(N(0, sigma)) i.i.d. per pixel and channel, clip to [0, 255].

    Draws come from np.random.default_rng(noise_seed).bit_generator (PCG64): ceil(K*H*W*3 / 4)
    raw 64-bit outputs read as native (little-endian) uint16, four per output, the first K*H*W*3
    of them, in the clip's C order, mapped through the rounded-Gaussian quantile table. Raw
    outputs are the cheapest uniform bits numpy offers and, unlike Generator methods, their
    stream is fixed across numpy versions; the work runs in chunks (a multiple of 4 values) so
    temporaries stay in cache.
    """
    table = _rounded_gaussian_table(float(op["sigma"]))
    bits = np.random.default_rng(int(op["noise_seed"])).bit_generator
    flat_in = clip.reshape(-1)
    out = np.empty_like(clip)
    flat_out = out.reshape(-1)
    noise = np.empty(min(_NOISE_CHUNK, flat_in.size), np.int16)
    for start in range(0, flat_in.size, _NOISE_CHUNK):
        n = min(_NOISE_CHUNK, flat_in.size - start)
        uniform = bits.random_raw(-(-n // 4)).view(np.uint16)[:n]
        np.take(table, uniform, out=noise[:n])
        cv2.add(
            flat_in[start : start + n],
            noise[:n],
            dst=flat_out[start : start + n],
            dtype=cv2.CV_8U,
        )
    return out


def _apply_gaussian_blur(clip: np.ndarray, op: dict) -> np.ndarray:
    sigma = float(op["sigma"])
    return _per_frame(
        clip,
        lambda src, dst: cv2.GaussianBlur(
            src, (0, 0), sigmaX=sigma, dst=dst, sigmaY=sigma, borderType=cv2.BORDER_REFLECT_101
        ),
    )


def _apply_affine(clip: np.ndarray, op: dict) -> np.ndarray:
    """Scale and x-shear about the centre, then translate by a fraction of width/height."""
    _, height, width, _ = clip.shape
    scale = float(op["scale"])
    linear = scale * np.array([[1.0, math.tan(math.radians(float(op["shear_deg"])))], [0.0, 1.0]])
    centre = np.array(_centre(width, height))
    shift = np.array([float(op["translate_x"]) * width, float(op["translate_y"]) * height])
    matrix = np.hstack([linear, (centre + shift - linear @ centre)[:, None]])
    return _warp(clip, matrix)


def _elastic_field(op: dict, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Displacements (dx, dy) in frame pixels, float32 (H, W).

    Uniform[-1, 1) noise (dx block then dy block) on a grid whose shorter side is
    `reference_size`, Gaussian-smoothed with `sigma`, times `alpha` (both in grid pixels), then
    resized to the frame and rescaled to frame pixels. The noise is built from the raw 64-bit
    outputs of default_rng(field_seed).bit_generator (top 53 bits -> [0, 1)), whose stream numpy
    keeps fixed across versions, unlike Generator methods such as `uniform`.
    """
    reference = int(op.get("reference_size", ELASTIC_REFERENCE_SIZE))
    factor = min(height, width) / reference  # frame pixels per grid pixel
    grid_h = max(1, round(height / factor))
    grid_w = max(1, round(width / factor))
    raw = np.random.default_rng(int(op["field_seed"])).bit_generator.random_raw(2 * grid_h * grid_w)
    unit = (raw >> np.uint64(11)).astype(np.float64) * 2.0**-53
    noise = (2.0 * unit - 1.0).astype(np.float32).reshape(2, grid_h, grid_w)
    sigma, alpha = float(op["sigma"]), float(op["alpha"])
    interpolation = cv2.INTER_AREA if factor < 1.0 else cv2.INTER_LINEAR
    fields = []
    for component in noise:
        smooth = cv2.GaussianBlur(
            component, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT_101
        )
        smooth *= np.float32(alpha * factor)
        fields.append(cv2.resize(smooth, (width, height), interpolation=interpolation))
    return fields[0], fields[1]


def _apply_elastic(clip: np.ndarray, op: dict) -> np.ndarray:
    """One smooth displacement field for the whole clip; bilinear remap with reflected border."""
    _, height, width, _ = clip.shape
    if float(op["alpha"]) == 0.0:
        return clip.copy()
    dx, dy = _elastic_field(op, height, width)
    dx += np.arange(width, dtype=np.float32)[None, :]
    dy += np.arange(height, dtype=np.float32)[:, None]
    map_xy, map_frac = cv2.convertMaps(dx, dy, cv2.CV_16SC2)
    return _per_frame(
        clip,
        lambda src, dst: cv2.remap(
            src,
            map_xy,
            map_frac,
            cv2.INTER_LINEAR,
            dst=dst,
            borderMode=cv2.BORDER_REFLECT_101,
        ),
    )


def _apply_cutout(clip: np.ndarray, op: dict) -> np.ndarray:
    out = clip.copy()
    fill = int(op.get("fill", 0))
    for rect in op["rects"]:
        x, y, w, h = (int(rect[key]) for key in ("x", "y", "w", "h"))
        out[:, y : y + h, x : x + w, :] = fill
    return out


def _apply_temporal(clip: np.ndarray, op: dict) -> np.ndarray:
    """out[j] = clip[frame_indices[j]]; the stored list holds the drops, duplicates and reversal."""
    indices = np.asarray(op["frame_indices"], dtype=np.intp)
    k = clip.shape[0]
    if indices.shape != (k,) or (k and (indices.min() < 0 or indices.max() >= k)):
        raise ValueError(
            f"frame_indices must be {k} indices in [0, {k}), got {op['frame_indices']}"
        )
    return clip[indices]


_APPLY: dict[str, Callable[[np.ndarray, dict], np.ndarray]] = {
    "rotation": _apply_rotation,
    "flip": _apply_flip,
    "color_jitter": _apply_color_jitter,
    "gaussian_noise": _apply_gaussian_noise,
    "gaussian_blur": _apply_gaussian_blur,
    "affine": _apply_affine,
    "elastic": _apply_elastic,
    "cutout": _apply_cutout,
    "temporal": _apply_temporal,
}


def apply_augmentation(clip: np.ndarray, params: dict) -> np.ndarray:
    """Apply params["ops"] in order; pure: same clip and params give byte-identical output.

    The input is never modified. If params carries "clip_shape", the clip must have that shape;
    if it carries a "version", it must be this code's PARAMS_VERSION (params drawn by other
    augmentation code would not reproduce their clip).
    """
    check_clip(clip)
    version = params.get("version", PARAMS_VERSION)
    if version != PARAMS_VERSION:
        raise ValueError(
            f"params of version {version} cannot be reproduced by this code (version "
            f"{PARAMS_VERSION}); re-materialize augmented_clips"
        )
    expected = params.get("clip_shape")
    if expected is not None and tuple(expected) != clip.shape:
        raise ValueError(f"params are for clip shape {tuple(expected)}, got {clip.shape}")
    out = np.ascontiguousarray(clip)
    for op in params["ops"]:
        name = op.get("op")
        if name not in _APPLY:
            raise ValueError(f"unknown augmentation op {name!r}")
        out = _APPLY[name](out, op)
    return out.copy() if out is clip else out


def augment_clip(clip: np.ndarray, video_id: str, aug_index: int) -> tuple[np.ndarray, dict, int]:
    """(augmented clip, params, seed) for augmentation `aug_index` of `video_id`."""
    seed = augmentation_seed(video_id, aug_index)
    params = draw_params(aug_index, seed, clip.shape)
    return apply_augmentation(clip, params), params, seed
