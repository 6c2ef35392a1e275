"""A peer's batches and its own random stream.

The batch of ``(epoch, step)`` is a pure function of the run's seed (see
:mod:`codistill.data.base`): every peer sees the same examples in the same order (or, with
``data.shared_batches: false``, its own order, as in codistillation), with the shared
augmentation (stream 0) or, with ``data.per_peer_augmentation``, its own (stream ``k + 1``, as in
KDCL). A data-parallel worker prepares only its rows of the batch (``rows``). With
``data.prefetch_batches`` > 0 the batches of the next steps are prepared in a background thread
while the step computes (:class:`~codistill.data.background.Prefetch`); being pure functions of
the seed, epoch and step, they are the same as when prepared in the step. Each peer also owns a
torch random stream (dropout etc.) that it swaps in around its forward pass, so peers sharing one
process draw exactly what they would draw alone in their own actor.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace

import torch
from torch import Tensor

from codistill.config import RunConfig
from codistill.data.background import Prefetch
from codistill.data.base import PeerDataset
from codistill.progress import Progress


@dataclass(frozen=True)
class Batch:
    """One training step's input: where training stands, the images, the (possibly noisy) labels and
    the examples' indices in the training split (a data-parallel worker's: its rows), the size of
    the whole batch and the seconds the step waited for it."""

    progress: Progress
    images: Tensor
    targets: Tensor
    indices: Tensor
    batch_size: int
    data_wait: float
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
        return replace(self, images=torch.cat([self.images, images.to(self.images.device)]),
                       indices=torch.cat([self.indices, offset + positions]), labeled=self.targets.numel())

    def with_consensus(self, teacher_logits: list[Tensor]) -> "Batch":
        """The shared rows' targets: the class the teachers' mean softmax ranks first (no label is used)."""
        shared = slice(self.targets.numel(), None)
        consensus = torch.stack([t[shared].float().softmax(-1) for t in teacher_logits]).mean(0).argmax(-1)
        return replace(self, targets=torch.cat([self.targets, consensus.to(self.targets.device)]))


#: A batch on the CPU: images, labels, indices (of the rows prepared) and the whole batch's size.
HostBatch = tuple[Tensor, Tensor, Tensor, int]


@dataclass(frozen=True)
class HostBatches:
    """The rows ``rows(B)`` of the batch of ``(epoch, step)`` on the CPU: a pure function of the key
    (held apart from :class:`BatchSource`, so its prefetch thread does not keep the source alive)."""

    dataset: PeerDataset
    config: RunConfig
    order: int
    stream: int
    rows: Callable[[int], slice] | None

    def __call__(self, key: tuple[int, int]) -> HostBatch:
        (epoch, step), data, seed = key, self.config.data, self.config.seed
        indices = self.dataset.batch_indices(seed, epoch, data.batch_size, self.order)[step]
        generator = self.dataset.augmentation_generator(seed, epoch, step, self.stream)
        rows = slice(None) if self.rows is None else self.rows(indices.numel())
        images, labels = self.dataset.train_rows(indices, generator, data.augment, rows)
        return images, labels, indices[rows], indices.numel()


class BatchSource:
    """Peer ``index``'s batches of ``dataset`` on ``device``; ``rows(B)``: the rows of a batch of B
    this process trains on (a data-parallel worker's; default: all)."""

    def __init__(self, config: RunConfig, index: int, dataset: PeerDataset, device: torch.device,
                 rows: Callable[[int], slice] | None = None) -> None:
        self.config, self.dataset, self.device = config, dataset, device
        self.stream = index + 1 if config.data.per_peer_augmentation else 0
        self.order = 0 if config.data.shared_batches else index + 1
        self.host_batches = HostBatches(dataset, config, self.order, self.stream, rows)
        depth = config.data.prefetch_batches
        self.prefetch = Prefetch(self.host_batches, depth, f"codistill-batches-{index}") if depth > 0 else None

    @property
    def steps_per_epoch(self) -> int:
        return self.dataset.steps_per_epoch(self.config.data.batch_size)

    def progress(self, epoch: int, step: int) -> Progress:
        return Progress(epoch=epoch, step=step, steps_per_epoch=self.steps_per_epoch, total_epochs=self.config.epochs)

    def _following(self, epoch: int, step: int) -> Iterator[tuple[int, int]]:
        """The steps after ``(epoch, step)`` up to the end of training."""
        steps = self.steps_per_epoch
        while True:
            epoch, step = (epoch, step + 1) if step + 1 < steps else (epoch + 1, 0)
            if epoch >= self.config.epochs:
                return
            yield epoch, step

    def batch(self, epoch: int, step: int) -> Batch:
        started = time.perf_counter()
        images, labels, indices, batch_size = self.host_batches((epoch, step)) if self.prefetch is None \
            else self.prefetch.take((epoch, step), self._following(epoch, step))
        waited = time.perf_counter() - started
        return Batch(self.progress(epoch, step), images.to(self.device, non_blocking=True),
                     labels.to(self.device, non_blocking=True), indices, batch_size, waited)


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
