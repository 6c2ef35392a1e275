"""Codistillation's exchange on Ray: parameters through the object store, then actor-driven chunks.

With ``distillation.teacher_source: replicas`` (not ``runtime.exchange``), peers exchange
*parameters*, not predictions: at each refresh step every actor returns its weights once (one
object in the store per peer) and the driver passes those refs, never fetched, to the other
actors' ``load_replicas`` (:func:`~codistill.cohort.steps.refresh_replicas`); between refreshes
each actor drives chunks of steps on its own replicas, with no cross-peer dependency. Chunks are
cut at the refresh steps, so a refresh is a barrier: it waits for the slowest peer; the window of
steps in flight bounds how far a fast peer runs ahead.
"""

from __future__ import annotations

from typing import Any

from codistill.cohort.exchanges import ActorCalls, Exchange
from codistill.cohort.steps import refresh_replicas
from codistill.config import RunConfig
from codistill.peer.replicas import RefreshSchedule, uses_replicas
from codistill.registry import EXCHANGES


class ReplicaExchange(Exchange):
    """Codistillation: parameters through the object store at each refresh, then actor-driven chunks."""

    def __init__(self, config: RunConfig) -> None:
        self.config = config
        self.schedule: RefreshSchedule | None = None  # known once the actors report their steps per epoch

    def steps_per_call(self, max_steps_in_flight: int) -> int:
        return max(1, max_steps_in_flight // 2)

    def connect(self, actors: list[Any], placement: list[dict[str, Any]], calls: ActorCalls) -> None:
        self.schedule = RefreshSchedule.of(self.config, placement[0]["steps_per_epoch"])

    def breaks(self, epoch: int) -> list[int]:
        return self.schedule.steps(epoch)

    def submit(self, actors: list[Any], epoch: int, steps: range) -> tuple[list[Any], list[Any]]:
        loads = []
        if self.schedule.due(epoch, steps.start):
            loads = refresh_replicas(actors, epoch, steps.start)
        return loads, [actor.run_steps(epoch, steps.start, steps.stop) for actor in actors]

    def collect(self, refs: tuple[list[Any], list[Any]], calls: ActorCalls) -> list[list[Any]]:
        loads, chunks = refs
        return [list(step) for step in zip(*calls.get_failing_fast(loads + chunks)[len(loads):])]


def exchange_for(config: RunConfig) -> Exchange:
    """The exchange of ``config``'s Ray cohort: the replicas' with codistillation, else ``runtime.exchange``."""
    return ReplicaExchange(config) if uses_replicas(config) else EXCHANGES.get(config.runtime.exchange)()
