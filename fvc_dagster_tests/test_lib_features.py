"""Tests for fvc_dagster.lib.features.forensic (small synthetic clips, no I/O)."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from fvc_dagster.lib.features import forensic as F
from fvc_dagster.lib.features.forensic import (
    HANDCRAFTED_FEATURES,
    SCALED_FEATURES,
    CodecCues,
    handcrafted_features,
    scaled_features,
)

CUES = CodecCues(bitrate=2_500_000.0, fps=25.0, width=64, height=48)
PIXEL_FEATURES = HANDCRAFTED_FEATURES[:12]  # everything except the codec cues


def _random_clip(k: int = 2, h: int = 48, w: int = 64, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (k, h, w, 3), dtype=np.uint8)


def _smooth_frame(h: int = 128, w: int = 128) -> np.ndarray:
    """A low-frequency RGB image (no 8x8 structure of its own)."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    r = 128 + 90 * np.sin(xx / 23.0) * np.cos(yy / 31.0)
    g = 128 + 80 * np.cos((xx + yy) / 29.0)
    b = 60 + 1.2 * xx
    return np.clip(np.stack([r, g, b], axis=-1), 0, 255).astype(np.uint8)


def _grey_frames(clip: np.ndarray) -> list[np.ndarray]:
    return [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY).astype(np.float32) for f in clip]


def _reference_blockiness(g: np.ndarray) -> float:
    """Straightforward definition: boundary pairs are x|x+1 with x+1 % 8 == 0 (same for y)."""
    g = g.astype(np.float64)
    dh = np.abs(np.diff(g, axis=1))
    dv = np.abs(np.diff(g, axis=0))
    bh = (np.arange(dh.shape[1]) + 1) % 8 == 0
    bv = (np.arange(dv.shape[0]) + 1) % 8 == 0
    boundary = np.concatenate([dh[:, bh].ravel(), dv[bv, :].ravel()])
    inner = np.concatenate([dh[:, ~bh].ravel(), dv[~bv, :].ravel()])
    return (boundary.mean() + 1e-6) / (inner.mean() + 1e-6)


def _reference_handcrafted_frame(g: np.ndarray) -> list[float]:
    """The 12 pixel features of one float32 grey frame, computed the slow, obvious way."""
    kernel = np.array([[-1, -1, -1], [-1, 8, -1], [-1, -1, -1]], np.float32) / 8
    r = cv2.filter2D(g, cv2.CV_32F, kernel).astype(np.float64)
    h8, w8 = g.shape[0] // 8 * 8, g.shape[1] // 8 * 8
    blocks = [
        cv2.dct(np.ascontiguousarray(g[y : y + 8, x : x + 8]))
        for y in range(0, h8, 8)
        for x in range(0, w8, 8)
    ]
    coeffs = np.stack(blocks).astype(np.float64).reshape(-1, 64)
    dc, ac = coeffs[:, 0], coeffs[:, 1:]
    lap = cv2.Laplacian(g, cv2.CV_32F, ksize=3).astype(np.float64)
    mag = np.hypot(
        cv2.Sobel(g, cv2.CV_32F, 1, 0, ksize=3).astype(np.float64),
        cv2.Sobel(g, cv2.CV_32F, 0, 1, ksize=3).astype(np.float64),
    )
    return [
        np.mean(r**2),
        np.mean(np.abs(r)),
        np.std(r),
        dc.mean(),
        dc.std(),
        np.abs(ac).mean(),
        np.abs(ac).std(),
        (ac**2).sum(axis=1).mean(),
        lap.var(),
        mag.mean(),
        mag.std(),
        _reference_blockiness(g),
    ]


# --------------------------------------------------------------------------- API shape


def test_output_keys_equal_declared_columns_in_order_and_values_are_floats():
    clip = _random_clip()
    hand = handcrafted_features(clip, CUES)
    scaled = scaled_features(clip, (64, 48), (64, 48))
    assert len(HANDCRAFTED_FEATURES) == 15 and len(SCALED_FEATURES) == 8
    assert tuple(hand) == HANDCRAFTED_FEATURES
    assert tuple(scaled) == SCALED_FEATURES
    assert all(type(v) is float for v in [*hand.values(), *scaled.values()])


def test_codec_cues_pass_through_and_none_gives_nan():
    clip = _random_clip(k=1)
    out = handcrafted_features(
        clip, CodecCues(bitrate=1_234_567.0, fps=29.97, width=1920, height=1080)
    )
    assert out["codec_bitrate"] == 1_234_567.0
    assert out["codec_fps"] == 29.97
    assert out["codec_resolution"] == 1920 * 1080
    missing = handcrafted_features(clip, CodecCues(bitrate=None, fps=None, width=640, height=360))
    assert math.isnan(missing["codec_bitrate"]) and math.isnan(missing["codec_fps"])
    assert missing["codec_resolution"] == 640 * 360


