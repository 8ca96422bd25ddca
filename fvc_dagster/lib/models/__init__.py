"""The model portfolio: tabular baselines and video networks, one registry row each.

`build_model(name, weights=...)` makes any network with a one-logit head; `REGISTRY` holds the
rows (family, input, default clip size, training recipe, pretrained checkpoint)."""

import importlib

from fvc_dagster.lib.models.registry import (
    REGISTRY,
    TABULAR_MODELS,
    ModelSpec,
    Recipe,
    build_model,
    get_spec,
    list_models,
    portfolio,
)
from fvc_dagster.lib.models.weights import Checkpoint, HubCheckpoint, WeightsMissing

# Imported on first use (PEP 562), so the registry costs no scikit-learn or OpenCV import.
_LAZY = {
    "BASELINES": "baselines",
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
    "BASELINES",
    "REGISTRY",
    "TABULAR_MODELS",
    "Checkpoint",
    "CorrelationPruner",
    "HubCheckpoint",
    "ModelSpec",
    "Recipe",
    "WeightsMissing",
    "baseline_pipeline",
    "build_model",
    "get_spec",
    "kept_features",
    "list_models",
    "optical_flow",
    "portfolio",
]
