"""A small plain CNN peer: a 32-channel 3×3 stem and three conv-BN-ReLU stages (32, 64, 128);
the last two open with 2×2 max pooling while the map stays ≥ 2 px wide
(:class:`~codistill.models.layers.MapSize`). Fast on a CPU."""

from __future__ import annotations

from torch import nn

from codistill.models.base import PeerNetwork
from codistill.models.layers import MapSize, conv_bn_relu, init_weights
from codistill.registry import MODELS


class SmallCNN(PeerNetwork):
    def __init__(self, num_classes: int, in_channels: int, image_size: int) -> None:
        super().__init__()
        self.stem = conv_bn_relu(in_channels, 32)
        size = MapSize(image_size)
        self.stages = nn.ModuleList([
            conv_bn_relu(32, 32),
            nn.Sequential(*size.pool(), conv_bn_relu(32, 64)),
            nn.Sequential(*size.pool(), conv_bn_relu(64, 128)),
        ])
        self.classifier = nn.Linear(128, num_classes)
        init_weights(self)


MODELS.register("cnn")(SmallCNN)
