"""Ray at the edge: a peer in its own actor, and the teacher policy's learner in another.

Each peer is a :class:`PeerActor`: a :class:`~codistill.cohort.handles.HeldPeer` (its trainer,
computing with its own CPUs' threads, GPU fraction and device) with what Ray adds — where it runs,
the policy learner's barrier (:class:`LearnerActorLink`) and the collective exchange's group.
"""

from __future__ import annotations

import asyncio
from typing import Any

from codistill.cohort import ray_runtime  # noqa: F401  (before ``import ray``: loopback)

# isort: split

import ray  # noqa: E402
import torch  # noqa: E402
from torch import Tensor  # noqa: E402

from codistill import safe_io  # noqa: E402
from codistill.cohort.handles import HeldPeer, threads_for  # noqa: E402
from codistill.cohort.tensor_group import PayloadGroup, store_socket  # noqa: E402
from codistill.cohort.worker_group import reduce_metrics  # noqa: E402
from codistill.config import RunConfig  # noqa: E402
from codistill.methods.base import TeacherView  # noqa: E402
from codistill.peer import PeerTrainer  # noqa: E402
from codistill.peer.data_parallel import WorkerSlot, joined_views  # noqa: E402
from codistill.peer.optimization import select_device  # noqa: E402
from codistill.policy import PolicyLearner, TeacherWeightingPolicy, learner_state_bytes, load_learner_state_bytes  # noqa: E402


class LearnerActorLink:
    """A peer actor's part in the policy's synchronization: send its transitions to the learner
    actor and wait (a barrier: every peer has sent and the learner ran) for the new parameters.
    Worker ``rank`` > 0 of a data-parallel peer sends none (its policy took the same inputs as
    worker 0's: the same transitions) and waits with the others."""

    def __init__(self, learner: Any, rank: int = 0) -> None:
        self.learner, self.rank = learner, rank

    def synchronize(self, index: int, policy: TeacherWeightingPolicy, metrics: dict[str, float]) -> None:
        transitions = policy.collect_transitions()
        parameters, learned = ray.get(self.learner.exchange.remote(index, transitions if self.rank == 0 else None,
                                                                   self.rank))
        policy.load_parameters(parameters)
        metrics.update(learned)


class PeerActor(HeldPeer):
    """One peer in its own Ray actor process (decorated with ``ray.remote`` at placement)."""

    def __init__(self, config: RunConfig, index: int) -> None:
        torch.set_num_threads(threads_for(config.peers[index]))
        super().__init__(PeerTrainer(config, index))
        self._store_listener = None

    def attach_learner(self, learner: Any) -> None:
        self.policy_link = LearnerActorLink(learner)

    def describe(self) -> dict[str, Any]:
        context = ray.get_runtime_context()
        return {**super().describe(), "node": context.get_node_id(), "actor_id": context.get_actor_id(),
                "gpu_ids": [str(i) for i in context.get_accelerator_ids().get("GPU", [])],
                "threads": torch.get_num_threads()}

    def open_collective(self) -> tuple[str, int]:
        """Peer 0: open the group's store socket on this node; return its address."""
        self._store_listener = store_socket(ray.util.get_node_ip_address())
        return ray.util.get_node_ip_address(), self._store_listener.getsockname()[1]

    def join_collective(self, host: str, port: int, rank: int, workers: list[int], on_gpu: bool) -> None:
        """Join the group as ``rank`` of every peer's ``workers`` (returns once every rank has joined)."""
        self.join_group(PayloadGroup(host, port, rank, sum(workers), bind_host=ray.util.get_node_ip_address(),
                                     device=self.trainer.device if on_gpu else torch.device("cpu"),
                                     listener=self._store_listener), workers)
        self._store_listener = None

    def leave_collective(self) -> None:
        self.leave_group()


class PeerWorker(PeerActor):
    """Worker ``rank`` of a data-parallel peer (:class:`~codistill.cohort.worker_group.WorkerGroup`):
    built bare, its trainer comes when the peer's workers have formed their own group
    (:meth:`join_workers`; rank 0 first opens the group's store with :meth:`open_collective`)."""

    def __init__(self, config: RunConfig, index: int, rank: int, workers: int) -> None:
        torch.set_num_threads(threads_for(config.peers[index]))
        self.config, self.index, self.rank, self.workers = config, index, rank, workers
        self._store_listener = None
        self.worker_group: PayloadGroup | None = None

    def join_workers(self, host: str, port: int) -> None:
        """Join the peer's group (returns once every worker joined), then build the trainer."""
        device = select_device(self.config, self.config.peers[self.index])
        self.worker_group = PayloadGroup(host, port, self.rank, self.workers, listener=self._store_listener,
                                         bind_host=ray.util.get_node_ip_address(), device=device)
        self._store_listener = None
        HeldPeer.__init__(self, PeerTrainer(self.config, self.index, device=device,
                                            worker=WorkerSlot(self.rank, self.workers, self.worker_group.group)))

    def join_payloads(self, *views: TeacherView) -> TeacherView:
        return joined_views(list(views))

    def attach_learner(self, learner: Any) -> None:
        self.policy_link = LearnerActorLink(learner, self.rank)

    def reduce_metrics(self, *workers: dict[str, float]) -> dict[str, float]:
        return reduce_metrics(list(workers))

    def reduce_steps(self, *chunks: list[dict[str, float]]) -> list[dict[str, float]]:
        """The workers' chunks of steps (:meth:`run_steps`), reduced step by step."""
        return [reduce_metrics(list(workers)) for workers in zip(*chunks)]

    def random_state(self) -> Tensor:
        return self.trainer.state_dict()["rng_cpu"]

    def state_bytes_with(self, *random_states: Tensor) -> bytes:
        """The peer's state (this worker's) with every worker's random stream, in rank order."""
        return safe_io.dumps({**self.trainer.state_dict(), "rng_workers": list(random_states)})

    def done(self, *results: Any) -> None:
        """Answers once every result given has (a barrier over the workers' calls)."""


class PolicyLearnerActor:
    """The cohort's teacher-policy learner in its own (async) Ray actor.

    Each peer actor (every worker of a data-parallel peer: ``workers`` per peer) calls
    :meth:`exchange` right after its update at a synchronization step; the call returns once all
    have submitted, after one :meth:`PolicyLearner.learn` on the peers' transitions (each peer's
    worker 0's) in peer-index order — the same computation as in one process.
    """

    def __init__(self, learner: PolicyLearner, workers: list[int]) -> None:
        self.learner, self.workers = learner, workers
        self.submitted: dict[tuple[int, int], Any] = {}
        self.round, self.result = 0, (-1, None)
        self.done = asyncio.Event()

    async def exchange(self, peer: int, transitions: Any, rank: int = 0) -> tuple[dict[str, Tensor], dict[str, float]]:
        this_round = self.round
        self.submitted[(peer, rank)] = transitions
        if len(self.submitted) == sum(self.workers):
            parameters = self.learner.learn([self.submitted[(k, 0)] for k in range(len(self.workers))])
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
