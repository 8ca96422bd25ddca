"""Per-clip forensic features for fake-video detection.

A *clip* is a ``numpy.uint8`` array of shape ``(K, H, W, 3)`` holding ``K`` RGB frames.
Unless stated otherwise a feature is computed per frame on the luma image (OpenCV
``RGB2GRAY``, i.e. BT.601 luma rounded to integers, used as float32 in ``[0, 255]``)
and then averaged over the ``K`` frames.

Two feature sets are exposed:

* :func:`handcrafted_features` -- the 15 columns of :data:`HANDCRAFTED_FEATURES`
  (noise residual, 8x8 block DCT, sharpness, blockiness and codec cues);
* :func:`scaled_features` -- the 8 stage-4 columns of :data:`SCALED_FEATURES`, computed on
  a rescaled clip and, when a ``content_box`` is given, on its content region only.

Performance notes.  Nothing loops over pixels or 8x8 blocks: the block DCT of a frame is
two matrix products over all of its blocks, blockiness is four SIMD ``cv2.norm`` calls,
and every statistic comes from single-pass OpenCV reductions with double accumulators
(``cv2.sumElems``, ``cv2.norm`` L1/L2SQR), using ``E[x^2] - E[x]^2`` for variances; the
Laplacian and Sobel filters run on the uint8 luma into int16, exactly.  A ``content_box``
crop is a view, never a copy.  The one Python loop is over the ``K`` frames: OpenCV's
filters are 2-D only, and running all stages on one frame while it is hot in cache, with
work buffers reused from frame to frame, measured faster than batched forms over the whole
``(K, H, W)`` stack (stacked filters, ``ndarray.std(axis=...)``, one DCT over all frames),
at 256x256 and 1920x1080.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

__all__ = [
    "HANDCRAFTED_FEATURES",
    "SCALED_FEATURES",
    "CodecCues",
    "handcrafted_features",
    "scaled_features",
]

HANDCRAFTED_FEATURES: tuple[str, ...] = (
    "noise_energy",
    "noise_mean",
    "noise_std",
    "dct_dc_mean",
    "dct_dc_std",
    "dct_ac_mean",
    "dct_ac_std",
    "dct_ac_energy",
    "laplacian_var",
    "gradient_mean",
    "gradient_std",
    "boundary_inconsistency",
    "codec_bitrate",
    "codec_fps",
    "codec_resolution",
)

SCALED_FEATURES: tuple[str, ...] = (
    "edge_density",
    "texture_uniformity",
    "color_consistency_r",
    "color_consistency_g",
    "color_consistency_b",
    "compression_artifacts",
    "is_upscaled",
    "is_downscaled",
)

_BLOCK = 8
# A frame needs one whole 8x8 block plus one block boundary in each direction.
_MIN_SIDE = _BLOCK + 1
_EPS = 1e-6

# High-pass noise residual: the pixel minus the mean of its 8 neighbours.
_NOISE_KERNEL = np.array([[-1, -1, -1], [-1, 8, -1], [-1, -1, -1]], dtype=np.float32) / 8.0


def _dct_matrix(n: int) -> np.ndarray:
    """Orthonormal DCT-II matrix ``D`` (``D @ x`` is the DCT of the column vector ``x``)."""
    k = np.arange(n)[:, None]
    i = np.arange(n)[None, :]
    d = np.sqrt(2.0 / n) * np.cos(np.pi * (2 * i + 1) * k / (2 * n))
    d[0] /= np.sqrt(2.0)
    return d.astype(np.float32)


_DCT = _dct_matrix(_BLOCK)
_DCT_T = np.ascontiguousarray(_DCT.T)

_TEXTURE_WINDOW = (5, 5)
_CANNY_LOW, _CANNY_HIGH = 100, 200


@dataclass(frozen=True)
class CodecCues:
    """Container-level facts about the source video."""

    bitrate: float | None  # bits/s of the source video
    fps: float | None
    width: int
    height: int


# --------------------------------------------------------------------------- shared pieces


def _check_clip(clip: np.ndarray) -> np.ndarray:
    clip = np.asarray(clip)
    if clip.ndim != 4 or clip.shape[-1] != 3:
        raise ValueError(f"clip must have shape (K, H, W, 3), got {clip.shape}")
    if clip.dtype != np.uint8:
        raise ValueError(f"clip must be uint8, got {clip.dtype}")
    k, h, w, _ = clip.shape
    if k == 0:
        raise ValueError("clip has no frames")
    if h < _MIN_SIDE or w < _MIN_SIDE:
        raise ValueError(f"frames must be at least {_MIN_SIDE}x{_MIN_SIDE}, got {h}x{w}")
    return clip


def _content(clip: np.ndarray, content_box: tuple[int, int, int, int] | None) -> np.ndarray:
    """The checked clip, cropped to ``content_box`` ``(x, y, w, h)`` when one is given."""
    clip = _check_clip(clip)
    if content_box is None:
        return clip
    x, y, w, h = (int(v) for v in content_box)
    _, height, width, _ = clip.shape
    if x < 0 or y < 0 or w <= 0 or h <= 0 or x + w > width or y + h > height:
        raise ValueError(f"content_box {content_box} outside the {width}x{height} frame")
    return _check_clip(clip[:, y : y + h, x : x + w])


def _grey(clip: np.ndarray) -> np.ndarray:
    """Luma of every frame: ``(K, H, W, 3)`` RGB uint8 -> ``(K, H, W)`` uint8.

    One ``cvtColor`` per frame, straight from the (possibly cropped) view: as fast as one call
    on the stacked frames and no copy of a cropped clip.  The result stays uint8 (exact OpenCV
    luma, 4x less memory than float32, what ``Canny`` and the blockiness SAD need); arithmetic
    features take a float32 copy of one frame at a time.
    """
    k, h, w, _ = clip.shape
    grey = np.empty((k, h, w), dtype=np.uint8)
    for rgb, out in zip(clip, grey, strict=True):
        cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY, dst=out)
    return grey


def _moments(x: np.ndarray) -> tuple[float, float]:
    """``(mean(x), mean(x**2))`` of an image: two SIMD passes, double accumulators."""
    return cv2.sumElems(x)[0] / x.size, cv2.norm(x, cv2.NORM_L2SQR) / x.size


def _var(mean: float, mean_sq: float) -> float:
    """Population variance from the first two moments (clamped against round-off)."""
    return max(mean_sq - mean * mean, 0.0)


def _std(mean: float, mean_sq: float) -> float:
    return math.sqrt(_var(mean, mean_sq))


def _block_dct(
    grey: np.ndarray, rows_out: np.ndarray | None = None, out: np.ndarray | None = None
) -> np.ndarray:
    """Orthonormal 2-D DCT-II of every 8x8 block of ``grey`` (``(..., H, W)``).

    The image is cropped to multiples of 8.  Returns float32 ``(..., H//8, 8, W//8, 8)``:
    ``out[..., by, u, bx, v]`` is coefficient ``(u, v)`` of the block whose top-left pixel is
    ``(8*by, 8*bx)``, equal to ``cv2.dct`` of that block.  ``D @ B @ D.T`` for all blocks at
    once as two matrix products: ``D`` down the 8 rows of every block row, then ``D.T`` on
    every run of 8 pixels.  ``rows_out`` (``(..., H//8, 8, W//8*8)``) and ``out`` are
    optional float32 buffers for the two products.
    """
    grey = np.asarray(grey, dtype=np.float32)
    *lead, h, w = grey.shape
    nby, nbx = h // _BLOCK, w // _BLOCK
    rows = grey[..., : nby * _BLOCK, : nbx * _BLOCK].reshape(*lead, nby, _BLOCK, nbx * _BLOCK)
    vertical = np.matmul(_DCT, rows, out=rows_out)  # (..., nby, u, W8)
    flat_out = None if out is None else out.reshape(-1, _BLOCK)
    coeffs = np.matmul(vertical.reshape(-1, _BLOCK), _DCT_T, out=flat_out)
    return coeffs.reshape(*lead, nby, _BLOCK, nbx, _BLOCK)  # (..., nby, u, nbx, v)


def _blockiness(grey: np.ndarray) -> np.ndarray:
    """Per-frame 8x8 blockiness ratio of a ``(K, H, W)`` uint8 luma stack.

    Mean absolute difference of horizontally/vertically adjacent pixels that straddle an
    8x8 block boundary (pixel pairs ``8k-1 | 8k``) over the same mean at all other pairs.
    Both means get ``_EPS`` added, so a flat frame scores exactly 1.0; block-coded
    (JPEG/MPEG-like) frames score above 1.
    """
    _, h, w = grey.shape
    # Horizontal pair j is (x=j, x=j+1); it crosses a boundary when j + 1 is a multiple of 8.
    col_mask = np.zeros((h, w - 1), dtype=np.uint8)
    col_mask[:, _BLOCK - 1 :: _BLOCK] = 1
    n_boundary = h * len(range(_BLOCK - 1, w - 1, _BLOCK)) + w * len(
        range(_BLOCK - 1, h - 1, _BLOCK)
    )
    n_inner = h * (w - 1) + (h - 1) * w - n_boundary
    ratios = np.empty(len(grey))
    for i, g in enumerate(grey):  # per frame: cv2.norm is 2-D; SAD over a frame is one pass
        left, right = g[:, :-1], g[:, 1:]
        total = cv2.norm(right, left, cv2.NORM_L1) + cv2.norm(g[1:], g[:-1], cv2.NORM_L1)
        boundary = cv2.norm(right, left, cv2.NORM_L1, col_mask) + cv2.norm(
            g[_BLOCK::_BLOCK], g[_BLOCK - 1 : -1 : _BLOCK], cv2.NORM_L1
        )
        ratios[i] = (boundary / n_boundary + _EPS) / ((total - boundary) / n_inner + _EPS)
    return ratios


# --------------------------------------------------------------------------- handcrafted


@dataclass(frozen=True)
class _Scratch:
    """Work buffers for one frame size, reused for every frame of a clip.

    Allocating fresh multi-megabyte temporaries per frame costs about as much as the
    arithmetic itself (new pages are faulted in and zeroed); reuse halves the 1080p time.
    The Laplacian and Sobel filters run on the uint8 luma into int16 (exact, and int16
    reductions are 2-4x faster than float32 ones).
    """

    frame: np.ndarray  # (H, W) float32 luma, for the DCT
    a: np.ndarray  # (H, W) float32
    b: np.ndarray  # (H, W) float32
    dct_rows: np.ndarray  # (H//8, 8, W//8*8) float32 first DCT product
    dct: np.ndarray  # (H//8, 8, W//8, 8) float32 coefficients
    laplacian: np.ndarray  # (H, W) int16
    dx: np.ndarray  # (H, W) int16 Sobel x
    dy: np.ndarray  # (H, W) int16 Sobel y

    @classmethod
    def for_frame(cls, h: int, w: int) -> _Scratch:
        nby, nbx = h // _BLOCK, w // _BLOCK
        shapes = ((h, w), (h, w), (h, w), (nby, _BLOCK, nbx * _BLOCK), (nby, _BLOCK, nbx, _BLOCK))
        return cls(
            *(np.empty(shape, dtype=np.float32) for shape in shapes),
            *(np.empty((h, w), dtype=np.int16) for _ in range(3)),
        )


def _noise_stats(grey: np.ndarray, work: _Scratch) -> tuple[float, float, float]:
    """``(noise_energy, noise_mean, noise_std)`` of one float32 frame."""
    residual = cv2.filter2D(grey, cv2.CV_32F, _NOISE_KERNEL, dst=work.a)
    mean, mean_sq = _moments(residual)
    mean_abs = cv2.norm(residual, cv2.NORM_L1) / residual.size
    return mean_sq, mean_abs, _std(mean, mean_sq)


def _dct_stats(grey: np.ndarray, work: _Scratch) -> tuple[float, float, float, float, float]:
    """``(dc_mean, dc_std, ac_mean, ac_std, ac_energy)`` of one float32 frame."""
    coeffs = _block_dct(grey, rows_out=work.dct_rows, out=work.dct)
    nby, _, nbx, _ = coeffs.shape
    n_blocks = nby * nbx
    n_ac = n_blocks * (_BLOCK * _BLOCK - 1)
    dc = coeffs[:, 0, :, 0].astype(np.float64).ravel()
    dc_mean = dc.sum() / n_blocks
    # Zero the DC terms so the AC sums never subtract two large numbers.
    coeffs[:, 0, :, 0] = 0.0
    ac = coeffs.reshape(nby * _BLOCK, nbx * _BLOCK)
    ac_abs_mean = cv2.norm(ac, cv2.NORM_L1) / n_ac
    ac_sq_sum = cv2.norm(ac, cv2.NORM_L2SQR)
    return (
        float(dc_mean),
        _std(dc_mean, float(dc @ dc) / n_blocks),
        ac_abs_mean,
        _std(ac_abs_mean, ac_sq_sum / n_ac),
        ac_sq_sum / n_blocks,
    )


def _sharpness_stats(grey: np.ndarray, work: _Scratch) -> tuple[float, float, float]:
    """``(laplacian_var, gradient_mean, gradient_std)`` of one uint8 frame."""
    laplacian = cv2.Laplacian(grey, cv2.CV_16S, dst=work.laplacian, ksize=3)
    lap_mean, lap_mean_sq = _moments(laplacian)
    cv2.spatialGradient(grey, work.dx, work.dy)  # both 3x3 Sobel derivatives in one pass
    dx, dy = work.a, work.b
    np.copyto(dx, work.dx)
    np.copyto(dy, work.dy)
    # numpy's sqrt is correctly rounded; cv2.magnitude's SIMD path varies with buffer alignment,
    # which made a rerun differ in the last bits.
    np.multiply(dx, dx, out=dx)
    dx += np.multiply(dy, dy, out=dy)
    grad_mean, grad_mean_sq = _moments(np.sqrt(dx, out=dx))
    return _var(lap_mean, lap_mean_sq), grad_mean, _std(grad_mean, grad_mean_sq)


def _optional(value: float | None) -> float:
    return math.nan if value is None else float(value)


def handcrafted_features(
    clip: np.ndarray,
    cues: CodecCues,
    content_box: tuple[int, int, int, int] | None = None,
) -> dict[str, float]:
    """The :data:`HANDCRAFTED_FEATURES` of ``clip`` (``(K, H, W, 3)`` uint8 RGB).

    Pixel features are computed per frame and averaged over the frames; the codec cues are
    copied from ``cues`` (``None`` becomes NaN; resolution is ``width * height``).  When
    ``content_box`` ``(x, y, w, h)`` is given (a letterboxed clip), pixels outside it are
    ignored.
    """
    grey = _grey(_content(clip, content_box))
    work = _Scratch.for_frame(*grey.shape[1:])
    frame = work.frame
    per_frame = np.empty((len(grey), 11))
    for i, g in enumerate(grey):  # per frame: OpenCV filters are 2-D, and cache-resident
        np.copyto(frame, g)
        per_frame[i] = (
            *_noise_stats(frame, work),
            *_dct_stats(frame, work),
            *_sharpness_stats(g, work),
        )
    values = [
        *per_frame.mean(axis=0),
        _blockiness(grey).mean(),
        _optional(cues.bitrate),
        _optional(cues.fps),
        cues.width * cues.height,
    ]
    return {name: float(v) for name, v in zip(HANDCRAFTED_FEATURES, values, strict=True)}


# --------------------------------------------------------------------------- stage 4


def _texture_uniformity(grey: np.ndarray, work: _Scratch) -> float:
    """``1 / (1 + mean local variance)``, local variance ``E[x^2] - E[x]^2`` over a 5x5 box.

    The mean of ``E[x^2] - E[x]^2`` is taken as the difference of the two means (double
    accumulators), which avoids a per-pixel temporary.
    """
    local_mean = cv2.boxFilter(grey, cv2.CV_32F, _TEXTURE_WINDOW, dst=work.a)
    local_mean_sq = cv2.sqrBoxFilter(grey, cv2.CV_32F, _TEXTURE_WINDOW, dst=work.b)
    _, mean_of_sq_means = _moments(local_mean)
    mean_local_var = cv2.sumElems(local_mean_sq)[0] / grey.size - mean_of_sq_means
    return 1.0 / (1.0 + max(mean_local_var, 0.0))


def scaled_features(
    clip: np.ndarray,
    original_size: tuple[int, int],
    scaled_size: tuple[int, int],
    content_box: tuple[int, int, int, int] | None = None,
) -> dict[str, float]:
    """The stage-4 :data:`SCALED_FEATURES` of a rescaled ``clip``.

    ``original_size`` and ``scaled_size`` are ``(width, height)``.  When ``content_box``
    ``(x, y, w, h)`` is given, every pixel statistic is computed on that region only, so
    letterbox bars do not pollute them.
    """
    content = _content(clip, content_box)
    grey = _grey(content)
    work = _Scratch.for_frame(*grey.shape[1:])  # only a and b get touched here
    per_frame = np.empty((len(grey), 5))
    for i, (rgb, g) in enumerate(zip(content, grey, strict=True)):  # per frame, as above
        edges = cv2.countNonZero(cv2.Canny(g, _CANNY_LOW, _CANNY_HIGH)) / g.size
        _, channel_std = cv2.meanStdDev(rgb)  # channel order of the array: R, G, B
        per_frame[i] = (edges, _texture_uniformity(g, work), *channel_std.ravel())
    edge_density, texture, std_r, std_g, std_b = per_frame.mean(axis=0)
    scaled, original = max(scaled_size), max(original_size)
    values = (
        edge_density,
        texture,
        std_r,
        std_g,
        std_b,
        _blockiness(grey).mean(),
        1.0 if scaled > original else 0.0,
        1.0 if scaled < original else 0.0,
    )
    return {name: float(v) for name, v in zip(SCALED_FEATURES, values, strict=True)}
