"""MobileNetV2 for CIFAR (Sandler et al., CVPR 2018; RepDistiller's variant): inverted residual
blocks ``x + project1×1(depthwise3×3(expand1×1(x)))`` (residual only when the shape is kept, no
ReLU after the projection) with the paper's (t, c, n, s) table, t = 6 and channels scaled by the
width multiplier. As in RepDistiller the first 24-channel block keeps stride 1, and the stem
halves the map only from 32 px (it stays ≥ 16 px wide), so 32 → 16 → 8 → 4 → 2 while an 8x8
input goes 8 → 8 → 4 → 2 → 2 (every downsampling step follows
:class:`~codistill.models.layers.MapSize`). Blocks are grouped into four stages at RepDistiller's
feature points; the last ends with the 1×1 conv to 1280 channels (× width when width > 1).
``mobilenetv2`` (width 1.0) and ``mobilenetv2_x0_5`` (RepDistiller's ``mobile_half``).
"""

from __future__ import annotations

from functools import partial

from torch import Tensor, nn

from codistill.models.base import PeerNetwork
from codistill.models.layers import MapSize, conv_bn_relu, init_weights
from codistill.registry import MODELS

# (expansion t, channels c, repeats n, stride s) per block group, grouped into the four stages.
STAGES = (((1, 16, 1, 1), (6, 24, 2, 1)), ((6, 32, 3, 2),), ((6, 64, 4, 2), (6, 96, 3, 1)),
          ((6, 160, 3, 2), (6, 320, 1, 1)))


class InvertedResidual(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = in_channels * expansion
        layers: list[nn.Module] = [] if expansion == 1 else [conv_bn_relu(in_channels, hidden, 1)]
        layers += [conv_bn_relu(hidden, hidden, 3, stride, groups=hidden),
                   conv_bn_relu(hidden, out_channels, 1, relu=False)]
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and in_channels == out_channels

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x) if self.residual else self.body(x)


def _scaled(channels: int, width: float) -> int:
    """``int(channels × width)`` as in RepDistiller (at least 1)."""
    return max(1, int(channels * width))


class CifarMobileNetV2(PeerNetwork):
    def __init__(self, num_classes: int, in_channels: int, image_size: int, width: float = 1.0) -> None:
        super().__init__()
        size = MapSize(image_size)
        channels = _scaled(32, width)
        self.stem = conv_bn_relu(in_channels, channels, stride=size.stride(min_size=16))
        stages = []
        for group in STAGES:
            blocks: list[nn.Module] = []
            for expansion, out, repeats, stride in group:
                out = _scaled(out, width)
                for repeat in range(repeats):
                    step = size.stride() if stride == 2 and repeat == 0 else 1
                    blocks.append(InvertedResidual(channels, out, step, expansion))
                    channels = out
            stages.append(nn.Sequential(*blocks))
        last = _scaled(1280, width) if width > 1.0 else 1280
        stages[-1].append(conv_bn_relu(channels, last, 1))
        self.stages = nn.ModuleList(stages)
        self.classifier = nn.Linear(last, num_classes)
        init_weights(self)


MODELS.register("mobilenetv2")(CifarMobileNetV2)
MODELS.register("mobilenetv2_x0_5")(partial(CifarMobileNetV2, width=0.5))
