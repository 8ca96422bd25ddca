"""Transformer video networks: torchvision's ViT-B/16 on each frame with a GRU or a transformer
over the frames' class tokens, and Hugging Face's TimeSformer and ViViT.

Each takes clips (B, 3, T, H, W) of any length and size (position embeddings are resized to the
input's token grid) and returns one logit (B, 1). Only the Hugging Face builders import
`transformers`."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.vision_transformer import VisionTransformer

from fvc_dagster.lib.models.heads import BinaryHead
from fvc_dagster.lib.models.weights import load_except_head

VIT_B_16 = dict(patch_size=16, num_layers=12, num_heads=12, hidden_dim=768, mlp_dim=3072)


def resized_positions(
    positions: torch.Tensor, grid: tuple[int, ...], size: tuple[int, ...]
) -> torch.Tensor:
    """Position embeddings (1, 1 + prod(grid), D), the class token's first, resized from the
    token grid `grid` to `size` (bicubic in 2D, trilinear in 3D)."""
    if tuple(size) == tuple(grid):
        return positions
    patches = positions[:, 1:].reshape(1, *grid, -1).movedim(-1, 1)
    mode = "bicubic" if len(grid) == 2 else "trilinear"
    patches = F.interpolate(patches, size=tuple(size), mode=mode, align_corners=False)
    return torch.cat([positions[:, :1], patches.flatten(2).transpose(1, 2)], 1)


class ViT(VisionTransformer):
    """torchvision's VisionTransformer (ViT-B/16 unless `arch` says otherwise) without its
    classifier: images (N, 3, H, W) of any size to their class tokens (N, D)."""

    def __init__(self, image_size: int = 224, **arch):
        super().__init__(image_size=image_size, **{**VIT_B_16, **arch})
        del self.heads

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.conv_proj(images)
        size = x.shape[2:]
        x = torch.cat([self.class_token.expand(len(x), -1, -1), x.flatten(2).transpose(1, 2)], 1)
        side = self.image_size // self.patch_size
        x = x + resized_positions(self.encoder.pos_embedding, (side, side), size)
        return self.encoder.ln(self.encoder.layers(self.encoder.dropout(x)))[:, 0]


def imagenet_vit(state, image_size: int = 224, **arch) -> ViT:
    """A `ViT`, with torchvision's ImageNet `state` loaded if given: its classifier dropped, its
    position embeddings resized (bicubic) to `image_size`."""
    vit = ViT(image_size, **arch)
    if state is not None:
        positions = state["encoder.pos_embedding"]
        grid = (math.isqrt(positions.shape[1] - 1),) * 2
        side = image_size // vit.patch_size
        state = {**state, "encoder.pos_embedding": resized_positions(positions, grid, (side, side))}
        load_except_head(vit, state, "heads.")
    return vit


def frame_tokens(vit: ViT, clip: torch.Tensor) -> torch.Tensor:
    """The ViT's class token of each frame of clips (B, 3, T, H, W): (B, T, D)."""
    b, c, t, h, w = clip.shape
    return vit(clip.transpose(1, 2).reshape(b * t, c, h, w)).view(b, t, -1)


class ViTGRU(nn.Module):
    """Per-frame ViT class tokens into a GRU; its last layer's final hidden state to a
    `BinaryHead`."""

    def __init__(self, vit: ViT, hidden: int = 256, layers: int = 2, dropout: float = 0.5):
        super().__init__()
        self.vit = vit
        self.gru = nn.GRU(vit.hidden_dim, hidden, layers, batch_first=True)
        self.head = BinaryHead(hidden, dropout)

    def features(self, clip: torch.Tensor) -> torch.Tensor:
        """What the head reads: the GRU's last layer's final hidden state (B, hidden)."""
        _, last = self.gru(frame_tokens(self.vit, clip))
        return last[-1]

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(clip))


class ViTTransformer(nn.Module):
    """Per-frame ViT class tokens plus learned temporal position embeddings (for `frames`
    frames, resized linearly to other lengths) into a pre-norm transformer encoder (model width
    the ViT's, feed-forward 4x); its outputs averaged over the frames to a `BinaryHead`."""

    def __init__(
        self, vit: ViT, frames: int = 16, layers: int = 2, heads: int = 8, dropout: float = 0.5
    ):
        super().__init__()
        dim = vit.hidden_dim
        self.vit = vit
        self.time = nn.Parameter(nn.init.trunc_normal_(torch.empty(1, frames, dim), std=0.02))
        layer = nn.TransformerEncoderLayer(
            dim, heads, 4 * dim, activation="gelu", batch_first=True, norm_first=True
        )
        self.temporal = nn.TransformerEncoder(
            layer, layers, norm=nn.LayerNorm(dim), enable_nested_tensor=False
        )
        self.head = BinaryHead(dim, dropout)

    def features(self, clip: torch.Tensor) -> torch.Tensor:
        """What the head reads: the temporal encoder's outputs averaged over frames (B, D)."""
        tokens = frame_tokens(self.vit, clip)
        time = self.time
        if time.shape[1] != tokens.shape[1]:
            time = F.interpolate(time.transpose(1, 2), tokens.shape[1], mode="linear")
            time = time.transpose(1, 2)
        return self.temporal(tokens + time).mean(1)

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(clip))


