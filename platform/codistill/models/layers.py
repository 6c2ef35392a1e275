"""Building blocks shared by the architectures, and the small-input rule.

Inputs range from 8x8 (digits) to 32x32 (CIFAR). Each architecture tracks its map width with a
:class:`MapSize` while it is built: a downsampling step (strided conv or 2×2 pooling) halves the
map only while the result stays at least ``min_size`` (2 px) wide, otherwise it keeps stride 1.
At 32x32 every network therefore downsamples as published; at 8x8 the deepest steps are skipped
(e.g. a CIFAR ResNet goes 8 → 8 → 4 → 2 instead of collapsing).
"""

from __future__ import annotations

from torch import nn


class MapSize:
    """The spatial width of the feature map while a network is being built."""

    def __init__(self, size: int) -> None:
        self.size = size

    def stride(self, min_size: int = 2) -> int:
        """Stride of the next downsampling step: 2 if halving keeps ≥ ``min_size`` px, else 1."""
        if self.size // 2 < min_size:
            return 1
        self.size //= 2
        return 2

    def pool(self, pooling: type[nn.Module] = nn.MaxPool2d) -> list[nn.Module]:
        """A 2×2 pooling layer when the map can be halved, else nothing."""
        return [pooling(2)] if self.stride() == 2 else []


def conv_bn_relu(in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1,
                 groups: int = 1, relu: bool = True) -> nn.Sequential:
    """Conv (same padding, no bias) → BatchNorm → optional ReLU."""
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, out_channels, kernel_size, stride, kernel_size // 2, groups=groups, bias=False),
        nn.BatchNorm2d(out_channels),
    ]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


def bn_relu_conv(in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1) -> nn.Sequential:
    """Pre-activation order: BatchNorm → ReLU → conv (same padding, no bias)."""
    return nn.Sequential(nn.BatchNorm2d(in_channels), nn.ReLU(inplace=True),
                         nn.Conv2d(in_channels, out_channels, kernel_size, stride, kernel_size // 2, bias=False))


def init_weights(module: nn.Module) -> None:
    """Kaiming-normal convolutions (fan-out), unit BatchNorm, small normal linear layers."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)
