import hashlib
import json
import math
import subprocess
import sys

import numpy as np
import pytest
from scipy.special import ndtri

from fvc_dagster.lib.clips.augment import (
    AUG_TYPES,
    N_AUGMENTATIONS,
    SPATIAL_OPS,
    apply_augmentation,
    augment_clip,
    augmentation_seed,
    draw_params,
)


def random_clip(shape=(4, 24, 32, 3), seed=0, low=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(low, 256, shape, dtype=np.uint8)


def ops(*op_dicts: dict) -> dict:
    return {"ops": list(op_dicts)}


def digest(array: np.ndarray) -> str:
    return hashlib.sha256(array.tobytes()).hexdigest()


def assert_plain_json(value) -> None:
    """Only builtin JSON types (no numpy scalars hiding as floats)."""
    if isinstance(value, dict):
        assert all(isinstance(key, str) for key in value)
        for item in value.values():
            assert_plain_json(item)
    elif isinstance(value, list):
        for item in value:
            assert_plain_json(item)
    else:
        assert type(value) in (int, float, bool, str), (value, type(value))


def assert_op_in_bounds(op: dict, shape: tuple[int, int, int, int]) -> None:
    k, height, width, _ = shape
    name = op["op"]
    if name == "rotation":
        assert -10.0 <= op["angle_deg"] <= 10.0
    elif name == "flip":
        assert op["direction"] == "horizontal"
    elif name == "color_jitter":
        for key in ("brightness", "contrast", "saturation"):
            assert 0.8 <= op[key] <= 1.2
    elif name == "gaussian_noise":
        assert 3.0 <= op["sigma"] <= 10.0 and 0 <= op["noise_seed"] < 2**31
    elif name == "gaussian_blur":
        assert 0.5 <= op["sigma"] <= 2.0
    elif name == "affine":
        assert -0.1 <= op["translate_x"] <= 0.1 and -0.1 <= op["translate_y"] <= 0.1
        assert 0.9 <= op["scale"] <= 1.1 and -10.0 <= op["shear_deg"] <= 10.0
    elif name == "elastic":
        assert 20.0 <= op["alpha"] <= 40.0 and 4.0 <= op["sigma"] <= 6.0
        assert op["reference_size"] == 256 and 0 <= op["field_seed"] < 2**31
    elif name == "cutout":
        assert 1 <= len(op["rects"]) <= 2 and op["fill"] == 0
        for rect in op["rects"]:
            assert math.ceil(0.10 * height) <= rect["h"] <= math.floor(0.25 * height)
            assert math.ceil(0.10 * width) <= rect["w"] <= math.floor(0.25 * width)
            assert 0 <= rect["y"] <= height - rect["h"]
            assert 0 <= rect["x"] <= width - rect["w"]
    elif name == "temporal":
        indices = op["frame_indices"]
        assert len(indices) == k and all(0 <= i < k for i in indices)
        assert len(op["dropped"]) <= math.floor(0.25 * k)
        assert not set(op["dropped"]) & set(indices)
        assert len(set(indices)) == k - len(op["dropped"])
        assert indices == sorted(indices, reverse=op["reverse"])
    else:
        raise AssertionError(f"unexpected op {name}")


def test_plan_has_ten_fixed_augmentation_types():
    assert N_AUGMENTATIONS == 10
    assert AUG_TYPES == (
        "rotation",
        "flip",
        "color_jitter",
        "gaussian_noise",
        "gaussian_blur",
        "affine",
        "elastic",
        "cutout",
        "temporal",
        "combined",
    )


def test_seeds_are_stable_sha256_values_distinct_per_video_and_index():
    # sha256(b"video_000:3") starts 5b7716caba49955d; its low 31 bits are 0x3a49955d.
    assert augmentation_seed("video_000", 3) == 977900893
    seeds = {augmentation_seed(f"video_{v:03d}", i) for v in range(50) for i in range(10)}
    assert len(seeds) == 500
    assert all(0 <= s < 2**31 for s in seeds)


@pytest.mark.parametrize("aug_index", range(N_AUGMENTATIONS))
def test_each_augmentation_is_deterministic_and_reproducible_from_json_params(aug_index):
    clip = random_clip()
    before = clip.copy()
    out, params, seed = augment_clip(clip, "video_007", aug_index)
    assert seed == augmentation_seed("video_007", aug_index) == params["seed"]
    assert params["aug_index"] == aug_index and params["aug_type"] == AUG_TYPES[aug_index]
    assert params["clip_shape"] == [4, 24, 32, 3]
    assert_plain_json(params)
    reloaded = json.loads(json.dumps(params))
    assert reloaded == params
    assert apply_augmentation(clip, params).tobytes() == out.tobytes()
    assert apply_augmentation(clip, reloaded).tobytes() == out.tobytes()
    assert np.array_equal(clip, before)  # input untouched
    assert out.dtype == np.uint8 and out.shape == clip.shape


def test_augmented_clips_are_byte_identical_in_a_fresh_process():
    script = (
        "import hashlib, numpy as np\n"
        "from fvc_dagster.lib.clips.augment import augment_clip\n"
        "clip = np.random.default_rng(5).integers(0, 256, (3, 20, 28, 3), dtype=np.uint8)\n"
        "for i in range(10):\n"
        "    print(hashlib.sha256(augment_clip(clip, 'vid_x', i)[0].tobytes()).hexdigest())\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    clip = random_clip((3, 20, 28, 3), seed=5)
    here = [digest(augment_clip(clip, "vid_x", i)[0]) for i in range(10)]
    assert result.stdout.split() == here


@pytest.mark.parametrize("aug_index", range(N_AUGMENTATIONS))
def test_params_stay_within_bounds_over_many_seeds(aug_index):
    shapes = [(16, 1080, 1920, 3), (1, 16, 16, 3), (5, 17, 23, 3), (8, 360, 640, 3)]
    for seed in range(200):
        shape = shapes[seed % len(shapes)]
        params = draw_params(aug_index, seed, shape)
        assert params["aug_type"] == AUG_TYPES[aug_index]
        for op in params["ops"]:
            assert_op_in_bounds(op, shape)


def test_drawn_values_cover_their_ranges():
    angles = [draw_params(0, s, (4, 32, 32, 3))["ops"][0]["angle_deg"] for s in range(200)]
    assert min(angles) < -8.0 and max(angles) > 8.0
    reversals = {draw_params(8, s, (16, 32, 32, 3))["ops"][0]["reverse"] for s in range(50)}
    assert reversals == {True, False}
    drops = {len(draw_params(8, s, (16, 32, 32, 3))["ops"][0]["dropped"]) for s in range(200)}
    assert drops == {0, 1, 2, 3, 4}


def test_flip_mirrors_columns_and_flip_of_flip_is_identity():
    clip = random_clip((3, 17, 23, 3))
    flip = ops({"op": "flip", "direction": "horizontal"})
    flipped = apply_augmentation(clip, flip)
    assert np.array_equal(flipped, clip[:, :, ::-1])
    assert np.array_equal(apply_augmentation(flipped, flip), clip)


def test_rotation_by_zero_is_identity_and_by_90_matches_rot90():
    clip = random_clip((2, 17, 17, 3))
    assert np.array_equal(apply_augmentation(clip, ops({"op": "rotation", "angle_deg": 0.0})), clip)
    quarter = apply_augmentation(clip, ops({"op": "rotation", "angle_deg": 90.0}))
    assert np.array_equal(quarter, np.rot90(clip, 1, axes=(1, 2)))  # counter-clockwise


def test_rotation_zero_pads_the_corners():
    clip = np.full((1, 32, 32, 3), 200, np.uint8)
    out = apply_augmentation(clip, ops({"op": "rotation", "angle_deg": 10.0}))
    assert out[0, 0, 0].tolist() == [0, 0, 0] and out[0, 16, 16].tolist() == [200, 200, 200]


def jitter(brightness=1.0, contrast=1.0, saturation=1.0) -> dict:
    return ops(
        {
            "op": "color_jitter",
            "brightness": brightness,
            "contrast": contrast,
            "saturation": saturation,
        }
    )


def test_color_jitter_with_unit_factors_is_identity():
    clip = random_clip((3, 17, 23, 3))
    assert np.array_equal(apply_augmentation(clip, jitter()), clip)


def test_color_jitter_follows_pil_enhance_formulas():
    clip = random_clip((3, 16, 20, 3))
    bright = apply_augmentation(clip, jitter(brightness=1.2))
    assert np.array_equal(bright, np.clip(np.rint(clip * 1.2), 0, 255).astype(np.uint8))
    # contrast 0 collapses each frame to its (rounded) mean grey level
    flat = apply_augmentation(clip, jitter(contrast=0.0))
    grey = clip @ np.array([0.299, 0.587, 0.114])
    for k in range(3):
        assert np.unique(flat[k]).tolist() == [int(grey[k].mean() + 0.5)]
    # saturation 0 gives a grey image: all channels equal the pixel's luma
    washed = apply_augmentation(clip, jitter(saturation=0.0)).astype(int)
    assert np.array_equal(washed[..., 0], washed[..., 1])
    assert np.array_equal(washed[..., 0], washed[..., 2])
    assert np.abs(washed[..., 0] - grey).max() <= 1


def test_gaussian_noise_has_the_stored_sigma_and_differs_per_frame_and_seed():
    clip = np.full((4, 64, 64, 3), 128, np.uint8)
    out = apply_augmentation(clip, ops({"op": "gaussian_noise", "sigma": 6.0, "noise_seed": 1}))
    noise = out.astype(float) - 128
    assert abs(noise.mean()) < 0.1 and abs(noise.std() - 6.0) < 0.1
    assert not np.array_equal(out[0], out[1])
    other = apply_augmentation(clip, ops({"op": "gaussian_noise", "sigma": 6.0, "noise_seed": 2}))
    assert not np.array_equal(out, other)


def test_gaussian_noise_follows_its_documented_random_stream():
    # 78174 values: not a multiple of 4 and more than one 65536-value chunk
    clip = random_clip((2, 101, 129, 3))
    out = apply_augmentation(clip, ops({"op": "gaussian_noise", "sigma": 4.5, "noise_seed": 9}))
    bits = np.random.default_rng(9).bit_generator
    uniform = bits.random_raw(-(-clip.size // 4)).view(np.uint16)[: clip.size]
    quantiles = ndtri((uniform.astype(np.float64) + 0.5) / 65536.0)
    expected = clip.astype(int) + np.rint(4.5 * quantiles).astype(int).reshape(clip.shape)
    assert np.array_equal(out, np.clip(expected, 0, 255).astype(np.uint8))


def test_gaussian_noise_saturates_instead_of_wrapping():
    clip = np.zeros((1, 32, 32, 3), np.uint8)
    clip[0, :16] = 255
    out = apply_augmentation(clip, ops({"op": "gaussian_noise", "sigma": 10.0, "noise_seed": 3}))
    assert out[0, :16].min() > 180 and out[0, 16:].max() < 80


def test_gaussian_blur_keeps_flat_frames_and_smooths_noise():
    flat = np.full((2, 20, 20, 3), 77, np.uint8)
    blur = ops({"op": "gaussian_blur", "sigma": 2.0})
    assert np.array_equal(apply_augmentation(flat, blur), flat)
    clip = random_clip((2, 40, 40, 3))
    assert apply_augmentation(clip, blur).std() < 0.5 * clip.std()


def affine(tx=0.0, ty=0.0, scale=1.0, shear=0.0) -> dict:
    return ops(
        {"op": "affine", "translate_x": tx, "translate_y": ty, "scale": scale, "shear_deg": shear}
    )


def test_affine_identity_and_pure_translation():
    clip = random_clip((2, 16, 32, 3), low=1)
    assert np.array_equal(apply_augmentation(clip, affine()), clip)
    shifted = apply_augmentation(clip, affine(tx=0.25, ty=-0.25))  # 8 px right, 4 px up
    assert np.array_equal(shifted[:, :12, 8:], clip[:, 4:, :-8])
    assert (shifted[:, :, :8] == 0).all() and (shifted[:, 12:] == 0).all()


def elastic(alpha: float, sigma: float = 5.0, seed: int = 4) -> dict:
    return ops(
        {"op": "elastic", "alpha": alpha, "sigma": sigma, "reference_size": 256, "field_seed": seed}
    )


def test_elastic_with_alpha_zero_is_identity():
    clip = random_clip((3, 17, 23, 3))
    assert np.array_equal(apply_augmentation(clip, elastic(0.0)), clip)


def test_elastic_is_a_small_smooth_warp_with_one_field_per_clip():
    # a horizontal ramp: the value change measures the x displacement
    ramp = np.tile(np.linspace(0, 255, 256).astype(np.uint8)[None, :, None], (256, 1, 3))
    clip = np.stack([ramp, ramp])
    out = apply_augmentation(clip, elastic(40.0, sigma=4.0))
    assert np.array_equal(out[0], out[1])  # same field for every frame
    shift = np.abs(out[0].astype(int) - ramp)[:, 8:-8]
    assert 0.3 < shift.mean() < 3.0 and shift.max() < 10


def test_elastic_keeps_flat_frames_flat_at_any_size():
    flat = np.full((1, 16, 16, 3), 90, np.uint8)
    assert np.array_equal(apply_augmentation(flat, elastic(40.0, sigma=4.0)), flat)


def test_cutout_zeroes_exactly_the_stored_rectangles():
    clip = random_clip((3, 40, 50, 3), low=1)  # no zeros before the cutout
    for seed in range(20):
        out, params, _ = augment_clip(clip, f"cut_{seed}", 7)
        mask = np.zeros((40, 50), bool)
        for rect in params["ops"][0]["rects"]:
            mask[rect["y"] : rect["y"] + rect["h"], rect["x"] : rect["x"] + rect["w"]] = True
        assert (out[:, mask] == 0).all()
        assert np.array_equal(out[:, ~mask], clip[:, ~mask])


def test_temporal_keeps_k_frames_drops_at_most_a_quarter_and_reversal_reverses():
    k = 16
    clip = np.arange(k, dtype=np.uint8)[:, None, None, None] * np.ones((1, 16, 16, 3), np.uint8)
    seen_reverse = set()
    for seed in range(50):
        out, params, _ = augment_clip(clip, f"t_{seed}", 8)
        op = params["ops"][0]
        order = out[:, 0, 0, 0].tolist()
        assert len(out) == k and order == op["frame_indices"]
        assert len(set(order)) >= k - k // 4
        steps = np.diff(order)
        assert (steps <= 0).all() if op["reverse"] else (steps >= 0).all()
        seen_reverse.add(op["reverse"])
    assert seen_reverse == {True, False}
    backwards = ops({"op": "temporal", "frame_indices": list(range(k - 1, -1, -1))})
    assert np.array_equal(apply_augmentation(clip, backwards), clip[::-1])


def test_temporal_rejects_index_lists_of_the_wrong_length():
    with pytest.raises(ValueError):
        apply_augmentation(random_clip(), ops({"op": "temporal", "frame_indices": [0, 1, 2]}))


def test_temporal_on_a_single_frame_clip_keeps_it():
    clip = random_clip((1, 16, 16, 3))
    out, params, _ = augment_clip(clip, "one", 8)
    assert params["ops"][0]["frame_indices"] == [0] and np.array_equal(out, clip)


def test_combined_applies_two_or_three_spatial_ops_and_one_temporal_op_in_order():
    counts = set()
    clip = random_clip((4, 20, 24, 3))
    for seed in range(100):
        params = draw_params(9, seed, clip.shape)
        names = [op["op"] for op in params["ops"]]
        spatial = [n for n in names if n != "temporal"]
        assert names.count("temporal") == 1 and len(set(spatial)) == len(spatial)
        assert set(spatial) <= set(SPATIAL_OPS) and 2 <= len(spatial) <= 3
        counts.add(len(spatial))
        if seed < 10:
            step_by_step = clip
            for op in params["ops"]:
                step_by_step = apply_augmentation(step_by_step, ops(op))
            assert np.array_equal(apply_augmentation(clip, params), step_by_step)
    assert counts == {2, 3}


@pytest.mark.parametrize("shape", [(5, 17, 23, 3), (1, 16, 16, 3), (2, 31, 16, 3)])
def test_every_augmentation_preserves_shape_and_dtype_for_odd_sizes(shape):
    clip = random_clip(shape)
    for aug_index in range(N_AUGMENTATIONS):
        out, _, _ = augment_clip(clip, "odd", aug_index)
        assert out.shape == shape and out.dtype == np.uint8 and out.flags.c_contiguous


def test_different_videos_get_different_params():
    shape = (8, 64, 64, 3)
    for aug_index in range(N_AUGMENTATIONS):
        a = draw_params(aug_index, augmentation_seed("video_a", aug_index), shape)
        b = draw_params(aug_index, augmentation_seed("video_b", aug_index), shape)
        assert a["seed"] != b["seed"]
        if AUG_TYPES[aug_index] != "flip":  # a flip has no free parameter
            assert a["ops"] != b["ops"]


def test_apply_rejects_a_clip_of_another_shape_or_dtype():
    params = draw_params(0, 1, (4, 24, 32, 3))
    with pytest.raises(ValueError):
        apply_augmentation(random_clip((4, 24, 30, 3)), params)
    with pytest.raises(ValueError, match="uint8"):
        apply_augmentation(random_clip().astype(np.float32), params)
    with pytest.raises(ValueError):
        draw_params(10, 1, (4, 24, 32, 3))


def test_params_of_another_version_are_refused_not_misapplied():
    params = draw_params(0, 1, (4, 24, 32, 3))
    apply_augmentation(random_clip((4, 24, 32, 3)), params)
    with pytest.raises(ValueError, match="version 99 cannot be reproduced"):
        apply_augmentation(random_clip((4, 24, 32, 3)), {**params, "version": 99})
