"""CIFAR ResNets (He et al., CVPR 2016, §4.2): 3 stages of basic blocks, depth = 6n + 2.

``resnet{8,14,20,32,56,110}`` have stage widths 16/32/64; ``resnet8x4``/``resnet32x4`` are the
4× wide variants of RepDistiller (32 stem, 64/128/256). Stages 2 and 3 downsample by 2 while the
map stays ≥ 2 px wide (:func:`~codistill.models.layers.stride_for`).
"""

from __future__ import annotations

from torch import Tensor, nn

from codistill.models import MODELS
from codistill.models.base import PeerNetwork
from codistill.models.layers import conv_bn_relu, init_weights, stride_for


class BasicBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(conv_bn_relu(in_channels, out_channels, 3, stride),
                                  conv_bn_relu(out_channels, out_channels, 3, 1, relu=False))
        self.shortcut = nn.Identity() if stride == 1 and in_channels == out_channels else \
            conv_bn_relu(in_channels, out_channels, 1, stride, relu=False)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.relu(self.body(x) + self.shortcut(x))


class CifarResNet(PeerNetwork):
    def __init__(self, depth: int, widths: tuple[int, int, int, int], num_classes: int, in_channels: int,
                 image_size: int) -> None:
        super().__init__()
        if (depth - 2) % 6:
            raise ValueError(f"CIFAR ResNet depth must be 6n + 2, got {depth}")
        blocks = (depth - 2) // 6
        stem, *stage_widths = widths
        self.stem = conv_bn_relu(in_channels, stem)
        stages, channels, size = [], stem, image_size
        for index, width in enumerate(stage_widths):
            stride = 1 if index == 0 else stride_for(size)
            size //= stride
            layers = [BasicBlock(channels, width, stride)] + [BasicBlock(width, width, 1) for _ in range(blocks - 1)]
            stages.append(nn.Sequential(*layers))
            channels = width
        self.stages = nn.ModuleList(stages)
        self.classifier = nn.Linear(channels, num_classes)
        init_weights(self)


def _register(name: str, depth: int, widths: tuple[int, int, int, int]) -> None:
    MODELS.register(name)(lambda num_classes, in_channels, image_size:
                          CifarResNet(depth, widths, num_classes, in_channels, image_size))


for _depth in (8, 14, 20, 32, 56, 110):
    _register(f"resnet{_depth}", _depth, (16, 16, 32, 64))
_register("resnet8x4", 8, (32, 64, 128, 256))
_register("resnet32x4", 32, (32, 64, 128, 256))
