from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from conftest import tiny_vae
from fvc_dagster.lib.clips.scaling import (
    TARGET_SIZE,
    ScaledClip,
    VaeScaler,
    VaeWeightsMissing,
    content_size,
    is_out_of_memory,
    letterbox,
    vae_content_size,
)


def random_clip(k: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (k, height, width, 3), dtype=np.uint8)


def flat_clip(k: int, height: int, width: int, colour=(10, 200, 30)) -> np.ndarray:
    return np.broadcast_to(np.array(colour, np.uint8), (k, height, width, 3)).copy()


def assert_bars_black(scaled: ScaledClip) -> None:
    x, y, w, h = scaled.content_box
    outside = np.ones(scaled.frames.shape[1:3], bool)
    outside[y : y + h, x : x + w] = False
    assert (scaled.frames[:, outside] == 0).all()


@pytest.fixture(scope="module")
def vae_dir(tiny_vae_dir: Path) -> Path:
    return tiny_vae_dir


@pytest.fixture(scope="module")
def scaler(vae_dir: Path) -> VaeScaler:
    return VaeScaler.from_directory(vae_dir, device="cpu", batch_size=2)


# --- content_size -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        ((1920, 1080), (256, 144)),  # landscape
        ((640, 360), (256, 144)),
        ((1080, 1920), (144, 256)),  # portrait
        ((500, 500), (256, 256)),  # square
        ((16, 9), (256, 144)),  # tiny inputs are upscaled
        ((1, 1), (256, 256)),
        ((101, 37), (256, 94)),  # 93.78 -> 94
        ((640, 427), (256, 171)),  # 170.8 -> 171
        ((512, 3), (256, 2)),  # 1.5 rounds half up
        ((10000, 1), (256, 1)),  # never below 1
    ],
)
def test_content_size_fits_the_longest_side_to_target_keeping_aspect(size, expected):
    assert content_size(*size) == expected


def test_content_size_honours_a_custom_target_and_rejects_empty_frames():
    assert content_size(1920, 1080, target=128) == (128, 72)
    with pytest.raises(ValueError):
        content_size(0, 10)


def test_vae_content_size_rounds_down_to_multiples_of_8():
    assert vae_content_size(1920, 1080) == (256, 144)
    assert vae_content_size(101, 37) == (256, 88)
    assert vae_content_size(10000, 1) == (256, 8)  # at least 8


# --- letterbox -------------------------------------------------------------------------------


def test_letterbox_upscales_a_small_landscape_clip_into_a_centred_box():
    clip = random_clip(3, 90, 160)
    scaled = letterbox(clip)
    assert scaled.frames.shape == (3, TARGET_SIZE, TARGET_SIZE, 3)
    assert scaled.frames.dtype == np.uint8
    assert (scaled.method, scaled.fallback_reason) == ("letterbox", None)
    assert scaled.original_size == (160, 90)
    assert scaled.content_box == (0, 56, 256, 144)
    assert_bars_black(scaled)
    for frame, original in zip(scaled.frames, clip, strict=True):
        expected = cv2.resize(original, (256, 144), interpolation=cv2.INTER_CUBIC)
        np.testing.assert_array_equal(frame[56:200], expected)


def test_letterbox_downscales_with_inter_area():
    clip = random_clip(2, 540, 960, seed=1)
    scaled = letterbox(clip)
    assert scaled.content_box == (0, 56, 256, 144)
    for frame, original in zip(scaled.frames, clip, strict=True):
        expected = cv2.resize(original, (256, 144), interpolation=cv2.INTER_AREA)
        np.testing.assert_array_equal(frame[56:200], expected)


def test_letterbox_pillarboxes_a_portrait_clip():
    scaled = letterbox(random_clip(1, 100, 50))
    assert scaled.original_size == (50, 100)
    assert scaled.content_box == (64, 0, 128, 256)
    assert_bars_black(scaled)
    assert scaled.frames[0, :, :64].max() == 0 and scaled.frames[0, :, 192:].max() == 0


