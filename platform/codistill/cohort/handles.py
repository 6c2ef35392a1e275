"""The one way a process holds a peer's trainer, answering what a peer handle answers.

A :class:`~codistill.cohort.base.PeerHandle` is what the step driver (:mod:`codistill.cohort.steps`) and the fan-out
(:meth:`codistill.cohort.base.Cohort.call_peers`) talk to. :class:`HeldPeer` answers it in the
process that holds the :class:`~codistill.peer.PeerTrainer` (the sequential cohort's peers, each
Ray actor, each worker process); a Ray actor's handle answers the same calls with ObjectRefs
(:class:`RemotePeer`). A later kind of peer — a group of workers
computing one peer — is one more implementation of the protocol.

Every call of a :class:`HeldPeer` computes with the torch threads its config gives it
(``resources.cpus``, whole CPUs, at least one) and restores the process's own count afterwards,
so a peer's numbers do not depend on the backend that runs it nor on the machine's core count.
"""

from __future__ import annotations

import math
import os
import resource
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol

import torch
from torch import Tensor

from codistill.cohort.base import others
from codistill.cohort.steps import TeacherSource, drive_steps
from codistill.cohort.tensor_group import PayloadGroup
from codistill.config import PeerConfig, RunConfig
from codistill.methods.base import TeacherView
from codistill.peer import PeerTrainer
from codistill.peer.data_parallel import peer_payloads
from codistill.policy import PolicyLearner, TeacherWeightingPolicy, learn_in_process, sync_due


class PolicyLink(Protocol):
    """How a peer takes part in the teacher policy's synchronization (a learning policy)."""

    def synchronize(self, index: int, policy: TeacherWeightingPolicy, metrics: dict[str, float]) -> None:
        """Send ``policy``'s transitions; once the learner ran, load its parameters into
        ``policy`` (possibly after this call returns) and add its scalars to ``metrics``."""


class LearnerInProcess:
    """A :class:`PolicyLink` for the peers of one process: the last peer to synchronize runs the
    learner on every peer's transitions, in peer order, and hands every peer the new parameters
    before any next step."""

    def __init__(self, learner: PolicyLearner, peers: int) -> None:
        self.learner, self.peers = learner, peers
        self.waiting: list[tuple[TeacherWeightingPolicy, dict[str, float]]] = []

    def synchronize(self, index: int, policy: TeacherWeightingPolicy, metrics: dict[str, float]) -> None:
        if index != len(self.waiting):
            raise RuntimeError(f"policy synchronization: peer {index} came out of order")
        self.waiting.append((policy, metrics))
        if len(self.waiting) == self.peers:
            policies, step_metrics = zip(*self.waiting)
            self.waiting = []
            learn_in_process(self.learner, list(policies), list(step_metrics))


def threads_for(peer: PeerConfig) -> int:
    """Torch threads for a peer: the whole CPUs it was given (at least one)."""
    return max(1, int(math.floor(peer.resources.cpus)))


def peak_rss_bytes() -> int:
    """This process's peak resident memory (Unix ``ru_maxrss``: KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


@contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Compute with ``count`` torch threads inside the block, then restore the previous count."""
    previous = torch.get_num_threads()
    if previous != count:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        if previous != count:
            torch.set_num_threads(previous)


