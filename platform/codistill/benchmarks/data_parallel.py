"""Data-parallel peers measured (``jobs/benchmark_data_parallel.py``): the step-time overhead of a
peer on R workers against one, and a cohort of R = [2, 1, 1] on a two-node cluster.

:func:`overhead` trains the same cohort twice side by side on the running Ray runtime, once with
every peer on one actor and once with peer ``peer`` on ``workers`` actors, alternating the two for
``repeats`` rounds (a warm-up epoch, then one timed epoch each); per variant the median wall-clock
seconds per step of the timed epochs and what each worker of the peer received per step
(``exchange/bytes_received`` is the sum over its workers).

:func:`two_nodes` starts a head and one worker node on loopback (``ray.cluster_utils.Cluster``,
``cpus`` logical CPUs each), trains the cohort with ``data_parallel`` R = ``shape`` placed with
``spread``, and reports on which node each worker ran and each peer's validation accuracy.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import replace
from typing import Any

from codistill.cohort.ray_cohort import RayCohort  # before ray: loopback

# isort: split
import ray  # noqa: E402
from ray.cluster_utils import Cluster  # noqa: E402

from codistill import metrics as m
from codistill.config import RunConfig
from codistill.evaluation import top1
from codistill.validation import validate


def with_workers(config: RunConfig, shape: list[int]) -> RunConfig:
    """``config`` with ``peers[k].data_parallel = shape[k]`` (checked)."""
    peers = tuple(replace(peer, data_parallel=workers) for peer, workers in zip(config.peers, shape, strict=True))
    changed = replace(config, peers=peers)
    validate(changed)
    return changed


def _timed_epoch(config: RunConfig) -> tuple[float, list[float]]:
    """Seconds per step of the second epoch of a fresh cohort, and each peer's received bytes per step."""
    cohort = RayCohort(config)
    try:
        cohort.train_epoch(0)
        started = time.perf_counter()
        rows = cohort.train_epoch(1)
        seconds = (time.perf_counter() - started) / len(rows)
    finally:
        cohort.shutdown()
    received = [statistics.mean(row[k][m.BYTES_RECEIVED] for row in rows) for k in range(len(config.peers))]
    return seconds, received


def overhead(config: RunConfig, peer: int, workers: int, repeats: int) -> dict[str, Any]:
    """Peer ``peer`` on ``workers`` actors against one, side by side (see the module docstring)."""
    shapes = {1: [1] * len(config.peers), workers: [workers if k == peer else 1 for k in range(len(config.peers))]}
    seconds: dict[int, list[float]] = {1: [], workers: []}
    received: dict[int, list[float]] = {}
    for _ in range(repeats):
        for r, shape in shapes.items():
            step_seconds, received[r] = _timed_epoch(with_workers(config, shape))
            seconds[r].append(step_seconds)
    medians = {r: statistics.median(values) for r, values in seconds.items()}
    return {"peer": config.peers[peer].name, "workers": workers, "repeats": repeats,
            "seconds_per_step": {str(r): value for r, value in medians.items()},
            "ratio": medians[workers] / medians[1],
            "bytes_received_per_worker": {str(r): received[r][peer] / r for r in received}}


def two_nodes(config: RunConfig, shape: list[int], cpus: int) -> dict[str, Any]:
    """The cohort of ``data_parallel`` ``shape`` on a head and one more node (see the module docstring)."""
    config = with_workers(replace(config, runtime=replace(config.runtime, placement="spread")), shape)
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": cpus, "include_dashboard": False,
                                                            "node_ip_address": "127.0.0.1"})
    cluster.add_node(num_cpus=cpus, node_ip_address="127.0.0.1")
    ray.init(address=cluster.address)
    try:
        cohort = RayCohort(config)
        try:
            for epoch in range(config.epochs):
                cohort.train_epoch(epoch)
            logits, labels = cohort.evaluate()
            nodes = [[w["node"] for w in where.get("workers", [where])] for where in cohort.placement]
        finally:
            cohort.shutdown()
    finally:
        ray.shutdown()
        cluster.shutdown()
    names = sorted({node for peer in nodes for node in peer})
    return {"shape": shape, "epochs": config.epochs,
            "nodes": {config.peers[k].name: [names.index(node) for node in peer] for k, peer in enumerate(nodes)},
            "val_accuracy": {config.peers[k].name: top1(peer_logits, labels)
                             for k, peer_logits in enumerate(logits)}}