def test_letterbox_keeps_a_flat_colour_inside_the_box_and_black_bars_outside():
    for height, width in [(48, 64), (480, 270), (37, 101)]:
        scaled = letterbox(flat_clip(2, height, width))
        x, y, w, h = scaled.content_box
        inside = scaled.frames[:, y : y + h, x : x + w].reshape(-1, 3)
        assert (inside == (10, 200, 30)).all()
        assert_bars_black(scaled)
        assert abs(w / h - width / height) <= max(width / height, height / width) / min(w, h)


def test_letterbox_of_a_white_clip_has_exactly_black_bars():
    scaled = letterbox(flat_clip(1, 300, 400, colour=(255, 255, 255)))
    assert scaled.content_box == (0, 32, 256, 192)
    assert (scaled.frames[0, 32:224] == 255).all()
    assert scaled.frames[0, :32].max() == 0 and scaled.frames[0, 224:].max() == 0


def test_letterbox_of_a_square_target_sized_clip_is_the_clip():
    clip = random_clip(2, 256, 256)
    scaled = letterbox(clip)
    assert scaled.content_box == (0, 0, 256, 256)
    np.testing.assert_array_equal(scaled.frames, clip)


def test_letterbox_rejects_non_clips():
    with pytest.raises(ValueError, match="uint8"):
        letterbox(np.zeros((1, 8, 8, 3), np.float32))
    with pytest.raises(ValueError, match="K, H, W, 3"):
        letterbox(np.zeros((8, 8, 3), np.uint8))


# --- VAE ---------------------------------------------------------------------------------------


def test_vae_scaler_loads_a_saved_autoencoder_and_scales_into_the_canvas(scaler: VaeScaler):
    clip = random_clip(2, 45, 100, seed=2)
    scaled = scaler.scale(clip)
    assert scaled.frames.shape == (2, 256, 256, 3) and scaled.frames.dtype == np.uint8
    assert (scaled.method, scaled.fallback_reason) == ("vae", None)
    assert scaled.original_size == (100, 45)
    # content_size gives 256x115; the VAE box is rounded down to 256x112 and centred.
    assert scaled.content_box == (0, 72, 256, 112)
    assert_bars_black(scaled)
    assert scaled.frames[:, 72:184].std() > 0  # the picture is there, not a blank box


def test_vae_scaler_runs_in_fp32_eval_mode_on_cpu(scaler: VaeScaler):
    assert scaler.device.type == "cpu" and scaler.dtype == torch.float32
    assert not scaler.vae.training
    assert next(scaler.vae.parameters()).dtype == torch.float32


def test_vae_scaling_is_deterministic_and_independent_of_batching(vae_dir: Path):
    clip = random_clip(5, 64, 47, seed=3)
    by_two = VaeScaler.from_directory(vae_dir, device="cpu", batch_size=2)
    by_eight = VaeScaler.from_directory(vae_dir, device="cpu", batch_size=8)
    first = by_two.scale(clip, target=64)
    assert first.frames.shape == (5, 64, 64, 3)
    np.testing.assert_array_equal(first.frames, by_two.scale(clip, target=64).frames)
    assert first.content_box == (12, 0, 40, 64)  # 47 wide, rounded down to 40
    assert_bars_black(first)
    diff = np.abs(first.frames.astype(int) - by_eight.scale(clip, target=64).frames.astype(int))
    assert diff.max() <= 1


def test_vae_scaler_loads_the_vae_subfolder_of_a_stable_diffusion_folder(
    tmp_path: Path, scaler: VaeScaler
):
    tiny_vae().save_pretrained(tmp_path / "sd" / "vae")
    (tmp_path / "sd" / "model_index.json").write_text('{"_class_name": "StableDiffusionPipeline"}')
    from_sd = VaeScaler.from_directory(tmp_path / "sd", device="cpu")
    clip = random_clip(2, 32, 32, seed=4)
    np.testing.assert_array_equal(
        from_sd.scale(clip, target=64).frames, scaler.scale(clip, target=64).frames
    )