class HeldPeer:
    """A :class:`PeerHandle` in the process that holds peer ``trainer`` (composition: the trainer
    is a part, not a base). ``teachers`` turns this peer's payload into its teachers' for the
    steps it drives itself (:meth:`run_steps`: the collective exchange); ``policy_link`` joins a
    learning teacher policy's synchronization."""

    def __init__(self, trainer: PeerTrainer) -> None:
        self.trainer = trainer
        self.index = trainer.index
        self.threads = threads_for(trainer.config.peers[trainer.index])
        self.policy_link: PolicyLink | None = None
        self.teachers: TeacherSource | None = None
        self.payload_on_host = True  # False: payloads stay on the peer's device (a tensor collective)
        self.group: PayloadGroup | None = None

    @classmethod
    def build(cls, config: RunConfig, index: int, **trainer_options: Any) -> "HeldPeer":
        """Peer ``index`` of ``config`` (``trainer_options``: a shared dataset, a device)."""
        with torch_threads(threads_for(config.peers[index])):
            return cls(PeerTrainer(config, index, **trainer_options))

    def forward(self, epoch: int, step: int) -> TeacherView | None:
        with torch_threads(self.threads):
            return self.trainer.forward(epoch, step, on_host=self.payload_on_host)

    def update(self, *teacher_payloads: TeacherView) -> dict[str, float]:
        with torch_threads(self.threads):
            metrics = self.trainer.update(list(teacher_payloads))
        self._synchronize_policy(metrics)
        return metrics

    def replica_step(self, epoch: int, step: int) -> dict[str, float]:
        with torch_threads(self.threads):
            metrics = self.trainer.replica_step(epoch, step)
        self._synchronize_policy(metrics)
        return metrics

    def _synchronize_policy(self, metrics: dict[str, float]) -> None:
        if self.policy_link is not None and sync_due(self.trainer.policy, self.trainer.last_progress):
            self.policy_link.synchronize(self.index, self.trainer.policy, metrics)

    def replica_weights(self) -> bytes:
        return self.trainer.replica_weights()

    def load_replicas(self, epoch: int, step: int, *weights: bytes) -> None:
        self.trainer.load_replicas(epoch, step, *weights)

    def run_steps(self, epoch: int, start: int, stop: int) -> list[dict[str, float]]:
        """Steps ``start … stop−1`` of ``epoch`` driven here: on this peer's replicas, or with
        :attr:`teachers` (the collective exchange); the step metrics in order."""
        if self.trainer.replicas is None and self.teachers is None:
            raise RuntimeError("run_steps() needs the collective exchange's group first")
        rows = drive_steps([self], epoch, range(start, stop), self.teachers, replicas=self.trainer.replicas is not None)
        if self.trainer.device.type == "cuda":
            torch.cuda.synchronize(self.trainer.device)  # the answer comes once the steps' GPU work is done
        return [metrics for metrics, in rows]

    def evaluate(self, split: str = "val") -> tuple[Tensor, Tensor]:
        with torch_threads(self.threads):
            return self.trainer.evaluate(split)

    def sparsity(self) -> float | None:
        return self.trainer.sparsity()

    def state_bytes(self) -> bytes:
        return self.trainer.state_bytes()

    def load_state_bytes(self, blob: bytes) -> None:
        self.trainer.load_state_bytes(blob)

    def model_bytes(self) -> bytes:
        return self.trainer.model_bytes()

    def make_policy_learner(self) -> PolicyLearner | None:
        return self.trainer.policy.make_learner()

    def describe(self) -> dict[str, Any]:
        trainer = self.trainer
        on_gpu = trainer.device.type == "cuda"
        return {"pid": os.getpid(), "device": str(trainer.device), "threads": self.threads,
                "gpu_uuid": str(torch.cuda.get_device_properties(trainer.device).uuid) if on_gpu else None,
                "steps_per_epoch": trainer.batches.steps_per_epoch,
                "learns_policy": trainer.policy.make_learner() is not None}

    def peak_rss_bytes(self) -> int:
        return peak_rss_bytes()

    def peak_gpu_memory_bytes(self) -> int | None:
        """The most GPU memory this process's tensors held so far (``None`` on the CPU)."""
        device = self.trainer.device
        return torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None

    # -- the collective exchange's group (rank = peer index) ------------------------------------

    def join_group(self, group: PayloadGroup, workers: list[int] | None = None) -> None:
        """Drive :meth:`run_steps` with payloads all-gathered through ``group``, left on the device;
        its ranks are each peer's ``workers`` in turn (one each by default), a data-parallel
        peer's rows joined into its global batch's payload (a worker keeps its rows in its update)."""
        self.group, self.payload_on_host = group, False
        workers = workers or [1] * group.world_size
        self.teachers = lambda index, payloads: others(peer_payloads(group.all_gather(payloads[0]), workers),
                                                       self.index)

    def leave_group(self) -> None:
        if self.group is not None:
            self.group.close()
        self.group, self.teachers, self.payload_on_host = None, None, True


class RemotePeer:
    """A peer actor as a :class:`PeerHandle`: each call submits the actor's method and answers
    its future (a Ray ObjectRef); futures passed as arguments resolve in the receiving actor."""

    def __init__(self, actor: Any) -> None:
        self.actor = actor

    def __getattr__(self, name: str) -> Any:
        return getattr(self.actor, name).remote
