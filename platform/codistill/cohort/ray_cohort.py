"""Ray at the edge: the peers of a cohort as Ray actors in placement groups.

Each peer is a :class:`~codistill.cohort.ray_actors.PeerActor`; the actors of the one-process
peers live in one placement group (``runtime.placement``: ``pack`` fills nodes in turn, ``spread``
puts peers on different nodes). A peer of R data-parallel workers (``peers[k].data_parallel``) has
a placement group of its own, R bundles packed (its workers on one node where they fit), R
:class:`~codistill.cohort.ray_actors.PeerWorker` actors in a process group of their own, and a
:class:`~codistill.cohort.worker_group.WorkerGroup` as its handle; a lost worker restarts its peer
(every worker: their group re-forms). Inside a Ray Tune trial, which reserved every bundle in one
placement group (``[{"CPU": 1}] + ray_runtime.peer_bundles``), the actors take their bundles from
it: peer ``k``'s worker ``r`` bundle ``first_bundles[k] + r + 1``. The driver reaches each actor
through a :class:`~codistill.cohort.handles.RemotePeer`: the step driver and the fan-out are the
same as in one process, the answers ObjectRefs.

How payloads travel between the actors is the exchange (``runtime.exchange``, or the replicas'
parameters with ``distillation.teacher_source: replicas``; see :mod:`codistill.cohort.exchanges`);
this module waits on the calls it makes.

Every wait on the actors goes through :meth:`RayCohort._surfaced_errors`: a dead actor, node or
lost object becomes :class:`~codistill.cohort.base.PeerLost`, on which the runner calls
:meth:`RayCohort.restart` and reloads the last checkpoint. Actors are not detached, so they end
with the driver's job.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from codistill.cohort import ray_runtime  # noqa: F401  (before ``import ray``: loopback)

# isort: split

import ray  # noqa: E402
from ray.util.placement_group import PlacementGroup, get_current_placement_group, placement_group  # noqa: E402
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy  # noqa: E402

from codistill.cohort.backends import BACKENDS  # noqa: E402
from codistill.cohort.base import Cohort, PeerLost, StepCallback  # noqa: E402
from codistill.cohort.exchanges import Exchange  # noqa: E402
from codistill.cohort.handles import RemotePeer  # noqa: E402
from codistill.cohort.ray_actors import PeerActor, PeerWorker, PolicyLearnerActor  # noqa: E402
from codistill.cohort.ray_runtime import first_bundles, worker_bundle  # noqa: E402
from codistill.cohort.replica_exchange import exchange_for  # noqa: E402
from codistill.cohort.window import run_in_window  # noqa: E402
from codistill.cohort.worker_group import WorkerGroup  # noqa: E402
from codistill.config import RunConfig  # noqa: E402
from codistill.errors import NonFiniteLoss  # noqa: E402

#: What a dead peer actor or node surfaces as: the cohort restarts and reloads (``PeerLost``).
LOST = (ray.exceptions.RayActorError, ray.exceptions.ObjectLostError, ray.exceptions.NodeDiedError,
        ray.exceptions.WorkerCrashedError, ray.exceptions.LocalRayletDiedError)


@BACKENDS.register("ray")
class RayCohort(Cohort):
    """The peers of ``config`` as Ray actors in placement groups (see the module docstring)."""

    def __init__(self, config: RunConfig, exchange: Exchange | None = None,
                 placement_timeout_s: float = 120.0, restart_only_lost: bool = True) -> None:
        self.config = config
        self.exchange = exchange or exchange_for(config)
        self.placement_timeout_s = placement_timeout_s
        self.restart_only_lost = restart_only_lost  # False: every actor restarts (as before; for comparison)
        self.restarted: list[int] = []  # the peers the last restart() replaced
        self._abandoned: list[ray.ObjectRef] = []
        self.placement: list[dict[str, Any]] = []  # per peer: node, actor id, pid, device, threads
        self.actors: list[Any] = []
        self.handles: list[RemotePeer] = []  # the actors as peer handles (answers are ObjectRefs)
        self.learner: Any = None  # the teacher policy's learner actor, when the policy learns
        self.bundles: list[list[tuple[PlacementGroup, int]]] = []  # per peer, per worker: (group, bundle index)
        self._own_groups: list[PlacementGroup] = []  # none inside a Ray Tune trial
        self._trial_group = get_current_placement_group()
        if self._trial_group is None:
            self._place()
        else:
            first = first_bundles(config)
            self.bundles = [[(self._trial_group, first[k] + rank + 1) for rank in range(peer.data_parallel)]
                            for k, peer in enumerate(config.peers)]
        self._start_cohort()

    def _place(self) -> None:
        """Reserve this cohort's own placement groups: one for the one-process peers
        (``runtime.placement``), one per data-parallel peer (``PACK``); note each worker's bundle."""
        peers = self.config.peers
        single = [k for k, peer in enumerate(peers) if peer.data_parallel == 1]
        self.bundles = [[] for _ in peers]
        for k, peer in enumerate(peers):  # first: to find nodes with room for every worker
            if peer.data_parallel > 1:
                group = placement_group([worker_bundle(peer) for _ in range(peer.data_parallel)], strategy="PACK")
                self._own_groups.append(group)
                self.bundles[k] = [(group, rank) for rank in range(peer.data_parallel)]
        if single:
            strategy = "SPREAD" if self.config.runtime.placement == "spread" else "PACK"
            shared = placement_group([worker_bundle(peers[k]) for k in single], strategy=strategy)
            self._own_groups.append(shared)
            for index, k in enumerate(single):
                self.bundles[k] = [(shared, index)]
        if not self._placed(self._own_groups):
            wanted = [group.bundle_specs for group in self._own_groups]
            self._remove_own_groups()
            raise RuntimeError(f"the cluster cannot place the cohort's placement groups {wanted} "
                               f"within {self.placement_timeout_s:.0f} s; available: {ray.available_resources()}")

    def _placed(self, groups: list[PlacementGroup]) -> bool:
        """Whether every group in ``groups`` is placed (waiting up to the placement timeout)."""
        deadline = time.monotonic() + self.placement_timeout_s
        return bool(groups) and all(group.wait(max(1.0, deadline - time.monotonic())) for group in groups)

    def _remove_own_groups(self) -> None:
        for group in self._own_groups:
            ray.util.remove_placement_group(group)
        self._own_groups = []

    def _start_cohort(self) -> None:
        """Start one actor per peer, connect the exchange among them and start the teacher policy's
        learner (called again by :meth:`restart` to rebuild the whole cohort)."""
        self.actors, self.placement = [None] * len(self.config.peers), [{}] * len(self.config.peers)
        self.handles = [None] * len(self.config.peers)
        self._start_actors(range(len(self.config.peers)))
        with self._surfaced_errors():
            self.exchange.connect(self.handles, self.placement, self)
        self.learner = self._start_policy_learner()

    def _start_actors(self, indices: Sequence[int]) -> None:
        """Start the actors of peers ``indices``, each in its bundle (a data-parallel peer's
        workers in its bundles, joined in their own group), and note where they run."""
        for k in indices:
            peer = self.config.peers[k]
            options = [{"num_cpus": peer.resources.cpus, "num_gpus": peer.resources.gpus,
                        "scheduling_strategy": PlacementGroupSchedulingStrategy(group, placement_group_bundle_index=i)}
                       for group, i in self.bundles[k]]
            if peer.data_parallel == 1:
                self.actors[k] = ray.remote(PeerActor).options(**options[0]).remote(self.config, k)
                self.handles[k] = RemotePeer(self.actors[k])
                continue
            workers = [ray.remote(PeerWorker).options(**options[rank]).remote(self.config, k, rank, len(options))
                       for rank in range(len(options))]
            host, port = self._get([workers[0].open_collective.remote()])[0]
            self._get([worker.join_workers.remote(host, port) for worker in workers])
            self.actors[k], self.handles[k] = workers, WorkerGroup(workers)
        for k, where in zip(indices, self._get([self.handles[k].describe() for k in indices])):
            self.placement[k] = where
            if isinstance(self.actors[k], list):  # a data-parallel peer: where each worker runs
                where["workers"] = self._get([worker.describe.remote() for worker in self.actors[k]])

    def _peer_actors(self) -> list[Any]:
        """Every peer's actor and every worker of a data-parallel peer."""
        return [actor for k in range(len(self.actors)) for actor in self._actors_of(k)]

    def _every_actor(self) -> list[Any]:
        """Every peer's actor, every worker of a data-parallel peer, and the policy learner."""
        return self._peer_actors() + ([self.learner] if self.learner is not None else [])

    def _kill_actors(self) -> None:
        for actor in self._every_actor():
            ray.kill(actor)
        self.actors, self.handles, self.learner = [], [], None
        self._drain_abandoned()

    def restart(self) -> None:
        """Replace the lost peers by fresh ones (load a checkpoint next: it also rolls the others
        back, in place, to the same epoch); :attr:`restarted` names them.

        Only the lost peers restart when the exchange allows it (``objectref``), no policy
        learner is shared, and the placement group is whole again; the others first finish or
        fail the interrupted epoch's queued steps. A peer is lost when any of its actors is (a
        data-parallel peer restarts all its workers, which form their group again). Otherwise
        every actor (and the learner) is replaced: the collective exchange's group must re-form
        among all of them. When a node died, Ray re-places its bundles on nodes with room; our
        own group that is not restored within the placement timeout is created anew. Lacking
        room, this raises :class:`PeerLost` again (the runner retries up to
        ``runtime.max_failures`` times).
        """
        everyone = list(range(len(self.actors)))
        alone = self.restart_only_lost and self.exchange.peers_restart_alone and self.learner is None
        if alone:  # the survivors' queued steps end (those waiting on a lost peer fail at once)
            self._drain_abandoned()
        lost = self._unresponsive() if alone else everyone
        groups = [self._trial_group] if self._trial_group is not None else self._own_groups
        restored = self._placed(groups)
        if restored and lost != everyone:
            for k in lost:
                for actor in self._actors_of(k):
                    ray.kill(actor)
            self._start_actors(lost)
            self.restarted = lost
            return
        self._kill_actors()
        if self._trial_group is not None and not restored:
            raise PeerLost("the Ray Tune trial's placement group was not restored "
                           f"within {self.placement_timeout_s:.0f} s")
        if not restored:
            self._remove_own_groups()
            try:
                self._place()
            except RuntimeError as error:
                raise PeerLost(str(error)) from error
        self._start_cohort()
        self.restarted = everyone

    def _actors_of(self, peer: int) -> list[Any]:
        """The actor of ``peer``, or every worker of a data-parallel peer."""
        actor = self.actors[peer]
        return actor if isinstance(actor, list) else [actor]

    def _unresponsive(self) -> list[int]:
        """The peers with an actor that does not answer (dead, or on a dead node)."""
        calls = [[actor.describe.remote() for actor in self._actors_of(k)] for k in range(len(self.actors))]
        lost = []
        for k, peer_calls in enumerate(calls):
            try:
                ray.get(peer_calls, timeout=self.placement_timeout_s)
            except ray.exceptions.RayError:
                lost.append(k)
        return lost

    def _drain_abandoned(self) -> None:
        """Collect the results of an interrupted epoch's calls (failed, or finished by surviving
        actors), so that Ray does not print them as unhandled errors and survivors are idle."""
        for ref in self._abandoned:
            try:
                ray.get(ref, timeout=self.placement_timeout_s)
            except ray.exceptions.RayError:
                pass
        self._abandoned = []

    @contextmanager
    def _surfaced_errors(self) -> Iterator[None]:
        """A dead actor, node or lost object as :class:`PeerLost`; a peer's divergence as the
        peer's own :class:`NonFiniteLoss`."""
        try:
            yield
        except ray.exceptions.RayTaskError as error:
            if isinstance(error.cause, NonFiniteLoss):
                raise error.cause from None
            if isinstance(error.cause, LOST):
                raise self._lost(error.cause) from error
            lost_actor = self._lost_actor()
            if lost_actor is not None:  # the survivors' collectives (gloo) failed before its death surfaced
                raise lost_actor from error
            raise
        except LOST as error:
            if isinstance(error, ray.exceptions.RayActorError) and error.actor_init_failed:
                raise
            raise self._lost(error) from error

    def _lost_actor(self) -> PeerLost | None:
        """A dead peer actor or data-parallel worker, as :class:`PeerLost`; ``None`` if every one answers."""
        for actor in self._peer_actors():
            try:
                ray.get(actor.describe.remote(), timeout=self.placement_timeout_s)
            except LOST as error:
                return self._lost(error)
            except ray.exceptions.RayError:
                continue
        return None

    def _get(self, refs: list[ray.ObjectRef]) -> list[Any]:
        with self._surfaced_errors():
            return ray.get(refs)

    # -- ActorCalls, for the exchange (inside _surfaced_errors where it matters) -----------------

    def get(self, refs: list[ray.ObjectRef]) -> list[Any]:
        return ray.get(refs)

    def get_failing_fast(self, refs: list[ray.ObjectRef]) -> list[Any]:
        waiting = list(refs)
        while waiting:
            ready, waiting = ray.wait(waiting, num_returns=1)
            ray.get(ready)
        return ray.get(refs)

    def wait_for(self, refs: list[ray.ObjectRef], timeout_s: float) -> None:
        ray.wait(refs, num_returns=len(refs), timeout=timeout_s)

    def _lost(self, error: Exception) -> PeerLost:
        actor_id = getattr(error, "actor_id", None)
        names = [name for name, where in zip(self.peer_names, self.placement)
                 if actor_id in [where["actor_id"]] + [worker["actor_id"] for worker in where.get("workers", [])]]
        who = f"peer '{names[0]}'" if names else "a peer"
        return PeerLost(f"lost {who}: {type(error).__name__}: {str(error).strip().splitlines()[0].rstrip('.')}")

    def _start_policy_learner(self) -> Any:
        """The policy's learner actor (CPU only, in peer 0's bundle), attached to every peer; or ``None``."""
        learner = self._get([self.handles[0].make_policy_learner()])[0]
        if learner is None:
            return None
        group, index = self.bundles[0][0]
        actor = ray.remote(PolicyLearnerActor).options(
            num_cpus=0, scheduling_strategy=PlacementGroupSchedulingStrategy(group, placement_group_bundle_index=index),
        ).remote(learner, [peer.data_parallel for peer in self.config.peers])
        self._get([handle.attach_learner(actor) for handle in self.handles])
        return actor

    def steps_per_epoch(self) -> int:
        return self.placement[0]["steps_per_epoch"]

    def train_epoch(self, epoch: int, on_step: StepCallback | None = None) -> list[list[dict[str, float]]]:
        window = self.config.runtime.max_steps_in_flight
        submitted: list[Any] = []

        def submit(steps: range) -> Any:
            submitted.append(self.exchange.submit(self.handles, epoch, steps))
            return submitted[-1]

        try:
            with self._surfaced_errors():
                return run_in_window(self.steps_per_epoch(), self.exchange.steps_per_call(window), window,
                                     submit, lambda refs: self.exchange.collect(refs, self), on_step,
                                     self.exchange.breaks(epoch))
        except (PeerLost, NonFiniteLoss):
            self._abandoned = list(_object_refs(submitted))
            raise

    def peak_rss_bytes(self) -> list[int]:
        """Each actor's peak resident memory so far."""
        return self.call_peers("peak_rss_bytes")

    def call_peers(self, name: str, args: list[tuple] | None = None) -> list[Any]:
        return self._get([getattr(handle, name)(*(args[k] if args is not None else ()))
                          for k, handle in enumerate(self.handles)])

    def learner_state_bytes(self) -> bytes | None:
        return None if self.learner is None else self._get([self.learner.state_bytes.remote()])[0]

    def load_learner_state_bytes(self, blob: bytes) -> None:
        if self.learner is not None:
            self._get([self.learner.load_state_bytes.remote(blob)])

    def shutdown(self) -> None:
        if self.actors and not self._abandoned:
            self.exchange.disconnect(self.handles, self)
        self._kill_actors()
        self._remove_own_groups()


def _object_refs(handles: Any) -> Iterator[ray.ObjectRef]:
    """Every ObjectRef in what :meth:`Exchange.submit` returned (nested lists of refs)."""
    if isinstance(handles, ray.ObjectRef):
        yield handles
    else:
        for handle in handles:
            yield from _object_refs(handle)
