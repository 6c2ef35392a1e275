"""Splits carved out of a dataset's held-out data: a test split and a clean probe.

Tuning selects on validation accuracy, so the number reported for the chosen configuration must
come from examples no trial saw: a stratified ``test_fraction`` of the held-out split (fixed split
seed, the same for every run seed, so every run of a comparison tests on the same examples)
becomes the test split (:class:`HeldOutSplit`); the rest stays the validation split.

A learned teacher policy learns from a probe split. Learning to Reweight (Ren et al., ICML 2018)
and Meta-Weight-Net (Shu et al., NeurIPS 2019) assume a small *clean* meta set; with
``data.probe_source: held_out`` the probe is a stratified ``data.probe_fraction`` of the
validation split, whose labels are never noised (:class:`ValidationProbe`, seeded by the run's
seed like the training-split probe); those examples then leave the validation split, the test
split and the training split are untouched. Both read the held-out split once and keep it in
memory as normalized tensors.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import torch
from torch import Tensor

from codistill.data.base import PROBE_SEED, SPLIT_SEED, DatasetInfo, PeerDataset, mix_seed
from codistill.data.noise import probe_choice, stratified_subset
from codistill.errors import ConfigError

#: The validation split must keep at least this many examples per class after the probe is carved.
MIN_VAL_PER_CLASS = 2


class WrappedDataset(PeerDataset):
    """``dataset`` with some of its splits replaced; everything else is forwarded to it."""

    def __init__(self, dataset: PeerDataset) -> None:
        self.dataset = dataset

    @property
    def info(self) -> DatasetInfo:  # the wrapped dataset's, whose training split a probe may shrink
        return self.dataset.info

    @property
    def clean_train_labels(self) -> Tensor:
        """The true training labels of an in-memory dataset (the evidence jobs' label oracle reads them)."""
        return self.dataset.clean_train_labels

    def keep_classes(self, classes: tuple[int, ...]) -> None:
        self.dataset.keep_classes(classes)

    def keep_shard(self, indices: Tensor, labels: Tensor, epoch_examples: int, shared: Tensor | None = None) -> None:
        self.dataset.keep_shard(indices, labels, epoch_examples, shared)

    def shared_batch(self, seed: int, epoch: int, step: int, batch_size: int) -> tuple[Tensor, Tensor]:
        return self.dataset.shared_batch(seed, epoch, step, batch_size)

    def shared_labels(self) -> Tensor | None:
        return self.dataset.shared_labels()

    def hold_out_probe(self, fraction: float, seed: int) -> None:
        self.dataset.hold_out_probe(fraction, seed)

    def probe_batch(self, seed: int, epoch: int, step: int, batch_size: int) -> tuple[Tensor, Tensor]:
        return self.dataset.probe_batch(seed, epoch, step, batch_size)

    def train_batch(self, indices: Tensor, generator: torch.Generator, augment: bool) -> tuple[Tensor, Tensor]:
        return self.dataset.train_batch(indices, generator, augment)

    def train_rows(self, indices: Tensor, generator: torch.Generator, augment: bool,
                   rows: slice) -> tuple[Tensor, Tensor]:
        return self.dataset.train_rows(indices, generator, augment, rows)

    def val_batches(self, batch_size: int) -> Iterator[tuple[Tensor, Tensor]]:
        return self.eval_batches(batch_size, "val")

    def eval_batches(self, batch_size: int, split: str = "val") -> Iterator[tuple[Tensor, Tensor]]:
        return self.dataset.eval_batches(batch_size, split)

    def train_labels(self) -> Tensor:
        return self.dataset.train_labels()


def whole_validation_split(dataset: PeerDataset) -> tuple[Tensor, Tensor]:
    """All images and labels of ``dataset``'s validation split, in its fixed order."""
    batches = list(dataset.val_batches(max(dataset.info.val_size, 1)))
    return torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches])


def batched(images: Tensor, labels: Tensor, batch_size: int) -> Iterator[tuple[Tensor, Tensor]]:
    for start in range(0, labels.numel(), batch_size):
        yield images[start:start + batch_size], labels[start:start + batch_size]


def mask_of(indices: Tensor, count: int) -> Tensor:
    mask = torch.zeros(count, dtype=torch.bool)
    mask[indices] = True
    return mask


class HeldOutSplit(WrappedDataset):
    """``dataset`` with its held-out split cut into validation and test."""

    def __init__(self, dataset: PeerDataset, test_fraction: float) -> None:
        super().__init__(dataset)
        images, labels = whole_validation_split(dataset)
        is_test = mask_of(stratified_subset(labels, test_fraction, SPLIT_SEED), labels.numel())
        self.splits = {"val": (images[~is_test], labels[~is_test]), "test": (images[is_test], labels[is_test])}

    @property
    def info(self) -> DatasetInfo:
        return replace(self.dataset.info, val_size=self.splits["val"][1].numel())

    def eval_batches(self, batch_size: int, split: str = "val") -> Iterator[tuple[Tensor, Tensor]]:
        return batched(*self.splits[split], batch_size)


class ValidationProbe(WrappedDataset):
    """``dataset`` with ``round(fraction · n_c)`` validation examples of every class c (at least
    one, leaving at least one; seeded by ``seed``) moved into its probe split."""

    def __init__(self, dataset: PeerDataset, fraction: float, seed: int) -> None:
        super().__init__(dataset)
        images, labels = whole_validation_split(dataset)
        is_probe = mask_of(stratified_subset(labels, fraction, mix_seed(seed, PROBE_SEED), leave=1), labels.numel())
        self.probe = images[is_probe], labels[is_probe]
        self.val = images[~is_probe], labels[~is_probe]
        least = MIN_VAL_PER_CLASS * dataset.info.num_classes
        if self.val[1].numel() < least:
            raise ConfigError("data.probe_source", f"held_out leaves {self.val[1].numel()} of the {labels.numel()} "
                                                   f"validation examples of '{dataset.info.name}' after carving "
                                                   f"the probe, fewer than {least} ({MIN_VAL_PER_CLASS} per class); "
                                                   "use train, a smaller data.probe_fraction or a larger "
                                                   "validation split")

    @property
    def info(self) -> DatasetInfo:
        return replace(self.dataset.info, val_size=self.val[1].numel())

    def probe_batch(self, seed: int, epoch: int, step: int, batch_size: int) -> tuple[Tensor, Tensor]:
        chosen = probe_choice(self.probe[1].numel(), batch_size, self.probe_generator(seed, epoch, step))
        return self.probe[0][chosen], self.probe[1][chosen]

    def eval_batches(self, batch_size: int, split: str = "val") -> Iterator[tuple[Tensor, Tensor]]:
        if split == "val":
            return batched(*self.val, batch_size)
        return self.dataset.eval_batches(batch_size, split)
