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

Performance notes.  Nothing loops over pixels or 8x8 blocks, and results do not depend on
how the work is split (integer sums are exact; float sums only change summation order).

* :func:`handcrafted_features` converts a frame to luma (one ``cvtColor``) and then works
  through it in horizontal strips of whole 8x8 block rows (64 rows at 1920 wide, see
  :func:`_strip_rows`) with one halo row above and below for the 3x3 filters, so each of
  the ~20 passes over a strip finds its input in the L2 cache, where whole-frame float32
  buffers (8 MB at 1080p) streamed through memory on every pass.  Strip sums add up to
  frame sums.
* The 3x3 filters run on the uint8 luma into int16, exactly: the noise residual as the
  integer ``9 * g - (3x3 box sum)`` (its statistics divided by 8 and 64 afterwards: the
  same values as the float32 ``filter2D`` it replaces, which was exact too), the Laplacian,
  and both Sobel derivatives in one ``spatialGradient``.  The gradient magnitude squares
  the integer derivatives in float32 (exact below 2**24) and takes numpy's correctly
  rounded ``sqrt`` (``cv2.magnitude``'s SIMD path varied with buffer alignment); its second
  moment is the exact sum of squares.
* The block DCT is two matrix products per strip (``D`` down the 8 rows of each block row,
  then ``D.T`` on every run of 8 pixels).  The DC terms are copied out, then zeroed so the
  AC sums never subtract two large numbers.  (Parseval would give the AC energy from the
  pixels, but subtracting the DC energy then needs exact block sums, which measured no
  cheaper than the L2 norm they save.)
* Statistics are single-pass OpenCV reductions with double accumulators (``cv2.sumElems``,
  ``cv2.norm`` L1/L2SQR), using ``E[x^2] - E[x]^2`` for variances; blockiness is four
  ``cv2.norm`` calls per frame with a mask made once per clip.  A ``content_box`` crop is a
  view, never a copy, and work buffers are made once per clip (fresh multi-megabyte
  temporaries per frame cost as much as the arithmetic).
* The Python loops run over the ``K`` frames and the strips of a frame (17 strips of about
  25 calls at 1080p: about 0.5 ms of a frame's cost).

Measured single-threaded on the 2-core Xeon VM, after ``read_clip`` as the features asset runs
them (process CPU time, other work on the second core): about 9-10 ms per 1080p frame and
3.5-4 ms per 720p frame, against 19-21 and 6.5-7 ms with whole-frame passes.  Reading a stored
clip costs about 12-18 and 6-8 ms per frame, so the stage is still about 1.5-1.8x its read: the
largest parts left are the luma conversion (it reads the RGB clip from memory, ~1.5 ms at
1080p), the gradient magnitude's float passes (~2.4 ms), the two DCT products with their
input conversion and norms (~2.2 ms) and the box, Laplacian and Sobel filters (~2.5 ms).
:func:`scaled_features` runs on small (256-px) clips and works on whole frames.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from fvc_dagster.lib.frames import check_clip

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


def _content(clip: np.ndarray, content_box: tuple[int, int, int, int] | None) -> np.ndarray:
    """The checked clip, cropped to ``content_box`` ``(x, y, w, h)`` when one is given."""
    _, height, width = check_clip(clip, _MIN_SIDE)
    if content_box is None:
        return clip
    x, y, w, h = (int(v) for v in content_box)
    if x < 0 or y < 0 or w <= 0 or h <= 0 or x + w > width or y + h > height:
        raise ValueError(f"content_box {content_box} outside the {width}x{height} frame")
    cropped = clip[:, y : y + h, x : x + w]
    check_clip(cropped, _MIN_SIDE)
    return cropped


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


class _Blockiness:
    """The 8x8 blockiness ratio of frames of one size (see :func:`_blockiness`).

    The column mask of the horizontal boundary pairs and the pair counts depend only on the
    frame size, so they are made once per clip, not once per frame.
    """

    def __init__(self, h: int, w: int) -> None:
        # Horizontal pair j is (x=j, x=j+1); it crosses a boundary when j + 1 is a multiple of 8.
        self.col_mask = np.zeros((h, w - 1), dtype=np.uint8)
        self.col_mask[:, _BLOCK - 1 :: _BLOCK] = 1
        self.n_boundary = h * len(range(_BLOCK - 1, w - 1, _BLOCK)) + w * len(
            range(_BLOCK - 1, h - 1, _BLOCK)
        )
        self.n_inner = h * (w - 1) + (h - 1) * w - self.n_boundary

    def __call__(self, g: np.ndarray) -> float:
        """The ratio of one ``(H, W)`` uint8 frame: four SIMD ``cv2.norm`` passes (exact sums)."""
        left, right = g[:, :-1], g[:, 1:]
        total = cv2.norm(right, left, cv2.NORM_L1) + cv2.norm(g[1:], g[:-1], cv2.NORM_L1)
        boundary = cv2.norm(right, left, cv2.NORM_L1, self.col_mask) + cv2.norm(
            g[_BLOCK::_BLOCK], g[_BLOCK - 1 : -1 : _BLOCK], cv2.NORM_L1
        )
        return (boundary / self.n_boundary + _EPS) / ((total - boundary) / self.n_inner + _EPS)


def _blockiness(grey: np.ndarray) -> np.ndarray:
    """Per-frame 8x8 blockiness ratio of a ``(K, H, W)`` uint8 luma stack.

    Mean absolute difference of horizontally/vertically adjacent pixels that straddle an
    8x8 block boundary (pixel pairs ``8k-1 | 8k``) over the same mean at all other pairs.
    Both means get ``_EPS`` added, so a flat frame scores exactly 1.0; block-coded
    (JPEG/MPEG-like) frames score above 1.
    """
    ratio = _Blockiness(*grey.shape[1:])
    return np.array([ratio(g) for g in grey])  # per frame: cv2.norm is 2-D


# --------------------------------------------------------------------------- handcrafted

# A frame is processed in strips of whole 8x8 block rows, sized so that a strip's work
# buffers (two int16 and two float32 rows per image row: 12 bytes per pixel, 1.5 MiB) stay in
# a 2 MiB L2 cache from one pass to the next: 64 rows at 1920 wide, 96 at 1280, whole frames
# at 256.  Whole-frame buffers (8 MB of float32 at 1080p) streamed through memory on each of
# about 20 passes; strips of 32 to 128 rows measured within a few percent of each other, and
# fewer rows pay more Python call overhead.
_STRIP_BYTES = 3 << 19
_BYTES_PER_PIXEL = 2 * 2 + 2 * 4


def _strip_rows(h: int, w: int) -> int:
    """Rows per strip for ``(h, w)`` frames: a multiple of 8 (or the whole frame)."""
    rows = _STRIP_BYTES // (_BYTES_PER_PIXEL * w) // _BLOCK * _BLOCK
    return min(max(rows, _BLOCK), h)


# Per-strip sums of one frame, accumulated into a float64 vector (indices into it).
(
    _NOISE_SUM,  # sum of n = 9 * g - (3x3 box sum of g) = 8 * residual, exact int16
    _NOISE_ABS,  # sum |n|
    _NOISE_SQ,  # sum n^2
    _LAP_SUM,  # sum of the 3x3 Laplacian (int16)
    _LAP_SQ,
    _GRAD_SUM,  # sum of sqrt(dx^2 + dy^2)
    _GRAD_SQ,  # sum of dx^2 + dy^2 (exact)
    _AC_ABS,  # sum |AC coefficient|
    _AC_SQ,  # sum of squared AC coefficients
    _N_SUMS,
) = range(10)


@dataclass(frozen=True)
class _Scratch:
    """Work buffers for one frame size, reused for every strip of every frame of a clip.

    Allocating fresh temporaries costs about as much as the arithmetic itself (new pages are
    faulted in and zeroed), and strip-sized buffers stay in the L2 cache from one pass to the
    next, where whole-frame float32 buffers (8 MB at 1080p) streamed through memory.
    """

    strip_rows: int  # S, from _strip_rows
    grey: np.ndarray  # (H, W) uint8 luma of the current frame
    i: np.ndarray  # (S + 2, W) int16: box sums, then the Laplacian, then Sobel x
    j: np.ndarray  # (S + 2, W) int16: the noise residual n, then Sobel y
    a: np.ndarray  # (S * W,) float32: the luma then DCT coefficients; dx^2 + dy^2
    b: np.ndarray  # (S * W,) float32: the vertical DCT; dy^2
    dc: np.ndarray  # (H // 8, W // 8) float32 DC coefficients of the frame
    blockiness: _Blockiness

    @classmethod
    def for_frame(cls, h: int, w: int) -> _Scratch:
        rows = _strip_rows(h, w)
        return cls(
            rows,
            np.empty((h, w), dtype=np.uint8),
            *(np.empty((rows + 2, w), dtype=np.int16) for _ in range(2)),
            *(np.empty(rows * w, dtype=np.float32) for _ in range(2)),
            np.empty((h // _BLOCK, w // _BLOCK), dtype=np.float32),
            _Blockiness(h, w),
        )


def _strip_sums(g: np.ndarray, y0: int, y1: int, work: _Scratch, sums: np.ndarray) -> None:
    """Add the sums of rows ``[y0, y1)`` of the uint8 luma ``g`` to ``sums``.

    The 3x3 filters run on the strip plus one halo row above and below (where the frame has
    them) and only the strip's own output rows are summed, so every row is filtered with the
    same neighbours (and the same reflected border at the frame's edges) as a whole-frame
    filter would use.  Integer sums are exact; float sums use double accumulators.
    """
    h, w = g.shape
    top, bottom = max(y0 - 1, 0), min(y1 + 1, h)
    src = g[top:bottom]
    inner = slice(y0 - top, y1 - top)
    i, j = work.i[: bottom - top], work.j[: bottom - top]
    norm, l1, l2 = cv2.norm, cv2.NORM_L1, cv2.NORM_L2SQR

    # Noise residual (pixel minus the mean of its 8 neighbours) times 8, exactly in int16.
    cv2.boxFilter(src, cv2.CV_16S, (3, 3), dst=i, normalize=False)
    n = cv2.subtract(np.multiply(src, 9, out=j, dtype=np.int16), i, dst=j)[inner]
    sums[_NOISE_SUM] += cv2.sumElems(n)[0]
    sums[_NOISE_ABS] += norm(n, l1)
    sums[_NOISE_SQ] += norm(n, l2)

    lap = cv2.Laplacian(src, cv2.CV_16S, dst=i, ksize=3)[inner]
    sums[_LAP_SUM] += cv2.sumElems(lap)[0]
    sums[_LAP_SQ] += norm(lap, l2)

    # Gradient magnitude: integer squares in float32 (exact below 2**24), numpy's correctly
    # rounded sqrt (cv2.magnitude's SIMD path varied with buffer alignment).
    cv2.spatialGradient(src, i, j)  # both 3x3 Sobel derivatives in one pass
    rows = y1 - y0
    mag, dy2 = work.a[: rows * w].reshape(rows, w), work.b[: rows * w].reshape(rows, w)
    np.copyto(mag, i[inner])
    np.copyto(dy2, j[inner])
    np.multiply(mag, mag, out=mag)
    cv2.accumulateSquare(dy2, mag)
    sums[_GRAD_SQ] += cv2.sumElems(mag)[0]
    sums[_GRAD_SUM] += cv2.sumElems(np.sqrt(mag, out=mag))[0]

    # 8x8 block DCT of the strip's whole block rows (the frame is cropped to multiples of 8).
    rows = min(y1, h // _BLOCK * _BLOCK) - y0
    if rows <= 0:
        return
    w8 = w // _BLOCK * _BLOCK
    size = rows * w8
    luma = work.a[:size].reshape(rows, w8)
    np.copyto(luma, g[y0 : y0 + rows, :w8])
    coeffs = _block_dct(
        luma,
        rows_out=work.b[:size].reshape(rows // _BLOCK, _BLOCK, w8),
        out=work.a[:size].reshape(rows // _BLOCK, _BLOCK, w8 // _BLOCK, _BLOCK),
    )
    np.copyto(work.dc[y0 // _BLOCK : (y0 + rows) // _BLOCK], coeffs[:, 0, :, 0])
    # Zero the DC terms so the AC sums never subtract two large numbers.
    coeffs[:, 0, :, 0] = 0.0
    ac = coeffs.reshape(rows, w8)
    sums[_AC_ABS] += norm(ac, l1)
    sums[_AC_SQ] += norm(ac, l2)


def _frame_features(g: np.ndarray, work: _Scratch) -> list[float]:
    """The 12 pixel features of one ``(H, W)`` uint8 luma frame, strip by strip."""
    h, w = g.shape
    sums = np.zeros(_N_SUMS)
    for y0 in range(0, h, work.strip_rows):
        _strip_sums(g, y0, min(y0 + work.strip_rows, h), work, sums)
    size = h * w
    # The residual is n / 8: its moments are those of n over 8 and 64.
    noise_mean, noise_sq = sums[_NOISE_SUM] / (8 * size), sums[_NOISE_SQ] / (64 * size)
    dc = work.dc.astype(np.float64).ravel()
    n_blocks = dc.size
    n_ac = n_blocks * (_BLOCK * _BLOCK - 1)
    dc_mean = dc.sum() / n_blocks
    dc_sq = dc @ dc
    ac_abs_mean = sums[_AC_ABS] / n_ac
    ac_sq = sums[_AC_SQ]
    grad_mean = sums[_GRAD_SUM] / size
    return [
        noise_sq,
        sums[_NOISE_ABS] / (8 * size),
        _std(noise_mean, noise_sq),
        dc_mean,
        _std(dc_mean, dc_sq / n_blocks),
        ac_abs_mean,
        _std(ac_abs_mean, ac_sq / n_ac),
        ac_sq / n_blocks,
        _var(sums[_LAP_SUM] / size, sums[_LAP_SQ] / size),
        grad_mean,
        _std(grad_mean, sums[_GRAD_SQ] / size),
        work.blockiness(g),
    ]


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
    content = _content(clip, content_box)
    work = _Scratch.for_frame(*content.shape[1:3])
    per_frame = np.empty((len(content), 12))
    for i, rgb in enumerate(content):  # per frame, then per strip: cache-resident passes
        g = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY, dst=work.grey)
        per_frame[i] = _frame_features(g, work)
    values = [
        *per_frame.mean(axis=0),
        _optional(cues.bitrate),
        _optional(cues.fps),
        cues.width * cues.height,
    ]
    return {name: float(v) for name, v in zip(HANDCRAFTED_FEATURES, values, strict=True)}


# --------------------------------------------------------------------------- stage 4


def _texture_uniformity(grey: np.ndarray, work: tuple[np.ndarray, np.ndarray]) -> float:
    """``1 / (1 + mean local variance)``, local variance ``E[x^2] - E[x]^2`` over a 5x5 box.

    The mean of ``E[x^2] - E[x]^2`` is taken as the difference of the two means (double
    accumulators), which avoids a per-pixel temporary.
    """
    local_mean = cv2.boxFilter(grey, cv2.CV_32F, _TEXTURE_WINDOW, dst=work[0])
    local_mean_sq = cv2.sqrBoxFilter(grey, cv2.CV_32F, _TEXTURE_WINDOW, dst=work[1])
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
    work = tuple(np.empty(grey.shape[1:], dtype=np.float32) for _ in range(2))  # reused
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
