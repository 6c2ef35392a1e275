"""A test split carved out of a dataset's held-out data (``data.test_fraction``).

Tuning selects on validation accuracy, so the number reported for the chosen configuration must
come from examples no trial saw: a stratified ``test_fraction`` of the held-out split (fixed split
seed, the same for every run seed, so every run of a comparison tests on the same examples)
becomes the test split; the rest stays the validation split. The held-out split is read once and
kept in memory as normalized tensors.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Iterator

import torch
from torch import Tensor

from codistill.data.base import SPLIT_SEED, DatasetInfo, PeerDataset
from codistill.data.noise import stratified_subset


class HeldOutSplit(PeerDataset):
    """``dataset`` with its held-out split cut into validation and test."""

    def __init__(self, dataset: PeerDataset, test_fraction: float) -> None:
        self.dataset = dataset
        batches = list(dataset.val_batches(max(dataset.info.val_size, 1)))
        images, labels = torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches])
        test = stratified_subset(labels, test_fraction, SPLIT_SEED)
        is_test = torch.zeros(labels.numel(), dtype=torch.bool)
        is_test[test] = True
        self.splits = {"val": (images[~is_test], labels[~is_test]), "test": (images[is_test], labels[is_test])}

    @property
    def info(self) -> DatasetInfo:  # the wrapped dataset's, whose training split a probe may shrink
        return replace(self.dataset.info, val_size=self.splits["val"][1].numel())

    def keep_classes(self, classes: tuple[int, ...]) -> None:
        self.dataset.keep_classes(classes)

    def hold_out_probe(self, fraction: float, seed: int) -> None:
        self.dataset.hold_out_probe(fraction, seed)

    def probe_batch(self, seed: int, epoch: int, step: int, batch_size: int) -> tuple[Tensor, Tensor]:
        return self.dataset.probe_batch(seed, epoch, step, batch_size)

    def train_batch(self, indices: Tensor, generator: torch.Generator, augment: bool) -> tuple[Tensor, Tensor]:
        return self.dataset.train_batch(indices, generator, augment)

    def val_batches(self, batch_size: int) -> Iterator[tuple[Tensor, Tensor]]:
        return self.eval_batches(batch_size, "val")

    def eval_batches(self, batch_size: int, split: str = "val") -> Iterator[tuple[Tensor, Tensor]]:
        images, labels = self.splits[split]
        for start in range(0, labels.numel(), batch_size):
            yield images[start:start + batch_size], labels[start:start + batch_size]

    def train_labels(self) -> Tensor:
        return self.dataset.train_labels()
