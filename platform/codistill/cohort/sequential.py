"""``sequential``: every peer of an online cohort in this process.

How most KD codebases run online distillation, and the Ray-free reference of
:class:`~codistill.cohort.ray_cohort.RayCohort` (same per-step metrics, same checkpoints, same
results: each peer computes with its own threads, ``resources.cpus``, as a Ray actor does). With
codistillation (``distillation.teacher_source: replicas``) each peer steps alone on its replicas,
and before each refresh step of :class:`~codistill.peer.replicas.RefreshSchedule` every peer's
weights are loaded into the others' replicas — what the Ray cohort's peers do through the object
store.
"""

from __future__ import annotations

from codistill.cohort.backends import BACKENDS
from codistill.cohort.handles import HeldPeer
from codistill.cohort.in_process import InProcessCohort
from codistill.cohort.steps import the_other_peers
from codistill.config import RunConfig
from codistill.peer import peer_datasets
from codistill.peer.replicas import RefreshSchedule, uses_replicas


@BACKENDS.register("sequential")
class SequentialCohort(InProcessCohort):
    """Every peer of an online cohort in this process (one dataset shared by all, or each peer's shard)."""

    def __init__(self, config: RunConfig) -> None:
        datasets = peer_datasets(config)
        handles = [HeldPeer.build(config, k, dataset=datasets[k]) for k in range(len(config.peers))]
        refresh = None
        if uses_replicas(config):
            refresh = RefreshSchedule.of(config, handles[0].trainer.batches.steps_per_epoch)
        super().__init__(config, handles, the_other_peers, refresh)
