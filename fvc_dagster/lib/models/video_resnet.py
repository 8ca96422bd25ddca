"""Networks on torchvision video ResNets (`r3d_18`, `r2plus1d_18`), and frame averaging.

Every builder takes the library model's state dict (or None for random weights), loads it into
the unmodified library model, then replaces or extends its head (torchvision refuses
`num_classes=1` together with weights)."""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models import get_model
from torchvision.ops import roi_align

from fvc_dagster.lib.models.heads import BinaryHead, InceptionHead3d


def library_model(arch: str, state: dict[str, torch.Tensor] | None) -> nn.Module:
    """torchvision's `arch` with its original classifier, and `state` loaded strictly if given."""
    model = get_model(arch)
    if state is not None:
        model.load_state_dict(state)
    return model


def trunk(model: nn.Module) -> nn.Sequential:
    """A torchvision video ResNet without its avgpool and fc: clip (B, 3, T, H, W) to a feature
    map (B, 512, T/8, H/16, W/16) (r3d_18 and r2plus1d_18)."""
    return nn.Sequential(model.stem, model.layer1, model.layer2, model.layer3, model.layer4)


def build_video_resnet(state, arch: str = "r2plus1d_18") -> nn.Module:
    """The torchvision network with its fc replaced by one logit."""
    model = library_model(arch, state)
    model.fc = nn.Linear(model.fc.in_features, 1)
    return model


class FrameAveraged(nn.Module):
    """A 2D image classifier applied to each frame of a clip (B, 3, T, H, W); logits averaged."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = clip.shape
        logits = self.net(clip.transpose(1, 2).reshape(b * t, c, h, w))
        return logits.view(b, t).mean(1, keepdim=True)


def build_inception(state, arch: str = "r3d_18", dropout: float = 0.5) -> nn.Module:
    """The video ResNet trunk, then an `InceptionHead3d` on its last feature map."""
    return nn.Sequential(trunk(library_model(arch, state)), InceptionHead3d(512, dropout))


class BoxPooled(nn.Module):
    """A video trunk that sees only each clip's content box, for clips of any aspect ratio.

    forward(clip, boxes): clip (B, 3, T, H, W) is a letterboxed square canvas of `canvas` pixels
    resized to H x W; boxes (B, 4) float are the content boxes (x, y, w, h) in canvas pixels (the
    `content_box` of `scaled_clips`). Pixels outside the box are zeroed before the trunk, and the
    feature map is average-pooled over the box only (ROI align, per frame), so the bars neither
    reach the classifier nor dilute the pooled features, whatever the aspect ratio."""

    def __init__(self, trunk: nn.Module, dim: int = 512, canvas: int = 256, dropout: float = 0.5):
        super().__init__()
        self.trunk, self.canvas = trunk, canvas
        self.head = BinaryHead(dim, dropout)

    def forward(self, clip: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        b, _, _, h, w = clip.shape
        scale = clip.new_tensor([w, h]) / self.canvas
        corners = torch.cat([boxes[:, :2], boxes[:, :2] + boxes[:, 2:]], 1) * scale.repeat(2)
        ys = torch.arange(h, device=clip.device) + 0.5
        xs = torch.arange(w, device=clip.device) + 0.5
        inside_y = (ys >= corners[:, 1:2]) & (ys < corners[:, 3:4])
        inside_x = (xs >= corners[:, 0:1]) & (xs < corners[:, 2:3])
        mask = (inside_y[:, :, None] & inside_x[:, None, :]).to(clip.dtype)
        features = self.trunk(clip * mask[:, None, None])
        c, t, fh, fw = features.shape[1:]
        frames = features.transpose(1, 2).reshape(b * t, c, fh, fw)
        index = torch.arange(b, device=clip.device).repeat_interleave(t)[:, None]
        rois = torch.cat([index.to(clip.dtype), corners.repeat_interleave(t, 0)], 1)
        pooled = roi_align(frames, rois, output_size=1, spatial_scale=fw / w, aligned=True)
        return self.head(pooled.view(b, t, c).mean(1))


def build_box_pooled(state, arch: str = "r3d_18", canvas: int = 256, dropout: float = 0.5):
    return BoxPooled(trunk(library_model(arch, state)), 512, canvas, dropout)


class TwoStream(nn.Module):
    """RGB and optical-flow video trunks, their pooled features concatenated (late fusion).

    forward(clip, flow): clip (B, 3, T, H, W); flow (B, 2, T-1, H, W), the (dx, dy) fields of
    `optical_flow` (channels first)."""

    def __init__(self, rgb: nn.Module, flow: nn.Module, dim: int = 512, dropout: float = 0.5):
        super().__init__()
        self.rgb, self.flow = rgb, flow
        self.head = BinaryHead(2 * dim, dropout)

    def forward(self, clip: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
        pooled = [s(x).mean((2, 3, 4)) for s, x in ((self.rgb, clip), (self.flow, flow))]
        return self.head(torch.cat(pooled, 1))


def flow_stem(conv: nn.Conv3d) -> nn.Conv3d:
    """`conv` taking 2 flow channels, its weights the mean over RGB (cross-modality init)."""
    stem = nn.Conv3d(2, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, bias=False)
    with torch.no_grad():
        stem.weight.copy_(conv.weight.mean(1, keepdim=True).expand_as(stem.weight))
    return stem


def build_two_stream(state, arch: str = "r3d_18", dropout: float = 0.5) -> nn.Module:
    """Two copies of the video ResNet (both from `state` if given), the flow one with a 2-channel
    stem."""
    flow = trunk(library_model(arch, state))
    flow[0][0] = flow_stem(flow[0][0])
    return TwoStream(trunk(library_model(arch, state)), flow, 512, dropout)
