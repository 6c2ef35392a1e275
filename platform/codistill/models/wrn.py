"""Wide ResNets (Zagoruyko & Komodakis, BMVC 2016): a 16-channel 3×3 stem and 3 stages of
pre-activation blocks, depth = 6n + 4, stage widths 16k/32k/64k; the last stage ends with
BN-ReLU. ``wrn_{depth}_{k}``. Stages 2 and 3 open with a stride-2 block while the map stays
≥ 2 px wide (:class:`~codistill.models.layers.MapSize`)."""

from __future__ import annotations

from functools import partial

from torch import Tensor, nn

from codistill.models.base import PeerNetwork
from codistill.models.layers import MapSize, bn_relu_conv, init_weights
from codistill.registry import MODELS


class PreActBlock(nn.Module):
    """``y = conv(ReLU(BN(conv(a)))) + shortcut``, ``a = ReLU(BN(x))``; a shape-changing
    shortcut is a 1×1 conv of ``a``, otherwise ``x`` itself."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.pre = nn.Sequential(nn.BatchNorm2d(in_channels), nn.ReLU(inplace=True))
        self.body = nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False),
                                  bn_relu_conv(out_channels, out_channels))
        same_shape = stride == 1 and in_channels == out_channels
        self.shortcut = None if same_shape else nn.Conv2d(in_channels, out_channels, 1, stride, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        activated = self.pre(x)
        return self.body(activated) + (x if self.shortcut is None else self.shortcut(activated))


class WideResNet(PeerNetwork):
    def __init__(self, depth: int, widen: int, num_classes: int, in_channels: int, image_size: int) -> None:
        super().__init__()
        if (depth - 4) % 6:
            raise ValueError(f"WRN depth must be 6n + 4, got {depth}")
        blocks = (depth - 4) // 6
        self.stem = nn.Conv2d(in_channels, 16, 3, 1, 1, bias=False)
        stages, channels, size = [], 16, MapSize(image_size)
        for index, width in enumerate((16 * widen, 32 * widen, 64 * widen)):
            stride = 1 if index == 0 else size.stride()
            layers: list[nn.Module] = [PreActBlock(channels, width, stride)]
            layers += [PreActBlock(width, width, 1) for _ in range(blocks - 1)]
            stages.append(nn.Sequential(*layers))
            channels = width
        stages[-1].extend([nn.BatchNorm2d(channels), nn.ReLU(inplace=True)])
        self.stages = nn.ModuleList(stages)
        self.classifier = nn.Linear(channels, num_classes)
        init_weights(self)


for _depth, _widen in ((16, 1), (16, 2), (40, 1), (40, 2)):
    MODELS.register(f"wrn_{_depth}_{_widen}")(partial(WideResNet, _depth, _widen))
