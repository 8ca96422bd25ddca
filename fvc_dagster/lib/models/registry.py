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


@dataclass(frozen=True)
class ModelSpec:
    """A registry row. `input`: "features" (tabular), "clip" (B, 3, T, H, W), "clip+box" (also
    the content boxes, see `BoxPooled`), "clip+flow" (also the flow, see `TwoStream`) or
    "embedding" (XGBoost on the clip embeddings of the frozen trunk of the network
    `options["backbone"]`, see `lib.training.embeddings`);
    `frames` x `pixels` the default clip size;
    `builder` names "module:function" in this package (imported when used, so the table costs
    no torch import): `function(state_dict | None, **options)` makes the network (for
    "embedding" rows the frozen trunk), or for tabular rows `function(**options, seed=...)` the
    scikit-learn pipeline."""

    name: str
    family: str
    input: Literal["features", "clip", "clip+box", "clip+flow", "embedding"]
    builder: str
    frames: int | None = None
    pixels: int | None = None
    recipe: Recipe | None = None
    checkpoint: Pretrained | None = None
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def is_network(self) -> bool:
        """A video network trained end to end (not a tabular baseline, not XGBoost on frozen
        embeddings)."""
        return self.input.startswith("clip")


R3D = torchvision_checkpoint("r3d_18-b3b3357e.pth")
SLOWFAST = pytorchvideo_checkpoint("SLOWFAST_8x8_R50.pyth")
SMALL_BATCH = Recipe(batch_size=4)


def _tabular(name: str) -> ModelSpec:
    return ModelSpec(
        name, "tabular", "features", "baselines:baseline_pipeline", options={"model": name}
    )


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

REGISTRY: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in [
        _tabular("logistic_regression"),
        _tabular("svm"),
        _tabular("xgboost"),
        ModelSpec(
            "naive_cnn", "cnn2d", "clip", "naive_cnn:build_naive_cnn", frames=16, pixels=64,
            recipe=Recipe(lr=1e-3, batch_size=8, epochs=200),
        ),
        ModelSpec(
            "pretrained_inception", "r3d", "clip", "video_resnet:build_inception",
            **TORCHVISION_CLIP, recipe=Recipe(), checkpoint=R3D,
        ),
        ModelSpec(
            "variable_ar_cnn", "r3d", "clip+box", "video_resnet:build_box_pooled",
            **TORCHVISION_CLIP, recipe=Recipe(), checkpoint=R3D,
        ),
        ModelSpec(
            "i3d", "i3d", "clip", "pytorchvideo_nets:build_i3d", **PYTORCHVIDEO_CLIP,
            recipe=SMALL_BATCH, checkpoint=pytorchvideo_checkpoint("I3D_8x8_R50.pyth"),
        ),
        ModelSpec(
            "r2plus1d", "r2plus1d", "clip", "video_resnet:build_video_resnet", **TORCHVISION_CLIP,
            recipe=Recipe(), checkpoint=torchvision_checkpoint("r2plus1d_18-91a641e6.pth"),
            options={"arch": "r2plus1d_18"},
        ),
        ModelSpec(
            "x3d", "x3d", "clip", "pytorchvideo_nets:build_x3d", **PYTORCHVIDEO_CLIP,
            recipe=Recipe(lr=5e-4, epochs=20, weight_decay=5e-5),
            checkpoint=pytorchvideo_checkpoint("X3D_M.pyth"),
        ),
        ModelSpec(
            "slowfast", "slowfast", "clip", "pytorchvideo_nets:build_slowfast",
            **PYTORCHVIDEO_CLIP, recipe=SMALL_BATCH, checkpoint=SLOWFAST,
        ),
        ModelSpec(
            "slowfast_attention", "slowfast", "clip", "pytorchvideo_nets:build_slowfast_attention",
            **PYTORCHVIDEO_CLIP, recipe=SMALL_BATCH, checkpoint=SLOWFAST,
        ),
        ModelSpec(
            "slowfast_multiscale", "slowfast", "clip",
            "pytorchvideo_nets:build_slowfast_multiscale",
            **PYTORCHVIDEO_CLIP, recipe=SMALL_BATCH, checkpoint=SLOWFAST,
        ),
        ModelSpec(
            "two_stream", "two-stream", "clip+flow", "video_resnet:build_two_stream",
            **TORCHVISION_CLIP, recipe=Recipe(), checkpoint=R3D,
        ),
        ModelSpec(
            "vit_gru", "vit", "clip", "transformers:build_vit_gru", frames=16, pixels=224,
            recipe=TRANSFORMER, checkpoint=VIT,
        ),
        ModelSpec(
            "vit_transformer", "vit", "clip", "transformers:build_vit_transformer", frames=16,
            pixels=224, recipe=TRANSFORMER, checkpoint=VIT,
        ),
        ModelSpec(
            "timesformer", "timesformer", "clip", "transformers:build_timesformer", frames=8,
            pixels=224, recipe=TRANSFORMER, checkpoint=TIMESFORMER,
        ),
        ModelSpec(
            "vivit", "vivit", "clip", "transformers:build_vivit", frames=32, pixels=224,
            recipe=TRANSFORMER, checkpoint=VIVIT,
        ),
    ]
}  # fmt: skip

