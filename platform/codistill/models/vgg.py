"""CIFAR VGG with BatchNorm (Simonyan & Zisserman, ICLR 2015; RepDistiller's configurations).

Five blocks of 3×3 conv-BN-ReLU (64/128/256/512/512 channels); the first block is the stem, the
other four are the stages, each opened by 2×2 max pooling while the map stays ≥ 2 px wide
(:class:`~codistill.models.layers.MapSize`); global average pooling replaces the last pooling.
"""

from __future__ import annotations

from functools import partial

from torch import nn

from codistill.models.base import PeerNetwork
from codistill.models.layers import MapSize, conv_bn_relu, init_weights
from codistill.registry import MODELS

# Conv widths of the five blocks (RepDistiller's cfg S, A, B and D).
CONFIGS = {
    "vgg8": ((64,), (128,), (256,), (512,), (512,)),
    "vgg11": ((64,), (128,), (256, 256), (512, 512), (512, 512)),
    "vgg13": ((64, 64), (128, 128), (256, 256), (512, 512), (512, 512)),
    "vgg16": ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512)),
}


def _block(in_channels: int, widths: tuple[int, ...], pooling: list[nn.Module]) -> nn.Sequential:
    layers = list(pooling)
    for width in widths:
        layers.append(conv_bn_relu(in_channels, width))
        in_channels = width
    return nn.Sequential(*layers)


class CifarVGG(PeerNetwork):
    def __init__(self, blocks: tuple[tuple[int, ...], ...], num_classes: int, in_channels: int,
                 image_size: int) -> None:
        super().__init__()
        self.stem = _block(in_channels, blocks[0], pooling=[])
        stages, channels, size = [], blocks[0][-1], MapSize(image_size)
        for widths in blocks[1:]:
            stages.append(_block(channels, widths, size.pool()))
            channels = widths[-1]
        self.stages = nn.ModuleList(stages)
        self.classifier = nn.Linear(channels, num_classes)
        init_weights(self)


for _name, _blocks in CONFIGS.items():
    MODELS.register(_name)(partial(CifarVGG, _blocks))
