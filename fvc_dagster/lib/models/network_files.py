"""A trained network as files that are safe to load: its registry name and `build_model`
options (`network.json`) and its weights (`weights.safetensors`: tensors only, nothing in it
runs on load). `load_network` rebuilds the module from the registry and loads the weights into
it, so no pickled module is ever read."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fvc_dagster.lib.atomic import replacing
from fvc_dagster.lib.models.registry import build_model

if TYPE_CHECKING:
    from torch import nn

NETWORK_FILE = "network.json"
WEIGHTS_FILE = "weights.safetensors"


def save_network(model: nn.Module, name: str, options: dict[str, Any], folder: Path) -> Path:
    """Write `model` (registry row `name`, built with `options`) into `folder` (created)."""
    import safetensors.torch

    folder = Path(folder)
    with replacing(folder / WEIGHTS_FILE) as weights:
        safetensors.torch.save_model(model, str(weights))
    with replacing(folder / NETWORK_FILE) as description:
        description.write_text(json.dumps({"model": name, "options": options}, indent=2))
    return folder


def load_network(folder: Path) -> nn.Module:
    """The network `save_network` wrote into `folder`, in eval mode on the CPU."""
    import safetensors.torch

    folder = Path(folder)
    description = json.loads((folder / NETWORK_FILE).read_text())
    model = build_model(description["model"], **description["options"])
    safetensors.torch.load_model(model, str(folder / WEIGHTS_FILE), device="cpu")
    return model.eval()
