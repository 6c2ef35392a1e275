"""Seeded training-set reductions: a stratified subset and symmetric label noise.

Symmetric noise at rate r replaces the labels of round(r·N) training examples, chosen at random,
by a class drawn uniformly among the *other* C − 1 classes (the "symmetric flipping" of
Han et al., Co-teaching, 2018). Validation labels are never touched.
"""

from __future__ import annotations

import torch
from torch import Tensor


def stratified_subset(labels: Tensor, fraction: float, seed: int, leave: int = 0) -> Tensor:
    """Sorted indices of ``round(fraction · n_c)`` examples of every class c (at least one each),
    but never more than ``n_c − leave``. A smaller ``fraction`` with the same seed gives a subset
    of the larger one's."""
    if fraction >= 1.0 and leave == 0:
        return torch.arange(labels.numel())
    generator = torch.Generator().manual_seed(seed)
    chosen = []
    for label in labels.unique(sorted=True):
        members = (labels == label).nonzero().flatten()
        keep = min(max(1, round(fraction * members.numel())), members.numel() - leave)
        chosen.append(members[torch.randperm(members.numel(), generator=generator)[:keep]])
    return torch.cat(chosen).sort().values


def symmetric_noise(labels: Tensor, rate: float, num_classes: int, seed: int) -> Tensor:
    """A copy of ``labels`` with ``round(rate · n)`` of them moved to a different, uniformly drawn class."""
    noisy = labels.clone()
    count = round(rate * labels.numel())
    if count == 0:
        return noisy
    generator = torch.Generator().manual_seed(seed)
    flipped = torch.randperm(labels.numel(), generator=generator)[:count]
    shift = torch.randint(1, num_classes, (count,), generator=generator)
    noisy[flipped] = (labels[flipped] + shift) % num_classes
    return noisy


def reduce_training_set(labels: Tensor, num_classes: int, *, train_fraction: float, label_noise: float,
                        seed: int) -> tuple[Tensor, Tensor]:
    """The kept training indices and their (noisy) labels, both determined by ``seed``."""
    subset = stratified_subset(labels, train_fraction, seed)
    return subset, symmetric_noise(labels[subset], label_noise, num_classes, seed + 1)


def probe_split(labels: Tensor, fraction: float, seed: int) -> tuple[Tensor, Tensor]:
    """A stratified probe slice of a training split: its indices, and the mask of the examples kept
    for training (stratified by ``labels``, the possibly noisy ones a user has)."""
    probe = stratified_subset(labels, fraction, seed)
    keep = torch.ones(labels.numel(), dtype=torch.bool)
    keep[probe] = False
    return probe, keep


def probe_choice(count: int, batch_size: int, generator: torch.Generator) -> Tensor:
    """Which of ``count`` probe examples form a probe batch (all of them when there are few)."""
    return torch.randperm(count, generator=generator)[:batch_size] if batch_size < count else torch.arange(count)
