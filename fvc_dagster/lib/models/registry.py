"""The model portfolio: one row per model, and `build_model` to make any network from its row."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from fvc_dagster.lib.models.weights import (
    HubCheckpoint,
    Pretrained,
    imagenet_checkpoint,
    pytorchvideo_checkpoint,
    torchvision_checkpoint,
)

if TYPE_CHECKING:
    from torch import nn


@dataclass(frozen=True)
class Recipe:
    """Training defaults (AdamW, binary cross-entropy on the logit)."""

    lr: float = 1e-4
    batch_size: int = 8
    epochs: int = 15
    weight_decay: float = 1e-4


Kind = Literal["tabular", "network", "embedding", "ensemble"]
KINDS: tuple[Kind, ...] = ("tabular", "network", "embedding", "ensemble")
Normalisation = tuple[tuple[float, float, float], tuple[float, float, float]]
SPACE_TIME = (2, 3, 4)


@dataclass(frozen=True)
class Trunk:
    """What of a network embeds clips for its `xgboost_<network>` row: `cut` names the function
    ("module:function") that cuts it out of the built network, `dims` the output axes it is
    averaged over; networks with the same `arch` share their builder's layers and checkpoint,
    so they embed alike (and are embedded once)."""

    arch: str
    cut: str  # "module:function" of this package: network -> trunk module
    dims: tuple[int, ...] = SPACE_TIME


@dataclass(frozen=True)
class ModelSpec:
    """A registry row: the one place a model is described.

    `kind` says how it is trained and which asset makes it: "tabular" (an `estimator` on the
    clip features), "network" (a video network `builder` trained end to end), "embedding" (an
    `estimator` on the clip embeddings of the frozen trunk of the network `backbone`) or
    "ensemble" (an `estimator` stacking the other models' predictions); `family` is its
    architecture. `input`: "features", "clip" (B, 3, T, H, W), "clip+box" (also the content
    boxes, see `BoxPooled`), "clip+flow" (also the flow, see `TwoStream`), "embedding" or
    "predictions"; `frames` x `pixels` the default clip size. `builder` and `estimator` name
    "module:function" in this package (imported when used, so the table costs no torch or
    scikit-learn import): `builder(state_dict | None, **options)` makes the network,
    `estimator(seed, **options)` the unfitted classifier. A network's input is normalised with
    its checkpoint's mean and std, or `scratch_normalisation` when it has none; `trunk` says
    what of it embeds clips (each network with one has an `xgboost_<network>` row)."""

    name: str
    kind: Kind
    family: str
    input: Literal["features", "clip", "clip+box", "clip+flow", "embedding", "predictions"]
    builder: str | None = None
    estimator: str | None = None
    frames: int | None = None
    pixels: int | None = None
    recipe: Recipe | None = None
    checkpoint: Pretrained | None = None
    scratch_normalisation: Normalisation | None = None
    trunk: Trunk | None = None
    backbone: str | None = None
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def normalisation(self) -> Normalisation:
        """RGB mean and std (of [0, 1] pixels) the clips are normalised with: those of the
        weights it loads (its checkpoint, or its backbone's), else its own from-scratch ones."""
        if self.checkpoint is not None:
            return self.checkpoint.mean, self.checkpoint.std
        if self.scratch_normalisation is None:
            raise ValueError(f"{self.name} reads no clips: it has no normalisation")
        return self.scratch_normalisation


R3D = torchvision_checkpoint("r3d_18-b3b3357e.pth")
SLOWFAST = pytorchvideo_checkpoint("SLOWFAST_8x8_R50.pyth")
SMALL_BATCH = Recipe(batch_size=4)
TORCHVISION_CLIP = dict(frames=16, pixels=112)  # the Kinetics training size of these weights
PYTORCHVIDEO_CLIP = dict(frames=16, pixels=224)
VIT = imagenet_checkpoint("vit_b_16-c867db91.pth")
TRANSFORMER = Recipe(lr=5e-5, batch_size=4, weight_decay=0.05)
# The Hugging Face rows' clip sizes are those of their checkpoints and configs' defaults.
TIMESFORMER = HubCheckpoint(
    "facebook/timesformer-base-finetuned-k400", "Kinetics-400", mean=(0.45,) * 3, std=(0.225,) * 3
)
VIVIT = HubCheckpoint(
    "google/vivit-b-16x2-kinetics400", "Kinetics-400", mean=(0.5,) * 3, std=(0.5,) * 3
)


def _network(name: str, family: str, builder: str, **row: Any) -> ModelSpec:
    return ModelSpec(name, "network", family, row.pop("input", "clip"), builder, **row)


def _tabular(name: str, family: str) -> ModelSpec:
    return ModelSpec(name, "tabular", family, "features", estimator=f"baselines:{name}")


NETWORKS = [
    _network(
        "naive_cnn", "cnn2d", "naive_cnn:build_naive_cnn", frames=16, pixels=64,
        recipe=Recipe(lr=1e-3, batch_size=8, epochs=200),
        scratch_normalisation=((0.5,) * 3, (0.25,) * 3),  # [0, 1] centred
    ),
    _network(
        "pretrained_inception", "r3d", "video_resnet:build_inception", **TORCHVISION_CLIP,
        recipe=Recipe(), checkpoint=R3D,
        # r3d_18 up to layer4, without its InceptionHead3d: 512-d
        trunk=Trunk("r3d_18", "backbones:first_module"),
    ),
    _network(
        "variable_ar_cnn", "r3d", "video_resnet:build_box_pooled", input="clip+box",
        **TORCHVISION_CLIP, recipe=Recipe(), checkpoint=R3D,
    ),
    _network(
        "i3d", "i3d", "pytorchvideo_nets:build_i3d", **PYTORCHVIDEO_CLIP, recipe=SMALL_BATCH,
        checkpoint=pytorchvideo_checkpoint("I3D_8x8_R50.pyth"),
        trunk=Trunk("i3d_r50", "backbones:blocks_but_head"),  # I3D R50 without its head: 2048-d
    ),
    _network(
        "r2plus1d", "r2plus1d", "video_resnet:build_video_resnet", **TORCHVISION_CLIP,
        recipe=Recipe(), checkpoint=torchvision_checkpoint("r2plus1d_18-91a641e6.pth"),
        options={"arch": "r2plus1d_18"},
        trunk=Trunk("r2plus1d_18", "video_resnet:trunk"),  # up to layer4, without its fc: 512-d
    ),
    _network(
        "x3d", "x3d", "pytorchvideo_nets:build_x3d", **PYTORCHVIDEO_CLIP,
        recipe=Recipe(lr=5e-4, epochs=20, weight_decay=5e-5),
        checkpoint=pytorchvideo_checkpoint("X3D_M.pyth"),
    ),
    _network(
        "slowfast", "slowfast", "pytorchvideo_nets:build_slowfast", **PYTORCHVIDEO_CLIP,
        recipe=SMALL_BATCH, checkpoint=SLOWFAST,
    ),
    _network(
        "slowfast_attention", "slowfast", "pytorchvideo_nets:build_slowfast_attention",
        **PYTORCHVIDEO_CLIP, recipe=SMALL_BATCH, checkpoint=SLOWFAST,
    ),
    _network(
        "slowfast_multiscale", "slowfast", "pytorchvideo_nets:build_slowfast_multiscale",
        **PYTORCHVIDEO_CLIP, recipe=SMALL_BATCH, checkpoint=SLOWFAST,
    ),
    _network(
        "two_stream", "two-stream", "video_resnet:build_two_stream", input="clip+flow",
        **TORCHVISION_CLIP, recipe=Recipe(), checkpoint=R3D,
    ),
    _network(
        "vit_gru", "vit", "transformers:build_vit_gru", frames=16, pixels=224,
        recipe=TRANSFORMER, checkpoint=VIT,
        # ViT-B/16 on each frame into the GRU: its final hidden state (256-d)
        trunk=Trunk("vit_b_16_gru", "backbones:HeadInput", dims=()),
    ),
    _network(
        "vit_transformer", "vit", "transformers:build_vit_transformer", frames=16, pixels=224,
        recipe=TRANSFORMER, checkpoint=VIT,
        # ViT-B/16 on each frame into the temporal encoder, averaged over frames (768-d)
        trunk=Trunk("vit_b_16_transformer", "backbones:HeadInput", dims=()),
    ),
    _network(
        "timesformer", "timesformer", "transformers:build_timesformer", frames=8, pixels=224,
        recipe=TRANSFORMER, checkpoint=TIMESFORMER,
    ),
    _network(
        "vivit", "vivit", "transformers:build_vivit", frames=32, pixels=224,
        recipe=TRANSFORMER, checkpoint=VIVIT,
    ),
]  # fmt: skip


def _on_embeddings(backbone: ModelSpec) -> ModelSpec:
    """XGBoost (the tabular baseline's settings) on the clip embeddings of `backbone`'s frozen
    trunk, at its clip size and from its checkpoint."""
    return ModelSpec(
        f"xgboost_{backbone.name}", "embedding", "gradient-boosting", "embedding",
        estimator="baselines:xgboost", frames=backbone.frames, pixels=backbone.pixels,
        checkpoint=backbone.checkpoint, backbone=backbone.name,
    )  # fmt: skip


REGISTRY: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in [
        _tabular("logistic_regression", "linear"),
        _tabular("svm", "kernel"),
        _tabular("xgboost", "gradient-boosting"),
        *NETWORKS,
        *(_on_embeddings(network) for network in NETWORKS if network.trunk),
        # A non-negative logistic regression on the logits of the tabular and embedding models'
        # out-of-fold predictions (`lib.training.ensemble`).
        ModelSpec(
            "ensemble", "ensemble", "stacking", "predictions",
            estimator="stacking:non_negative_logistic", options={"l2": 1.0},
        ),
    ]
}  # fmt: skip


def models_of(kind: Kind) -> list[str]:
    """The registered models of one kind, in registry order."""
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; kinds: {', '.join(KINDS)}")
    return [name for name, spec in REGISTRY.items() if spec.kind == kind]


def embedding_backbones() -> list[str]:
    """The networks whose frozen trunks embed clips (one `xgboost_<network>` row each)."""
    return [REGISTRY[name].backbone for name in models_of("embedding")]


def get_spec(name: str) -> ModelSpec:
    if name not in REGISTRY:
        raise KeyError(f"unknown model {name!r}; registered: {', '.join(REGISTRY)}")
    return REGISTRY[name]


def named(path: str) -> Callable[..., Any]:
    """The function (or class) "module:function" names in this package."""
    module, _, function = path.partition(":")
    found = getattr(importlib.import_module(f"{__package__}.{module}"), function, None)
    if found is None:
        raise LookupError(f"{path!r} does not exist in {__package__}")
    return found


def resolve(spec: ModelSpec, role: Literal["builder", "estimator"]) -> Callable[..., Any]:
    """The function the row's `builder` or `estimator` names."""
    path = getattr(spec, role)
    if path is None:
        raise ValueError(f"{spec.name!r} is a {spec.kind} model: it has no {role}")
    try:
        return named(path)
    except LookupError as error:
        raise LookupError(f"model {spec.name!r}: {role} {error}") from None


def estimator(name: str, seed: int = 0) -> Any:
    """The unfitted classifier of a tabular, embedding or ensemble row."""
    spec = get_spec(name)
    return resolve(spec, "estimator")(seed, **spec.options)


def build_model(
    name: str,
    weights: Literal["random", "pretrained"] = "random",
    weights_file: str | Path | None = None,
    **overrides: Any,
) -> nn.Module:
    """The network `name` with one output logit (B, 1), random or with its pretrained backbone
    (from `weights_file`, or `$TORCH_HOME/hub/checkpoints/<official file>`, or for Hugging Face
    rows the folder `weights_file` or the Hugging Face cache; `WeightsMissing` says where to put
    it). `overrides` replace the row's builder options (e.g. `dropout`)."""
    spec = get_spec(name)
    if spec.kind == "embedding":
        raise ValueError(
            f"{name!r} is an XGBoost model on the clip embeddings of the frozen {spec.backbone} "
            f"trunk, not a network to train: materialize clip_embeddings (backbone "
            f"{spec.backbone}), then the asset {name}; "
            f"lib.training.embeddings.embedding_network({spec.backbone!r}) is the trunk"
        )
    if spec.kind != "network":
        raise ValueError(f"{name!r} is a {spec.kind} model, not a network: estimator({name!r})")
    state = _weights(spec, weights, weights_file)
    return resolve(spec, "builder")(state, **{**spec.options, **overrides})


def build_frozen(
    name: str, weights: Literal["random", "pretrained"], weights_file: str | Path | None = None
) -> nn.Module:
    """The frozen pooled trunk (eval mode, no gradients) of the "embedding" row `name`'s
    backbone, random or with its pretrained weights (found as by `build_model`)."""
    spec = get_spec(name)
    if spec.kind != "embedding":
        raise ValueError(f"{name!r} is not a model on clip embeddings")
    backbone = get_spec(spec.backbone)
    state = _weights(backbone, weights, weights_file)
    return _trunk_builder()(state, backbone).eval().requires_grad_(False)


def _trunk_builder() -> Callable[..., nn.Module]:
    return named("backbones:build_backbone")


def _weights(
    spec: ModelSpec, weights: str, weights_file: str | Path | None
) -> dict[str, Any] | None:
    """The state dict to build `spec` from: its checkpoint's, or None for random weights."""
    if weights not in ("random", "pretrained"):
        raise ValueError(f"weights must be 'random' or 'pretrained', got {weights!r}")
    if weights_file is not None and weights != "pretrained":
        raise ValueError("weights_file is only read with weights='pretrained'")
    if weights == "pretrained" and spec.checkpoint is None:
        raise ValueError(f"{spec.name} has no pretrained weights: train it with weights: random")
    return spec.checkpoint.load(weights_file) if weights == "pretrained" else None


def parameter_count(name: str) -> int | None:
    """Parameters of a network (or of an embedding row's frozen trunk) in its registered
    configuration, built on the meta device; None for models without one."""
    import torch

    spec = get_spec(name)
    if spec.kind not in ("network", "embedding"):
        return None
    with torch.device("meta"):
        if spec.kind == "network":
            model = resolve(spec, "builder")(None, **spec.options)
        else:
            model = _trunk_builder()(None, get_spec(spec.backbone))
    return sum(p.numel() for p in model.parameters())


def portfolio() -> list[dict[str, Any]]:
    """One row per registered model: what `fvc models` shows (an embedding row's parameters
    and weights are its frozen backbone's)."""
    rows = []
    for spec in REGISTRY.values():
        pretrainable = spec.checkpoint is not None
        rows.append(
            {
                "name": spec.name,
                "kind": spec.kind,
                "family": spec.family,
                "input": spec.input,
                "frames": spec.frames,
                "pixels": spec.pixels,
                "parameters": parameter_count(spec.name),
                "pretrained": spec.checkpoint.dataset if pretrainable else None,
                "weights": spec.checkpoint.status() if pretrainable else None,
                "recipe": vars(spec.recipe) if spec.recipe else None,
            }
        )
    return rows
