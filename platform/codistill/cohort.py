"""Ray at the edge: peer actors, their placement, and the exchange of predictions.

Each peer is a :class:`PeerActor` holding one :class:`~codistill.peer.PeerTrainer` with its own
CPUs (torch's thread count is set to them), GPU fraction and device. The actors live in one
placement group (``runtime.placement``: ``pack`` fills nodes in turn, ``spread`` puts peers on
different nodes); inside a Ray Tune trial that already reserved a placement group
(``[{"CPU": 1}] + [peer bundles]``), bundle ``k + 1`` hosts peer ``k``.

How payloads travel between the actors is the exchange (``runtime.exchange``, or the replicas'
parameters with ``distillation.teacher_source: replicas``; see :mod:`codistill.exchanges`); this
module makes the Ray calls it describes.

Every wait on the actors goes through :meth:`RayCohort._surfaced_errors`: a dead actor, node or
lost object becomes :class:`~codistill.cohort_base.PeerLost`, on which the runner calls
:meth:`RayCohort.restart` and reloads the last checkpoint. Actors are not detached, so they end with the driver's job.
"""

from __future__ import annotations

import asyncio
import importlib
import math
import os
from contextlib import contextmanager
from types import ModuleType
from typing import Any, Iterator, Sequence

# A standalone run starts a private Ray runtime that must listen on loopback only. Ray reads this
# switch once, when it is first imported, so it is set here, before ``import ray``; under
# ``ray job submit`` (RAY_ADDRESS set) the driver joins a real cluster and keeps its addresses.
if not os.environ.get("RAY_ADDRESS"):
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

import ray  # noqa: E402
import torch  # noqa: E402
from ray.util.placement_group import PlacementGroup, get_current_placement_group, placement_group  # noqa: E402
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy  # noqa: E402
from torch import Tensor  # noqa: E402

from codistill.collective import PayloadGroup, run_steps, store_socket  # noqa: E402
from codistill.config import PeerConfig, RunConfig, check_devices  # noqa: E402
from codistill.methods.base import TeacherView  # noqa: E402
from codistill.cohort_base import Cohort, PeerLost, StepCallback  # noqa: E402
from codistill.errors import NonFiniteLoss  # noqa: E402
from codistill.exchanges import Exchange, exchange_for, run_in_window  # noqa: E402
from codistill.registry import BACKENDS  # noqa: E402
from codistill.peer import PeerTrainer  # noqa: E402
from codistill.policy import PolicyLearner, learner_state_bytes, load_learner_state_bytes, sync_due  # noqa: E402
from codistill.private_apis import local_ray_listens_on_every_interface, ray_node_ip_option  # noqa: E402

#: What a dead peer actor or node surfaces as: the cohort restarts and reloads (``PeerLost``).
LOST = (ray.exceptions.RayActorError, ray.exceptions.ObjectLostError, ray.exceptions.NodeDiedError,
        ray.exceptions.WorkerCrashedError, ray.exceptions.LocalRayletDiedError)


