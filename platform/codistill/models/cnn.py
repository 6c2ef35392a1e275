"""A small plain CNN peer: a 32-channel stem and three conv–BN–ReLU stages (32, 64, 128), the
last two preceded by 2×2 max pooling while the map stays ≥ 2 px wide. Fast on a CPU."""

from __future__ import annotations

from torch import nn

from codistill.models import MODELS
from codistill.models.base import PeerNetwork
from codistill.models.layers import conv_bn_relu, init_weights, stride_for


class SmallCNN(PeerNetwork):
    def __init__(self, num_classes: int, in_channels: int, image_size: int) -> None:
        super().__init__()
        self.stem = conv_bn_relu(in_channels, 32)
        stages, channels, size = [], 32, image_size
        for index, width in enumerate((32, 64, 128)):
            layers: list[nn.Module] = []
            if index > 0 and stride_for(size) == 2:
                layers.append(nn.MaxPool2d(2))
                size //= 2
            layers.append(conv_bn_relu(channels, width))
            stages.append(nn.Sequential(*layers))
            channels = width
        self.stages = nn.ModuleList(stages)
        self.classifier = nn.Linear(channels, num_classes)
        init_weights(self)


MODELS.register("cnn")(SmallCNN)
