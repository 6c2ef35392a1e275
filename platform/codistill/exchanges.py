"""How a Ray cohort's peers exchange payloads (``runtime.exchange``), described without Ray.

An :class:`Exchange` says which calls the driver makes on the peer actors and how their results
line up; :class:`codistill.cohort.RayCohort` makes them, through the :class:`ActorCalls` it
passes in, so this module (and config validation, which looks exchanges up by name) imports no
Ray:

- ``objectref`` (:class:`ObjectRefExchange`) submits every peer's ``forward`` and passes the
  resulting ObjectRefs straight into the other peers' ``update`` calls, so predictions travel
  through Ray's object store from peer to peer and the driver never fetches them. Per-actor task
  ordering keeps each peer's ``forward(s)``, ``update(s)`` sequence.
- ``collective`` (:class:`CollectiveExchange`) has each actor run a chunk of steps itself
  (:func:`codistill.collective.run_steps`), the peers exchanging payloads with one all-gather per
  step in a ``torch.distributed`` group (gloo; NCCL when every peer is on a GPU) that the actors
  form when the cohort starts: peer 0 opens the store's socket on its node, the driver passes
  that address to all.

- ``replicas`` (:class:`ReplicaExchange`, chosen by ``distillation.teacher_source: replicas``,
  not by ``runtime.exchange``): codistillation. Peers exchange *parameters*, not predictions: at
  each refresh step every actor returns its weights once (one object in the store per peer) and
  the driver passes those refs, never fetched, to the other actors' ``load_replicas``; between
  refreshes each actor runs chunks of steps on its own replicas, with no cross-peer dependency.
  Chunks are cut at the refresh steps, so a refresh is a barrier: it waits for the slowest peer.

Every way, the driver keeps at most ``runtime.max_steps_in_flight`` steps asked for and not yet
collected (:func:`run_in_window`); with replicas that bounds how far a fast peer runs ahead.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import deque
from typing import Any, Callable, Iterable, Protocol

from codistill.cohort_base import StepCallback, others
from codistill.config import RunConfig
from codistill.peer.replicas import RefreshSchedule, uses_replicas
from codistill.registry import EXCHANGES


class ActorCalls(Protocol):
    """The waits an exchange needs from the cohort (Ray's, with lost peers surfaced)."""

    def get(self, refs: list) -> list:
        """The results of ``refs``, in order."""

    def get_failing_fast(self, refs: list) -> list:
        """The results of ``refs``, raising as soon as any one of them fails."""

    def wait_for(self, refs: list, timeout_s: float) -> None:
        """Wait up to ``timeout_s`` for ``refs`` to finish, ignoring their results."""


class Exchange(ABC):
    """How training steps are asked of the peer actors and how their payloads travel.

    ``peers_restart_alone``: :meth:`connect` ties no actor to the others, so a lost actor can be
    replaced alone while the others keep running (:meth:`codistill.cohort.RayCohort.restart`)."""

    peers_restart_alone = False

    def steps_per_call(self, max_steps_in_flight: int) -> int:
        """Steps each actor is asked for in one call."""
        return 1

    def breaks(self, epoch: int) -> list[int]:
        """Steps of ``epoch`` at which a call must start (besides the window's own cuts)."""
        return []

    def connect(self, actors: list[Any], placement: list[dict[str, Any]], calls: ActorCalls) -> None:
        """Prepare freshly started actors (``placement``: each one's node, device and GPU ids)."""

    def disconnect(self, actors: list[Any], calls: ActorCalls) -> None:
        """Undo :meth:`connect` before the actors go away."""

    @abstractmethod
    def submit(self, actors: list[Any], epoch: int, steps: range) -> list:
        """Ask every actor for ``steps`` of ``epoch``; returns the refs :meth:`collect` takes."""

    @abstractmethod
    def collect(self, refs: list, calls: ActorCalls) -> list[list[Any]]:
        """Wait for what :meth:`submit` returned; step records indexed ``[step][peer]``."""


@EXCHANGES.register("objectref")
class ObjectRefExchange(Exchange):
    """Peer-to-peer through the object store: ``update_and_sync_k(*forward_refs of the others)``."""

    peers_restart_alone = True

    def submit(self, actors: list[Any], epoch: int, steps: range) -> list[list[Any]]:
        rows = []
        for step in steps:
            payloads = [actor.forward.remote(epoch, step) for actor in actors]
            rows.append([actor.update_and_sync.remote(*others(payloads, k)) for k, actor in enumerate(actors)])
        return rows

    def collect(self, rows: list[list[Any]], calls: ActorCalls) -> list[list[Any]]:
        values, width = calls.get([ref for row in rows for ref in row]), len(rows[0])
        return [values[start:start + width] for start in range(0, len(values), width)]


@EXCHANGES.register("collective")
class CollectiveExchange(Exchange):
    """Actor-driven chunks of steps; payloads all-gathered among the actors every step."""

    def __init__(self, leave_timeout_s: float = 30.0) -> None:
        self.leave_timeout_s = leave_timeout_s

    def steps_per_call(self, max_steps_in_flight: int) -> int:
        # Two calls fit in the window, so the next chunk waits queued while the driver collects.
        return max(1, max_steps_in_flight // 2)

    def connect(self, actors: list[Any], placement: list[dict[str, Any]], calls: ActorCalls) -> None:
        on_gpu = nccl_applies(placement)
        host, port = calls.get([actors[0].open_collective.remote()])[0]
        calls.get([actor.join_collective.remote(host, port, len(actors), on_gpu) for actor in actors])

    def disconnect(self, actors: list[Any], calls: ActorCalls) -> None:
        calls.wait_for([actor.leave_collective.remote() for actor in actors], self.leave_timeout_s)

    def submit(self, actors: list[Any], epoch: int, steps: range) -> list[Any]:
        return [actor.run_steps.remote(epoch, steps.start, steps.stop) for actor in actors]

    def collect(self, refs: list[Any], calls: ActorCalls) -> list[list[Any]]:
        # A peer that fails raises at once, not after the others' timeout.
        return [list(step) for step in zip(*calls.get_failing_fast(refs))]


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
            weights = [actor.replica_weights.remote() for actor in actors]
            loads = [actor.load_replicas.remote(epoch, steps.start, *others(weights, k))
                     for k, actor in enumerate(actors)]
        return loads, [actor.run_steps.remote(epoch, steps.start, steps.stop) for actor in actors]

    def collect(self, refs: tuple[list[Any], list[Any]], calls: ActorCalls) -> list[list[Any]]:
        loads, chunks = refs
        return [list(step) for step in zip(*calls.get_failing_fast(loads + chunks)[len(loads):])]


def exchange_for(config: RunConfig) -> Exchange:
    """The exchange of ``config``'s Ray cohort: the replicas' with codistillation, else ``runtime.exchange``."""
    return ReplicaExchange(config) if uses_replicas(config) else EXCHANGES.get(config.runtime.exchange)()


def nccl_applies(placement: list[dict[str, Any]]) -> bool:
    """NCCL when every peer is on a GPU of its own (NCCL refuses two ranks on one card, so peers
    sharing a card through fractional GPUs all-gather over gloo instead)."""
    cards = [(where["node"], gpu) for where in placement for gpu in where.get("gpu_ids", [])]
    return all(where["device"].startswith("cuda") for where in placement) and len(set(cards)) == len(cards) \
        and len(cards) >= len(placement)


def run_in_window(total: int, steps_per_call: int, max_steps_in_flight: int,
                  submit: Callable[[range], Any], collect: Callable[[Any], list],
                  on_step: StepCallback | None = None, breaks: Iterable[int] = ()) -> list:
    """Steps ``0 … total−1`` asked for in calls of ``steps_per_call`` (a call also starts at each
    of ``breaks``), never more than ``max_steps_in_flight`` asked for and not yet collected (at
    least one call); results in order. ``on_step(done, total)`` runs after each collected call."""
    results: list = []
    pending: deque[tuple[range, Any]] = deque()
    in_flight = 0
    starts = sorted(set(range(0, total, steps_per_call)) | {step for step in breaks if 0 < step < total})
    for start, stop in zip(starts, starts[1:] + [total]):
        steps = range(start, stop)
        while pending and in_flight + len(steps) > max_steps_in_flight:
            in_flight -= _collect_oldest(pending, collect, results, total, on_step)
        pending.append((steps, submit(steps)))
        in_flight += len(steps)
    while pending:
        _collect_oldest(pending, collect, results, total, on_step)
    return results


def _collect_oldest(pending: deque, collect: Callable[[Any], list], results: list, total: int,
                    on_step: StepCallback | None) -> int:
    steps, handle = pending.popleft()
    results.extend(collect(handle))
    if on_step is not None:
        on_step(steps.stop, total)
    return len(steps)