class PeerActor(PeerTrainer):
    """One peer in its own Ray actor process (decorated with ``ray.remote`` at placement): the
    :class:`PeerTrainer`'s methods, plus what Ray needs — placement facts, the policy learner's
    barrier and the collective group."""

    def __init__(self, config: RunConfig, index: int) -> None:
        torch.set_num_threads(threads_for(config.peers[index]))
        super().__init__(config, index)
        self.learner: Any = None  # the PolicyLearnerActor handle, when the policy learns
        self.group: PayloadGroup | None = None  # the collective exchange's group, once joined
        self._store_listener = None

    def make_policy_learner(self) -> PolicyLearner | None:
        return self.policy.make_learner()

    def attach_learner(self, learner: Any) -> None:
        self.learner = learner

    def describe(self) -> dict[str, Any]:
        context = ray.get_runtime_context()
        return {"node": context.get_node_id(), "actor_id": context.get_actor_id(), "pid": os.getpid(),
                "device": str(self.device), "gpu_ids": [str(i) for i in context.get_accelerator_ids().get("GPU", [])],
                "threads": torch.get_num_threads(),
                "steps_per_epoch": self.batches.steps_per_epoch}

    def update_and_sync(self, *teacher_payloads: TeacherView) -> dict[str, float]:
        """:meth:`update` from payloads passed as ObjectRefs, then the policy's synchronization."""
        metrics = self.update(list(teacher_payloads))
        self.synchronize_policy(metrics)
        return metrics

    def synchronize_policy(self, metrics: dict[str, float]) -> None:
        """After every update: at a synchronization step, send this peer's transitions to the learner
        and load the new policy parameters (a barrier: returns once every peer has sent and the
        learner ran); the learner's scalars join ``metrics``."""
        if self.learner is not None and sync_due(self.policy, self.last_progress):
            parameters, learned = ray.get(self.learner.exchange.remote(self.index, self.policy.collect_transitions()))
            self.policy.load_parameters(parameters)
            metrics.update(learned)

    def peak_rss_bytes(self) -> int:
        return peak_rss_bytes()

    # -- the collective exchange (rank = peer index) --------------------------------------------

    def open_collective(self) -> tuple[str, int]:
        """Peer 0: open the group's store socket on this node; return its address."""
        self._store_listener = store_socket(ray.util.get_node_ip_address())
        return ray.util.get_node_ip_address(), self._store_listener.getsockname()[1]

    def join_collective(self, host: str, port: int, world_size: int, on_gpu: bool) -> None:
        """Join the group (returns once every peer has joined)."""
        self.group = PayloadGroup(host, port, self.index, world_size,
                                  bind_host=ray.util.get_node_ip_address(),
                                  device=self.device if on_gpu else torch.device("cpu"),
                                  listener=self._store_listener)
        self._store_listener = None

    def run_steps(self, epoch: int, start: int, stop: int) -> list[dict[str, float]]:
        """A chunk of steps: on this peer's replicas (codistillation), or exchanging payloads through the group."""
        if self.replicas is not None:
            metrics = []
            for step in range(start, stop):
                metrics.append(self.replica_step(epoch, step))
                self.synchronize_policy(metrics[-1])
            return metrics
        if self.group is None:
            raise RuntimeError("run_steps() needs join_collective() first")
        return run_steps(self, self.group, epoch, range(start, stop), after_update=self.synchronize_policy)

    def leave_collective(self) -> None:
        if self.group is not None:
            self.group.close()
            self.group = None


class PolicyLearnerActor:
    """The cohort's teacher-policy learner in its own (async) Ray actor.

    Each peer actor calls :meth:`exchange` right after its update at a synchronization step; the
    call returns once all peers have submitted, after one :meth:`PolicyLearner.learn` on their
    transitions in peer-index order — the same computation as in one process.
    """

    def __init__(self, learner: PolicyLearner, peers: int) -> None:
        self.learner, self.peers = learner, peers
        self.submitted: dict[int, Any] = {}
        self.round, self.result = 0, (-1, None)
        self.done = asyncio.Event()

    async def exchange(self, peer: int, transitions: Any) -> tuple[dict[str, Tensor], dict[str, float]]:
        this_round = self.round
        self.submitted[peer] = transitions
        if len(self.submitted) == self.peers:
            parameters = self.learner.learn([self.submitted[k] for k in range(self.peers)])
            self.result = (this_round, (parameters, self.learner.metrics))
            self.submitted, self.round = {}, this_round + 1
            done, self.done = self.done, asyncio.Event()
            done.set()
        else:
            await self.done.wait()
        finished_round, (parameters, metrics) = self.result
        if finished_round != this_round:
            raise RuntimeError(f"policy learner: peer {peer} woke in round {finished_round}, expected {this_round}")
        return parameters, metrics[peer]

    def state_bytes(self) -> bytes | None:
        return learner_state_bytes(self.learner)

    def load_state_bytes(self, blob: bytes) -> None:
        load_learner_state_bytes(self.learner, blob)


def threads_for(peer: PeerConfig) -> int:
    """Torch threads for a peer: the whole CPUs it was given (at least one)."""
    return max(1, int(math.floor(peer.resources.cpus)))


