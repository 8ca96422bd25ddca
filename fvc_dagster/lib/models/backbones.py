"""The frozen trunks of registry networks as clip embedders: clip (B, 3, T, H, W) to one vector
per clip (B, D), the network's own layers up to its head, averaged.

A 3D CNN's last feature map (B, D, T', H', W') is averaged over time and space, as its
classifier's global pooling does; the ViT networks embed through everything but their head:
ViT-B/16's class token of each frame into the GRU (its final hidden state) or into the
temporal encoder (its outputs averaged over the frames). Their temporal layers come with no
pretrained weights, so with `weights="pretrained"` the ViT is ImageNet's and the temporal layers
are drawn from the embedding seed."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from fvc_dagster.lib.models.registry import builder, get_spec
from fvc_dagster.lib.models.video_resnet import trunk

SPACE_TIME = (2, 3, 4)


class Pooled(nn.Module):
    """`features(clip)` averaged over `dims`."""

    def __init__(self, features: nn.Module, dims: tuple[int, ...]):
        super().__init__()
        self.features, self.dims = features, dims

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        features = self.features(clip)
        return features.mean(self.dims) if self.dims else features


class HeadInput(nn.Module):
    """A network's `features(clip)`: what its head reads, (B, D)."""

    def __init__(self, network: nn.Module):
        super().__init__()
        self.network = network

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        return self.network.features(clip)


@dataclass(frozen=True)
class Trunk:
    """What of a built registry network embeds clips: `features` cuts it out of the network,
    `dims` are the axes its output is averaged over; `arch` names it (backbones of the same
    `arch` share their builder's layers and checkpoint, so they embed alike)."""

    arch: str
    features: Callable[[nn.Module], nn.Module]
    dims: tuple[int, ...]


TRUNKS = {
    # r3d_18 up to layer4: pretrained_inception without its InceptionHead3d (512-d)
    "pretrained_inception": Trunk("r3d_18", lambda network: network[0], SPACE_TIME),
    # I3D R50 without its head (pooling, dropout, projection): 2048-d
    "i3d": Trunk("i3d_r50", lambda network: nn.Sequential(*network.blocks[:-1]), SPACE_TIME),
    # r2plus1d_18 up to layer4, without its fc (512-d)
    "r2plus1d": Trunk("r2plus1d_18", trunk, SPACE_TIME),
    # ViT-B/16 on each frame into the GRU: its final hidden state (256-d)
    "vit_gru": Trunk("vit_b_16_gru", HeadInput, ()),
    # ViT-B/16 on each frame into the temporal encoder, averaged over frames (768-d)
    "vit_transformer": Trunk("vit_b_16_transformer", HeadInput, ()),
}


def build_backbone(state, backbone: str) -> nn.Module:
    """The pooled trunk of the registry network `backbone`, built by its own builder from
    `state` (its checkpoint's state dict, or None: random)."""
    spec, cut = get_spec(backbone), TRUNKS[backbone]
    return Pooled(cut.features(builder(spec)(state, **spec.options)), cut.dims)
