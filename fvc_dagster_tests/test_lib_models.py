"""The model portfolio: every network builds, runs forward and backward on a tiny clip, and
loads its official checkpoint from $TORCH_HOME (files written here from freshly built models)."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
from torchvision.models import get_model

from fvc_dagster.cli import main
from fvc_dagster.lib.models import (
    KINDS,
    REGISTRY,
    WeightsMissing,
    baseline_pipeline,
    build_model,
    estimator,
    get_spec,
    models_of,
    optical_flow,
)
from fvc_dagster.lib.models.registry import resolve

NETWORKS = models_of("network")
BOXES = torch.tensor([[0.0, 64.0, 256.0, 128.0], [64.0, 0.0, 128.0, 256.0]])  # canvas pixels


@pytest.fixture(autouse=True)
def seeded(one_torch_thread):
    torch.manual_seed(0)


def inputs(name: str, frames: int = 4, pixels: int = 32) -> tuple[torch.Tensor, ...]:
    clip = torch.randn(2, 3, frames, pixels, pixels)
    kind = get_spec(name).input
    if kind == "clip+box":
        return clip, BOXES
    if kind == "clip+flow":
        return clip, torch.randn(2, 2, frames - 1, pixels, pixels)
    return (clip,)


def test_every_name_is_unique_and_a_valid_asset_name():
    names = [spec.name for spec in REGISTRY.values()]
    assert list(REGISTRY) == names and len(set(names)) == len(names)
    assert all(re.fullmatch(r"[a-z][a-z0-9_]*", name) for name in names)
    assert {spec.kind for spec in REGISTRY.values()} <= set(KINDS)
    assert all(spec.family and spec.family not in KINDS for spec in REGISTRY.values())


@pytest.mark.parametrize("name", NETWORKS)
def test_every_network_has_a_builder_a_recipe_and_weights_info(name):
    spec = get_spec(name)
    assert callable(resolve(spec, "builder")) and spec.estimator is None
    assert spec.recipe and spec.frames and spec.pixels
    assert spec.input.startswith("clip")
    # its weights and their normalisation, or the normalisation it is trained from scratch with
    mean, std = spec.normalisation
    assert len(mean) == len(std) == 3 and all(s > 0 for s in std)
    if spec.checkpoint is not None:
        assert (mean, std) == (spec.checkpoint.mean, spec.checkpoint.std)
        assert spec.checkpoint.dataset and spec.checkpoint.status()
    else:
        assert spec.scratch_normalisation is not None


@pytest.mark.parametrize("name", [n for n in REGISTRY if REGISTRY[n].kind != "network"])
def test_every_other_model_has_an_estimator_that_fits(name):
    spec = get_spec(name)
    assert spec.builder is None
    model = estimator(name, seed=0)
    x = np.random.default_rng(0).normal(size=(20, 3))
    y = np.arange(20) % 2
    assert model.fit(x, y).predict_proba(x).shape == (20, 2)


@pytest.mark.parametrize("name", models_of("tabular"))
def test_every_fitted_baseline_pipeline_holds_only_types_loading_trusts(name, tmp_path):
    import skops.io

    from fvc_dagster.lib.models.baselines import SKOPS_TRUSTED_TYPES, trusted_skops_types

    x = np.random.default_rng(0).normal(size=(40, 5))
    pipeline = baseline_pipeline(name, seed=0).fit(x, np.arange(40) % 2)
    file = tmp_path / "model.skops"
    skops.io.dump(pipeline, file)
    untrusted = skops.io.get_untrusted_types(file=file)
    assert set(untrusted) <= set(SKOPS_TRUSTED_TYPES), "add them to SKOPS_TRUSTED_TYPES"
    loaded = skops.io.load(file, trusted=trusted_skops_types(file))
    assert np.array_equal(loaded.predict_proba(x), pipeline.predict_proba(x))


def test_every_embedding_model_rests_on_a_network_with_a_trunk_and_every_trunk_has_one():
    backbones = [get_spec(m).backbone for m in models_of("embedding")]
    assert sorted(backbones) == sorted(n for n in NETWORKS if get_spec(n).trunk)
    for model in models_of("embedding"):
        spec, backbone = get_spec(model), get_spec(get_spec(model).backbone)
        assert (spec.frames, spec.pixels, spec.checkpoint) == (
            backbone.frames, backbone.pixels, backbone.checkpoint
        )  # fmt: skip
        assert spec.normalisation == backbone.normalisation


@pytest.mark.parametrize("name", NETWORKS)
def test_network_forward_and_backward_on_a_tiny_clip(name):
    model = build_model(name, weights="random")
    logits = model(*inputs(name))
    assert logits.shape == (2, 1) and logits.dtype == torch.float32
    torch.nn.functional.binary_cross_entropy_with_logits(logits, torch.ones(2, 1)).backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_variable_ar_cnn_ignores_the_bars():
    model = build_model("variable_ar_cnn").eval()
    clip, boxes = inputs("variable_ar_cnn")
    inside = torch.zeros(2, 1, 1, 32, 32, dtype=torch.bool)
    inside[0, ..., 8:24, :] = True  # box (0, 64, 256, 128) at 32/256 scale
    inside[1, ..., :, 8:24] = True
    repainted = torch.where(inside, clip, torch.rand_like(clip) * 10)
    with torch.no_grad():
        reference = model(clip, boxes)
        assert torch.equal(model(repainted, boxes), reference)
        assert not torch.allclose(model(torch.where(inside, -clip, clip), boxes), reference)


def test_optical_flow_shape_dtype_determinism_and_motion():
    rng = np.random.default_rng(0)
    texture = rng.integers(0, 255, (48, 48), np.uint8).repeat(4, 0).repeat(4, 1)
    clip = np.stack([np.stack([texture[t : t + 32, 2 * t : 2 * t + 32]] * 3, -1) for t in range(5)])
    flow = optical_flow(clip)
    assert flow.shape == (4, 32, 32, 2) and flow.dtype == np.float32
    assert np.array_equal(flow, optical_flow(clip))
    assert np.allclose(np.median(flow[:, 8:-8, 8:-8], axis=(0, 1, 2)), [-2, -1], atol=0.2)
    with pytest.raises(ValueError, match="T>=2"):
        optical_flow(clip[:1])


def fingerprints(state: dict) -> set:
    """Shape and leading values of each float tensor: enough to recognise a loaded weight."""
    return {
        (tuple(v.shape), tuple(v.flatten()[:8].tolist()))
        for v in state.values()
        if v.is_floating_point()
    }


def _official_state(name: str) -> dict:
    """The state dict an official checkpoint holds, from the library's own 400-class model."""
    from pytorchvideo.models import hub

    library = {
        "pretrained_inception": lambda: get_model("r3d_18"),
        "i3d": hub.i3d_r50,
        "x3d": hub.x3d_m,
        "slowfast_attention": hub.slowfast_r50,
    }[name]()
    return library.state_dict()


