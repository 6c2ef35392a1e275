"""A multilayer perceptron peer: the flattened image through three Linear-BN-ReLU stages
(512, 256, 128 units); its stage features are ``[B, D]`` vectors, the last one is the embedding."""

from __future__ import annotations

from torch import nn

from codistill.models.base import PeerNetwork
from codistill.models.layers import init_weights
from codistill.registry import MODELS


class MLP(PeerNetwork):
    def __init__(self, num_classes: int, in_channels: int, image_size: int,
                 widths: tuple[int, ...] = (512, 256, 128)) -> None:
        super().__init__()
        self.stem = nn.Flatten()
        inputs = in_channels * image_size * image_size
        stages = []
        for width in widths:
            stages.append(nn.Sequential(nn.Linear(inputs, width), nn.BatchNorm1d(width), nn.ReLU(inplace=True)))
            inputs = width
        self.stages = nn.ModuleList(stages)
        self.classifier = nn.Linear(inputs, num_classes)
        init_weights(self)


MODELS.register("mlp")(MLP)
