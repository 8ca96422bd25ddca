"""`naive_cnn`: a small 2D CNN over frames, trained from scratch (no pretrained weights exist).

Three convolutions, batch norm and ReLU each (3 -> w -> 2w -> 4w channels), global average
pooling, then Linear(4w, 64), dropout, Linear(64, 1); each frame of a clip (B, 3, T, H, W) is
scored alone and the logits are averaged over frames. The second convolution is 8 x 8 with
stride 8: fed native windows whose offsets are multiples of 8 (`clip_data`), each of its outputs
sees exactly one block of the 8 x 8 coding grid (JPEG, H.264), so the block structure that
double compression leaves is in the features, not averaged away by the pooling. The first
layer keeps full resolution (stride 1) for the few-pixel traces. At 64 x 64 a frame costs
about 30 MFLOPs, a hundredth of a ResNet-18 at 112 px, so it trains for hundreds of epochs on
a CPU.
"""

from __future__ import annotations

from torch import nn

from fvc_dagster.lib.models.video_resnet import FrameAveraged

GRID = 8


def _conv(cin: int, cout: int, kernel: int, stride: int, padding: int) -> list[nn.Module]:
    return [
        nn.Conv2d(cin, cout, kernel, stride, padding, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    ]


class GridCNN(nn.Module):
    """The per-frame network: image (N, 3, H, W) to one logit (N, 1)."""

    def __init__(self, width: int = 32, dropout: float = 0.5):
        super().__init__()
        self.features = nn.Sequential(
            *_conv(3, width, 3, 1, 1),
            *_conv(width, 2 * width, GRID, GRID, 0),
            *_conv(2 * width, 4 * width, 3, 1, 1),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.head = nn.Sequential(
            nn.Linear(4 * width, 64), nn.ReLU(inplace=True), nn.Dropout(dropout), nn.Linear(64, 1)
        )

    def forward(self, frames):
        return self.head(self.features(frames))


def build_naive_cnn(state, width: int = 32, dropout: float = 0.5) -> nn.Module:
    """The network with random weights (`state` must be None: there is no checkpoint)."""
    if state is not None:
        raise ValueError("naive_cnn has no pretrained weights: train it with weights: random")
    return FrameAveraged(GridCNN(width, dropout))
