"""The cohort interface the runner drives, and its one fan-out.

A :class:`Cohort` is a set of peers trained in lock-step. Implementations:
:class:`~codistill.cohort.sequential.SequentialCohort` (every peer in this process),
:class:`~codistill.cohort.offline.OfflineCohort` (one student, frozen teachers),
:class:`~codistill.cohort.ray_cohort.RayCohort` (one Ray actor per peer) and
:class:`~codistill.cohort.process_cohort.ProcessCohort` (one process per peer, no Ray). All return
the same per-step metrics (keys in :mod:`codistill.metrics`) and accept the same checkpoints.

Each one says how to ask every peer the same thing at once (:meth:`Cohort.call_peers`: a call in
this process, a Ray task per actor, a request per process); evaluation, sparsity, states and
models are asked through it, here, for every cohort.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, Protocol

from torch import Tensor

from codistill.config import RunConfig

StepCallback = Callable[[int, int], None]  # (steps done, steps in epoch)


class PeerHandle(Protocol):
    """One peer as a cohort reaches it; answers are values, or futures of them (Ray)."""

    def forward(self, epoch: int, step: int) -> Any:
        """First half of a step; this peer's payload for the others."""

    def update(self, *teacher_payloads: Any) -> Any:
        """Second half: distil from the teachers' payloads (separate arguments, so a remote
        handle's futures resolve), synchronize the teacher policy when due; the step's metrics."""

    def replica_step(self, epoch: int, step: int) -> Any:
        """A whole step on this peer's replicas (codistillation); the step's metrics."""

    def replica_weights(self) -> Any: ...

    def load_replicas(self, epoch: int, step: int, *weights: Any) -> Any: ...

    def evaluate(self, split: str) -> Any: ...

    def sparsity(self) -> Any: ...

    def state_bytes(self) -> Any: ...

    def load_state_bytes(self, blob: bytes) -> Any: ...

    def model_bytes(self) -> Any: ...

    def describe(self) -> Any:
        """Where and how this peer runs (pid, device, threads, steps per epoch, …)."""


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
    def call_peers(self, name: str, args: list[tuple] | None = None) -> list[Any]:
        """Every peer's :class:`~PeerHandle` method ``name`` with
        ``args[k]`` (none by default), asked of all at once; the answers in peer order."""

    def evaluate(self, split: str = "val") -> tuple[list[Tensor], Tensor]:
        """Each peer's logits on the ``val`` (or ``test``) split, and its labels."""
        results = self.call_peers("evaluate", [(split,)] * len(self.config.peers))
        return [logits for logits, _ in results], results[0][1]

    def sparsity(self) -> list[float | None]:
        return self.call_peers("sparsity")

    def state_bytes(self) -> list[bytes]:
        return self.call_peers("state_bytes")

    def load_state_bytes(self, blobs: list[bytes]) -> None:
        self.call_peers("load_state_bytes", [(blob,) for blob in blobs])

    def model_bytes(self) -> list[bytes]:
        return self.call_peers("model_bytes")

    def learner_state_bytes(self) -> bytes | None:
        """The teacher-policy learner's state (network, optimizer, baseline, RNG); ``None`` if none."""
        return None

    def load_learner_state_bytes(self, blob: bytes) -> None:  # noqa: B027 optional hook: no learner by default
        """Restore what :meth:`learner_state_bytes` returned."""

    def shutdown(self) -> None:  # noqa: B027 optional hook: a cohort holding no resources has none to release
        """Release resources (actors, devices)."""

    def restart(self) -> None:
        """Replace peers lost with :class:`PeerLost` by fresh ones (their state is reloaded next)."""
        raise NotImplementedError(f"{type(self).__name__} cannot restart lost peers")


class PeerLost(RuntimeError):
    """A peer's process or node died; the cohort can :meth:`Cohort.restart` and be reloaded."""


def others(payloads: list, index: int) -> list:
    """The payloads of every peer except ``index``: a peer's teachers."""
    return [payload for j, payload in enumerate(payloads) if j != index]
