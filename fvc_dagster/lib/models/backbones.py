"""The frozen trunks of registry networks as clip embedders: clip (B, 3, T, H, W) to one vector
per clip (B, D), the network's own layers up to its head, averaged.

A 3D CNN's last feature map (B, D, T', H', W') is averaged over time and space, as its
classifier's global pooling does; the per-frame ViT-B/16's class tokens (B, T, D) are averaged
over the frames (the mean: the GRU or temporal transformer that reads them in order is trained
with its network, so frozen and untrained it has nothing to add)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from fvc_dagster.lib.models.registry import builder, get_spec
from fvc_dagster.lib.models.transformers import ViT, frame_tokens
from fvc_dagster.lib.models.video_resnet import trunk

SPACE_TIME, FRAMES = (2, 3, 4), (1,)


class Pooled(nn.Module):
    """`features(clip)` averaged over `dims`."""

    def __init__(self, features: nn.Module, dims: tuple[int, ...]):
        super().__init__()
        self.features, self.dims = features, dims

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        return self.features(clip).mean(self.dims)


class FrameTokens(nn.Module):
    """The ViT's class token of each frame of clips (B, 3, T, H, W): (B, T, D)."""

    def __init__(self, vit: ViT):
        super().__init__()
        self.vit = vit

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        return frame_tokens(self.vit, clip)


@dataclass(frozen=True)
class Trunk:
    """What of a built registry network embeds clips: `features` cuts it out of the network,
    `dims` are the axes its output is averaged over; `arch` names it (backbones of the same
    `arch` share their builder's layers and checkpoint, so they embed alike)."""

    arch: str
    features: Callable[[nn.Module], nn.Module]
    dims: tuple[int, ...]


def _frame_tokens(network: nn.Module) -> nn.Module:
    return FrameTokens(network.vit)


TRUNKS = {
    # r3d_18 up to layer4: pretrained_inception without its InceptionHead3d (512-d)
    "pretrained_inception": Trunk("r3d_18", lambda network: network[0], SPACE_TIME),
    # I3D R50 without its head (pooling, dropout, projection): 2048-d
    "i3d": Trunk("i3d_r50", lambda network: nn.Sequential(*network.blocks[:-1]), SPACE_TIME),
    # r2plus1d_18 up to layer4, without its fc (512-d)
    "r2plus1d": Trunk("r2plus1d_18", trunk, SPACE_TIME),
    # ViT-B/16 on each frame (768-d), without the GRU or the temporal transformer
    "vit_gru": Trunk("vit_b_16", _frame_tokens, FRAMES),
    "vit_transformer": Trunk("vit_b_16", _frame_tokens, FRAMES),
}


def build_backbone(state, backbone: str) -> nn.Module:
    """The pooled trunk of the registry network `backbone`, built by its own builder from
    `state` (its checkpoint's state dict, or None: random)."""
    spec, cut = get_spec(backbone), TRUNKS[backbone]
    return Pooled(cut.features(builder(spec)(state, **spec.options)), cut.dims)
