"""The model portfolio: one registry row per model (tabular baselines, video networks, XGBoost
on frozen-network embeddings, the ensemble).

`REGISTRY` holds the rows (kind, architecture family, input, builder or estimator, clip size,
training recipe, pretrained checkpoint and normalisation, embedding trunk); `build_model(name,
weights=...)` makes any network with a one-logit head, `estimator(name)` any other model's
classifier."""

import importlib

from fvc_dagster.lib.models.registry import (
    KINDS,
    REGISTRY,
    ModelSpec,
    Recipe,
    Trunk,
    build_model,
    embedding_backbones,
    estimator,
    get_spec,
    models_of,
    portfolio,
)
from fvc_dagster.lib.models.weights import Checkpoint, HubCheckpoint, WeightsMissing

# Imported on first use (PEP 562), so the registry costs no scikit-learn or OpenCV import.
_LAZY = {
    "CorrelationPruner": "baselines",
    "baseline_pipeline": "baselines",
    "kept_features": "baselines",
    "optical_flow": "flow",
}


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)


__all__ = [
    "KINDS",
    "REGISTRY",
    "Checkpoint",
    "CorrelationPruner",
    "HubCheckpoint",
    "ModelSpec",
    "Recipe",
    "Trunk",
    "WeightsMissing",
    "baseline_pipeline",
    "build_model",
    "embedding_backbones",
    "estimator",
    "get_spec",
    "kept_features",
    "models_of",
    "optical_flow",
    "portfolio",
]
