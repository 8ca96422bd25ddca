"""The frozen trunks of registry networks as clip embedders: clip (B, 3, T, H, W) to one vector
per clip (B, D), the network's own layers up to its head, averaged.

A 3D CNN's last feature map (B, D, T', H', W') is averaged over time and space, as its
classifier's global pooling does; the ViT networks embed through everything but their head:
ViT-B/16's class token of each frame into the GRU (its final hidden state) or into the
temporal encoder (its outputs averaged over the frames). Their temporal layers come with no
pretrained weights, so with `weights="pretrained"` the ViT is ImageNet's and the temporal layers
are drawn from the embedding seed."""

from __future__ import annotations

import torch
from torch import nn

from fvc_dagster.lib.models.registry import ModelSpec, named, resolve


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


def first_module(network: nn.Module) -> nn.Module:
    """The first module of a sequential network (pretrained_inception: r3d_18 up to layer4)."""
    return network[0]


def blocks_but_head(network: nn.Module) -> nn.Module:
    """A pytorchvideo network's blocks but the last (its head: pooling, dropout, projection)."""
    return nn.Sequential(*network.blocks[:-1])


def build_backbone(state, backbone: ModelSpec) -> nn.Module:
    """The pooled trunk of the registry network `backbone` (`backbone.trunk` says what to cut
    and average), built by its own builder from `state` (its checkpoint's state dict, or None:
    random)."""
    network = resolve(backbone, "builder")(state, **backbone.options)
    return Pooled(named(backbone.trunk.cut)(network), backbone.trunk.dims)
