"""Gradual magnitude pruning (Zhu & Gupta, "To prune, or not to prune", 2017).

Every ``every_steps`` steps between ``start_epoch`` and ``end_epoch`` the sparsity target follows
the cubic schedule::

    s_t = s_f + (s_i − s_f) · (1 − (t − t_0) / (t_end − t_0))³

and the smallest-magnitude weights of all pruned layers together (global, unstructured) are
masked until that share is zero. Pruned layers are every conv and linear layer except the
classifier. Masks use ``torch.nn.utils.prune`` (``weight = weight_orig · weight_mask``), applied
as identity masks at construction so a checkpoint has the same keys before and after pruning
starts; a weight once pruned stays pruned (its score is zero), and its effective value stays
exactly zero whatever the optimizer does to ``weight_orig``.

Differs from the reference: Zhu & Gupta (and TensorFlow Model Optimization's
``PolynomialDecay``, whose schedule ``cubic_sparsity`` matches) prune each layer to ``s_t``;
here the weights of all layers are ranked together, so layers end at different sparsities
whose total is ``s_t``. Pruning steps fall on global steps that are multiples of
``every_steps`` (TF-MOT counts them from ``begin_step``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils import prune

from codistill.models.base import PeerNetwork
from codistill.progress import Progress


def cubic_sparsity(step: int, start: int, end: int, initial: float, final: float) -> float:
    """Target sparsity at global ``step`` (flat before ``start`` and after ``end``)."""
    if step < start:
        return 0.0
    share = min(max((step - start) / max(end - start, 1), 0.0), 1.0)
    return final + (initial - final) * (1.0 - share) ** 3


def prunable_layers(model: PeerNetwork) -> list[nn.Module]:
    classifier = set(model.classifier.modules())
    return [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear)) and m not in classifier]


class GradualPruner:
    """Prunes ``model`` in place towards ``target_sparsity`` over ``[start_epoch, end_epoch]``."""

    def __init__(self, model: PeerNetwork, target_sparsity: float, start_epoch: int, end_epoch: int,
                 every_steps: int = 10, initial_sparsity: float = 0.0) -> None:
        self.layers = prunable_layers(model)
        self.target, self.initial = target_sparsity, initial_sparsity
        self.start_epoch, self.end_epoch, self.every = start_epoch, end_epoch, max(1, every_steps)
        for layer in self.layers:
            prune.identity(layer, "weight")

    def scheduled(self, progress: Progress) -> float:
        start, end = self.start_epoch * progress.steps_per_epoch, self.end_epoch * progress.steps_per_epoch
        return cubic_sparsity(progress.global_step + 1, start, end, self.initial, self.target)

    def step(self, progress: Progress) -> None:
        """Call after each optimizer step; re-prunes on the schedule's steps."""
        step = progress.global_step + 1
        end = self.end_epoch * progress.steps_per_epoch
        if step % self.every == 0 or step == end:
            self.prune_to(self.scheduled(progress))

    @torch.no_grad()
    def prune_to(self, sparsity: float) -> None:
        scores = [(layer.weight_orig.abs() * layer.weight_mask).flatten() for layer in self.layers]
        everything = torch.cat(scores)
        count = int(round(sparsity * everything.numel()))
        if count <= 0:
            return
        threshold = everything.kthvalue(count).values
        keep = everything > threshold
        # Ties at the threshold: prune exactly `count` weights, lowest positions first.
        excess = count - int((~keep).sum())
        if excess < 0:
            tied = ((everything == threshold) & ~keep).nonzero().flatten()
            keep[tied[:(-excess)]] = True
        offset = 0
        for layer in self.layers:
            size = layer.weight_mask.numel()
            layer.weight_mask.copy_(keep[offset:offset + size].view_as(layer.weight_mask).to(layer.weight_mask.dtype))
            offset += size

    @torch.no_grad()
    def sparsity(self) -> float:
        """Share of exactly-zero effective weights over all pruned layers."""
        effective = [layer.weight_orig * layer.weight_mask for layer in self.layers]
        return sum(int((w == 0).sum()) for w in effective) / sum(w.numel() for w in effective)

    def state_dict(self) -> dict[str, Any]:
        # Masks live in the model's state dict (weight_mask buffers); the schedule is config.
        return {"sparsity": self.sparsity()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Nothing to restore beyond the model's own masks."""


def effective_state_dict(model: nn.Module) -> dict[str, Tensor]:
    """The model's state with ``weight_orig · weight_mask`` folded into plain ``weight`` keys."""
    state = model.state_dict()
    folded = {}
    for key, value in state.items():
        if key.endswith("_mask"):
            continue
        if key.endswith("_orig"):
            base = key[: -len("_orig")]
            folded[base] = value * state[f"{base}_mask"]
        else:
            folded[key] = value
    return folded
