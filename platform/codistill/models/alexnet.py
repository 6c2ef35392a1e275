"""A CIFAR AlexNet (Krizhevsky et al. 2012, scaled to small images): five convolutions
(64, 192, 384, 256, 256) with BatchNorm; max pooling after the first, second and fifth while the
map stays ≥ 2 px wide; global average pooling replaces the 4096-wide fully connected layers."""

from __future__ import annotations

from torch import nn

from codistill.models import MODELS
from codistill.models.base import PeerNetwork
from codistill.models.layers import conv_bn_relu, init_weights, stride_for


class CifarAlexNet(PeerNetwork):
    def __init__(self, num_classes: int, in_channels: int, image_size: int) -> None:
        super().__init__()
        self.stem = nn.Identity()
        size = image_size

        def pool() -> list[nn.Module]:
            nonlocal size
            if stride_for(size) == 1:
                return []
            size //= 2
            return [nn.MaxPool2d(2)]

        first = [conv_bn_relu(in_channels, 64, kernel_size=5)] + pool()
        second = [conv_bn_relu(64, 192, kernel_size=5)] + pool()
        self.stages = nn.ModuleList([
            nn.Sequential(*first),
            nn.Sequential(*second),
            nn.Sequential(conv_bn_relu(192, 384), conv_bn_relu(384, 256), conv_bn_relu(256, 256), *pool()),
        ])
        self.classifier = nn.Linear(256, num_classes)
        init_weights(self)


MODELS.register("alexnet")(CifarAlexNet)