def build_vit_gru(
    state,
    image_size: int = 224,
    gru_hidden: int = 256,
    gru_layers: int = 2,
    dropout: float = 0.5,
    **arch,
) -> nn.Module:
    """`ViTGRU` on ViT-B/16 (`arch`: VisionTransformer overrides, e.g. num_layers, hidden_dim)."""
    return ViTGRU(imagenet_vit(state, image_size, **arch), gru_hidden, gru_layers, dropout)


def build_vit_transformer(
    state,
    image_size: int = 224,
    frames: int = 16,
    temporal_layers: int = 2,
    temporal_heads: int = 8,
    dropout: float = 0.5,
    **arch,
) -> nn.Module:
    """`ViTTransformer` on ViT-B/16 (`arch`: VisionTransformer overrides)."""
    vit = imagenet_vit(state, image_size, **arch)
    return ViTTransformer(vit, frames, temporal_layers, temporal_heads, dropout)


class VideoClassifier(nn.Module):
    """A Hugging Face video classifier (input (B, T, 3, H, W), one label) on clips
    (B, 3, T, H, W): its logits (B, 1). Never given labels: with one label it would compute an
    MSE loss; the trainer applies binary cross-entropy to the logits."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values=clip.transpose(1, 2)).logits


class Timesformer(VideoClassifier):
    """HF's TimeSformer on clips of any size: its embeddings resize their position and time
    embeddings themselves (nearest), but its layers read the token grid from the config's
    `num_frames` and `image_size`, which are set to the clip's for each call."""

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        config = self.model.config
        configured = config.num_frames, config.image_size
        config.num_frames, config.image_size = clip.shape[2], clip.shape[4]
        try:
            return super().forward(clip)
        finally:
            config.num_frames, config.image_size = configured


def build_timesformer(state, **config) -> nn.Module:
    """TimeSformer with divided space-time attention; `config`: TimesformerConfig overrides of
    its base defaults (8 x 224 px, 12 layers of width 768). `state`: a TimesformerModel's (the
    backbone)."""
    from transformers import TimesformerConfig, TimesformerForVideoClassification

    config = TimesformerConfig(**{"attention_type": "divided_space_time", **config}, num_labels=1)
    model = TimesformerForVideoClassification(config)
    if state is not None:
        model.timesformer.load_state_dict(state)
    return Timesformer(model)


class TubeletEmbeddings(nn.Module):
    """ViViT's embeddings (the parameters and names of HF's `VivitEmbeddings`, whose
    `interpolate_pos_encoding` is broken in transformers 5.24) with the position embeddings of the
    tubelet grid `grid` (T', H', W') resized (trilinear) to the input's grid."""

    def __init__(self, embeddings: nn.Module, grid: tuple[int, int, int]):
        super().__init__()
        self.cls_token = embeddings.cls_token
        self.position_embeddings = embeddings.position_embeddings
        self.patch_embeddings, self.dropout = embeddings.patch_embeddings, embeddings.dropout
        self.grid = grid

    def forward(self, pixel_values: torch.Tensor, **_) -> torch.Tensor:
        x = self.patch_embeddings.projection(pixel_values.transpose(1, 2))
        size = x.shape[2:]
        x = torch.cat([self.cls_token.expand(len(x), -1, -1), x.flatten(2).transpose(1, 2)], 1)
        return self.dropout(x + resized_positions(self.position_embeddings, self.grid, size))


def build_vivit(state, **config) -> nn.Module:
    """ViViT (spatio-temporal attention over tubelet embeddings); `config`: VivitConfig overrides
    of its base defaults (32 x 224 px, tubelets 2 x 16 x 16, 12 layers of width 768). `state`: a
    VivitModel's (the backbone)."""
    from transformers import VivitConfig, VivitForVideoClassification

    model = VivitForVideoClassification(VivitConfig(**config, num_labels=1))
    config, vivit = model.config, model.vivit
    t, h, w = config.tubelet_size
    grid = (config.num_frames // t, config.image_size // h, config.image_size // w)
    vivit.embeddings = TubeletEmbeddings(vivit.embeddings, grid)
    if state is not None:
        vivit.load_state_dict(state)
    return VideoClassifier(model)
