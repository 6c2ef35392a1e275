"""How a Ray cohort's peers exchange payloads (``runtime.exchange``), described without Ray or a peer.

An :class:`Exchange` says which calls the driver makes on the peers' handles (a Ray actor's
:class:`~codistill.cohort.ray_actors.RemotePeer`, whose answers are ObjectRefs) and how their
answers line up; :class:`~codistill.cohort.ray_cohort.RayCohort` waits on them through the
:class:`ActorCalls` it passes in. This module imports neither Ray nor the peer layer; the exchanges
register under the names of :mod:`codistill.config.exchange_names`, which config validation reads:

- ``objectref`` (:class:`ObjectRefExchange`) asks the step driver
  (:func:`~codistill.cohort.steps.drive_steps`) for the steps on the actors' handles: every peer's
  ``forward`` ref passes straight into the other peers' ``update`` calls, so predictions travel
  through Ray's object store from peer to peer and the driver never fetches them. Per-actor task
  ordering keeps each peer's ``forward(s)``, ``update(s)`` sequence. A lost actor restarts alone.
- ``collective`` (:class:`CollectiveExchange`) has each actor drive a chunk of steps itself
  (:meth:`~codistill.cohort.handles.HeldPeer.run_steps`), the peers exchanging their payload
  tensors with one all-gather per step in a ``torch.distributed`` group
  (:class:`~codistill.cohort.tensor_group.PayloadGroup`; gloo, NCCL when every peer is on a GPU of
  its own) that the actors form when the cohort starts: peer 0 opens the store's socket on its
  node, the driver passes that address to all. Every worker of a data-parallel peer is a rank:
  it all-gathers its rows' payload and keeps its rows of the others' (joined per peer).

Codistillation's parameter exchange is :class:`~codistill.cohort.replica_exchange.ReplicaExchange`.
Every way, the driver keeps at most ``runtime.max_steps_in_flight`` steps asked for and not yet
collected (:func:`~codistill.cohort.window.run_in_window`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Protocol

from codistill.cohort.steps import drive_steps, the_other_peers
from codistill.config.exchange_names import COLLECTIVE, OBJECTREF
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
    replaced alone while the others keep running (:meth:`~codistill.cohort.ray_cohort.RayCohort.restart`)."""

    peers_restart_alone = False

    def steps_per_call(self, max_steps_in_flight: int) -> int:
        """Steps each actor is asked for in one call."""
        return 1

    def breaks(self, epoch: int) -> list[int]:
        """Steps of ``epoch`` at which a call must start (besides the window's own cuts)."""
        return []

    # Optional hooks: an exchange that ties the actors to nothing (object refs) needs neither.
    def connect(self, actors: list[Any], placement: list[dict[str, Any]], calls: ActorCalls) -> None:  # noqa: B027
        """Prepare freshly started actors (``placement``: each one's node, device and GPU ids)."""

    def disconnect(self, actors: list[Any], calls: ActorCalls) -> None:  # noqa: B027
        """Undo :meth:`connect` before the actors go away."""

    @abstractmethod
    def submit(self, actors: list[Any], epoch: int, steps: range) -> list:
        """Ask every actor for ``steps`` of ``epoch``; returns the refs :meth:`collect` takes."""

    @abstractmethod
    def collect(self, refs: list, calls: ActorCalls) -> list[list[Any]]:
        """Wait for what :meth:`submit` returned; step records indexed ``[step][peer]``."""


@EXCHANGES.register(OBJECTREF)
class ObjectRefExchange(Exchange):
    """Peer-to-peer through the object store: ``update_k(*forward_refs of the others)``."""

    peers_restart_alone = True

    def submit(self, actors: list[Any], epoch: int, steps: range) -> list[list[Any]]:
        return drive_steps(actors, epoch, steps, the_other_peers)

    def collect(self, rows: list[list[Any]], calls: ActorCalls) -> list[list[Any]]:
        values, width = calls.get([ref for row in rows for ref in row]), len(rows[0])
        return [values[start:start + width] for start in range(0, len(values), width)]


@EXCHANGES.register(COLLECTIVE)
class CollectiveExchange(Exchange):
    """Actor-driven chunks of steps; payloads all-gathered among the actors every step."""

    def __init__(self, leave_timeout_s: float = 30.0) -> None:
        self.leave_timeout_s = leave_timeout_s

    def steps_per_call(self, max_steps_in_flight: int) -> int:
        # Two calls fit in the window, so the next chunk waits queued while the driver collects.
        return max(1, max_steps_in_flight // 2)

    def connect(self, actors: list[Any], placement: list[dict[str, Any]], calls: ActorCalls) -> None:
        on_gpu = nccl_applies(placement)
        workers = [len(where.get("workers", [where])) for where in placement]
        host, port = calls.get([actors[0].open_collective()])[0]
        calls.get([actor.join_collective(host, port, sum(workers[:k]), workers, on_gpu)
                   for k, actor in enumerate(actors)])

    def disconnect(self, actors: list[Any], calls: ActorCalls) -> None:
        calls.wait_for([actor.leave_collective() for actor in actors], self.leave_timeout_s)

    def submit(self, actors: list[Any], epoch: int, steps: range) -> list[Any]:
        return [actor.run_steps(epoch, steps.start, steps.stop) for actor in actors]

    def collect(self, refs: list[Any], calls: ActorCalls) -> list[list[Any]]:
        # A peer that fails raises at once, not after the others' timeout.
        return [list(step) for step in zip(*calls.get_failing_fast(refs))]


def nccl_applies(placement: list[dict[str, Any]]) -> bool:
    """NCCL when every rank (a peer, or each worker of a data-parallel peer) is on a GPU of its own
    (NCCL refuses two ranks on one card, so ranks sharing a card through fractional GPUs all-gather
    over gloo instead)."""
    placement = [where for peer in placement for where in peer.get("workers", [peer])]
    cards = [(where["node"], gpu) for where in placement for gpu in where.get("gpu_ids", [])]
    return all(where["device"].startswith("cuda") for where in placement) and len(set(cards)) == len(cards) \
        and len(cards) >= len(placement)
