"""The cohort interface the runner drives, and its single-process implementation.

:class:`SequentialCohort` trains every peer one after another in one process — how most KD
codebases run online distillation. It is the Ray-free reference (tests, debugging, the
benchmark's baseline); :class:`codistill.cohort.RayCohort` runs the same peers side by side in
Ray actors. Both return the same per-step metrics and accept the same checkpoints.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Callable

import torch
from torch import Tensor

from codistill.config import RunConfig
from codistill.peer import PeerTrainer, load_dataset

StepCallback = Callable[[int, int], None]  # (steps done, steps in epoch)


class Cohort(ABC):
    """A set of peers trained in lock-step; index k is ``config.peers[k]``."""

    config: RunConfig

    @property
    def peer_names(self) -> list[str]:
        return [peer.name for peer in self.config.peers]

    @abstractmethod
    def steps_per_epoch(self) -> int: ...

    @abstractmethod
    def train_epoch(self, epoch: int, on_step: StepCallback | None = None) -> list[list[dict[str, float]]]:
        """Train one epoch; returns metrics indexed ``[step][peer]``."""

    @abstractmethod
    def evaluate(self) -> tuple[list[Tensor], Tensor]:
        """Each peer's validation logits, and the validation labels."""

    @abstractmethod
    def sparsity(self) -> list[float | None]: ...

    @abstractmethod
    def state_bytes(self) -> list[bytes]: ...

    @abstractmethod
    def load_state_bytes(self, blobs: list[bytes]) -> None: ...

    @abstractmethod
    def model_bytes(self) -> list[bytes]: ...

    def shutdown(self) -> None:
        """Release resources (actors, devices)."""


def others(payloads: list, index: int) -> list:
    """The payloads of every peer except ``index``: a peer's teachers."""
    return [payload for j, payload in enumerate(payloads) if j != index]


class SequentialCohort(Cohort):
    """All peers in this process, stepped one after another (shared dataset, shared threads)."""

    def __init__(self, config: RunConfig, threads: int | None = None) -> None:
        if threads is not None:
            torch.set_num_threads(threads)
        self.config = config
        dataset = load_dataset(config)
        self.peers = [PeerTrainer(config, k, dataset=dataset) for k in range(len(config.peers))]

    def steps_per_epoch(self) -> int:
        return self.peers[0].dataset.steps_per_epoch(self.config.data.batch_size)

    def train_epoch(self, epoch: int, on_step: StepCallback | None = None) -> list[list[dict[str, float]]]:
        total = self.steps_per_epoch()
        metrics = []
        for step in range(total):
            payloads = [peer.forward(epoch, step) for peer in self.peers]
            metrics.append([peer.update(others(payloads, k)) for k, peer in enumerate(self.peers)])
            if on_step is not None:
                on_step(step + 1, total)
        return metrics

    def evaluate(self) -> tuple[list[Tensor], Tensor]:
        results = [peer.evaluate() for peer in self.peers]
        return [logits for logits, _ in results], results[0][1]

    def sparsity(self) -> list[float | None]:
        return [peer.sparsity() for peer in self.peers]

    def state_bytes(self) -> list[bytes]:
        return [peer.state_bytes() for peer in self.peers]

    def load_state_bytes(self, blobs: list[bytes]) -> None:
        for peer, blob in zip(self.peers, blobs):
            peer.load_state_bytes(blob)

    def model_bytes(self) -> list[bytes]:
        return [peer.model_bytes() for peer in self.peers]
