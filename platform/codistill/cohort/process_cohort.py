"""The collective exchange without Ray: one worker process per peer, on this machine.

Each process holds one peer (:class:`PeerProcess`, a :class:`~codistill.cohort.handles.HeldPeer`
computing with its own threads) and joins a :class:`~codistill.cohort.tensor_group.PayloadGroup`
the way a Ray peer actor does for ``runtime.exchange: collective``: peer 0 opens the store's socket
on loopback, the others connect to its port, and every peer then drives chunks of steps itself.
The driver calls the processes through :class:`~codistill.cohort.workers.Workers`, so
:class:`ProcessCohort` trains, evaluates, checkpoints and resumes like any
:class:`~codistill.cohort.base.Cohort` under :func:`~codistill.runner.run_cohort`.

It serves where Ray is absent (the GPU machine): the computation of the Ray collective exchange,
so on the CPU it gives exactly :class:`~codistill.cohort.sequential.SequentialCohort`'s numbers. A
CUDA peer ``k`` runs on GPU ``k mod count``. The group's communication backend
(:data:`GROUP_BACKENDS`) is NCCL when every peer has a GPU of its own and gloo otherwise: NCCL
(since 2.5) refuses two ranks on one GPU, so peers sharing a card (fractional GPUs) exchange over
gloo; ``group_backend="nccl"`` forces NCCL (for an NCCL that allows several ranks per GPU). A
learning teacher policy (a learner shared by the peers) is not supported.
"""

from __future__ import annotations

from typing import Any

import torch

from codistill.cohort.base import Cohort, StepCallback
from codistill.cohort.handles import HeldPeer, threads_for
from codistill.cohort.sample_payloads import all_gather_samples
from codistill.cohort.tensor_group import PayloadGroup
from codistill.cohort.workers import LoopbackMember, Workers
from codistill.config import RunConfig
from codistill.methods.base import TeacherView
from codistill.peer import PeerTrainer
from codistill.peer.optimization import select_device
from codistill.peer.replicas import uses_replicas

#: How a group's peers communicate: ``auto`` (NCCL when every peer has a GPU of its own), or forced.
GROUP_BACKENDS = ("auto", "nccl", "gloo")


class PeerProcess(HeldPeer, LoopbackMember):
    """What runs in peer ``index``'s process: its trainer, and its place in the group."""

    def __init__(self, config: RunConfig, index: int) -> None:
        peer = config.peers[index]
        torch.set_num_threads(threads_for(peer))
        device = select_device(config, peer)
        if device.type == "cuda":
            device = torch.device("cuda", index % torch.cuda.device_count())
        super().__init__(PeerTrainer(config, index, device=device))
        self.rank, self.device = index, device

    def joined(self, group: PayloadGroup) -> None:
        self.join_group(group)

    def all_gather_samples(self, rounds: int) -> list[list[TeacherView]]:
        """All-gather this peer's sample payload ``rounds`` times (the group's exactness check)."""
        return all_gather_samples(self.group, self.rank, self.device, rounds)

    def close(self) -> None:
        self.leave_group()


def choose_group_backend(placement: list[dict[str, Any]], requested: str) -> str:
    """``requested``, or for ``auto``: NCCL when every peer is on a GPU of its own, else gloo."""
    if requested != "auto":
        return requested
    gpus = [where["gpu_uuid"] for where in placement]
    return "nccl" if None not in gpus and len(set(gpus)) == len(gpus) else "gloo"


class ProcessCohort(Cohort):
    """The peers of ``config`` in one process each, exchanging payloads with one all-gather per
    step in a ``torch.distributed`` group (``group_backend``: see the module docstring); each call
    trains ``runtime.max_steps_in_flight`` steps. ``timeout_s`` bounds the start, the group's
    forming and each of its collectives."""

    def __init__(self, config: RunConfig, group_backend: str = "auto", timeout_s: float = 300.0) -> None:
        if group_backend not in GROUP_BACKENDS:
            raise ValueError(f"group_backend must be one of {', '.join(GROUP_BACKENDS)}, got '{group_backend}'")
        if uses_replicas(config):
            raise NotImplementedError("ProcessCohort exchanges live payloads; codistillation's replicas run on "
                                      "SequentialCohort or RayCohort")
        self.config = config
        self.workers = Workers(PeerProcess, [(config, k) for k in range(len(config.peers))],
                               [f"peer '{peer.name}'" for peer in config.peers], timeout_s)
        try:
            self.placement: list[dict[str, Any]] = self.workers.call_all("describe")
            if self.placement[0]["learns_policy"]:
                raise NotImplementedError("ProcessCohort cannot train a learning teacher policy (it has no shared "
                                          "policy learner); use SequentialCohort or RayCohort")
            self.group_backend = self.workers.form_group(choose_group_backend(self.placement, group_backend), timeout_s)
        except BaseException:
            self.workers.close()
            raise

    def steps_per_epoch(self) -> int:
        return self.placement[0]["steps_per_epoch"]

    def run_steps(self, epoch: int, steps: range) -> list[list[dict[str, float]]]:
        """Train ``steps`` of ``epoch`` on every peer; metrics indexed ``[step][peer]``."""
        per_peer = self.workers.call_all("run_steps", [(epoch, steps.start, steps.stop)] * len(self.workers))
        return [list(step) for step in zip(*per_peer)]

    def train_epoch(self, epoch: int, on_step: StepCallback | None = None) -> list[list[dict[str, float]]]:
        total, chunk = self.steps_per_epoch(), max(1, self.config.runtime.max_steps_in_flight)
        metrics: list[list[dict[str, float]]] = []
        for start in range(0, total, chunk):
            steps = range(start, min(start + chunk, total))
            metrics.extend(self.run_steps(epoch, steps))
            if on_step is not None:
                on_step(steps.stop, total)
        return metrics

    def call_peers(self, name: str, args: list[tuple] | None = None) -> list[Any]:
        return self.workers.call_all(name, args)

    def peak_gpu_memory_bytes(self) -> list[int | None]:
        """Each peer process's peak GPU memory so far (``None`` for a CPU peer)."""
        return self.workers.call_all("peak_gpu_memory_bytes")

    def all_gather_samples(self, rounds: int = 2) -> list[list[list[TeacherView]]]:
        """Every peer's sample payload all-gathered ``rounds`` times through the cohort's own group,
        as :func:`~codistill.cohort.sample_payloads.gather_sample_payloads` returns it (check with
        :func:`~codistill.cohort.sample_payloads.sample_mismatches`)."""
        return self.workers.call_all("all_gather_samples", [(rounds,)] * len(self.workers))

    def shutdown(self) -> None:
        self.workers.close()
