"""Frozen-backbone clip embeddings: every backbone's width and determinism on tiny clips, its
pretrained trunk from a checkpoint file, and XGBoost fit on a fold's training clips only."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from torchvision.models import get_model

from conftest import with_test_rows
from fvc_dagster.lib.clips.store import write_clip
from fvc_dagster.lib.clips.video_clips import ORIGINAL
from fvc_dagster.lib.models import WeightsMissing, build_model, models_of
from fvc_dagster.lib.training.embeddings import (
    BACKBONES,
    EMBEDDING_COLUMNS,
    EmbeddingFold,
    backbone_embeddings,
    clip_embedders,
    embedding_fold,
    embedding_model,
    embedding_network,
    fit_embedding_model,
)
from fvc_dagster.lib.training.fold_data import assign_clips

WIDTHS = {"pretrained_inception": 512, "i3d": 2048, "r2plus1d": 512, "vit_gru": 256,
          "vit_transformer": 768}  # fmt: skip


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> pd.DataFrame:
    """Three scaled clips of one video: 8 frames of a 64 px canvas, the picture in a 64 x 32 box."""
    folder = tmp_path_factory.mktemp("scaled")
    rng = np.random.default_rng(0)
    rows = []
    for n in range(3):
        path = folder / f"clip{n}.avi"
        sha256 = write_clip(rng.integers(0, 256, (8, 64, 64, 3), np.uint8), path)
        rows.append(
            {"video_id": "video", "clip_id": f"clip{n}", "aug_index": n, "sha256": sha256,
             "path": str(path), "content_x": 0, "content_y": 16, "scaled_width": 64,
             "scaled_height": 32}
        )  # fmt: skip
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def embedders():
    """Every backbone with random weights at 4 frames x 32 px, two clips a batch."""
    return clip_embedders(BACKBONES, "random", frames=4, pixels=32, batch_size=2)


def test_each_backbone_embeds_clips_at_its_width_with_the_same_bits_every_time(embedders, clips):
    # each its own network's trunk: the ViT rows through their GRU and temporal encoder
    assert [e.backbones for e in embedders] == [(b,) for b in BACKBONES]
    for embedder in embedders:
        first = embedder.embed(clips)
        assert first.shape == (3, WIDTHS[embedder.backbones[0]]) and first.dtype == np.float32
        assert np.isfinite(first).all() and np.array_equal(first, embedder.embed(clips))
        assert not np.array_equal(first[0], first[1])


def test_rows_hold_one_embedding_per_clip_and_backbone(embedders, clips):
    rows = pd.concat([embedder.rows(clips) for embedder in embedders[-2:]])
    assert list(rows.columns) == EMBEDDING_COLUMNS and len(rows) == 6
    assert set(rows["backbone"]) == {"vit_gru", "vit_transformer"}
    settings = rows[["weights", "frames", "pixels"]].drop_duplicates().to_dict("records")
    assert settings == [{"weights": "random", "frames": 4, "pixels": 32}]
    gru, transformer = (np.stack(part["embedding"]) for _, part in rows.groupby("backbone"))
    assert gru.shape == (3, 256) and transformer.shape == (3, 768)  # two networks, two trunks
    assert gru.dtype == np.float32


def test_random_weights_are_drawn_from_one_seed_and_leave_the_global_generator_alone():
    state = torch.random.get_rng_state()
    first, second = (embedding_network("r2plus1d", "random").state_dict() for _ in range(2))
    assert torch.equal(torch.random.get_rng_state(), state)
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert not any(p.requires_grad for p in embedding_network("r2plus1d", "random").parameters())


def test_the_pretrained_trunk_is_the_checkpoint_file(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(WeightsMissing, match="r3d_18-b3b3357e.pth"):
        embedding_network("pretrained_inception", "pretrained")
    state = get_model("r3d_18").state_dict()
    path = tmp_path / "hub" / "checkpoints" / "r3d_18-b3b3357e.pth"
    path.parent.mkdir(parents=True)
    torch.save(state, path)
    backbone = [v for k, v in state.items() if not k.startswith("fc.")]
    for trunk in (
        embedding_network("pretrained_inception", "pretrained"),
        embedding_network("pretrained_inception", "pretrained", weights_file=str(path)),
    ):
        loaded = trunk.features.state_dict().values()  # r3d_18's stem and layers, in order
        assert all(torch.equal(a, b) for a, b in zip(loaded, backbone, strict=True))


def test_an_embedding_model_is_no_network_to_train():
    assert {embedding_model(b) for b in BACKBONES} == set(models_of("embedding"))
    with pytest.raises(ValueError, match="XGBoost model on the clip embeddings of the frozen i3d"):
        build_model("xgboost_i3d")
    with pytest.raises(KeyError, match="unknown backbone 'x3d'"):
        embedding_network("x3d", "random")


def fold_tables(embedding_dim: int = 4) -> tuple[pd.DataFrame, pd.DataFrame]:
    """`training_clips` of two folds of six videos, alternately fake and real (clip `v3_0` is
    video v3's original, `v3_1` an augmented copy), and `clip_embeddings` rows whose first
    dimension is the label."""
    labels = ["fake", "real"] * 6
    folds = pd.DataFrame({"video_id": [f"v{n}" for n in range(12)], "fold": [0] * 6 + [1] * 6,
                          "label": labels})  # fmt: skip
    clips = pd.DataFrame(
        {"video_id": np.repeat(folds["video_id"], 2), "aug_index": [ORIGINAL, 0] * 12}
    )
    clips["clip_id"] = clips["video_id"] + ["_0", "_1"] * 12
    vectors = np.random.default_rng(0).standard_normal((24, embedding_dim)).astype(np.float32)
    vectors[:, 0] = np.repeat(folds["label"] == "fake", 2) * 10
    embeddings = clips[["clip_id"]].assign(
        backbone="i3d", weights="random", frames=4, pixels=32, embedding=list(vectors)
    )
    return assign_clips(clips, folds, 2), embeddings


def test_xgboost_fits_the_fold_s_training_clips_and_scores_its_validation_clips():
    training, table = fold_tables()
    embeddings, setting = backbone_embeddings(table, "i3d")
    assert setting == {"weights": "random", "frames": 4, "pixels": 32}
    fold = embedding_fold(training, embeddings, 0)
    assert set(fold.train["video_id"]) == {f"v{n}" for n in range(6, 12)} and len(fold.train) == 12
    assert fold.validation["clip_id"].tolist() == [f"v{n}_0" for n in range(6)]
    fit = fit_embedding_model(embedding_model("i3d"), fold)
    assert fit.classifier.n_features_in_ == 4 and fit.scores["roc_auc"] == 1.0
    assert (fit.probabilities[::2] > 0.5).all() and (fit.probabilities[1::2] < 0.5).all()
    assert np.array_equal(
        fit.probabilities, fit_embedding_model(embedding_model("i3d"), fold).probabilities
    )


def test_test_rows_are_neither_fit_nor_scored_by_the_embedding_models():
    training, embeddings = fold_tables()
    for fold in (0, 1):
        plain = embedding_fold(training, embeddings, fold)
        with_test = embedding_fold(with_test_rows(training), embeddings, fold)
        pd.testing.assert_frame_equal(plain.train, with_test.train)
        pd.testing.assert_frame_equal(plain.validation, with_test.validation)
        assert plain.test.empty and len(with_test.test)
        fit = fit_embedding_model(embedding_model("i3d"), with_test)
        assert len(fit.test_probabilities) == len(with_test.test)
        if fold == 0:  # its test rows are its validation clips again, scored alike
            np.testing.assert_array_equal(fit.test_probabilities, fit.probabilities)


def test_a_fold_of_one_class_or_without_embeddings_is_refused():
    training, embeddings = fold_tables()
    with pytest.raises(ValueError, match="2 clips of fold 1 have no embedding"):
        embedding_fold(training, embeddings[~embeddings["clip_id"].isin(["v0_0", "v0_1"])], 1)
    fold = embedding_fold(training, embeddings, 0)
    fakes_only = EmbeddingFold(fold.train[fold.train["label"] == "fake"], fold.validation)
    with pytest.raises(ValueError, match="single class"):
        fit_embedding_model(embedding_model("i3d"), fakes_only)


def test_embeddings_of_a_missing_backbone_or_of_mixed_settings_are_refused():
    _, embeddings = fold_tables()
    with pytest.raises(ValueError, match="no rows for backbone 'r2plus1d'"):
        backbone_embeddings(embeddings, "r2plus1d")
    mixed = embeddings.assign(pixels=[32] * 23 + [64])
    with pytest.raises(ValueError, match="2 settings"):
        backbone_embeddings(mixed, "i3d")
