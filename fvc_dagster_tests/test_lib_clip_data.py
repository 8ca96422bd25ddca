"""The clip data path: stored scaled clips or native windows of lossless clips to uint8
tensors, boxes, cached flow, loaders, and the augmentations that train networks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from fvc_dagster.lib.clips.augment import AUG_TYPES
from fvc_dagster.lib.clips.store import write_clip
from fvc_dagster.lib.models import get_spec, optical_flow
from fvc_dagster.lib.models.video_resnet import BoxPooled
from fvc_dagster.lib.training import clip_data
from fvc_dagster.lib.training.clip_data import (
    GRID,
    ClipDataset,
    grid_offset,
    make_loader,
    model_options,
    network_aug_indices,
    normalise_on_device,
    sample_indices,
)

K, CANVAS = 8, 64
BOX = dict(content_x=0, content_y=16, scaled_width=64, scaled_height=32)  # a 2:1 letterbox


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def letterboxed(n: int) -> np.ndarray:
    """K frames of a 64 x 64 canvas: black bars, a picture in the box whose green is 20 * frame
    number and whose texture moves one pixel right per frame."""
    rng = np.random.default_rng(n)
    texture = rng.integers(0, 255, (32, 80), dtype=np.uint8)
    frames = np.zeros((K, CANVAS, CANVAS, 3), np.uint8)
    for k in range(K):
        picture = frames[k, 16:48]
        picture[..., 0] = texture[:, 8 - k : 72 - k]
        picture[..., 1] = 20 * k + 10
        picture[..., 2] = 200
    return frames


@pytest.fixture
def rows(tmp_path):
    rows = []
    for n in range(4):
        path = tmp_path / "scaled" / f"v{n}" / f"c{n}.avi"
        sha = write_clip(letterboxed(n), path)
        label = "fake" if n % 2 else "real"
        rows.append(dict(clip_id=f"c{n}", path=str(path), sha256=sha, label=label, **BOX))
    return rows


def test_uniform_temporal_sampling():
    assert sample_indices(16, 16).tolist() == list(range(16))
    assert sample_indices(16, 4).tolist() == [2, 6, 10, 14]
    assert sample_indices(8, 4).tolist() == [1, 3, 5, 7]
    assert sample_indices(4, 8).tolist() == [0, 0, 1, 1, 2, 2, 3, 3]


def test_items_are_uint8_clips_of_the_model_size_cropped_to_the_picture(rows):
    data = ClipDataset(pd.DataFrame(rows), frames=4, pixels=32)
    item = data[1]
    assert item["clip"].shape == (3, 4, 32, 32) and item["clip"].dtype == torch.uint8
    assert item["label"].dtype == torch.float32 and item["label"].item() == 1.0
    assert data.labels.tolist() == [0.0, 1.0, 0.0, 1.0]
    assert set(item) == {"clip", "label"}
    green = item["clip"][1].float().mean((1, 2))  # the sampled frames 1, 3, 5, 7
    assert green.tolist() == [30.0, 70.0, 110.0, 150.0]
    assert (item["clip"][2] == 200).all()  # cropped: no bar pixel left


def test_without_crop_the_box_is_given_in_pixels_of_the_resized_frame(rows):
    data = ClipDataset.for_input(rows, "clip+box", frames=4, pixels=32)
    item = data[0]
    assert set(item) == {"clip", "label", "box"}
    assert item["box"].tolist() == [0.0, 8.0, 32.0, 16.0]
    blue = item["clip"][2, 0]
    assert (blue[:8] == 0).all() and (blue[24:] == 0).all() and (blue[8:24] == 200).all()


def test_box_pooled_with_the_data_paths_canvas_ignores_the_bars(rows):
    batch = next(iter(make_loader(ClipDataset.for_input(rows, "clip+box", 4, 32), 2)))
    clip = batch["clip"].float()
    torch.manual_seed(0)
    model = BoxPooled(nn.Conv3d(3, 8, 1), dim=8, dropout=0.0, **model_options("clip+box", 32))
    model.eval()
    painted = clip.clone()
    painted[..., :8, :] = 255.0  # the top bar
    with torch.no_grad():
        torch.testing.assert_close(model(painted, batch["box"]), model(clip, batch["box"]))


def test_unscaled_rows_without_a_box_are_used_whole(tmp_path):
    path = tmp_path / "c.avi"
    write_clip(letterboxed(0), path)
    item = ClipDataset([dict(path=str(path), label=0)], 4, 16, with_box=True)[0]
    assert item["box"].tolist() == [0.0, 0.0, 16.0, 16.0]
    assert item["clip"].shape == (3, 4, 16, 16)


def test_a_bad_label_or_box_is_an_error(rows):
    with pytest.raises(ValueError, match="label"):
        ClipDataset([{**rows[0], "label": "unknown"}], 4, 32)
    with pytest.raises(ValueError, match="does not fit"):
        ClipDataset([{**rows[0], "content_y": 40}], 4, 32)[0]


def test_clips_are_decoded_once_and_served_from_memory(rows, monkeypatch):
    reads = []
    real = clip_data.read_clip
    monkeypatch.setattr(clip_data, "read_clip", lambda p: reads.append(p) or real(p))
    data = ClipDataset(rows, 4, 32)
    loader = make_loader(data, 2, shuffle=True)
    first = [b["clip"] for b in loader]
    for _ in range(2):
        list(loader)
    assert len(reads) == len(rows)
    uncached = ClipDataset(rows, 4, 32, cache_clips=False)
    assert torch.equal(uncached[0]["clip"], data[0]["clip"])
    assert len(first) == 2


def counting_flow():
    """`optical_flow` that records the shape of every clip it is called on: (calls, function)."""
    calls = []

    def counting(clip):
        calls.append(clip.shape)
        return optical_flow(clip)

    return calls, counting


def test_flow_is_computed_once_per_clip_and_reused_from_its_file(rows, tmp_path):
    calls, counting = counting_flow()
    cache = tmp_path / "flow"
    data = ClipDataset.for_input(rows, "clip+flow", 4, 32, flow_cache_dir=cache, flow_fn=counting)
    loader = make_loader(data, 2, shuffle=True)
    for _ in range(3):
        batches = list(loader)
    assert len(calls) == len(rows) and calls[0] == (4, 32, 32, 3)
    flow = batches[0]["flow"]
    assert flow.shape == (2, 2, 3, 32, 32) and flow.dtype == torch.float32
    assert len(list(cache.glob("*.npy"))) == len(rows)

    again = ClipDataset.for_input(rows, "clip+flow", 4, 32, flow_cache_dir=cache, flow_fn=counting)
    item = again[0]
    assert len(calls) == len(rows)  # read from the .npy files, not recomputed
    frames, _ = again.clip(0)
    expected = optical_flow(frames).astype(np.float16).astype(np.float32)
    np.testing.assert_array_equal(item["flow"].permute(1, 2, 3, 0).numpy(), expected)
    assert float(item["flow"][0].mean()) > 0.5  # the texture moves right


def test_normalisation_happens_after_the_transfer_and_leaves_other_keys():
    batch = {"clip": torch.full((2, 3, 1, 2, 2), 255, dtype=torch.uint8), "label": torch.ones(2)}
    out = normalise_on_device(batch, mean=(0.5, 0.5, 0.0), std=(0.5, 0.25, 1.0))
    assert out["clip"].dtype == torch.float32
    assert out["clip"][0, :, 0, 0, 0].tolist() == [1.0, 2.0, 1.0]
    assert out["label"] is batch["label"] and batch["clip"].dtype == torch.uint8
    assert clip_data.normaliser(get_spec("x3d").normalisation)(batch)["clip"].dtype == torch.float32


def test_the_loader_order_is_fixed_by_its_seed(rows):
    data = ClipDataset(rows * 4, 2, 8)

    def order(seed):
        return [b["clip"][:, 0, 0, 0, 0].tolist() + b["label"].tolist()
                for b in make_loader(data, 4, shuffle=True, seed=seed)]  # fmt: skip

    assert order(0) == order(0)
    assert order(0) != order(1)
    assert make_loader(data, 4).num_workers == 0


# -- native windows of lossless clips -------------------------------------------------------

NATIVE_W, NATIVE_H = 56, 40


def native_clip(n: int) -> np.ndarray:
    """K random frames of 56 x 40: every pixel value is arbitrary, so any resampling shows."""
    return np.random.default_rng(100 + n).integers(0, 256, (K, NATIVE_H, NATIVE_W, 3), np.uint8)


@pytest.fixture
def native_rows(tmp_path):
    rows = []
    for n in range(3):
        path = tmp_path / "clips" / f"v{n}" / f"v{n}__orig.avi"
        sha = write_clip(native_clip(n), path)
        label = "fake" if n % 2 else "real"
        rows.append(dict(clip_id=f"v{n}__orig", path=str(path), sha256=sha, label=label))
    return rows


def stored_window(n: int, frames: int, pixels: int, x: int, y: int) -> np.ndarray:
    """The stored pixels an item should hold, (3, T, P, P), cut with numpy from the frames."""
    clip = native_clip(n)[sample_indices(K, frames)]
    return clip[:, y : y + pixels, x : x + pixels].transpose(3, 0, 1, 2)


def test_native_centre_windows_are_the_stored_pixels_on_the_grid(native_rows):
    data = ClipDataset.for_input(native_rows, "clip", frames=4, pixels=16, source="native")
    # (56 - 16) / 2 = 20 and (40 - 16) / 2 = 12: the grid starts nearest them, halves up
    assert (grid_offset(NATIVE_W, 16, "centre"), grid_offset(NATIVE_H, 16, "centre")) == (24, 16)
    for n in range(3):
        item = data[n]
        assert item["clip"].dtype == torch.uint8 and set(item) == {"clip", "label"}
        np.testing.assert_array_equal(item["clip"].numpy(), stored_window(n, 4, 16, 24, 16))
    assert torch.equal(data[0]["clip"], data[0]["clip"])  # fixed, read after read
    assert data.labels.tolist() == [0.0, 1.0, 0.0]


def test_native_random_windows_vary_between_draws_but_stay_on_the_grid(native_rows):
    data = ClipDataset(native_rows, 4, 16, source="native", crops="random")

    def offsets(draws: int) -> list[tuple[int, int]]:
        found = []
        for _ in range(draws):
            item = data[1]["clip"].numpy()
            for y in range(0, NATIVE_H - 16 + 1, GRID):
                for x in range(0, NATIVE_W - 16 + 1, GRID):
                    if np.array_equal(item, stored_window(1, 4, 16, x, y)):
                        found.append((x, y))
                        break
                else:
                    continue
                break
        assert len(found) == draws  # every window is a grid-aligned copy of stored pixels
        return found

    np.random.seed(0)
    first = offsets(20)
    assert len(set(first)) > 3 and {x for x, _ in first} <= {0, 8, 16, 24, 32, 40}
    np.random.seed(0)
    assert offsets(20) == first  # numpy's global RNG (the trainer seeds and checkpoints it)
    state = np.random.get_state()
    later = offsets(5)
    np.random.set_state(state)
    assert offsets(5) == later  # restored as a resumed run restores it


def test_train_and_validation_views_share_one_decode(native_rows, monkeypatch):
    reads = []
    real = clip_data.read_clip
    monkeypatch.setattr(clip_data, "read_clip", lambda p: reads.append(p) or real(p))
    train = ClipDataset.for_input(native_rows, "clip", 4, 16, source="native", crops="random")
    validation = train.with_crops("centre")
    for _ in range(3):
        list(make_loader(train, 2, shuffle=True))
        list(make_loader(validation, 2))
    assert len(reads) == len(native_rows)
    assert (train.crops, validation.crops) == ("random", "centre")
    np.testing.assert_array_equal(validation[2]["clip"].numpy(), stored_window(2, 4, 16, 24, 16))


def test_a_clip_smaller_than_the_window_is_padded_at_the_bottom_right(native_rows):
    data = ClipDataset.for_input(native_rows, "clip+box", 4, 48, source="native")
    item = data[0]  # 56 x 40 under a 48 px window: x at the grid start nearest 4 (8), y at 0
    clip = item["clip"].numpy()
    np.testing.assert_array_equal(clip[:, :, :40, :], stored_window(0, 4, 48, 8, 0))
    assert (clip[:, :, 40:, :] == 0).all()  # the rows past the frame are black
    assert item["box"].tolist() == [0.0, 0.0, 48.0, 40.0]  # the real pixels, for BoxPooled
    tiny = ClipDataset([{"frames": native_clip(0)[:, :5, :7], "label": 1}], 2, 8, source="native")
    assert tiny[0]["clip"].shape == (3, 2, 8, 8)
    random_tiny = tiny.with_crops("random")
    assert torch.equal(random_tiny[0]["clip"], tiny[0]["clip"])  # one place only: offset 0


def test_native_flow_is_of_the_window_and_cached_for_centre_windows_only(native_rows, tmp_path):
    calls, counting = counting_flow()
    cache = tmp_path / "flow"
    data = ClipDataset.for_input(native_rows, "clip+flow", 4, 16, source="native",
                                 flow_cache_dir=cache, flow_fn=counting)  # fmt: skip
    item = data[0]
    assert item["flow"].shape == (2, 3, 16, 16) and calls == [(4, 16, 16, 3)]
    data[0]
    assert len(calls) == 1 and len(list(cache.glob("*.npy"))) == 1
    train = data.with_crops("random")
    train[0], train[0]
    assert len(calls) == 3 and len(list(cache.glob("*.npy"))) == 1


def test_bad_sources_and_placements_are_errors(native_rows, rows):
    with pytest.raises(ValueError, match="source"):
        ClipDataset(native_rows, 4, 16, source="resized")
    with pytest.raises(ValueError, match="native clips only"):
        ClipDataset(rows, 4, 16, crops="random")
    with pytest.raises(ValueError, match="native clips only"):
        ClipDataset(rows, 4, 16).with_crops("random")
    with pytest.raises(ValueError, match="grid"):
        clip_data.native_window(native_clip(0), 16, 4, 0)


def test_the_scaled_path_is_the_default_and_unchanged(rows):
    default = ClipDataset.for_input(rows, "clip", 4, 32)
    scaled = ClipDataset.for_input(rows, "clip", 4, 32, source="scaled")
    frames = clip_data.read_clip(rows[1]["path"])
    box = (BOX["content_x"], BOX["content_y"], BOX["scaled_width"], BOX["scaled_height"])
    expected = clip_data.prepare_clip(frames, 4, 32, box, crop=True)[0]
    for data in (default, scaled):
        assert data.source == "scaled"
        np.testing.assert_array_equal(data[1]["clip"].permute(1, 2, 3, 0).numpy(), expected)


def test_networks_train_on_the_original_and_the_named_augmentations():
    assert network_aug_indices([]) == (-1,)
    assert network_aug_indices(["temporal", "flip", "flip"]) == (-1, 1, 8)
    assert network_aug_indices(AUG_TYPES) == (-1, *range(10))
    with pytest.raises(ValueError, match="unknown augmentations \\['blur'\\]"):
        network_aug_indices(["flip", "blur"])