def peak_rss_bytes() -> int:
    """This process's peak resident memory (Unix ``ru_maxrss``: KiB on Linux)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def peer_bundles(config: RunConfig) -> list[dict[str, float]]:
    bundles = []
    for peer in config.peers:
        bundle = {"CPU": peer.resources.cpus}
        if peer.resources.gpus > 0:
            bundle["GPU"] = peer.resources.gpus
        bundles.append(bundle)
    return bundles


@BACKENDS.register("ray")
class RayCohort(Cohort):
    """The peers of ``config`` as Ray actors in one placement group."""

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
        self.learner: Any = None  # the teacher policy's learner actor, when the policy learns
        self._own_group: PlacementGroup | None = None
        self._group, self._offset = get_current_placement_group(), 1
        if self._group is None:
            self._place()
        self._start_cohort()

    def _place(self) -> None:
        """Reserve this cohort's own placement group (``runtime.placement``)."""
        strategy = "SPREAD" if self.config.runtime.placement == "spread" else "PACK"
        group = placement_group(peer_bundles(self.config), strategy=strategy)
        self._own_group, self._group, self._offset = group, group, 0
        if not group.wait(self.placement_timeout_s):
            ray.util.remove_placement_group(group)
            self._own_group = None
            raise RuntimeError(f"the cluster cannot place the cohort's bundles {peer_bundles(self.config)} "
                               f"within {self.placement_timeout_s:.0f} s; available: {ray.available_resources()}")

    def _start_cohort(self) -> None:
        """Start one actor per peer, connect the exchange among them and start the teacher policy's
        learner (called again by :meth:`restart` to rebuild the whole cohort)."""
        self.actors, self.placement = [None] * len(self.config.peers), [{}] * len(self.config.peers)
        self._start_actors(range(len(self.config.peers)))
        with self._surfaced_errors():
            self.exchange.connect(self.actors, self.placement, self)
        self.learner = self._start_policy_learner()

    def _start_actors(self, indices: Sequence[int]) -> None:
        """Start the actors of peers ``indices``, each in its bundle, and note where they run."""
        remote_actor = ray.remote(PeerActor)
        for k in indices:
            peer = self.config.peers[k]
            self.actors[k] = remote_actor.options(
                num_cpus=peer.resources.cpus, num_gpus=peer.resources.gpus,
                scheduling_strategy=PlacementGroupSchedulingStrategy(self._group,
                                                                     placement_group_bundle_index=k + self._offset),
            ).remote(self.config, k)
        for k, where in zip(indices, self._get([self.actors[k].describe.remote() for k in indices])):
            self.placement[k] = where

    def _kill_actors(self) -> None:
        for actor in self.actors + ([self.learner] if self.learner is not None else []):
            ray.kill(actor)
        self.actors, self.learner = [], None
        self._drain_abandoned()

    def restart(self) -> None:
        """Replace the lost peer actors by fresh ones (load a checkpoint next: it also rolls the
        others back, in place, to the same epoch); :attr:`restarted` names them.

        Only the lost actors restart when the exchange allows it (``objectref``), no policy
        learner is shared, and the placement group is whole again; the others first finish or
        fail the interrupted epoch's queued steps. Otherwise every actor (and the learner) is
        replaced: the collective exchange's group must re-form among all of them. When a node
        died, Ray re-places its bundles on nodes with room; our own group that is not restored
        within the placement timeout is created anew. Lacking room, this raises :class:`PeerLost`
        again (the runner retries up to ``runtime.max_failures`` times).
        """
        everyone = list(range(len(self.actors)))
        alone = self.restart_only_lost and self.exchange.peers_restart_alone and self.learner is None
        if alone:  # the survivors' queued steps end (those waiting on a lost peer fail at once)
            self._drain_abandoned()
        lost = self._unresponsive() if alone else everyone
        tune_group = self._offset == 1
        restored = (tune_group or self._own_group is not None) and self._group.wait(self.placement_timeout_s)
        if restored and lost != everyone:
            for k in lost:
                ray.kill(self.actors[k])
            self._start_actors(lost)
            self.restarted = lost
            return
        self._kill_actors()
        if tune_group and not restored:
            raise PeerLost(f"the Ray Tune trial's placement group was not restored within {self.placement_timeout_s:.0f} s")
        if not restored:
            if self._own_group is not None:
                ray.util.remove_placement_group(self._own_group)
            try:
                self._place()
            except RuntimeError as error:
                raise PeerLost(str(error)) from error
        self._start_cohort()
        self.restarted = everyone

    def _unresponsive(self) -> list[int]:
        """The peers whose actor does not answer (dead, or on a dead node)."""
        calls = [actor.describe.remote() for actor in self.actors]
        lost = []
        for k, call in enumerate(calls):
            try:
                ray.get(call, timeout=self.placement_timeout_s)
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
            raise
        except LOST as error:
            if isinstance(error, ray.exceptions.RayActorError) and error.actor_init_failed:
                raise
            raise self._lost(error) from error

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
        names = [name for name, where in zip(self.peer_names, self.placement) if where["actor_id"] == actor_id]
        who = f"peer '{names[0]}'" if names else "a peer"
        return PeerLost(f"lost {who}: {type(error).__name__}: {str(error).strip().splitlines()[0].rstrip('.')}")

    def _start_policy_learner(self) -> Any:
        """The policy's learner actor (CPU only, in peer 0's bundle), attached to every peer; or ``None``."""
        learner = self._get([self.actors[0].make_policy_learner.remote()])[0]
        if learner is None:
            return None
        actor = ray.remote(PolicyLearnerActor).options(
            num_cpus=0, scheduling_strategy=PlacementGroupSchedulingStrategy(self._group,
                                                                             placement_group_bundle_index=self._offset),
        ).remote(learner, len(self.actors))
        self._get([peer.attach_learner.remote(actor) for peer in self.actors])
        return actor

    def steps_per_epoch(self) -> int:
        return self.placement[0]["steps_per_epoch"]

    def train_epoch(self, epoch: int, on_step: StepCallback | None = None) -> list[list[dict[str, float]]]:
        window = self.config.runtime.max_steps_in_flight
        submitted: list[Any] = []

        def submit(steps: range) -> Any:
            submitted.append(self.exchange.submit(self.actors, epoch, steps))
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
        return self._get([actor.peak_rss_bytes.remote() for actor in self.actors])

    def evaluate(self, split: str = "val") -> tuple[list[Tensor], Tensor]:
        results = self._get([actor.evaluate.remote(split) for actor in self.actors])
        return [logits for logits, _ in results], results[0][1]

    def sparsity(self) -> list[float | None]:
        return self._get([actor.sparsity.remote() for actor in self.actors])

    def state_bytes(self) -> list[bytes]:
        return self._get([actor.state_bytes.remote() for actor in self.actors])

    def load_state_bytes(self, blobs: list[bytes]) -> None:
        self._get([actor.load_state_bytes.remote(blob) for actor, blob in zip(self.actors, blobs)])

    def model_bytes(self) -> list[bytes]:
        return self._get([actor.model_bytes.remote() for actor in self.actors])

    def learner_state_bytes(self) -> bytes | None:
        return None if self.learner is None else self._get([self.learner.state_bytes.remote()])[0]

    def load_learner_state_bytes(self, blob: bytes) -> None:
        if self.learner is not None:
            self._get([self.learner.load_state_bytes.remote(blob)])

    def shutdown(self) -> None:
        if self.actors and not self._abandoned:
            self.exchange.disconnect(self.actors, self)
        self._kill_actors()
        if self._own_group is not None:
            ray.util.remove_placement_group(self._own_group)
            self._own_group = None


