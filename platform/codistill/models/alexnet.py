"""A CIFAR AlexNet (Krizhevsky et al., NIPS 2012, scaled to small images): five convolutions
(5×5 64, 5×5 192, 3×3 384, 256, 256) with BatchNorm, grouped into three stages
(conv1 | conv2 | conv3-5), each closed by 2×2 max pooling while the map stays ≥ 2 px wide
(:class:`~codistill.models.layers.MapSize`); global average pooling replaces the 4096-wide fully
connected layers."""

from __future__ import annotations

from torch import nn

from codistill.models.base import PeerNetwork
from codistill.models.layers import MapSize, conv_bn_relu, init_weights
from codistill.registry import MODELS


class CifarAlexNet(PeerNetwork):
    def __init__(self, num_classes: int, in_channels: int, image_size: int) -> None:
        super().__init__()
        size = MapSize(image_size)
        self.stem = nn.Identity()
        self.stages = nn.ModuleList([
            nn.Sequential(conv_bn_relu(in_channels, 64, kernel_size=5), *size.pool()),
            nn.Sequential(conv_bn_relu(64, 192, kernel_size=5), *size.pool()),
            nn.Sequential(conv_bn_relu(192, 384), conv_bn_relu(384, 256), conv_bn_relu(256, 256), *size.pool()),
        ])
        self.classifier = nn.Linear(256, num_classes)
        init_weights(self)


MODELS.register("alexnet")(CifarAlexNet)
