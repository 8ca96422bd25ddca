"""The model portfolio: tabular baselines and video networks, one registry row each.

`build_model(name, weights=...)` makes any network with a one-logit head; `REGISTRY` holds the
rows (family, input, default clip size, training recipe, pretrained checkpoint)."""

from fvc_dagster.lib.models.baselines import (
    BASELINES,
    CorrelationPruner,
    baseline_pipeline,
    kept_features,
)
from fvc_dagster.lib.models.flow import optical_flow
from fvc_dagster.lib.models.registry import (
    REGISTRY,
    ModelSpec,
    Recipe,
    build_model,
    get_spec,
    list_models,
    portfolio,
)
from fvc_dagster.lib.models.weights import Checkpoint, HubCheckpoint, WeightsMissing

__all__ = [
    "BASELINES",
    "REGISTRY",
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