# The networks whose frozen trunks embed clips for XGBoost models (`xgboost_<network>` rows).
EMBEDDING_BACKBONES = ("pretrained_inception", "i3d", "r2plus1d", "vit_gru", "vit_transformer")


def _on_embeddings(backbone: ModelSpec) -> ModelSpec:
    """XGBoost on the clip embeddings of `backbone`'s frozen trunk, at its clip size and from its
    checkpoint."""
    return ModelSpec(
        f"xgboost_{backbone.name}", "embedding", "embedding", "backbones:build_backbone",
        backbone.frames, backbone.pixels, checkpoint=backbone.checkpoint,
        options={"backbone": backbone.name},
    )  # fmt: skip


REGISTRY |= {s.name: s for s in (_on_embeddings(REGISTRY[b]) for b in EMBEDDING_BACKBONES)}

# The tabular baselines (the keys of `baselines.BASELINES`, without importing scikit-learn).
TABULAR_MODELS = tuple(n for n, s in REGISTRY.items() if s.family == "tabular")


def list_models(networks_only: bool = False) -> list[str]:
    """Every registered model, or the video networks only."""
    return [n for n, s in REGISTRY.items() if s.is_network or not networks_only]


def get_spec(name: str) -> ModelSpec:
    if name not in REGISTRY:
        raise KeyError(f"unknown model {name!r}; registered: {', '.join(REGISTRY)}")
    return REGISTRY[name]


def builder(spec: ModelSpec) -> Callable[..., Any]:
    """The function `spec.builder` names."""
    module, _, function = spec.builder.partition(":")
    found = getattr(importlib.import_module(f"{__package__}.{module}"), function, None)
    if found is None:
        raise LookupError(f"model {spec.name!r}: builder {spec.builder!r} does not exist")
    return found


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
    if spec.family == "tabular":
        raise ValueError(f"{name!r} is a tabular baseline: use baseline_pipeline({name!r}, seed)")
    if spec.family == "embedding":
        backbone = spec.options["backbone"]
        raise ValueError(
            f"{name!r} is an XGBoost model on the clip embeddings of the frozen {backbone} trunk, "
            f"not a network to train: materialize clip_embeddings (backbone {backbone}), then "
            f"the asset {name}; lib.training.embeddings.embedding_network({backbone!r}) is the "
            "trunk"
        )
    return _build(spec, weights, weights_file, overrides)


def build_frozen(
    name: str, weights: Literal["random", "pretrained"], weights_file: str | Path | None = None
) -> nn.Module:
    """The frozen embedding network (eval mode, no gradients) of the "embedding" row `name`,
    random or with its backbone's pretrained weights (found as by `build_model`)."""
    spec = get_spec(name)
    if spec.family != "embedding":
        raise ValueError(f"{name!r} is not an XGBoost model on embeddings")
    return _build(spec, weights, weights_file, {}).eval().requires_grad_(False)


def _build(
    spec: ModelSpec, weights: str, weights_file: str | Path | None, overrides: dict[str, Any]
) -> nn.Module:
    if weights not in ("random", "pretrained"):
        raise ValueError(f"weights must be 'random' or 'pretrained', got {weights!r}")
    if weights_file is not None and weights != "pretrained":
        raise ValueError("weights_file is only read with weights='pretrained'")
    if weights == "pretrained" and spec.checkpoint is None:
        raise ValueError(f"{spec.name} has no pretrained weights: train it with weights: random")
    state = spec.checkpoint.load(weights_file) if weights == "pretrained" else None
    return builder(spec)(state, **{**spec.options, **overrides})


def parameter_count(name: str) -> int:
    """Parameters of the network in its registered configuration (built on the meta device)."""
    import torch

    spec = get_spec(name)
    with torch.device("meta"):
        model = builder(spec)(None, **spec.options)
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
                "family": spec.family,
                "input": spec.input,
                "frames": spec.frames,
                "pixels": spec.pixels,
                "parameters": parameter_count(spec.name) if spec.family != "tabular" else None,
                "pretrained": spec.checkpoint.dataset if pretrainable else None,
                "weights": spec.checkpoint.status() if pretrainable else None,
                "recipe": vars(spec.recipe) if spec.recipe else None,
            }
        )
    return rows
