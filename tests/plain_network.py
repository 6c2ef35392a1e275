"""A peer network without BatchNorm or dropout, for tests only (``plain_network:PlainMLP``): its
train-mode and eval-mode forward passes are the same computation."""

from __future__ import annotations

from torch import nn

from codistill.models.base import PeerNetwork
from codistill.models.layers import init_weights


class PlainMLP(PeerNetwork):
    def __init__(self, num_classes: int, in_channels: int, image_size: int) -> None:
        super().__init__()
        self.stem = nn.Flatten()
        self.stages = nn.ModuleList([nn.Sequential(nn.Linear(in_channels * image_size ** 2, 64), nn.ReLU()),
                                     nn.Sequential(nn.Linear(64, 32), nn.ReLU())])
        self.classifier = nn.Linear(32, num_classes)
        init_weights(self)
