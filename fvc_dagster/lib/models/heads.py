"""Binary classification heads: each ends in one logit per clip, shape (B, 1)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class BinaryHead(nn.Sequential):
    """Dropout, then a linear layer from pooled features (B, dim_in) to one logit."""

    def __init__(self, dim_in: int, dropout: float = 0.5):
        super().__init__(nn.Dropout(dropout), nn.Linear(dim_in, 1))


def conv_bn_relu(dim_in: int, dim_out: int, kernel: tuple[int, int, int]) -> nn.Sequential:
    padding = tuple(k // 2 for k in kernel)
    return nn.Sequential(
        nn.Conv3d(dim_in, dim_out, kernel, padding=padding, bias=False),
        nn.BatchNorm3d(dim_out),
        nn.ReLU(inplace=True),
    )


class InceptionHead3d(nn.Module):
    """An Inception block on a 3D feature map (B, dim_in, T, H, W): parallel 1x1x1, 3x3x3,
    factorised 5x5x5 (1x5x5 then 5x1x1) and 3x3x3 max-pool + 1x1x1 branches, concatenated,
    globally average-pooled, then a `BinaryHead`."""

    def __init__(self, dim_in: int = 512, dropout: float = 0.5):
        super().__init__()
        self.branches = nn.ModuleList(
            [
                conv_bn_relu(dim_in, 128, (1, 1, 1)),
                nn.Sequential(
                    conv_bn_relu(dim_in, 128, (1, 1, 1)), conv_bn_relu(128, 192, (3, 3, 3))
                ),
                nn.Sequential(
                    conv_bn_relu(dim_in, 32, (1, 1, 1)),
                    conv_bn_relu(32, 64, (1, 5, 5)),
                    conv_bn_relu(64, 64, (5, 1, 1)),
                ),
                nn.Sequential(
                    nn.MaxPool3d(3, stride=1, padding=1), conv_bn_relu(dim_in, 64, (1, 1, 1))
                ),
            ]
        )
        self.head = BinaryHead(128 + 192 + 64 + 64, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.cat([branch(x) for branch in self.branches], 1)
        return self.head(F.adaptive_avg_pool3d(x, 1).flatten(1))


class PathwayAttentionHead(nn.Module):
    """Multi-head self-attention over the fused SlowFast pathway features, then a `BinaryHead`.

    Input: the pathway maps [slow (B, C_s, T, H, W), fast (B, C_f, alpha*T, H, W)]. The fast map is
    average-pooled to the slow map's grid and concatenated on channels; each of the T*H*W positions
    is a token, projected to `dim`, attended (residual + LayerNorm), and the tokens averaged."""

    def __init__(self, dims: tuple[int, ...], dim: int = 512, heads: int = 8, dropout: float = 0.5):
        super().__init__()
        self.proj = nn.Linear(sum(dims), dim)
        self.attention = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm = nn.LayerNorm(dim)
        self.head = BinaryHead(dim, dropout)

    def forward(self, pathways: list[torch.Tensor]) -> torch.Tensor:
        grid = pathways[0].shape[2:]
        x = torch.cat([F.adaptive_avg_pool3d(p, grid) for p in pathways], 1)
        x = self.proj(x.flatten(2).transpose(1, 2))
        x = self.norm(x + self.attention(x, x, x, need_weights=False)[0])
        return self.head(x.mean(1))
