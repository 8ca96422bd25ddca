"""Pretrained checkpoints, read from local files only: nothing is ever downloaded."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import torch
    from torch import nn


class WeightsMissing(FileNotFoundError):
    """A pretrained checkpoint is not where it was looked for."""


class Pretrained(Protocol):
    """A registry row's pretrained weights: the `dataset` they were trained on, with RGB `mean`
    and `std` (of [0, 1] pixels); `status()` says where they are or where to put them; `load`
    returns the state dict to build from, or raises `WeightsMissing`."""

    dataset: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def status(self) -> str: ...

    def load(self, weights_file: str | Path | None = None) -> dict[str, torch.Tensor]: ...


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


def hub_cache() -> Path:
    """The Hugging Face cache ($HF_HUB_CACHE, by default ~/.cache/huggingface/hub)."""
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


@dataclass(frozen=True)
class HubCheckpoint:
    """A Hugging Face video classifier's weights, read by `from_pretrained(...,
    local_files_only=True)` from the Hugging Face cache (`repo`) or from a folder saved with
    `save_pretrained`; `load` returns the state dict of its backbone (`base_model`)."""

    repo: str
    dataset: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def cached(self) -> Path | None:
        """The repo's snapshot folder in the cache, if it holds the weights."""
        from huggingface_hub import try_to_load_from_cache

        for name in ("model.safetensors", "pytorch_model.bin"):
            found = try_to_load_from_cache(self.repo, name, cache_dir=hub_cache())
            if isinstance(found, str):
                return Path(found).parent
        return None

    def status(self) -> str:
        found = self.cached()
        return f"found {found}" if found else f"put {self.repo} in {hub_cache()}"

    def load(self, weights_file: str | Path | None = None) -> dict[str, torch.Tensor]:
        """The backbone's state dict from the folder `weights_file`, or from the cache."""
        if weights_file is not None and not (Path(weights_file) / "config.json").is_file():
            raise self.missing(f"{weights_file} is not a folder saved with save_pretrained")
        if weights_file is None and self.cached() is None:
            raise self.missing(f"put {self.repo} in {hub_cache()}")
        from transformers import AutoModelForVideoClassification

        model = AutoModelForVideoClassification.from_pretrained(
            str(weights_file or self.repo), local_files_only=True, cache_dir=hub_cache()
        )
        return model.base_model.state_dict()

    def missing(self, where: str) -> WeightsMissing:
        return WeightsMissing(
            f"{self.dataset} weights not found: {where} (the repo https://huggingface.co/"
            f"{self.repo} in the Hugging Face cache layout; the folder is $HF_HUB_CACHE; or pass a "
            "folder saved with save_pretrained as weights_file; nothing is downloaded)"
        )


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