# --------------------------------------------------------------------------- values


def test_flat_frame_has_zero_gradient_noise_and_ac_and_dc_equal_to_8_times_value():
    clip = np.full((2, 32, 40, 3), 100, dtype=np.uint8)
    out = handcrafted_features(clip, CUES)
    for name in ("noise_energy", "noise_mean", "noise_std", "laplacian_var"):
        assert out[name] == 0.0, name
    assert out["gradient_mean"] == 0.0 and out["gradient_std"] == 0.0
    # Orthonormal 8x8 DCT-II: DC = sum(block) / 8 = 64 * 100 / 8.
    assert out["dct_dc_mean"] == pytest.approx(800.0, abs=1e-3)
    assert out["dct_dc_std"] == pytest.approx(0.0, abs=1e-3)
    for name in ("dct_ac_mean", "dct_ac_std", "dct_ac_energy"):
        assert out[name] == pytest.approx(0.0, abs=1e-3), name
    assert out["boundary_inconsistency"] == 1.0


def test_horizontal_ramp_has_exact_sobel_laplacian_and_noise_values():
    w = 64
    ramp = np.broadcast_to((2 * np.arange(w, dtype=np.uint8))[None, :, None], (24, w, 3))
    out = handcrafted_features(np.ascontiguousarray(ramp[None]), CUES)
    # Sobel dx of a slope-2 ramp is (1 + 2 + 1) * (2 + 2) = 16 inside; the reflected border
    # columns (x=-1 -> x=1) give 0.
    per_pixel = np.r_[0.0, np.full(w - 2, 16.0), 0.0]
    assert out["gradient_mean"] == pytest.approx(per_pixel.mean())
    assert out["gradient_std"] == pytest.approx(per_pixel.std())
    # A linear ramp equals its 8-neighbour mean, and has zero Laplacian, except in the two
    # border columns: residual -1.5 / +1.5 and Laplacian +16 / -16 there.
    assert out["noise_energy"] == pytest.approx(2 * 1.5**2 / w)
    assert out["noise_mean"] == pytest.approx(2 * 1.5 / w)
    assert out["noise_std"] == pytest.approx(math.sqrt(2 * 1.5**2 / w))
    assert out["laplacian_var"] == pytest.approx(2 * 16.0**2 / w)


def test_pixel_features_match_a_direct_reference_implementation():
    clip = _random_clip(k=2, h=43, w=61, seed=3)  # not multiples of 8: DCT crops, filters don't
    out = handcrafted_features(clip, CUES)
    expected = np.mean([_reference_handcrafted_frame(g) for g in _grey_frames(clip)], axis=0)
    for name, want in zip(PIXEL_FEATURES, expected, strict=True):
        assert out[name] == pytest.approx(want, rel=1e-4, abs=1e-3), name


def test_block_dct_equals_cv2_dct_of_each_block():
    grey = np.random.default_rng(1).uniform(0, 255, (27, 35)).astype(np.float32)
    coeffs = F._block_dct(grey)
    assert coeffs.shape == (3, 8, 4, 8)  # cropped to 24x32
    for by, bx in [(0, 0), (1, 2), (2, 3), (2, 0)]:
        block = np.ascontiguousarray(grey[8 * by : 8 * by + 8, 8 * bx : 8 * bx + 8])
        np.testing.assert_allclose(coeffs[by, :, bx, :], cv2.dct(block), atol=1e-3)
    # Leading axes are batched: a (K, H, W) stack gives the per-frame transforms.
    stack = np.stack([grey, 255 - grey])
    np.testing.assert_allclose(F._block_dct(stack)[1], F._block_dct(255 - grey), atol=1e-3)


def test_dct_uses_preallocated_buffers_when_given():
    grey = np.random.default_rng(2).uniform(0, 255, (16, 24)).astype(np.float32)
    rows, out = np.empty((2, 8, 24), np.float32), np.empty((2, 8, 3, 8), np.float32)
    coeffs = F._block_dct(grey, rows_out=rows, out=out)
    assert np.shares_memory(coeffs, out)
    np.testing.assert_allclose(coeffs, F._block_dct(grey), atol=1e-4)


