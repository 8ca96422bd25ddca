"""Networks on pytorchvideo's builders: I3D and X3D, SlowFast and two wrappers of its trunk.

Every net is built with one output, no activation (pytorchvideo's X3D head ends in a Softmax
otherwise) and global adaptive pooling (its heads' pooling kernels fit 224 px only). A Kinetics
checkpoint is loaded into it without the classifier's `proj` weights."""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import nn

# fvcore (imported by pytorchvideo) compiles its losses with the deprecated `torch.jit.script`
# when imported: its notice, not ours to act on, repeated seven times.
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", r"`torch\.jit\.script` is deprecated", FutureWarning)
    from pytorchvideo.models.resnet import create_resnet
    from pytorchvideo.models.slowfast import create_slowfast
    from pytorchvideo.models.x3d import create_x3d

from fvc_dagster.lib.models.heads import BinaryHead, PathwayAttentionHead
from fvc_dagster.lib.models.weights import load_except_head

BINARY = dict(model_num_class=1, head_activation=None)
ADAPTIVE = dict(head_pool=nn.AdaptiveAvgPool3d, head_output_size=(1, 1, 1))
SLOWFAST_DIMS = (2048, 256)  # R50 slow and fast pathway channels (fast = slow / 8)


def _loaded(net: nn.Module, state) -> nn.Module:
    if state is not None:
        load_except_head(net, state, ".proj.")
    return net


def build_i3d(state, dropout: float = 0.5) -> nn.Module:
    """ResNet-50 I3D: pytorchvideo's `create_resnet` with the stem, stage-1 pool and inflated
    kernels of its hub `i3d_r50`."""
    net = create_resnet(
        stem_conv_kernel_size=(5, 7, 7),
        stage1_pool=nn.MaxPool3d,
        stage_conv_a_kernel_size=(
            (3, 1, 1),
            [(3, 1, 1), (1, 1, 1)],
            [(3, 1, 1), (1, 1, 1)],
            [(1, 1, 1), (3, 1, 1)],
        ),
        dropout_rate=dropout,
        **BINARY,
        **ADAPTIVE,
    )
    return _loaded(net, state)


def build_x3d(state, dropout: float = 0.5) -> nn.Module:
    """X3D-M: `create_x3d` at its 16 x 224 settings (the hub builder rejects other lengths), its
    head's pooling made global so any clip size fits."""
    net = create_x3d(input_clip_length=16, input_crop_size=224, dropout_rate=dropout, **BINARY)
    net.blocks[-1].pool.pool = nn.AdaptiveAvgPool3d(1)
    return _loaded(net, state)


class SlowFast(nn.Module):
    """pytorchvideo SlowFast blocks run on one clip (B, 3, T, H, W): the fast pathway is the clip,
    the slow pathway every `alpha`-th frame of it."""

    def __init__(self, blocks: nn.ModuleList, alpha: int = 4):
        super().__init__()
        self.blocks, self.alpha = blocks, alpha

    def forward(self, clip: torch.Tensor):
        x = [clip[:, :, :: self.alpha], clip]
        for block in self.blocks:
            x = block(x)
        return x


def slowfast_r50(state, dropout: float = 0.5) -> nn.Module:
    """The library's SlowFast R50 (8x8 Kinetics configuration) with one output."""
    return _loaded(
        create_slowfast(model_depth=50, dropout_rate=dropout, **BINARY, **ADAPTIVE), state
    )


def build_slowfast(state, alpha: int = 4, dropout: float = 0.5) -> nn.Module:
    return SlowFast(slowfast_r50(state, dropout).blocks, alpha)


def build_slowfast_attention(
    state, alpha: int = 4, dim: int = 512, heads: int = 8, dropout: float = 0.5
) -> nn.Module:
    """SlowFast's trunk up to its pathway maps, then a `PathwayAttentionHead`."""
    trunk = SlowFast(slowfast_r50(state).blocks[:-2], alpha)
    return nn.Sequential(trunk, PathwayAttentionHead(SLOWFAST_DIMS, dim, heads, dropout))


class MultiScale(nn.Module):
    """One trunk (clip -> pooled features) applied to the clip at several spatial scales; the
    features concatenated into one head."""

    def __init__(self, trunk: nn.Module, dim: int, scales: tuple[float, ...], dropout: float):
        super().__init__()
        self.trunk, self.scales = trunk, scales
        self.head = BinaryHead(dim * len(scales), dropout)

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        features = [self.trunk(rescaled(clip, s)).flatten(1) for s in self.scales]
        return self.head(torch.cat(features, 1))


def rescaled(clip: torch.Tensor, scale: float) -> torch.Tensor:
    """The clip (B, C, T, H, W) with H and W times `scale` (trilinear, T kept)."""
    return (
        clip
        if scale == 1
        else F.interpolate(clip, scale_factor=(1, scale, scale), mode="trilinear")
    )


def build_slowfast_multiscale(
    state, alpha: int = 4, scales: tuple[float, ...] = (1.0, 0.5), dropout: float = 0.5
) -> nn.Module:
    """SlowFast's trunk up to its pooled, concatenated pathways, on the clip at `scales`."""
    trunk = SlowFast(slowfast_r50(state).blocks[:-1], alpha)
    return MultiScale(trunk, sum(SLOWFAST_DIMS), scales, dropout)
