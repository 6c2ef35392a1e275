"""Cohorts in one process: every peer held here, stepped one after another by the step driver.

:class:`InProcessCohort` drives its peers' steps with :func:`~codistill.cohort.steps.drive_steps`
(every forward, then each update on the payloads its ``teachers`` gives it) and a learning teacher
policy's learner runs here (:class:`~codistill.cohort.handles.LearnerInProcess`). Where the
teachers come from is the only difference between the two built-in in-process backends:
:class:`~codistill.cohort.sequential.SequentialCohort` (the other peers) and
:class:`~codistill.cohort.offline.OfflineCohort` (frozen networks).
"""

from __future__ import annotations

from typing import Any

from codistill.cohort.base import Cohort, StepCallback
from codistill.cohort.handles import HeldPeer, LearnerInProcess
from codistill.cohort.steps import TeacherSource, drive_steps
from codistill.config import RunConfig
from codistill.peer import PeerTrainer
from codistill.peer.replicas import RefreshSchedule
from codistill.policy import learner_state_bytes, load_learner_state_bytes


class InProcessCohort(Cohort):
    """``handles`` stepped in this process, each learning from what ``teachers`` gives it;
    codistilling peers (``refresh`` given) step on their replicas, refreshed on its schedule."""

    def __init__(self, config: RunConfig, handles: list[HeldPeer], teachers: TeacherSource | None,
                 refresh: RefreshSchedule | None = None) -> None:
        self.config, self.handles, self.teachers, self.refresh = config, handles, teachers, refresh
        #: The teacher policy's learner, in this process (``None`` for a fixed rule).
        self.learner = handles[0].make_policy_learner()
        if self.learner is not None:
            link = LearnerInProcess(self.learner, len(handles))
            for handle in handles:
                handle.policy_link = link

    @property
    def peers(self) -> list[PeerTrainer]:
        """Every peer's trainer, in peer order."""
        return [handle.trainer for handle in self.handles]

    def steps_per_epoch(self) -> int:
        return self.peers[0].batches.steps_per_epoch

    def train_epoch(self, epoch: int, on_step: StepCallback | None = None) -> list[list[dict[str, float]]]:
        total = self.steps_per_epoch()
        metrics = []
        for step in range(total):
            metrics.append(self.step(epoch, step))
            if on_step is not None:
                on_step(step + 1, total)
        return metrics

    def step(self, epoch: int, step: int) -> list[dict[str, float]]:
        """One step of every peer; its metrics in peer order."""
        return drive_steps(self.handles, epoch, range(step, step + 1), self.teachers,
                           replicas=self.refresh is not None, refresh=self.refresh)[0]

    def call_peers(self, name: str, args: list[tuple] | None = None) -> list[Any]:
        return [getattr(handle, name)(*(args[k] if args is not None else ())) for k, handle in enumerate(self.handles)]

    def learner_state_bytes(self) -> bytes | None:
        return learner_state_bytes(self.learner)

    def load_learner_state_bytes(self, blob: bytes) -> None:
        load_learner_state_bytes(self.learner, blob)