def test_jpeg_quality_10_scores_blockier_than_its_smooth_source():
    smooth = _smooth_frame()
    ok, encoded = cv2.imencode(
        ".jpg", cv2.cvtColor(smooth, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 10]
    )
    assert ok
    jpeg = cv2.cvtColor(cv2.imdecode(encoded, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    src = handcrafted_features(smooth[None], CUES)["boundary_inconsistency"]
    blocky = handcrafted_features(jpeg[None], CUES)["boundary_inconsistency"]
    assert src == pytest.approx(1.0, abs=0.1)  # no grid in the source
    assert blocky > 2 * src
    assert scaled_features(jpeg[None], (128, 128), (128, 128))["compression_artifacts"] == blocky


def test_blockiness_matches_reference_and_flags_steps_on_the_grid():
    g = np.random.default_rng(4).integers(0, 256, (2, 29, 37), dtype=np.uint8)
    np.testing.assert_allclose(F._blockiness(g), [_reference_blockiness(f) for f in g], rtol=1e-9)
    # Constant 8x8 tiles: every difference sits on a boundary.
    tiles = np.kron(np.arange(12, dtype=np.uint8).reshape(3, 4) * 20, np.ones((8, 8), np.uint8))
    assert F._blockiness(tiles[None])[0] > 1e6


def test_noise_features_grow_when_gaussian_noise_is_added():
    clean = _smooth_frame(64, 64)[None]
    rng = np.random.default_rng(5)
    noisy = np.clip(clean + rng.normal(0, 12, clean.shape), 0, 255).astype(np.uint8)
    a, b = handcrafted_features(clean, CUES), handcrafted_features(noisy, CUES)
    assert b["noise_energy"] > 20 * a["noise_energy"]
    assert b["noise_mean"] > 4 * a["noise_mean"]
    assert b["noise_std"] > 4 * a["noise_std"]
    assert b["laplacian_var"] > a["laplacian_var"]
    assert b["dct_ac_energy"] > a["dct_ac_energy"]


def test_clip_features_are_the_mean_of_per_frame_features():
    rng = np.random.default_rng(6)
    frame0 = _smooth_frame(48, 64)
    frame1 = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    clip = np.stack([frame0, frame1])
    both = handcrafted_features(clip, CUES)
    f0, f1 = handcrafted_features(frame0[None], CUES), handcrafted_features(frame1[None], CUES)
    for name in PIXEL_FEATURES:
        assert f0[name] != pytest.approx(f1[name]), name  # the frames really differ
        assert both[name] == pytest.approx((f0[name] + f1[name]) / 2, rel=1e-9), name
    s_both = scaled_features(clip, (64, 48), (64, 48))
    s0 = scaled_features(frame0[None], (64, 48), (64, 48))
    s1 = scaled_features(frame1[None], (64, 48), (64, 48))
    for name in SCALED_FEATURES:
        assert s_both[name] == pytest.approx((s0[name] + s1[name]) / 2, rel=1e-9), name


# --------------------------------------------------------------------------- stage 4


def test_scaled_features_match_a_direct_reference_implementation():
    clip = _random_clip(k=2, h=40, w=56, seed=7)
    out = scaled_features(clip, (112, 80), (56, 40))
    rows = []
    for rgb in clip:
        g8 = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        g = g8.astype(np.float64)
        mean = cv2.blur(g, (5, 5))
        local_var = cv2.blur(g * g, (5, 5)) - mean * mean
        rows.append(
            [
                np.count_nonzero(cv2.Canny(g8, 100, 200)) / g8.size,
                1 / (1 + local_var.mean()),
                *rgb.reshape(-1, 3).astype(np.float64).std(axis=0),
                _reference_blockiness(g8),
            ]
        )
    expected = np.mean(rows, axis=0)
    names = SCALED_FEATURES[:6]
    for name, want in zip(names, expected, strict=True):
        assert out[name] == pytest.approx(want, rel=1e-5), name
    assert out["is_upscaled"] == 0.0 and out["is_downscaled"] == 1.0


def test_content_box_excludes_letterbox_bars():
    content = _random_clip(k=2, h=40, w=64, seed=8)
    boxed = np.zeros((2, 72, 64, 3), dtype=np.uint8)  # 16-row black bars top and bottom
    boxed[:, 16:56] = content
    plain = scaled_features(content, (64, 40), (64, 40))
    cropped = scaled_features(boxed, (64, 40), (64, 72), content_box=(0, 16, 64, 40))
    for name in SCALED_FEATURES[:6]:
        assert cropped[name] == pytest.approx(plain[name], rel=1e-9), name
    polluted = scaled_features(boxed, (64, 40), (64, 72))
    for name in ("color_consistency_r", "color_consistency_g", "color_consistency_b"):
        assert polluted[name] > plain[name] + 5, name


# Both feature sets measured inside an optional content box (x, y, w, h).
MEASURES = {
    "handcrafted": lambda clip, box=None: handcrafted_features(clip, CUES, content_box=box),
    "scaled": lambda clip, box=None: scaled_features(clip, (33, 30), (33, 30), content_box=box),
}


@pytest.mark.parametrize("measure", MEASURES.values(), ids=MEASURES.keys())
def test_content_box_with_pillarbox_bars_and_odd_offsets(measure):
    content = _random_clip(k=2, h=30, w=33, seed=9)
    boxed = np.zeros((2, 30, 53, 3), dtype=np.uint8)
    boxed[:, :, 11:44] = content
    assert measure(boxed, (11, 0, 33, 30)) == measure(content)
    assert measure(boxed) != measure(content)


@pytest.mark.parametrize(
    ("original", "scaled", "up", "down"),
    [
        ((640, 360), (1280, 720), 1.0, 0.0),
        ((1920, 1080), (224, 224), 0.0, 1.0),
        ((1280, 720), (720, 1280), 0.0, 0.0),  # same longest side, rotated
        ((256, 256), (256, 256), 0.0, 0.0),
    ],
)
def test_is_upscaled_and_is_downscaled_compare_longest_sides(original, scaled, up, down):
    out = scaled_features(_random_clip(k=1), original, scaled)
    assert (out["is_upscaled"], out["is_downscaled"]) == (up, down)


def test_flat_scaled_clip_has_no_edges_full_uniformity_and_zero_colour_spread():
    out = scaled_features(np.full((1, 32, 32, 3), 77, np.uint8), (32, 32), (32, 32))
    assert out["edge_density"] == 0.0
    assert out["texture_uniformity"] == pytest.approx(1.0, abs=1e-4)
    assert out["color_consistency_r"] == out["color_consistency_g"] == 0.0
    assert out["color_consistency_b"] == 0.0
    assert out["compression_artifacts"] == 1.0


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "clip",
    [
        np.zeros((32, 32, 3), np.uint8),  # no frame axis
        np.zeros((1, 32, 32, 4), np.uint8),  # not RGB
        np.zeros((1, 32, 32, 3), np.float32),  # not uint8
        np.zeros((0, 32, 32, 3), np.uint8),  # no frames
        np.zeros((1, 8, 32, 3), np.uint8),  # too small for one block boundary
    ],
)
def test_invalid_clips_are_rejected(clip):
    with pytest.raises(ValueError):
        handcrafted_features(clip, CUES)
    with pytest.raises(ValueError):
        scaled_features(clip, (32, 32), (32, 32))


@pytest.mark.parametrize("measure", MEASURES.values(), ids=MEASURES.keys())
@pytest.mark.parametrize("box", [(-1, 0, 16, 16), (0, 0, 33, 16), (20, 20, 16, 16), (0, 0, 4, 16)])
def test_content_box_outside_frame_or_too_small_is_rejected(measure, box):
    with pytest.raises(ValueError):
        measure(_random_clip(k=1, h=32, w=32), box)


def test_features_are_identical_on_every_call():
    """A rerun of a partition must give the same rows, bit for bit."""
    clip = np.random.default_rng(7).integers(0, 256, (6, 90, 130, 3), dtype=np.uint8)
    cues = CodecCues(bitrate=1e6, fps=25.0, width=130, height=90)
    first = handcrafted_features(clip, cues)
    for _ in range(3):
        assert handcrafted_features(clip.copy(), cues) == first
    scaled = scaled_features(clip, (260, 180), (130, 90))
    assert scaled_features(clip.copy(), (260, 180), (130, 90)) == scaled


@pytest.mark.parametrize("box", [None, (3, 5, 61, 37)])
def test_strips_of_eight_rows_give_the_features_of_whole_frames(monkeypatch, box):
    """The strip seams (halo rows of the 3x3 filters, block rows, boundary pairs) add nothing
    and lose nothing: 8-row strips agree with one strip per frame."""
    clip = _random_clip(k=3, h=75, w=70, seed=4)
    monkeypatch.setattr(F, "_STRIP_BYTES", 1 << 30)  # one strip: the whole frame
    whole = handcrafted_features(clip, CUES, box)
    monkeypatch.setattr(F, "_STRIP_BYTES", 1)  # the smallest strip: 8 rows
    assert F._strip_rows(75, 70) == 8
    stripped = handcrafted_features(clip, CUES, box)
    for name in whole:
        assert stripped[name] == pytest.approx(whole[name], rel=1e-9, abs=1e-12), name
