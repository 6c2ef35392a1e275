"""A peer trained by R data-parallel workers (``peers[k].data_parallel``), as one peer handle.

:class:`WorkerGroup` answers the :class:`~codistill.cohort.base.PeerHandle` calls for R worker
actors (:class:`~codistill.cohort.ray_actors.PeerWorker`, each holding the peer's trainer with its
:class:`~codistill.peer.data_parallel.WorkerSlot`), so the step driver and the fan-out drive it
like any other peer: every answer is one future.

- ``forward``: each worker runs its rows; worker 0 joins the R payloads into the global batch's
  (one future, passed through the object store to the other peers as before; a receiving worker
  keeps its own rows of it).
- ``update``: every worker distils on the same teacher futures (the gradients summed over the
  peer's group inside the step); worker 0 reduces the R workers' metrics (:func:`reduce_metrics`).
- codistillation (``teacher_source: replicas``): each worker runs the replicas on its rows; a
  refresh sends worker 0's weights (the workers hold the same network) and loads the others'
  into every worker; ``run_steps`` (a chunk of steps each worker drives) reduces step by step;
- the collective exchange: every worker of every peer is a rank of one group; each all-gathers
  its rows' payload, joins each other peer's workers' rows and keeps its own rows of them;
- a learning teacher policy: every worker's policy sees the global batch (inputs gathered over
  the workers in the step) and waits at the learner's barrier; worker 0 sends the transitions;
- evaluation, sparsity and the saved network are worker 0's (the workers hold the same network);
  the state is worker 0's with every worker's random stream (``rng_workers``), loaded into each.
"""

from __future__ import annotations

from typing import Any

from codistill import metrics as m

#: Metrics summed over the workers; the step's times and flags take the slowest worker's; every
#: other metric is a mean over the global batch (each worker's weighted by its rows).
SUMMED = (m.TRAIN_CORRECT, m.TRAIN_EXAMPLES, m.BYTES_RECEIVED)
SLOWEST = (m.STEP_SECONDS, m.EXCHANGE_WAIT_SECONDS, m.DATA_WAIT_SECONDS, m.SKIPPED_STEP, m.TEACHERS_LEFT_OUT)


def reduce_metrics(workers: list[dict[str, float]]) -> dict[str, float]:
    """One step's metrics of a peer from its workers' (weights: their rows, ``TRAIN_EXAMPLES``)."""
    rows = [worker[m.TRAIN_EXAMPLES] for worker in workers]
    total = sum(rows)
    reduced = {}
    for name in workers[0]:
        values = [worker[name] for worker in workers]
        if name in SUMMED:
            reduced[name] = sum(values)
        elif name in SLOWEST:
            reduced[name] = max(values)
        else:
            reduced[name] = sum(value * n for value, n in zip(values, rows)) / total
    return reduced


class WorkerGroup:
    """The :class:`~codistill.cohort.base.PeerHandle` of a peer's R worker actors (rank order)."""

    def __init__(self, actors: list[Any]) -> None:
        self.actors = actors

    def _first(self, name: str, *args: Any) -> Any:
        return getattr(self.actors[0], name).remote(*args)

    def _every(self, name: str, *args: Any) -> list[Any]:
        return [getattr(actor, name).remote(*args) for actor in self.actors]

    def forward(self, epoch: int, step: int) -> Any:
        return self._first("join_payloads", *self._every("forward", epoch, step))

    def update(self, *teacher_payloads: Any) -> Any:
        return self._first("reduce_metrics", *self._every("update", *teacher_payloads))

    def replica_step(self, epoch: int, step: int) -> Any:
        return self._first("reduce_metrics", *self._every("replica_step", epoch, step))

    def run_steps(self, epoch: int, start: int, stop: int) -> Any:
        return self._first("reduce_steps", *self._every("run_steps", epoch, start, stop))

    def replica_weights(self) -> Any:
        return self._first("replica_weights")

    def load_replicas(self, epoch: int, step: int, *weights: Any) -> Any:
        return self._first("done", *self._every("load_replicas", epoch, step, *weights))

    def evaluate(self, split: str = "val") -> Any:
        return self._first("evaluate", split)

    def sparsity(self) -> Any:
        return self._first("sparsity")

    def state_bytes(self) -> Any:
        return self._first("state_bytes_with", *self._every("random_state"))

    def load_state_bytes(self, blob: bytes) -> Any:
        return self._first("done", *self._every("load_state_bytes", blob))

    def model_bytes(self) -> Any:
        return self._first("model_bytes")

    def describe(self) -> Any:
        return self._first("describe")

    def attach_learner(self, learner: Any) -> Any:
        return self._first("done", *self._every("attach_learner", learner))

    def open_collective(self) -> Any:
        return self._first("open_collective")

    def join_collective(self, host: str, port: int, rank: int, workers: list[int], on_gpu: bool) -> Any:
        """The collective exchange's group: worker r joins as rank ``rank + r``."""
        return self._first("done", *[actor.join_collective.remote(host, port, rank + r, workers, on_gpu)
                                     for r, actor in enumerate(self.actors)])

    def leave_collective(self) -> Any:
        return self._first("done", *self._every("leave_collective"))

    def make_policy_learner(self) -> Any:
        return self._first("make_policy_learner")

    def peak_rss_bytes(self) -> Any:
        return self._first("peak_rss_bytes")
