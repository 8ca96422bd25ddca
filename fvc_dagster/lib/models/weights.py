"""Pretrained checkpoints, read from local files only: nothing is ever downloaded."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch
    from torch import nn


class WeightsMissing(FileNotFoundError):
    """A pretrained checkpoint is not where it was looked for."""


@dataclass(frozen=True)
class Checkpoint:
    """An official weight file: `file` is its name in `$TORCH_HOME/hub/checkpoints/`, `url` where it
    is normally downloaded from, `key` the entry holding the state dict (pytorchvideo's
    `model_state`) or None when the file is the state dict itself (torchvision); `mean` and `std`
    the RGB normalisation (of [0, 1] pixels) the weights were trained with."""

    file: str
    url: str
    dataset: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    key: str | None = None

    def default_path(self) -> Path:
        import torch

        return Path(torch.hub.get_dir()) / "checkpoints" / self.file

    def status(self) -> str:
        path = self.default_path()
        return f"found {path}" if path.is_file() else f"put {self.file} in {path.parent}"

    def load(self, weights_file: str | Path | None = None) -> dict[str, torch.Tensor]:
        """The state dict from `weights_file`, or from the default path."""
        path = Path(weights_file) if weights_file else self.default_path()
        if not path.is_file():
            where = f"put {self.file} in {path.parent}" if not weights_file else f"{path} is absent"
            raise WeightsMissing(
                f"{self.dataset} weights not found: {where} (the file from {self.url}; "
                "the folder is $TORCH_HOME/hub/checkpoints; nothing is downloaded)"
            )
        import torch

        state = torch.load(path, map_location="cpu", weights_only=True)
        return state[self.key] if self.key else state


TORCHVISION = "https://download.pytorch.org/models"
PYTORCHVIDEO = "https://dl.fbaipublicfiles.com/pytorchvideo/model_zoo/kinetics"


def torchvision_checkpoint(file: str) -> Checkpoint:
    """A torchvision video network's Kinetics-400 weights (plain state dict)."""
    stats = dict(mean=(0.43216, 0.394666, 0.37645), std=(0.22803, 0.22145, 0.216989))
    return Checkpoint(file, f"{TORCHVISION}/{file}", "Kinetics-400", **stats)


def imagenet_checkpoint(file: str) -> Checkpoint:
    """A torchvision image network's ImageNet-1k weights (plain state dict)."""
    stats = dict(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    return Checkpoint(file, f"{TORCHVISION}/{file}", "ImageNet-1k", **stats)


def pytorchvideo_checkpoint(file: str) -> Checkpoint:
    """A pytorchvideo model-zoo Kinetics-400 checkpoint ({"model_state": state dict})."""
    stats = dict(mean=(0.45, 0.45, 0.45), std=(0.225, 0.225, 0.225))
    return Checkpoint(file, f"{PYTORCHVIDEO}/{file}", "Kinetics-400", key="model_state", **stats)


def load_except_head(model: nn.Module, state: dict[str, torch.Tensor], head: str) -> None:
    """Loads every weight but those of the classifier (keys containing `head`), which a binary
    model replaces; any other missing or unexpected key is an error."""
    kept = {k: v for k, v in state.items() if head not in k}
    missing, unexpected = model.load_state_dict(kept, strict=False)
    missing = [k for k in missing if head not in k]
    if missing or unexpected:
        raise ValueError(
            f"checkpoint does not fit the model: missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
