"""Datasets with an official test split (Fashion-MNIST, CIFAR-10/100): validation from training.

Model selection (each peer's best epoch, a Tune sweep's winner) must never look at the numbers it
reports, so the official test split is kept for the end: the validation split is a stratified
``data.val_fraction`` of the official *training* split, drawn with a fixed split seed (the same
for every run seed, so every run of a comparison selects on the same images and never trains on
them), and the official test split is evaluated once, after the last epoch (``test_accuracy`` in
``results.json``). ``train_fraction``, ``label_noise`` and ``probe_fraction`` then apply to what
is left of the training split. The default validation split is :data:`DEFAULT_VAL_IMAGES` images.
"""

from __future__ import annotations

import torch
from torch import Tensor

from codistill.data.augment import Augmentation
from codistill.data.base import SPLIT_SEED
from codistill.data.in_memory import InMemoryDataset
from codistill.data.noise import stratified_subset
from codistill.errors import ConfigError

DEFAULT_VAL_IMAGES = 5_000


def carve_validation(labels: Tensor, fraction: float, name: str) -> tuple[Tensor, Tensor]:
    """Sorted training and validation indices of an official training split's ``labels``: a
    stratified ``fraction`` (split seed :data:`~codistill.data.base.SPLIT_SEED`) is validation,
    leaving every class at least one training image (tiny files: a class of one stays in training)."""
    is_val = torch.zeros(labels.numel(), dtype=torch.bool)
    is_val[stratified_subset(labels, fraction, SPLIT_SEED, leave=1)] = True
    if not bool(is_val.any()):
        raise ConfigError("data.val_fraction", f"{name}'s training split has no class of two images or more, "
                                               "so no validation split can be held out of it")
    return (~is_val).nonzero().flatten(), is_val.nonzero().flatten()


def with_official_test(name: str, train: tuple[Tensor, Tensor], test: tuple[Tensor, Tensor], num_classes: int,
                       augmentation: Augmentation, *, val_fraction: float, max_value: float, train_fraction: float,
                       label_noise: float, seed: int, image_size: int | None) -> InMemoryDataset:
    """An in-memory dataset whose validation split is carved from ``train`` and whose test split is ``test``."""
    kept, val = carve_validation(train[1], val_fraction, name)
    return InMemoryDataset(name, (train[0][kept], train[1][kept]), (train[0][val], train[1][val]), num_classes,
                           augmentation, max_value=max_value, train_fraction=train_fraction, label_noise=label_noise,
                           seed=seed, image_size=image_size, test=test)
