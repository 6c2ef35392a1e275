"""The one contract every peer network follows.

A peer network is a stem, a list of stages and a head. ``forward`` returns a
:class:`ModelOutput` holding the logits *and* the output of every stage, shallow to deep, so
feature-distillation methods read intermediate features without hooks::

    x = stem(x); f_1 = stages[0](x); ...; f_S = stages[S-1](f_{S-1})
    embedding = pool(f_S); logits = classifier(embedding)

Stage features are ``[B, C, H, W]`` maps for convolutional networks and ``[B, D]`` vectors for
the MLP. Methods that need a stage's own module (InDistill prunes the teacher's stage filters)
use :attr:`PeerNetwork.stages` directly.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn


@dataclass
class ModelOutput:
    """What a peer network returns: logits, stage features (shallow → deep) and the embedding."""

    logits: Tensor
    features: list[Tensor] = field(default_factory=list)
    embedding: Tensor | None = None


class PeerNetwork(nn.Module):
    """Base class: subclasses build ``stem``, ``stages`` and ``classifier``; ``forward`` is shared."""

    stem: nn.Module
    stages: nn.ModuleList
    classifier: nn.Module

    def embed(self, last_stage: Tensor) -> Tensor:
        """Pool the deepest stage into a vector (global average pooling by default)."""
        if last_stage.dim() == 4:
            return torch.flatten(nn.functional.adaptive_avg_pool2d(last_stage, 1), 1)
        return last_stage

    def forward(self, x: Tensor) -> ModelOutput:
        h = self.stem(x)
        features = []
        for stage in self.stages:
            h = stage(h)
            features.append(h)
        embedding = self.embed(h)
        return ModelOutput(logits=self.classifier(embedding), features=features, embedding=embedding)

    @torch.no_grad()
    def feature_shapes(self, in_channels: int, image_size: int) -> list[torch.Size]:
        """Shapes of every stage feature for one input of the given size (batch dim dropped)."""
        was_training = self.training
        self.eval()
        probe = torch.zeros(1, in_channels, image_size, image_size,
                            device=next(self.parameters()).device)
        shapes = [f.shape[1:] for f in self(probe).features]
        self.train(was_training)
        return shapes