@pytest.mark.parametrize("name", ["pretrained_inception", "i3d", "x3d", "slowfast_attention"])
def test_pretrained_weights_load_from_torch_home(name, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    checkpoint = get_spec(name).checkpoint
    state = _official_state(name)
    path = tmp_path / "hub" / "checkpoints" / checkpoint.file
    path.parent.mkdir(parents=True)
    torch.save({checkpoint.key: state} if checkpoint.key else state, path)

    model = build_model(name, weights="pretrained")
    classifier = ".proj." if checkpoint.key else "fc."
    backbone = {k: v for k, v in state.items() if classifier not in k}
    assert fingerprints(backbone) <= fingerprints(model.state_dict())
    assert build_model(name, weights="pretrained", weights_file=path) is not None


def test_two_stream_flow_stem_is_the_rgb_mean(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    state = get_model("r3d_18").state_dict()
    torch.save(state, tmp_path / "r3d.pth")
    model = build_model("two_stream", weights="pretrained", weights_file=tmp_path / "r3d.pth")
    rgb = state["stem.0.weight"]
    assert torch.equal(model.rgb[0][0].weight, rgb)
    assert torch.allclose(
        model.flow[0][0].weight, rgb.mean(1, keepdim=True).expand(-1, 2, -1, -1, -1)
    )


def test_missing_weights_say_which_file_goes_where(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(WeightsMissing) as error:
        build_model("r2plus1d", weights="pretrained")
    message = str(error.value)
    assert "r2plus1d_18-91a641e6.pth" in message
    assert str(tmp_path / "hub" / "checkpoints") in message
    assert "https://download.pytorch.org/models/r2plus1d_18-91a641e6.pth" in message
    with pytest.raises(WeightsMissing, match="X3D_M.pyth"):
        build_model("x3d", weights="pretrained", weights_file=tmp_path / "nowhere.pyth")


def test_wrong_requests_are_errors_that_name_the_problem():
    with pytest.raises(KeyError, match="unknown model 'resnet3000'"):
        build_model("resnet3000")
    with pytest.raises(ValueError, match="'svm' is a tabular model, not a network"):
        build_model("svm")
    with pytest.raises(ValueError, match="'random' or 'pretrained'"):
        build_model("x3d", weights="imagenet")
    with pytest.raises(ValueError, match="weights_file"):
        build_model("x3d", weights_file="X3D_M.pyth")


def test_fvc_models_json_lists_the_networks_with_distinct_sizes(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    assert main(["models", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    counts = {n: rows[n]["parameters"] for n in NETWORKS}
    assert len(set(counts.values())) == len(NETWORKS)
    assert 2_900_000 < counts["x3d"] < 4_000_000
    assert 86_000_000 < counts["vit_gru"] < 88_000_000  # ViT-B/16 (86 M) + the GRU
    assert 120_000_000 < counts["timesformer"] < 122_000_000
    assert 33_000_000 < counts["slowfast"] < 35_000_000
    assert counts["pretrained_inception"] > 33_371_472  # r3d_18 with its 400-class fc
    assert rows["x3d"]["weights"] == f"put X3D_M.pyth in {tmp_path / 'hub' / 'checkpoints'}"
    assert rows["svm"]["parameters"] is None
    # the models on embeddings: their frozen trunk's size and checkpoint, no training recipe
    assert 33_000_000 < rows["xgboost_pretrained_inception"]["parameters"] < 33_371_472
    assert 86_000_000 < rows["xgboost_vit_gru"]["parameters"] < 88_000_000  # its ViT + GRU
    # each ViT embedding model embeds through its own network's trunk
    assert (
        86_000_000
        < rows["xgboost_vit_transformer"]["parameters"]
        != (rows["xgboost_vit_gru"]["parameters"])
    )
    assert rows["xgboost_i3d"]["weights"].startswith("put I3D_8x8_R50.pyth in")
    assert rows["xgboost_i3d"]["recipe"] is None and rows["xgboost_i3d"]["kind"] == "embedding"
    assert set(rows) == set(REGISTRY)  # every model, the ensemble too


def test_naive_cnn_reads_one_coding_block_per_feature_and_has_no_pretrained_weights():
    from fvc_dagster.lib.models.naive_cnn import GridCNN

    net = GridCNN(width=4).eval()
    frames = torch.rand(2, 3, 64, 48)
    # the 8 x 8 stride-8 layer: one feature per block of the window's 8-pixel grid
    assert net.features[:6](frames).shape == (2, 8, 8, 6)
    clip = torch.rand(2, 3, 4, 32, 32)
    model = build_model("naive_cnn").eval()
    per_frame = torch.stack([model.net(clip[:, :, t]) for t in range(4)], 1).mean(1)
    assert torch.allclose(model(clip), per_frame, atol=1e-6)  # logits averaged over frames
    with pytest.raises(ValueError, match="naive_cnn has no pretrained weights"):
        build_model("naive_cnn", weights="pretrained")
