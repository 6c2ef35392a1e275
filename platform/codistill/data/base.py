"""The dataset contract shared by all peers.

The exchange between peers is per example, so every peer must see the same examples in the same
order at every step. The order of an epoch is a pure function of ``(seed, epoch)``
(:meth:`PeerDataset.batch_indices`; with ``data.shared_batches: false``, of ``(seed, epoch,
k + 1)`` for peer ``k``, whose teachers are then local replicas), and the random augmentation of
a batch is a pure function of ``(seed, epoch, step, stream)``: stream 0 is shared by all peers, stream ``k + 1`` is peer
``k``'s own view when per-peer augmentation is on (as in KDCL). Nothing is carried between
steps, so a run resumed at an epoch boundary sees exactly the batches of an uninterrupted run.

With ``data.partition`` each peer's training split is its own shard (:mod:`.partition`); shards
differ in size, but the peers step together, so an epoch draws ``info.epoch_examples`` examples
from every shard (the cohort's mean shard size in whole batches): successive permutations of the
shard, cut there.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor

from codistill.config import DataConfig
from codistill.errors import ConfigError
from codistill.shapes import DataShape


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    num_classes: int
    in_channels: int
    image_size: int
    train_size: int
    val_size: int
    #: Examples one epoch draws from the training split (None: ``train_size``, one pass; see above).
    epoch_examples: int | None = None

PROBE_SEED = 0x9B0BE  # mixed into the seeds of the probe split and of its batches
SHARED_BATCH_SEED = 0x5B47C  # mixed into the seed of a step's batch of the shared slice
ORDER_SEED = 0x0D3E5  # mixed into the seed of a peer's own batch order (data.shared_batches: false)
SPLIT_SEED = 0  # of the fixed splits carved for evaluation: the same for every run seed


class PeerDataset(ABC):
    """A training split with a shared, seeded batch order and a clean validation split."""

    info: DatasetInfo

    @property
    def epoch_examples(self) -> int:
        """How many training examples an epoch draws (``info.epoch_examples``, by default one pass)."""
        return self.info.epoch_examples or self.info.train_size

    def steps_per_epoch(self, batch_size: int) -> int:
        return len(batch_sizes(self.epoch_examples, batch_size))

    def batch_indices(self, seed: int, epoch: int, batch_size: int, order: int = 0) -> list[Tensor]:
        """The epoch's shuffled training indices, cut into batches (:func:`batch_sizes`); ``order``
        0 is the order all peers share, ``k + 1`` peer ``k``'s own. An epoch that draws more than
        the split holds continues with further permutations from the same generator."""
        generator = torch.Generator().manual_seed(mix_seed(seed, epoch) if order == 0
                                                 else mix_seed(seed, epoch, order, ORDER_SEED))
        passes = -(-self.epoch_examples // max(self.info.train_size, 1))
        permutations = [torch.randperm(self.info.train_size, generator=generator) for _ in range(passes)]
        return list(torch.cat(permutations)[:self.epoch_examples].split(batch_sizes(self.epoch_examples, batch_size)))

    def augmentation_generator(self, seed: int, epoch: int, step: int, stream: int) -> torch.Generator:
        return torch.Generator().manual_seed(mix_seed(seed, epoch, step, stream, 0xA5))

    @abstractmethod
    def train_batch(self, indices: Tensor, generator: torch.Generator, augment: bool) -> tuple[Tensor, Tensor]:
        """Images ``[B, C, H, W]`` (float, normalized) and labels ``[B]`` for these training indices."""

    def train_rows(self, indices: Tensor, generator: torch.Generator, augment: bool,
                   rows: slice) -> tuple[Tensor, Tensor]:
        """Rows ``rows`` of :meth:`train_batch` (a data-parallel worker's share of the batch), the
        same values; a dataset read from files prepares only these rows."""
        images, labels = self.train_batch(indices, generator, augment)
        return images[rows], labels[rows]

    @abstractmethod
    def val_batches(self, batch_size: int) -> Iterator[tuple[Tensor, Tensor]]:
        """The validation split in a fixed order, without augmentation."""

    def eval_batches(self, batch_size: int, split: str = "val") -> Iterator[tuple[Tensor, Tensor]]:
        """The ``val`` or ``test`` split (a test split exists with ``data.test_fraction`` > 0)."""
        if split != "val":
            raise ValueError(f"no '{split}' split: set data.test_fraction > 0 for a test split")
        return self.val_batches(batch_size)

    def keep_classes(self, classes: tuple[int, ...]) -> None:
        """Keep only the training examples whose given label is one of ``classes`` (``data.classes``)."""
        raise ConfigError("data.classes", f"dataset '{self.info.name}' cannot keep a subset of classes; leave it unset")

    def keep_shard(self, indices: Tensor, labels: Tensor, epoch_examples: int, shared: Tensor | None = None) -> None:
        """Keep only the training examples ``indices`` (sorted), given ``labels``, drawing
        ``epoch_examples`` of them per epoch: this peer's shard of ``data.partition``; the training
        examples ``shared`` (sorted, disjoint from every shard) become the shared slice
        (``data.shared_fraction``: :meth:`shared_batch`)."""
        raise ConfigError("data.partition", f"dataset '{self.info.name}' cannot be divided among peers; leave it unset")

    def shared_batch(self, seed: int, epoch: int, step: int, batch_size: int) -> tuple[Tensor, Tensor]:
        """A batch of the shared slice (no augmentation, no labels): its images and their positions
        in the slice, a pure function of ``(seed, epoch, step)``, so every peer draws the same one."""
        raise ValueError(f"dataset '{self.info.name}' holds no shared slice (data.shared_fraction)")

    def shared_labels(self) -> Tensor | None:
        """The true labels of the shared slice (a benchmark's label oracle only), or None without one."""
        return None

    def hold_out_probe(self, fraction: float, seed: int) -> None:
        """Move a stratified ``fraction`` of the training split into a probe split (never trained on;
        ``data.probe_fraction``, the reward of a learned teacher policy)."""
        raise ConfigError("data.probe_fraction", f"dataset '{self.info.name}' has no probe split; set it to 0")

    def probe_batch(self, seed: int, epoch: int, step: int, batch_size: int) -> tuple[Tensor, Tensor]:
        """A batch of probe examples (no augmentation), a pure function of ``(seed, epoch, step)``."""
        raise ConfigError("data.probe_fraction", f"dataset '{self.info.name}' has no probe split")

    def probe_generator(self, seed: int, epoch: int, step: int) -> torch.Generator:
        return torch.Generator().manual_seed(mix_seed(seed, epoch, step, PROBE_SEED))

    def train_labels(self) -> Tensor:
        """Training labels as used for training (after any injected noise)."""
        raise NotImplementedError


class DatasetFactory(ABC):
    """A registered dataset (``@DATASETS.register(name)`` on a subclass): its own check of its files
    and settings, run by config validation before anything is written, and how it is read."""

    #: For a dataset that ships a test split (:mod:`.splits`): the share of its training split held
    #: out for validation when ``data.val_fraction`` is not set (its :meth:`build` then takes
    #: ``val_fraction``). None: the dataset has no official test split, its validation split is its own.
    default_val_fraction: float | None = None
    #: Whether ``data.download: true`` may fetch the dataset's files (its :meth:`check` does).
    downloadable: bool = False
    #: Whether its training split can be cut to some classes (``data.classes``, :meth:`PeerDataset.keep_classes`).
    selects_classes: bool = True
    #: Whether its training split can be divided among the peers (``data.partition``, :meth:`PeerDataset.keep_shard`).
    partitions: bool = True

    @classmethod
    @abstractmethod
    def check(cls, data: DataConfig) -> DataShape:
        """The data's shape, or a :class:`ConfigError` naming the ``data.*`` field at fault."""

    @classmethod
    @abstractmethod
    def build(cls, *, root: str | None, train_fraction: float, label_noise: float, seed: int,
              image_size: int | None = None) -> PeerDataset:
        """Read the dataset (training split reduced and noised as configured)."""


def batch_sizes(examples: int, batch_size: int) -> list[int]:
    """An epoch's batch sizes: ``batch_size`` each, the last smaller; a last batch of a single
    example joins the one before (a network in training mode normalizes its batch, BatchNorm, and
    one example has no batch statistics), so no step ever trains on one example alone."""
    sizes = [batch_size] * (examples // batch_size) + ([examples % batch_size] if examples % batch_size else [])
    if len(sizes) > 1 and sizes[-1] == 1:
        sizes[-2:] = [batch_size + 1]
    return sizes


def mix_seed(*values: int) -> int:
    """A deterministic 63-bit seed from several integers (splitmix64 steps)."""
    state = 0x9E3779B97F4A7C15
    for value in values:
        state = (state ^ (int(value) & 0xFFFFFFFFFFFFFFFF)) * 0xBF58476D1CE4E5B9 & 0xFFFFFFFFFFFFFFFF
        state ^= state >> 31
    return state & 0x7FFFFFFFFFFFFFFF
