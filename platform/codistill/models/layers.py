"""Building blocks shared by the architectures, and the small-input rule.

Inputs range from 8x8 (digits) to 32x32 (CIFAR). A stage only downsamples while the map is at
least ``2 * min_size`` wide, so an 8x8 input never collapses: :func:`stride_for` gives the stride
of a downsampling stage given the current spatial size.
"""

from __future__ import annotations

from torch import nn


def conv_bn_relu(in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1,
                 groups: int = 1, relu: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, out_channels, kernel_size, stride, kernel_size // 2, groups=groups, bias=False),
        nn.BatchNorm2d(out_channels),
    ]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


def stride_for(size: int, min_size: int = 2) -> int:
    """2 while halving keeps the map at least ``min_size`` wide, else 1."""
    return 2 if size // 2 >= min_size else 1


def init_weights(module: nn.Module) -> None:
    """Kaiming-normal convolutions, unit BatchNorm, small normal linear layers."""
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
