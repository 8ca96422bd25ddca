"""The transformer networks in tiny configurations: one training step on clips of any size, and
their pretrained backbones from local files only (torchvision's file in $TORCH_HOME, Hugging Face
folders saved with `save_pretrained` or the Hugging Face cache)."""

from __future__ import annotations

import huggingface_hub.constants
import numpy as np
import pytest
import torch
from torch.utils.data import Dataset
from torchvision.models.vision_transformer import VisionTransformer
from transformers import (
    TimesformerConfig,
    TimesformerForVideoClassification,
    VivitConfig,
    VivitForVideoClassification,
)

from fvc_dagster.lib.models import WeightsMissing, build_model, get_spec
from fvc_dagster.lib.training.trainer import TrainConfig, fit

TINY_VIT = dict(image_size=32, num_layers=1, num_heads=2, hidden_dim=16, mlp_dim=32)
TINY_HF = dict(
    image_size=32, num_frames=4, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
    intermediate_size=32,
)  # fmt: skip
TINY = {
    "vit_gru": dict(TINY_VIT, gru_hidden=8),
    "vit_transformer": dict(TINY_VIT, frames=4, temporal_heads=2),
    "timesformer": TINY_HF,
    "vivit": TINY_HF,
}
VIVIT_CACHE = "models--google--vivit-b-16x2-kinetics400"


@pytest.fixture(autouse=True)
def offline(one_torch_thread, tmp_path, monkeypatch):
    """Empty weight folders: $TORCH_HOME and the Hugging Face cache under tmp_path."""
    torch.manual_seed(0)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))


class Clips(Dataset):
    """Random clips (3, 4, 32, 32), labelled 0 and 1 in turn."""

    def __init__(self, n: int):
        self.clips, self.labels = torch.randn(n, 3, 4, 32, 32), np.arange(n) % 2.0

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return {"clip": self.clips[i], "label": torch.tensor(self.labels[i], dtype=torch.float32)}


@pytest.mark.parametrize("name", list(TINY))
def test_one_training_step_on_clips_of_any_size(name, tmp_path):
    model = build_model(name, **TINY[name])
    for shape in [(2, 3, 4, 32, 32), (2, 3, 6, 48, 48)]:  # the configured size, then another
        logits = model(torch.randn(shape))
        assert logits.shape == (2, 1) and logits.dtype == torch.float32
    torch.nn.functional.binary_cross_entropy_with_logits(logits, torch.ones(2, 1)).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())

    before = {k: v.clone() for k, v in model.state_dict().items()}
    config = TrainConfig(epochs=1, batch_size=4, lr=1e-3, patience=None)
    (epoch,) = fit(model, Clips(4), Clips(2), config, tmp_path / "ckpt").history
    assert epoch["optimizer_steps"] == 1 and np.isfinite(epoch["train_loss"])
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())


@pytest.mark.parametrize(
    ("name", "file", "folder"),
    [
        ("vit_gru", "vit_b_16-c867db91.pth", "torch/hub/checkpoints"),
        ("vit_transformer", "vit_b_16-c867db91.pth", "torch/hub/checkpoints"),
        ("timesformer", "facebook/timesformer-base-finetuned-k400", "hf"),
        ("vivit", "google/vivit-b-16x2-kinetics400", "hf"),
    ],
)
def test_missing_weights_say_what_goes_where(name, file, folder, tmp_path):
    assert get_spec(name).checkpoint.status() == f"put {file} in {tmp_path / folder}"
    with pytest.raises(WeightsMissing) as error:
        build_model(name, weights="pretrained")
    assert f"put {file} in {tmp_path / folder}" in str(error.value)
    assert "nothing is downloaded" in str(error.value)
    with pytest.raises(WeightsMissing, match="nowhere"):
        build_model(name, weights="pretrained", weights_file=tmp_path / "nowhere")


def test_vit_loads_imagenet_weights_without_the_classifier_at_any_image_size(tmp_path):
    arch = {k: v for k, v in TINY_VIT.items() if k != "image_size"}
    vit = VisionTransformer(image_size=32, patch_size=16, **arch).eval()
    library = vit.state_dict()
    path = tmp_path / "torch" / "hub" / "checkpoints" / "vit_b_16-c867db91.pth"
    path.parent.mkdir(parents=True)
    torch.save(library, path)

    model = build_model("vit_gru", weights="pretrained", **TINY["vit_gru"])
    loaded = model.vit.state_dict()
    assert loaded.keys() == {k for k in library if not k.startswith("heads.")}
    assert all(torch.equal(loaded[k], library[k]) for k in loaded)
    assert model.head[-1].out_features == 1
    vit.heads = torch.nn.Identity()
    images = torch.randn(2, 3, 32, 32)
    assert torch.allclose(model.vit.eval()(images), vit(images))  # torchvision's class token

    wider = build_model("vit_transformer", weights="pretrained", **{**TINY_VIT, "image_size": 48})
    positions = wider.vit.encoder.pos_embedding
    assert positions.shape == (1, 1 + 3 * 3, 16)
    assert torch.equal(positions[:, 0], library["encoder.pos_embedding"][:, 0])
    assert torch.equal(wider.vit.conv_proj.weight, library["conv_proj.weight"])


def test_hugging_face_backbones_load_from_a_folder_or_the_cache(tmp_path):
    timesformer = TimesformerForVideoClassification(TimesformerConfig(**TINY_HF, num_labels=400))
    timesformer.save_pretrained(tmp_path / "timesformer")
    model = build_model(
        "timesformer", weights="pretrained", weights_file=tmp_path / "timesformer", **TINY_HF
    )
    assert_same(model.model.timesformer, timesformer.timesformer)
    assert model.model.classifier.out_features == 1

    vivit = VivitForVideoClassification(VivitConfig(**TINY_HF, num_labels=400))
    torch.nn.init.normal_(vivit.vivit.embeddings.position_embeddings)  # zeros when initialised
    snapshot = tmp_path / "hf" / VIVIT_CACHE / "snapshots" / "0123abc"
    vivit.save_pretrained(snapshot)
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("0123abc")
    assert get_spec("vivit").checkpoint.status() == f"found {snapshot}"
    model = build_model("vivit", weights="pretrained", **TINY_HF)
    assert_same(model.model.vivit, vivit.vivit)
    assert model.model.classifier.out_features == 1
    video = torch.randn(1, 4, 3, 32, 32)  # at the configured size: HF's own embeddings' output
    expected = vivit.vivit.eval()(video).last_hidden_state
    assert torch.allclose(model.model.vivit.eval()(video).last_hidden_state, expected)
    assert model(torch.randn(1, 3, 6, 48, 48)).shape == (1, 1)


def assert_same(a: torch.nn.Module, b: torch.nn.Module):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
