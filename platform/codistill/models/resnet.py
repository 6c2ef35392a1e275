"""CIFAR ResNets (He et al., CVPR 2016, §4.2): a 3×3 stem and 3 stages of basic blocks,
depth = 6n + 2, ``y = ReLU(BN(conv(ReLU(BN(conv(x))))) + shortcut(x))``.

``resnet{8,14,20,32,56,110}`` have stem/stage widths 16 | 16/32/64; ``resnet8x4`` and
``resnet32x4`` are RepDistiller's 4× wide variants, 32 | 64/128/256. Shortcuts that change shape
are 1×1 conv + BN (option B, as in RepDistiller). Stages 2 and 3 open with a stride-2 block
while the map stays ≥ 2 px wide (:class:`~codistill.models.layers.MapSize`).
"""

from __future__ import annotations

from functools import partial

from torch import Tensor, nn

from codistill.models.base import PeerNetwork
from codistill.models.layers import MapSize, conv_bn_relu, init_weights
from codistill.registry import MODELS


class BasicBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(conv_bn_relu(in_channels, out_channels, 3, stride),
                                  conv_bn_relu(out_channels, out_channels, 3, 1, relu=False))
        same_shape = stride == 1 and in_channels == out_channels
        self.shortcut = nn.Identity() if same_shape else conv_bn_relu(in_channels, out_channels, 1, stride, relu=False)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.relu(self.body(x) + self.shortcut(x))


class CifarResNet(PeerNetwork):
    def __init__(self, depth: int, stem_width: int, stage_widths: tuple[int, ...], num_classes: int,
                 in_channels: int, image_size: int) -> None:
        super().__init__()
        if (depth - 2) % 6:
            raise ValueError(f"CIFAR ResNet depth must be 6n + 2, got {depth}")
        blocks = (depth - 2) // 6
        self.stem = conv_bn_relu(in_channels, stem_width)
        stages, channels, size = [], stem_width, MapSize(image_size)
        for index, width in enumerate(stage_widths):
            stride = 1 if index == 0 else size.stride()
            layers = [BasicBlock(channels, width, stride)] + [BasicBlock(width, width, 1) for _ in range(blocks - 1)]
            stages.append(nn.Sequential(*layers))
            channels = width
        self.stages = nn.ModuleList(stages)
        self.classifier = nn.Linear(channels, num_classes)
        init_weights(self)


for _depth in (8, 14, 20, 32, 56, 110):
    MODELS.register(f"resnet{_depth}")(partial(CifarResNet, _depth, 16, (16, 32, 64)))
for _depth in (8, 32):
    MODELS.register(f"resnet{_depth}x4")(partial(CifarResNet, _depth, 32, (64, 128, 256)))
