"""DenseNet-BC for CIFAR (Huang et al., CVPR 2017): bottleneck layers (BN-ReLU-1×1 to 4k,
BN-ReLU-3×3 to k), 3 dense blocks of (depth − 4) / 6 layers, transitions compressing by 0.5
with 2×2 average pooling (skipped when the map would fall under 2 px). ``densenet{depth}_{k}``."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from codistill.models import MODELS
from codistill.models.base import PeerNetwork
from codistill.models.layers import init_weights, stride_for


def _bn_relu_conv(in_channels: int, out_channels: int, kernel_size: int) -> nn.Sequential:
    return nn.Sequential(nn.BatchNorm2d(in_channels), nn.ReLU(inplace=True),
                         nn.Conv2d(in_channels, out_channels, kernel_size, 1, kernel_size // 2, bias=False))


class Bottleneck(nn.Module):
    def __init__(self, in_channels: int, growth: int) -> None:
        super().__init__()
        self.body = nn.Sequential(_bn_relu_conv(in_channels, 4 * growth, 1), _bn_relu_conv(4 * growth, growth, 3))

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([x, self.body(x)], dim=1)


class DenseNetBC(PeerNetwork):
    def __init__(self, depth: int, growth: int, num_classes: int, in_channels: int, image_size: int,
                 compression: float = 0.5) -> None:
        super().__init__()
        layers_per_block = (depth - 4) // 6
        channels = 2 * growth
        self.stem = nn.Conv2d(in_channels, channels, 3, 1, 1, bias=False)
        stages, size = [], image_size
        for index in range(3):
            modules: list[nn.Module] = []
            for _ in range(layers_per_block):
                modules.append(Bottleneck(channels, growth))
                channels += growth
            if index < 2:
                compressed = int(channels * compression)
                modules.append(_bn_relu_conv(channels, compressed, 1))
                if stride_for(size) == 2:
                    modules.append(nn.AvgPool2d(2))
                    size //= 2
                channels = compressed
            else:
                modules += [nn.BatchNorm2d(channels), nn.ReLU(inplace=True)]
            stages.append(nn.Sequential(*modules))
        self.stages = nn.ModuleList(stages)
        self.classifier = nn.Linear(channels, num_classes)
        init_weights(self)


for _depth in (40, 100):
    MODELS.register(f"densenet{_depth}_12")(
        lambda num_classes, in_channels, image_size, _d=_depth: DenseNetBC(_d, 12, num_classes, in_channels, image_size))