def _object_refs(handles: Any) -> Iterator[ray.ObjectRef]:
    """Every ObjectRef in what :meth:`Exchange.submit` returned (nested lists of refs)."""
    if isinstance(handles, ray.ObjectRef):
        yield handles
    else:
        for handle in handles:
            yield from _object_refs(handle)


def shipped_modules(config: RunConfig) -> list[str]:
    """The directories of ``codistill`` and of every package the config names user code from
    (``package.module:Name``), shipped to every actor's node (a cluster then needs only the
    dependencies installed)."""
    names = [config.distillation.policy.name, *(m.name for m in config.distillation.methods),
             *(p.model for p in config.peers), config.data.dataset]
    packages = ["codistill"] + sorted({name.split(":")[0].split(".")[0] for name in names if ":" in name})
    modules: list[ModuleType] = [importlib.import_module(package) for package in packages]
    return [os.path.dirname(module.__file__) for module in modules if module.__file__ is not None]


def start_ray(config: RunConfig, num_cpus: int | None = None) -> bool:
    """Attach to the cluster of ``RAY_ADDRESS`` (``ray job submit``) or start a private local one.

    A local runtime listens on 127.0.0.1 only, has no dashboard and enough logical CPUs for every
    peer's bundle (at least ``num_cpus`` when given, e.g. a Tune trial's bundles). Either way our
    packages travel to the workers as ``py_modules``. Returns whether this call started Ray (and
    so should shut it down).
    """
    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    runtime_env = {"py_modules": shipped_modules(config)}
    if os.environ.get("RAY_ADDRESS"):
        ray.init(runtime_env=runtime_env)
        return True
    if local_ray_listens_on_every_interface():
        raise RuntimeError("ray was imported before codistill.cohort, so a local runtime would listen on every "
                           "network interface; import codistill.cohort first or export "
                           "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0")
    cpus_needed = max(math.ceil(sum(peer.resources.cpus for peer in config.peers)), num_cpus or 0)
    gpus_needed = sum(peer.resources.gpus for peer in config.peers)
    options: dict[str, Any] = {}
    check_devices(config, torch.cuda.is_available())
    if gpus_needed > 0:
        options["num_gpus"] = torch.cuda.device_count()
    ray.init(address="local", num_cpus=max(os.cpu_count() or 1, cpus_needed), include_dashboard=False,
             runtime_env=runtime_env, **ray_node_ip_option("127.0.0.1"), **options)
    return True
