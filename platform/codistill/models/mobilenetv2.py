"""MobileNetV2 for CIFAR (Sandler et al., CVPR 2018): inverted residual blocks (expand 1×1,
depthwise 3×3, project 1×1) with the (t, c, n, s) table of the paper, stem stride 1 for small
inputs, grouped into four stages; the last ends with the 1×1 conv to 1280 (× width).
``mobilenetv2`` (width 1.0) and ``mobilenetv2_x0_5``."""

from __future__ import annotations

from torch import Tensor, nn

from codistill.models import MODELS
from codistill.models.base import PeerNetwork
from codistill.models.layers import conv_bn_relu, init_weights, stride_for

# (expansion t, channels c, repeats n, stride s), grouped into the four stages.
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
    return max(8, int(round(channels * width / 8)) * 8)


class CifarMobileNetV2(PeerNetwork):
    def __init__(self, num_classes: int, in_channels: int, image_size: int, width: float = 1.0) -> None:
        super().__init__()
        channels = _scaled(32, width)
        self.stem = conv_bn_relu(in_channels, channels)
        stages, size = [], image_size
        for group in STAGES:
            blocks: list[nn.Module] = []
            for expansion, out, repeats, stride in group:
                out = _scaled(out, width)
                for repeat in range(repeats):
                    step = stride_for(size) if stride == 2 and repeat == 0 else 1
                    size //= step
                    blocks.append(InvertedResidual(channels, out, step, expansion))
                    channels = out
            stages.append(nn.Sequential(*blocks))
        last = _scaled(1280, max(width, 1.0))
        stages[-1].append(conv_bn_relu(channels, last, 1))
        self.stages = nn.ModuleList(stages)
        self.classifier = nn.Linear(last, num_classes)
        init_weights(self)


MODELS.register("mobilenetv2")(CifarMobileNetV2)
MODELS.register("mobilenetv2_x0_5")(lambda num_classes, in_channels, image_size:
                                    CifarMobileNetV2(num_classes, in_channels, image_size, width=0.5))
