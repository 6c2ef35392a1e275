"""A peer's batches and its own random stream.

The batch of ``(epoch, step)`` is a pure function of the run's seed (see
:mod:`codistill.data.base`): every peer sees the same examples in the same order (or, with
``data.shared_batches: false``, its own order, as in codistillation), with the shared
augmentation (stream 0) or, with ``data.per_peer_augmentation``, its own (stream ``k + 1``, as in
KDCL). Each peer also owns a torch random stream (dropout etc.) that it swaps in around its
forward pass, so peers sharing one process draw exactly what they would draw alone in their own actor.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor

from codistill.config import RunConfig
from codistill.data.base import PeerDataset
from codistill.progress import Progress


@dataclass(frozen=True)
class Batch:
    """One training step's input: where training stands, the images, the (possibly noisy) labels and
    the examples' indices in the training split."""

    progress: Progress
    images: Tensor
    targets: Tensor
    indices: Tensor
    #: Rows from this one on are the shared slice's (``data.shared_fraction``), unlabeled: their
    #: targets are the teachers' consensus, never trained on with cross-entropy (None: all labeled).
    labeled: int | None = None

    @property
    def own_rows(self) -> slice:
        """The labeled rows: the peer's own examples."""
        return slice(None, self.labeled)

    def with_shared(self, images: Tensor, positions: Tensor, offset: int) -> "Batch":
        """This batch and, after it, a batch of the shared slice (its ``positions`` in the slice; their
        indices follow the training split's, from ``offset``); targets still the own rows' only."""
        return Batch(self.progress, torch.cat([self.images, images.to(self.images.device)]), self.targets,
                     torch.cat([self.indices, offset + positions]), self.targets.numel())

    def with_consensus(self, teacher_logits: list[Tensor]) -> "Batch":
        """The shared rows' targets: the class the teachers' mean softmax ranks first (no label is used)."""
        shared = slice(self.targets.numel(), None)
        consensus = torch.stack([t[shared].float().softmax(-1) for t in teacher_logits]).mean(0).argmax(-1)
        return Batch(self.progress, self.images, torch.cat([self.targets, consensus.to(self.targets.device)]),
                     self.indices, self.labeled)


class BatchSource:
    """Peer ``index``'s batches of ``dataset`` on ``device``."""

    def __init__(self, config: RunConfig, index: int, dataset: PeerDataset, device: torch.device) -> None:
        self.config, self.dataset, self.device = config, dataset, device
        self.stream = index + 1 if config.data.per_peer_augmentation else 0
        self.order = 0 if config.data.shared_batches else index + 1

    @property
    def steps_per_epoch(self) -> int:
        return self.dataset.steps_per_epoch(self.config.data.batch_size)

    def progress(self, epoch: int, step: int) -> Progress:
        return Progress(epoch=epoch, step=step, steps_per_epoch=self.steps_per_epoch, total_epochs=self.config.epochs)

    def batch(self, epoch: int, step: int) -> Batch:
        data, seed = self.config.data, self.config.seed
        indices = self.dataset.batch_indices(seed, epoch, data.batch_size, self.order)[step]
        generator = self.dataset.augmentation_generator(seed, epoch, step, self.stream)
        images, labels = self.dataset.train_batch(indices, generator, augment=data.augment)
        return Batch(self.progress(epoch, step), images.to(self.device, non_blocking=True),
                     labels.to(self.device, non_blocking=True), indices)


class RandomStream:
    """A torch CPU random state of one's own, swapped in with :meth:`active`."""

    def __init__(self) -> None:
        self.state = torch.get_rng_state()

    @contextmanager
    def active(self) -> Iterator[None]:
        outer = torch.get_rng_state()
        torch.set_rng_state(self.state)
        try:
            yield
        finally:
            self.state = torch.get_rng_state()
            torch.set_rng_state(outer)
