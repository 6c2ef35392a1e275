"""DenseNet-BC for CIFAR (Huang et al., CVPR 2017): a 3×3 stem to 2k channels, then 3 dense
blocks of (depth − 4) / 6 bottleneck layers ``x ← [x, conv3×3(BN-ReLU(conv1×1(BN-ReLU(x))))]``
(1×1 to 4k, 3×3 to k channels). The first two stages end with a transition (BN-ReLU-1×1 conv
compressing channels by θ = 0.5, then 2×2 average pooling while the map stays ≥ 2 px wide,
:class:`~codistill.models.layers.MapSize`); the last ends with BN-ReLU. ``densenet{depth}_{k}``."""

from __future__ import annotations

from functools import partial

import torch
from torch import Tensor, nn

from codistill.models.base import PeerNetwork
from codistill.models.layers import MapSize, bn_relu_conv, init_weights
from codistill.registry import MODELS


class Bottleneck(nn.Module):
    def __init__(self, in_channels: int, growth: int) -> None:
        super().__init__()
        self.body = nn.Sequential(bn_relu_conv(in_channels, 4 * growth, 1), bn_relu_conv(4 * growth, growth, 3))

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([x, self.body(x)], dim=1)


class DenseNetBC(PeerNetwork):
    def __init__(self, depth: int, growth: int, num_classes: int, in_channels: int, image_size: int,
                 compression: float = 0.5) -> None:
        super().__init__()
        if (depth - 4) % 6:
            raise ValueError(f"DenseNet-BC depth must be 6n + 4, got {depth}")
        layers_per_block = (depth - 4) // 6
        channels = 2 * growth
        self.stem = nn.Conv2d(in_channels, channels, 3, 1, 1, bias=False)
        stages, size = [], MapSize(image_size)
        for index in range(3):
            modules: list[nn.Module] = []
            for _ in range(layers_per_block):
                modules.append(Bottleneck(channels, growth))
                channels += growth
            if index < 2:
                compressed = int(channels * compression)
                modules += [bn_relu_conv(channels, compressed, 1), *size.pool(nn.AvgPool2d)]
                channels = compressed
            else:
                modules += [nn.BatchNorm2d(channels), nn.ReLU(inplace=True)]
            stages.append(nn.Sequential(*modules))
        self.stages = nn.ModuleList(stages)
        self.classifier = nn.Linear(channels, num_classes)
        init_weights(self)


for _depth in (40, 100):
    MODELS.register(f"densenet{_depth}_12")(partial(DenseNetBC, _depth, 12))
