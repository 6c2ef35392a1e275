"""CIFAR VGG with BatchNorm (Simonyan & Zisserman 2015; RepDistiller's configurations).

Five blocks of 3×3 convolutions (64/128/256/512/512); the first block is the stem, the other
four are the stages, each preceded by 2×2 max pooling while the map stays ≥ 2 px wide.
"""

from __future__ import annotations

from torch import nn

from codistill.models import MODELS
from codistill.models.base import PeerNetwork
from codistill.models.layers import conv_bn_relu, init_weights, stride_for

CONFIGS = {
    "vgg8": ((64,), (128,), (256,), (512,), (512,)),
    "vgg11": ((64,), (128,), (256, 256), (512, 512), (512, 512)),
    "vgg13": ((64, 64), (128, 128), (256, 256), (512, 512), (512, 512)),
    "vgg16": ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512)),
}


def _block(in_channels: int, widths: tuple[int, ...], pool: bool) -> nn.Sequential:
    layers: list[nn.Module] = [nn.MaxPool2d(2)] if pool else []
    for width in widths:
        layers.append(conv_bn_relu(in_channels, width))
        in_channels = width
    return nn.Sequential(*layers)


class CifarVGG(PeerNetwork):
    def __init__(self, blocks: tuple[tuple[int, ...], ...], num_classes: int, in_channels: int, image_size: int) -> None:
        super().__init__()
        self.stem = _block(in_channels, blocks[0], pool=False)
        stages, channels, size = [], blocks[0][-1], image_size
        for widths in blocks[1:]:
            pool = stride_for(size) == 2
            size //= 2 if pool else 1
            stages.append(_block(channels, widths, pool))
            channels = widths[-1]
        self.stages = nn.ModuleList(stages)
        self.classifier = nn.Linear(channels, num_classes)
        init_weights(self)


for _name, _blocks in CONFIGS.items():
    MODELS.register(_name)(lambda num_classes, in_channels, image_size, _blocks=_blocks:
                           CifarVGG(_blocks, num_classes, in_channels, image_size))
