"""The single-process cohort.

:class:`SequentialCohort` trains every peer one after another in one process — how most KD
codebases run online distillation. It is the Ray-free reference (tests, debugging, the
benchmark's baseline); :class:`codistill.cohort.RayCohort` runs the same peers side by side in
Ray actors. Both return the same per-step metrics and accept the same checkpoints.
"""

from __future__ import annotations

import torch
from torch import Tensor

from codistill.cohort_base import Cohort, StepCallback, others
from codistill.config import RunConfig
from codistill.peer import PeerTrainer, load_dataset
from codistill.teachers import learn_in_process, learner_state_bytes, load_learner_state_bytes, sync_due


class SequentialCohort(Cohort):
    """All peers in this process, stepped one after another (shared dataset, shared threads)."""

    def __init__(self, config: RunConfig, threads: int | None = None) -> None:
        if threads is not None:
            torch.set_num_threads(threads)
        self.config = config
        dataset = load_dataset(config)
        self.peers = [PeerTrainer(config, k, dataset=dataset) for k in range(len(config.peers))]
        #: The teacher policy's learner, in this process (``None`` for a fixed rule).
        self.learner = self.peers[0].policy.make_learner()

    def steps_per_epoch(self) -> int:
        return self.peers[0].dataset.steps_per_epoch(self.config.data.batch_size)

    def train_epoch(self, epoch: int, on_step: StepCallback | None = None) -> list[list[dict[str, float]]]:
        total = self.steps_per_epoch()
        metrics = []
        for step in range(total):
            payloads = [peer.forward(epoch, step) for peer in self.peers]
            metrics.append([peer.update(others(payloads, k)) for k, peer in enumerate(self.peers)])
            if self.learner is not None and sync_due(self.peers[0].policy, self.peers[0].last_progress):
                learn_in_process(self.learner, [peer.policy for peer in self.peers], metrics[-1])
            if on_step is not None:
                on_step(step + 1, total)
        return metrics

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
