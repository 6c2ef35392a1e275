"""Ray at the edge: peer actors, their placement, and the exchange of predictions.

Each peer is a :class:`PeerActor` holding one :class:`~codistill.peer.PeerTrainer` with its own
CPUs (torch's thread count is set to them), GPU fraction and device. The actors live in one
placement group (``runtime.placement``: ``pack`` fills nodes in turn, ``spread`` puts peers on
different nodes); inside a Ray Tune trial that already reserved a placement group
(``[{"CPU": 1}] + [peer bundles]``), bundle ``k + 1`` hosts peer ``k``.

The exchange is an interface (:class:`Exchange`, chosen by ``runtime.exchange``):

- ``objectref`` (:class:`ObjectRefExchange`) submits every peer's ``forward`` and passes the
  resulting ObjectRefs straight into the other peers' ``update`` calls, so predictions travel
  through Ray's object store from peer to peer and the driver never fetches them. Per-actor task
  ordering keeps each peer's ``forward(s)``, ``update(s)`` sequence.
- ``collective`` (:class:`CollectiveExchange`) has each actor run a chunk of steps itself
  (:func:`codistill.collective.run_steps`), the peers exchanging payloads with one all-gather per
  step in a ``torch.distributed`` group (gloo; NCCL when every peer is on a GPU) that the actors
  form when the cohort starts: peer 0 opens the store's socket on its node, the driver passes
  that address to all.

Either way the driver keeps at most ``runtime.max_steps_in_flight`` steps asked for and not yet
collected (:func:`run_in_window`), so an epoch of any length holds a bounded number of tasks and
payloads; it reports progress whenever a call's metrics come back.
"""

from __future__ import annotations

import math
import os
from abc import ABC, abstractmethod
from collections import deque
from types import ModuleType
from typing import Any, Callable

# A standalone run starts a private Ray runtime that must listen on loopback only. Ray reads this
# switch once, when it is first imported, so it is set here, before ``import ray``; under
# ``ray job submit`` (RAY_ADDRESS set) the driver joins a real cluster and keeps its addresses.
if not os.environ.get("RAY_ADDRESS"):
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

import ray  # noqa: E402
import torch  # noqa: E402
from ray._private import ray_constants  # noqa: E402
from ray.util.placement_group import PlacementGroup, get_current_placement_group, placement_group  # noqa: E402
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy  # noqa: E402
from torch import Tensor  # noqa: E402

from codistill.collective import PayloadGroup, run_steps, store_socket  # noqa: E402
from codistill.config import PeerConfig, RunConfig  # noqa: E402
from codistill.methods.base import TeacherView  # noqa: E402
from codistill.peer import PeerTrainer  # noqa: E402
from codistill.cohort_base import Cohort, StepCallback, others  # noqa: E402


class PeerActor:
    """One peer in its own Ray actor process (decorated with ``ray.remote`` at placement)."""

    def __init__(self, config: RunConfig, index: int) -> None:
        torch.set_num_threads(threads_for(config.peers[index]))
        self.trainer = PeerTrainer(config, index)
        self.group: PayloadGroup | None = None
        self._store_listener = None

    def describe(self) -> dict[str, Any]:
        return {"node": ray.get_runtime_context().get_node_id(), "device": str(self.trainer.device),
                "threads": torch.get_num_threads(), "steps_per_epoch": self.trainer.dataset.steps_per_epoch(
                    self.trainer.config.data.batch_size)}

    def forward(self, epoch: int, step: int) -> TeacherView:
        return self.trainer.forward(epoch, step)

    def update(self, *teacher_payloads: TeacherView) -> dict[str, float]:
        return self.trainer.update(list(teacher_payloads))

    def evaluate(self) -> tuple[Tensor, Tensor]:
        return self.trainer.evaluate()

    def sparsity(self) -> float | None:
        return self.trainer.sparsity()

    def state_bytes(self) -> bytes:
        return self.trainer.state_bytes()

    def load_state_bytes(self, blob: bytes) -> None:
        self.trainer.load_state_bytes(blob)

    def model_bytes(self) -> bytes:
        return self.trainer.model_bytes()

    def peak_rss_bytes(self) -> int:
        return peak_rss_bytes()

    # -- the collective exchange (rank = peer index) --------------------------------------------

    def open_collective(self) -> tuple[str, int]:
        """Peer 0: open the group's store socket on this node; return its address."""
        self._store_listener = store_socket(ray.util.get_node_ip_address())
        return ray.util.get_node_ip_address(), self._store_listener.getsockname()[1]

    def join_collective(self, host: str, port: int, world_size: int, on_gpu: bool) -> None:
        """Join the group (returns once every peer has joined)."""
        self.group = PayloadGroup(host, port, self.trainer.index, world_size,
                                  bind_host=ray.util.get_node_ip_address(),
                                  device=self.trainer.device if on_gpu else torch.device("cpu"),
                                  listener=self._store_listener)
        self._store_listener = None

    def run_steps(self, epoch: int, start: int, stop: int) -> list[dict[str, float]]:
        if self.group is None:
            raise RuntimeError("run_steps() needs join_collective() first")
        return run_steps(self.trainer, self.group, epoch, range(start, stop))

    def leave_collective(self) -> None:
        if self.group is not None:
            self.group.close()
            self.group = None


