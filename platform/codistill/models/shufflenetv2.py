"""ShuffleNetV2 1× for CIFAR (Ma et al., ECCV 2018; RepDistiller's variant): a stride-1 3×3 stem
(24 channels, no max pooling) and three stages of 116/232/464 channels with 4/8/4 units. A unit
splits the channels in half and runs one half through 1×1 – depthwise 3×3 – 1×1; a
downsampling unit (the first of each stage, stride 2 while the map stays ≥ 2 px wide,
:class:`~codistill.models.layers.MapSize`) feeds the whole input to that branch and to a
depthwise 3×3 – 1×1 shortcut. Halves are concatenated and the channels shuffled (2 groups). The
last stage ends with the 1×1 conv to 1024 channels."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from codistill.models.base import PeerNetwork
from codistill.models.layers import MapSize, conv_bn_relu, init_weights
from codistill.registry import MODELS


def channel_shuffle(x: Tensor, groups: int = 2) -> Tensor:
    batch, channels, height, width = x.shape
    grouped = x.view(batch, groups, channels // groups, height, width)
    return grouped.transpose(1, 2).reshape(batch, channels, height, width)


class ShuffleUnit(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.split = stride == 1 and in_channels == out_channels
        branch_in = in_channels // 2 if self.split else in_channels
        branch_out = out_channels // 2
        self.branch = nn.Sequential(conv_bn_relu(branch_in, branch_out, 1),
                                    conv_bn_relu(branch_out, branch_out, 3, stride, groups=branch_out, relu=False),
                                    conv_bn_relu(branch_out, branch_out, 1))
        self.shortcut = None if self.split else nn.Sequential(
            conv_bn_relu(in_channels, in_channels, 3, stride, groups=in_channels, relu=False),
            conv_bn_relu(in_channels, out_channels - branch_out, 1))

    def forward(self, x: Tensor) -> Tensor:
        if self.shortcut is None:
            kept, processed = x.chunk(2, dim=1)
            out = torch.cat([kept, self.branch(processed)], dim=1)
        else:
            out = torch.cat([self.shortcut(x), self.branch(x)], dim=1)
        return channel_shuffle(out)


class CifarShuffleNetV2(PeerNetwork):
    def __init__(self, num_classes: int, in_channels: int, image_size: int) -> None:
        super().__init__()
        channels = 24
        self.stem = conv_bn_relu(in_channels, channels)
        stages, size = [], MapSize(image_size)
        for width, units in ((116, 4), (232, 8), (464, 4)):
            layers = [ShuffleUnit(channels, width, size.stride())]
            layers += [ShuffleUnit(width, width, 1) for _ in range(units - 1)]
            stages.append(nn.Sequential(*layers))
            channels = width
        stages[-1].append(conv_bn_relu(channels, 1024, 1))
        self.stages = nn.ModuleList(stages)
        self.classifier = nn.Linear(1024, num_classes)
        init_weights(self)


MODELS.register("shufflenetv2")(CifarShuffleNetV2)
