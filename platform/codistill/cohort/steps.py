"""The one step driver: how peers' steps are asked for, whatever holds the peers.

:func:`drive_steps` asks ``peers`` (:class:`~codistill.cohort.base.PeerHandle`) for steps:
every peer's ``forward``, then each peer's ``update`` with the payloads ``teachers`` gives it
(or, codistilling, each peer's ``replica_step``, after a refresh of the replicas where one is due).
The same function serves every backend; only the handles and ``teachers`` differ:

- the sequential cohort: every peer in this process, teachers = the other peers' payloads;
- the offline cohort: one student, teachers = the frozen networks on the student's batch;
- the Ray cohort's ``objectref`` exchange: the actors' handles, whose answers are ObjectRefs
  passed from peer to peer through the object store;
- a peer driving its own steps (the collective exchange, a Ray actor or a worker process): this
  one peer, teachers = the others' payloads from the group's all-gather.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from codistill.cohort.base import others

if TYPE_CHECKING:
    from codistill.cohort.base import PeerHandle
    from codistill.peer.replicas import RefreshSchedule

#: A peer's teacher payloads (``index``: the peer, among the payloads given) from a step's payloads.
TeacherSource = Callable[[int, list[Any]], list[Any]]


def the_other_peers(index: int, payloads: list[Any]) -> list[Any]:
    """The :data:`TeacherSource` of online distillation: every other peer's payload, in peer order."""
    return others(payloads, index)


def step_peers(peers: Sequence["PeerHandle"], epoch: int, step: int, teachers: TeacherSource | None,
               replicas: bool = False) -> list[Any]:
    """One step of ``peers``: all forwards, then each update on its teachers' payloads (or each
    peer's step on its own replicas); the answers (step metrics, or futures) in peer order."""
    if replicas:
        return [peer.replica_step(epoch, step) for peer in peers]
    payloads = [peer.forward(epoch, step) for peer in peers]
    return [peer.update(*teachers(k, payloads)) for k, peer in enumerate(peers)]


def refresh_replicas(peers: Sequence["PeerHandle"], epoch: int, step: int) -> list[Any]:
    """Codistillation's refresh before ``step``: every peer's weights into the others' replicas
    (each peer's weights are asked for once; a remote handle passes them on unfetched)."""
    weights = [peer.replica_weights() for peer in peers]
    return [peer.load_replicas(epoch, step, *others(weights, k)) for k, peer in enumerate(peers)]


def drive_steps(peers: Sequence["PeerHandle"], epoch: int, steps: range, teachers: TeacherSource | None, *,
                replicas: bool = False, refresh: "RefreshSchedule | None" = None) -> list[list[Any]]:
    """Steps ``steps`` of ``epoch`` on ``peers`` (:func:`step_peers`), the replicas refreshed
    first where ``refresh`` says so; answers indexed ``[step][peer]``."""
    rows = []
    for step in steps:
        if refresh is not None and refresh.due(epoch, step):
            refresh_replicas(peers, epoch, step)
        rows.append(step_peers(peers, epoch, step, teachers, replicas))
    return rows