def test_vae_scaler_loads_from_the_local_hugging_face_cache(tmp_path: Path, monkeypatch):
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hf" / "hub" / "models--someone--tiny-vae"
    tiny_vae().save_pretrained(repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HUGGINGFACE_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    loaded = VaeScaler.from_directory(None, device="cpu", cache_id="someone/tiny-vae")
    assert loaded.scale(random_clip(1, 16, 16), target=32).method == "vae"


def test_missing_weights_in_an_empty_directory_say_what_to_put_there(tmp_path: Path):
    with pytest.raises(VaeWeightsMissing) as info:
        VaeScaler.from_directory(tmp_path)
    message = str(info.value)
    assert isinstance(info.value, FileNotFoundError)
    assert str(tmp_path) in message
    assert "config.json" in message and "diffusion_pytorch_model.safetensors" in message
    assert f"save_pretrained('{tmp_path}')" in message
    assert "stabilityai/sd-vae-ft-mse" in message


def test_missing_weights_next_to_a_config_or_a_missing_directory_raise(tmp_path: Path):
    tiny_vae().save_config(tmp_path / "only-config")
    with pytest.raises(VaeWeightsMissing, match="only-config"):
        VaeScaler.from_directory(tmp_path / "only-config")
    with pytest.raises(VaeWeightsMissing, match="no such directory"):
        VaeScaler.from_directory(tmp_path / "nowhere")


def test_missing_weights_in_an_empty_hugging_face_cache_raise(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(VaeWeightsMissing) as info:
        VaeScaler.from_directory(None)
    message = str(info.value)
    assert "stabilityai/sd-vae-ft-mse" in message
    assert str(tmp_path / "cache") in message
    assert "huggingface-cli download" in message


def test_out_of_memory_falls_back_to_letterbox_for_that_clip(scaler: VaeScaler, monkeypatch):
    def out_of_memory(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(scaler.vae, "encode", out_of_memory)
    clip = random_clip(2, 45, 100, seed=5)
    scaled = scaler.scale(clip)
    assert scaled.method == "letterbox"
    assert scaled.fallback_reason is not None and "out of memory" in scaled.fallback_reason
    expected = letterbox(clip)
    np.testing.assert_array_equal(scaled.frames, expected.frames)
    assert scaled.content_box == expected.content_box == (0, 70, 256, 115)


def test_a_runtime_error_saying_out_of_memory_also_falls_back(scaler: VaeScaler, monkeypatch):
    def out_of_memory(*args, **kwargs):
        raise RuntimeError("CUDA error: out of memory")

    monkeypatch.setattr(scaler.vae, "decode", out_of_memory)
    scaled = scaler.scale(random_clip(1, 32, 32))
    assert scaled.method == "letterbox"
    assert scaled.fallback_reason == "vae out of memory: CUDA error: out of memory"


def test_other_vae_errors_propagate(scaler: VaeScaler, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("Given groups=1, weight of size [8, 3, 3, 3], expected 3 channels")

    monkeypatch.setattr(scaler.vae, "encode", broken)
    with pytest.raises(RuntimeError, match="expected 3 channels"):
        scaler.scale(random_clip(1, 32, 32))


def test_is_out_of_memory_recognises_only_memory_errors():
    assert is_out_of_memory(torch.cuda.OutOfMemoryError("CUDA out of memory"))
    assert is_out_of_memory(RuntimeError("CUDA error: out of memory"))
    assert not is_out_of_memory(RuntimeError("shape mismatch"))
    assert not is_out_of_memory(ValueError("out of memory"))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_vae_scaler_runs_in_fp16_on_cuda(vae_dir: Path):
    on_gpu = VaeScaler.from_directory(vae_dir, device="cuda")
    assert on_gpu.dtype == torch.float16
    assert next(on_gpu.vae.parameters()).dtype == torch.float16
    scaled = on_gpu.scale(random_clip(2, 45, 100))
    assert scaled.method == "vae" and scaled.content_box == (0, 72, 256, 112)
