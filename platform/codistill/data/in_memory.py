"""A :class:`PeerDataset` held in memory as uint8 tensors: digits, CIFAR and Fashion-MNIST."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import torch
from torch import Tensor

from codistill.data.augment import Augmentation
from codistill.data.base import PROBE_SEED, SHARED_BATCH_SEED, DatasetInfo, PeerDataset, mix_seed
from codistill.data.noise import probe_choice, probe_split, reduce_training_set
from codistill.errors import ConfigError


def check_image_size(name: str, native_size: int, image_size: int | None) -> None:
    """A dataset of fixed-size images takes ``data.image_size`` only to repeat its size."""
    if image_size not in (None, native_size):
        raise ConfigError("data.image_size", f"{name} images are {native_size}×{native_size}, got {image_size}")


class InMemoryDataset(PeerDataset):
    """Images ``[N, C, H, W]`` (integers in ``[0, max_value]``) and labels ``[N]`` for both splits.

    The training split is reduced to ``train_fraction`` (stratified) and its labels get
    ``label_noise`` symmetric noise, both seeded by ``seed``; validation (and ``test``, a dataset's
    official test split, see :mod:`.splits`) stays complete and clean. The images have one fixed
    size: ``image_size`` may only repeat it.
    """

    probe_images: Tensor | None = None
    probe_labels: Tensor | None = None  # set by hold_out_probe
    shared_images: Tensor | None = None
    shared_clean_labels: Tensor | None = None  # set by keep_shard with a shared slice

    def __init__(self, name: str, train: tuple[Tensor, Tensor], val: tuple[Tensor, Tensor], num_classes: int,
                 augmentation: Augmentation, *, max_value: float, train_fraction: float, label_noise: float,
                 seed: int, image_size: int | None, test: tuple[Tensor, Tensor] | None = None) -> None:
        native_size = train[0].shape[-1]
        check_image_size(name, native_size, image_size)
        subset, self.noisy_train_labels = reduce_training_set(train[1], num_classes, train_fraction=train_fraction,
                                                              label_noise=label_noise, seed=seed)
        self.train_images, self.clean_train_labels = train[0][subset], train[1][subset]
        self.held_out = {"val": val} if test is None else {"val": val, "test": test}
        self.augmentation, self.max_value = augmentation, max_value
        self.info = DatasetInfo(name=name, num_classes=num_classes, in_channels=train[0].shape[1],
                                image_size=native_size, train_size=len(subset), val_size=len(val[1]))

    def _unit_scale(self, images: Tensor) -> Tensor:
        return images.float() / self.max_value

    def train_batch(self, indices: Tensor, generator: torch.Generator, augment: bool) -> tuple[Tensor, Tensor]:
        images = self._unit_scale(self.train_images[indices])
        if augment:
            images = self.augmentation.random(images, generator)
        return self.augmentation.normalize(images), self.noisy_train_labels[indices]

    def val_batches(self, batch_size: int) -> Iterator[tuple[Tensor, Tensor]]:
        return self.eval_batches(batch_size, "val")

    def eval_batches(self, batch_size: int, split: str = "val") -> Iterator[tuple[Tensor, Tensor]]:
        if split not in self.held_out:
            return super().eval_batches(batch_size, split)
        images, labels = self.held_out[split]
        return ((self.augmentation.normalize(self._unit_scale(images[start:start + batch_size])),
                 labels[start:start + batch_size]) for start in range(0, len(labels), batch_size))

    def keep_classes(self, classes: tuple[int, ...]) -> None:
        self._keep(torch.isin(self.noisy_train_labels, torch.tensor(classes)))

    def keep_shard(self, indices: Tensor, labels: Tensor, epoch_examples: int, shared: Tensor | None = None) -> None:
        if shared is not None and shared.numel() > 0:
            self.shared_images, self.shared_clean_labels = self.train_images[shared], self.clean_train_labels[shared]
        keep = torch.zeros(self.info.train_size, dtype=torch.bool).index_fill_(0, indices, True)
        self._keep(keep)
        self.noisy_train_labels = labels
        self.info = replace(self.info, epoch_examples=epoch_examples)

    def hold_out_probe(self, fraction: float, seed: int) -> None:
        probe, keep = probe_split(self.noisy_train_labels, fraction, mix_seed(seed, PROBE_SEED))
        self.probe_images, self.probe_labels = self.train_images[probe], self.noisy_train_labels[probe]
        self._keep(keep)

    def _keep(self, keep: Tensor) -> None:
        """Only the training examples of the mask ``keep`` stay."""
        self.train_images, self.clean_train_labels = self.train_images[keep], self.clean_train_labels[keep]
        self.noisy_train_labels = self.noisy_train_labels[keep]
        self.info = replace(self.info, train_size=int(keep.sum()))

    def probe_batch(self, seed: int, epoch: int, step: int, batch_size: int) -> tuple[Tensor, Tensor]:
        if self.probe_labels is None:
            return super().probe_batch(seed, epoch, step, batch_size)
        chosen = probe_choice(self.probe_labels.numel(), batch_size, self.probe_generator(seed, epoch, step))
        return self.augmentation.normalize(self._unit_scale(self.probe_images[chosen])), self.probe_labels[chosen]

    def shared_batch(self, seed: int, epoch: int, step: int, batch_size: int) -> tuple[Tensor, Tensor]:
        if self.shared_images is None:
            return super().shared_batch(seed, epoch, step, batch_size)
        generator = torch.Generator().manual_seed(mix_seed(seed, epoch, step, SHARED_BATCH_SEED))
        chosen = probe_choice(self.shared_images.shape[0], batch_size, generator)
        return self.augmentation.normalize(self._unit_scale(self.shared_images[chosen])), chosen

    def shared_labels(self) -> Tensor | None:
        return self.shared_clean_labels

    def train_labels(self) -> Tensor:
        return self.noisy_train_labels
