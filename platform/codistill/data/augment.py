"""Batched, seeded image augmentation on tensors: random crop with zero padding, horizontal
flip, normalization. Every random draw comes from the generator passed in, so a batch's
augmentation is a pure function of its seed (see :mod:`codistill.data.base`)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


def normalize(images: Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> Tensor:
    """Per-channel ``(x − mean) / std`` of ``[B, C, H, W]`` images."""
    shift = torch.tensor(mean, dtype=images.dtype).view(1, -1, 1, 1)
    scale = torch.tensor(std, dtype=images.dtype).view(1, -1, 1, 1)
    return (images - shift) / scale


@dataclass(frozen=True)
class Augmentation:
    """Crop after ``padding`` zero pixels on each side (4 for 32×32 CIFAR, 1 for 8×8 digits),
    optional horizontal flip, then normalization by the dataset's per-channel ``mean``/``std``."""

    mean: tuple[float, ...]
    std: tuple[float, ...]
    padding: int = 4
    flip: bool = True

    def normalize(self, images: Tensor) -> Tensor:
        return normalize(images, self.mean, self.std)

    def random(self, images: Tensor, generator: torch.Generator) -> Tensor:
        """Crop and flip each image of ``[B, C, H, W]`` independently (before normalization)."""
        batch, _, height, width = images.shape
        if self.padding > 0:
            padded = F.pad(images, [self.padding] * 4)
            offsets = torch.randint(0, 2 * self.padding + 1, (batch, 2), generator=generator)
            rows = (offsets[:, 0, None] + torch.arange(height)).view(batch, 1, height, 1)
            cols = (offsets[:, 1, None] + torch.arange(width)).view(batch, 1, 1, width)
            index = torch.arange(batch).view(batch, 1, 1, 1)
            # Advanced indexing of [B, H+2p, W+2p, C] gives [B, 1, H, W, C]: one window per image.
            images = padded.permute(0, 2, 3, 1)[index, rows, cols].squeeze(1).permute(0, 3, 1, 2)
        if self.flip:
            flips = torch.rand(batch, generator=generator) < 0.5
            images = torch.where(flips.view(batch, 1, 1, 1), images.flip(3), images)
        return images.contiguous()