def threads_for(peer: PeerConfig) -> int:
    """Torch threads for a peer: the whole CPUs it was given (at least one)."""
    return max(1, int(math.floor(peer.resources.cpus)))


def peak_rss_bytes() -> int:
    """This process's peak resident memory (Unix ``ru_maxrss``: KiB on Linux)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class Exchange(ABC):
    """How training steps are asked of the peer actors and how their payloads travel."""

    def steps_per_call(self, max_steps_in_flight: int) -> int:
        """Steps each actor is asked for in one call."""
        return 1

    def connect(self, actors: list[Any], devices: list[str]) -> None:
        """Prepare freshly started actors (``devices``: each one's torch device)."""

    def disconnect(self, actors: list[Any]) -> None:
        """Undo :meth:`connect` before the actors go away."""

    @abstractmethod
    def submit(self, actors: list[Any], epoch: int, steps: range) -> list:
        """Ask every actor for ``steps`` of ``epoch``; returns the refs :meth:`collect` takes."""

    @abstractmethod
    def collect(self, refs: list) -> list[list[dict[str, float]]]:
        """Wait for what :meth:`submit` returned; metrics indexed ``[step][peer]``."""


class ObjectRefExchange(Exchange):
    """Peer-to-peer through the object store: ``update_k(*forward_refs of the others)``."""

    def submit(self, actors: list[Any], epoch: int, steps: range) -> list[list[ray.ObjectRef]]:
        rows = []
        for step in steps:
            payloads = [actor.forward.remote(epoch, step) for actor in actors]
            rows.append([actor.update.remote(*others(payloads, k)) for k, actor in enumerate(actors)])
        return rows

    def collect(self, rows: list[list[ray.ObjectRef]]) -> list[list[dict[str, float]]]:
        values, width = ray.get([ref for row in rows for ref in row]), len(rows[0])
        return [values[start:start + width] for start in range(0, len(values), width)]


class CollectiveExchange(Exchange):
    """Actor-driven chunks of steps; payloads all-gathered among the actors every step."""

    def __init__(self, leave_timeout_s: float = 30.0) -> None:
        self.leave_timeout_s = leave_timeout_s

    def steps_per_call(self, max_steps_in_flight: int) -> int:
        # Two calls fit in the window, so the next chunk waits queued while the driver collects.
        return max(1, max_steps_in_flight // 2)

    def connect(self, actors: list[Any], devices: list[str]) -> None:
        on_gpu = all(device.startswith("cuda") for device in devices)
        host, port = ray.get(actors[0].open_collective.remote())
        ray.get([actor.join_collective.remote(host, port, len(actors), on_gpu) for actor in actors])

    def disconnect(self, actors: list[Any]) -> None:
        ray.wait([actor.leave_collective.remote() for actor in actors], num_returns=len(actors),
                 timeout=self.leave_timeout_s)

    def submit(self, actors: list[Any], epoch: int, steps: range) -> list[ray.ObjectRef]:
        return [actor.run_steps.remote(epoch, steps.start, steps.stop) for actor in actors]

    def collect(self, refs: list[ray.ObjectRef]) -> list[list[dict[str, float]]]:
        waiting = list(refs)
        while waiting:  # a peer that fails raises here at once, not after the others' timeout
            ready, waiting = ray.wait(waiting, num_returns=1)
            ray.get(ready)
        return [list(step) for step in zip(*ray.get(refs))]


EXCHANGE_TYPES: dict[str, type[Exchange]] = {"objectref": ObjectRefExchange, "collective": CollectiveExchange}


def run_in_window(total: int, steps_per_call: int, max_steps_in_flight: int,
                  submit: Callable[[range], Any], collect: Callable[[Any], list],
                  on_step: StepCallback | None = None) -> list:
    """Steps ``0 … total−1`` asked for in calls of ``steps_per_call``, never more than
    ``max_steps_in_flight`` asked for and not yet collected (at least one call); results in order.
    ``on_step(done, total)`` runs after each collected call."""
    results: list = []
    pending: deque[tuple[range, Any]] = deque()
    in_flight = 0
    for start in range(0, total, steps_per_call):
        steps = range(start, min(start + steps_per_call, total))
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


def peer_bundles(config: RunConfig) -> list[dict[str, float]]:
    bundles = []
    for peer in config.peers:
        bundle = {"CPU": peer.resources.cpus}
        if peer.resources.gpus > 0:
            bundle["GPU"] = peer.resources.gpus
        bundles.append(bundle)
    return bundles


class RayCohort(Cohort):
    """The peers of ``config`` as Ray actors in one placement group."""

    def __init__(self, config: RunConfig, exchange: Exchange | None = None,
                 placement_timeout_s: float = 120.0) -> None:
        self.config = config
        self.exchange = exchange or EXCHANGE_TYPES[config.runtime.exchange]()
        self._own_group: PlacementGroup | None = None
        group, offset = get_current_placement_group(), 1
        if group is None:
            strategy = "SPREAD" if config.runtime.placement == "spread" else "PACK"
            group, offset = placement_group(peer_bundles(config), strategy=strategy), 0
            self._own_group = group
            if not group.wait(placement_timeout_s):
                ray.util.remove_placement_group(group)
                raise RuntimeError(f"the cluster cannot place the cohort's bundles {peer_bundles(config)} "
                                   f"within {placement_timeout_s:.0f} s; available: {ray.available_resources()}")
        self._group, self._bundle_offset = group, offset
        self.actors: list[Any] = []
        self._start_actors()

    def _start_actors(self) -> None:
        """Start one actor per peer in its bundle and connect the exchange among them (callable
        again, after :meth:`_stop_actors`, to rebuild the cohort)."""
        remote_actor = ray.remote(PeerActor)
        self.actors = [
            remote_actor.options(
                num_cpus=peer.resources.cpus, num_gpus=peer.resources.gpus,
                scheduling_strategy=PlacementGroupSchedulingStrategy(
                    self._group, placement_group_bundle_index=k + self._bundle_offset),
            ).remote(self.config, k)
            for k, peer in enumerate(self.config.peers)
        ]
        self.placement = ray.get([actor.describe.remote() for actor in self.actors])
        self.exchange.connect(self.actors, [p["device"] for p in self.placement])

    def _stop_actors(self) -> None:
        if self.actors:
            self.exchange.disconnect(self.actors)
        for actor in self.actors:
            ray.kill(actor)
        self.actors = []

    def steps_per_epoch(self) -> int:
        return self.placement[0]["steps_per_epoch"]

    def train_epoch(self, epoch: int, on_step: StepCallback | None = None) -> list[list[dict[str, float]]]:
        window = self.config.runtime.max_steps_in_flight
        return run_in_window(self.steps_per_epoch(), self.exchange.steps_per_call(window), window,
                             lambda steps: self.exchange.submit(self.actors, epoch, steps),
                             self.exchange.collect, on_step)

    def peak_rss_bytes(self) -> list[int]:
        """Each actor's peak resident memory so far."""
        return ray.get([actor.peak_rss_bytes.remote() for actor in self.actors])

    def evaluate(self) -> tuple[list[Tensor], Tensor]:
        results = ray.get([actor.evaluate.remote() for actor in self.actors])
        return [logits for logits, _ in results], results[0][1]

    def sparsity(self) -> list[float | None]:
        return ray.get([actor.sparsity.remote() for actor in self.actors])

    def state_bytes(self) -> list[bytes]:
        return ray.get([actor.state_bytes.remote() for actor in self.actors])

    def load_state_bytes(self, blobs: list[bytes]) -> None:
        ray.get([actor.load_state_bytes.remote(blob) for actor, blob in zip(self.actors, blobs)])

    def model_bytes(self) -> list[bytes]:
        return ray.get([actor.model_bytes.remote() for actor in self.actors])

    def shutdown(self) -> None:
        self._stop_actors()
        if self._own_group is not None:
            ray.util.remove_placement_group(self._own_group)
            self._own_group = None


def shipped_modules() -> list[str]:
    """Our packages' directories, shipped to every actor's node (a cluster then needs only the
    dependencies installed)."""
    import codistill

    modules: list[ModuleType] = [codistill]
    try:
        import policies

        modules.append(policies)
    except ImportError:
        pass
    return [os.path.dirname(module.__file__) for module in modules]


def start_ray(config: RunConfig) -> bool:
    """Attach to the cluster of ``RAY_ADDRESS`` (``ray job submit``) or start a private local one.

    A local runtime listens on 127.0.0.1 only, has no dashboard and enough logical CPUs for every
    peer's bundle. Either way our packages travel to the workers as ``py_modules``. Returns
    whether this call started Ray (and so should shut it down).
    """
    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    runtime_env = {"py_modules": shipped_modules()}
    if os.environ.get("RAY_ADDRESS"):
        ray.init(runtime_env=runtime_env)
        return True
    if ray_constants.ENABLE_RAY_CLUSTER:
        raise RuntimeError("ray was imported before codistill.cohort, so a local runtime would listen on every "
                           "network interface; import codistill.cohort first or export "
                           "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0")
    cpus_needed = math.ceil(sum(peer.resources.cpus for peer in config.peers))
    gpus_needed = sum(peer.resources.gpus for peer in config.peers)
    options: dict[str, Any] = {}
    if gpus_needed > 0:
        if not torch.cuda.is_available():
            raise RuntimeError(f"the peers request {gpus_needed:g} GPUs (peers[*].resources.gpus) but this "
                               "machine has no CUDA device; set the gpus to 0 or submit to a GPU cluster")
        options["num_gpus"] = torch.cuda.device_count()
    ray.init(address="local", num_cpus=max(os.cpu_count() or 1, cpus_needed), include_dashboard=False,
             _node_ip_address="127.0.0.1", runtime_env=runtime_env, **options)
    return True
