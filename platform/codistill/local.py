"""Cohorts in one process, with one training loop.

:class:`LocalCohort` steps its peers one after another: every peer's ``forward``, then every
peer's ``update`` with the payloads of its teachers, then — at a synchronization step — one run
of the teacher policy's learner on every peer's transitions. Where the teachers come from is the
only difference between the two built-in backends:

- ``sequential`` (:class:`SequentialCohort`): the other peers of an online cohort — how most KD
  codebases run online distillation, and the Ray-free reference of
  :class:`codistill.cohort.RayCohort` (same per-step metrics, same checkpoints, same results).
  With codistillation (``distillation.teacher_source: replicas``) each peer steps alone on its
  replicas (:meth:`~codistill.peer.PeerTrainer.replica_step`), and before each refresh step of
  :class:`~codistill.peer.replicas.RefreshSchedule` every peer's weights are loaded into the
  others' replicas — what the Ray cohort's peers do through the object store;
- ``local`` (:class:`OfflineCohort`): one student and frozen teachers
  (:class:`codistill.offline.FrozenTeachers`) run on exactly the student's batch.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from codistill.cohort_base import Cohort, StepCallback, others
from codistill.config import RunConfig
from codistill.methods.base import TeacherView
from codistill.offline import FrozenTeachers
from codistill.peer import PeerTrainer, peer_datasets
from codistill.peer.replicas import RefreshSchedule, uses_replicas
from codistill.policy import learn_in_process, learner_state_bytes, load_learner_state_bytes, sync_due
from codistill.registry import BACKENDS

#: Peer ``k``'s teacher payloads from every peer's payload of the step.
TeacherSource = Callable[[int, list[TeacherView]], list[TeacherView]]


class LocalCohort(Cohort):
    """``peers`` stepped in this process, each learning from what ``teachers`` gives it."""

    def __init__(self, config: RunConfig, peers: list[PeerTrainer], teachers: TeacherSource) -> None:
        self.config, self.peers, self.teachers = config, peers, teachers
        #: The teacher policy's learner, in this process (``None`` for a fixed rule).
        self.learner = peers[0].policy.make_learner()

    def steps_per_epoch(self) -> int:
        return self.peers[0].batches.steps_per_epoch

    def train_epoch(self, epoch: int, on_step: StepCallback | None = None) -> list[list[dict[str, float]]]:
        total = self.steps_per_epoch()
        metrics = []
        for step in range(total):
            metrics.append(self.step(epoch, step))
            if self.learner is not None and sync_due(self.peers[0].policy, self.peers[0].last_progress):
                learn_in_process(self.learner, [peer.policy for peer in self.peers], metrics[-1])
            if on_step is not None:
                on_step(step + 1, total)
        return metrics

    def step(self, epoch: int, step: int) -> list[dict[str, float]]:
        """One step of every peer: all forwards, then each update on its teachers' payloads."""
        payloads = [peer.forward(epoch, step) for peer in self.peers]
        return [peer.update(self.teachers(k, payloads)) for k, peer in enumerate(self.peers)]

    def evaluate(self, split: str = "val") -> tuple[list[Tensor], Tensor]:
        results = [peer.evaluate(split) for peer in self.peers]
        return [logits for logits, _ in results], results[0][1]

    def sparsity(self) -> list[float | None]:
        return [peer.sparsity() for peer in self.peers]

    def state_bytes(self) -> list[bytes]:
        return [peer.state_bytes() for peer in self.peers]

    def load_state_bytes(self, blobs: list[bytes]) -> None:
        for peer, blob in zip(self.peers, blobs):
            peer.load_state_bytes(blob)

    def learner_state_bytes(self) -> bytes | None:
        return learner_state_bytes(self.learner)

    def load_learner_state_bytes(self, blob: bytes) -> None:
        load_learner_state_bytes(self.learner, blob)

    def model_bytes(self) -> list[bytes]:
        return [peer.model_bytes() for peer in self.peers]


@BACKENDS.register("sequential")
class SequentialCohort(LocalCohort):
    """Every peer of an online cohort in this process (shared dataset or each peer's shard, shared threads)."""

    def __init__(self, config: RunConfig, threads: int | None = None) -> None:
        if threads is not None:
            torch.set_num_threads(threads)
        datasets = peer_datasets(config)
        super().__init__(config, [PeerTrainer(config, k, dataset=datasets[k]) for k in range(len(config.peers))],
                         lambda k, payloads: others(payloads, k))
        self.refresh = RefreshSchedule.of(config, self.steps_per_epoch()) if uses_replicas(config) else None

    def step(self, epoch: int, step: int) -> list[dict[str, float]]:
        if self.refresh is None:
            return super().step(epoch, step)
        if self.refresh.due(epoch, step):
            weights = [peer.replica_weights() for peer in self.peers]
            for k, peer in enumerate(self.peers):
                peer.load_replicas(epoch, step, *others(weights, k))
        return [peer.replica_step(epoch, step) for peer in self.peers]


@BACKENDS.register("local")
class OfflineCohort(LocalCohort):
    """A one-student "cohort" whose teachers are frozen networks (``config.teachers``)."""

    def __init__(self, config: RunConfig) -> None:
        student = PeerTrainer(config, 0)
        self.frozen = FrozenTeachers(config.teachers, student)
        super().__init__(config, [student], lambda k, payloads: self.frozen.views(student.batch_in_progress.images))

    @property
    def student(self) -> PeerTrainer:
        return self.peers[0]
