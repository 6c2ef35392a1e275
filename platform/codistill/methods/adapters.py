"""Adapters that bring a student's stage feature to its teacher's shape, and stage pairing.

- both maps ``[B, C, H, W]``: a 1×1 conv + BatchNorm when channels differ (FitNets-style), and
  adaptive average pooling (student larger) or bilinear resizing (student smaller) to the
  teacher's H×W;
- either side a vector ``[B, D]`` (the MLP): both are compared as vectors (maps globally
  average-pooled) through Linear + BatchNorm1d when widths differ;
- identical shapes: the identity, with no parameters.

Adapters are built in the method's constructor, so they train with the student and are saved
with it (they are submodules of the method, which belongs to the peer).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def as_vector(feature: Tensor) -> Tensor:
    return feature.flatten(2).mean(2) if feature.dim() == 4 else feature


class FeatureAdapter(nn.Module):
    def __init__(self, student_shape: torch.Size, teacher_shape: torch.Size) -> None:
        super().__init__()
        self.as_maps = len(student_shape) == 3 and len(teacher_shape) == 3
        self.size = tuple(teacher_shape[1:]) if self.as_maps else None
        s_channels, t_channels = student_shape[0], teacher_shape[0]
        if s_channels == t_channels:
            self.project: nn.Module = nn.Identity()
        elif self.as_maps:
            self.project = nn.Sequential(nn.Conv2d(s_channels, t_channels, 1, bias=False), nn.BatchNorm2d(t_channels))
        else:
            self.project = nn.Sequential(nn.Linear(s_channels, t_channels, bias=False), nn.BatchNorm1d(t_channels))

    def forward(self, student: Tensor) -> Tensor:
        """The student feature in the teacher's shape (as a vector when either side is one)."""
        if not self.as_maps:
            return self.project(as_vector(student))
        projected = self.project(student)
        if tuple(projected.shape[2:]) == self.size:
            return projected
        if projected.shape[2] >= self.size[0]:
            return F.adaptive_avg_pool2d(projected, self.size)
        return F.interpolate(projected, size=self.size, mode="bilinear", align_corners=False)

    def teacher(self, teacher: Tensor) -> Tensor:
        """The teacher feature in the comparison space (a vector when either side is one)."""
        return teacher if self.as_maps else as_vector(teacher)


def stage_pairs(student_stages: int, teacher_stages: int) -> list[tuple[int, int]]:
    """Pair the deepest ``m = min(S, T)`` stages of each network, shallow to deep."""
    count = min(student_stages, teacher_stages)
    return [(student_stages - count + k, teacher_stages - count + k) for k in range(count)]


def build_adapters(student_shapes: list[torch.Size], teacher_shapes: list[list[torch.Size]]) -> nn.ModuleList:
    """One ModuleList per teacher, one adapter per paired stage (see :func:`stage_pairs`)."""
    return nn.ModuleList(
        nn.ModuleList(FeatureAdapter(student_shapes[s], shapes[t])
                      for s, t in stage_pairs(len(student_shapes), len(shapes)))
        for shapes in teacher_shapes)
