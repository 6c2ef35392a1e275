"""Speed and traffic of codistillation's replicas against live distillation (``jobs/benchmark_replicas.py``).

Cohorts are a tiny cohort's peers repeated to K peers, every step distilling (λ = 1, no gate),
each peer an actor with one CPU. :func:`measure_cohort` runs one with ``live`` teachers through
both exchanges (``objectref``, then ``collective`` on the same actors) and with replicas
refreshed every N steps (none at epoch starts, so N is the interval). :func:`benchmark_replicas`
does so on one Ray node, then on a simulated two-node cluster (``ray.cluster_utils.Cluster`` on
loopback, peers spread over the nodes). Per variant: seconds per epoch (mean of the timed epochs
after a warm-up epoch), the overhead per step over the slowest peer alone and over the CPU floor
(the slowest peer alone, or the peers' summed time over the cores when they need more CPUs than
the machine has, as in :mod:`.cohort`), the bytes a peer receives from the others per step
(payload tensors; serialized parameters at refreshes, averaged over the steps), the replicas'
extra forward time per step and their memory.

:func:`estimates` turns the measured bytes into one peer's network time per step on a real
cluster: live pays ``latency + bytes received per step / bandwidth`` every step; replicas pay
``latency + bytes received per refresh / bandwidth`` once per N steps (the K − 1 transfers in
parallel, no compute overlapped: a lower bound for live, which also waits for the slowest peer
every step).
"""

from __future__ import annotations

import math
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from codistill import metrics as m
from codistill.benchmarks.cohort import time_alone, with_peers
from codistill.cohort.exchanges import CollectiveExchange
from codistill.cohort.ray_cohort import RayCohort  # before ray: loopback
from codistill.cohort.ray_runtime import shipped_modules, start_ray
from codistill.config import RunConfig
from codistill.validation import validate

# isort: split
import ray  # noqa: E402  (after codistill.cohort.ray_runtime, which keeps a local runtime on loopback)

LINKS = {"10 Gb/s, 50 µs": (10e9 / 8, 50e-6), "1 Gb/s, 0.5 ms": (1e9 / 8, 0.5e-3)}
#: What the benchmark's cohorts change in the config: every step distils, N is the refresh interval.
ALONE_EPOCHS = 4  # timed epochs of each peer alone (the median; one peer is cheap)
DISTILL_EVERY_STEP = ["distillation.weight=1.0", "distillation.gate=1.0", "distillation.refresh_at_epoch_start=false"]


def timed_epochs(cohort: RayCohort, first: int, epochs: int) -> dict:
    """Train epochs ``first …``; seconds per epoch and the per-peer means of the step metrics."""
    seconds, rows = [], []
    for epoch in range(first, first + epochs):
        started = time.perf_counter()
        rows += cohort.train_epoch(epoch)
        seconds.append(time.perf_counter() - started)
    peers = range(len(cohort.actors))
    mean = lambda key: [statistics.mean(row[k].get(key, 0.0) for row in rows) for k in peers]  # noqa: E731
    refreshed = [row for row in rows if row[0].get(m.REPLICA_STALENESS) == 0.0]
    return {"seconds_per_epoch": statistics.mean(seconds), "steps": len(rows) // epochs,
            "nodes": len({where["node"] for where in cohort.placement}),
            "bytes_per_step_per_peer": mean(m.BYTES_RECEIVED),
            "bytes_per_refresh_per_peer": [refreshed[0][k][m.BYTES_RECEIVED] for k in peers] if refreshed else None,
            "replica_forward_ms_per_step": [1e3 * s for s in mean(m.REPLICA_FORWARD_SECONDS)],
            "replica_memory_mib": [b / 2 ** 20 for b in mean(m.REPLICA_MEMORY_BYTES)]}


def measure_cohort(config: RunConfig, refresh: list[int], epochs: int) -> dict[str, dict]:
    """Every variant of one cohort: live/objectref, live/collective (same actors), replicas/N=…"""
    results = {}
    live = RayCohort(replace(config, runtime=replace(config.runtime, exchange="objectref")))
    try:
        live.train_epoch(0)  # warm-up
        results["live/objectref"] = timed_epochs(live, 1, epochs)
        live.exchange = CollectiveExchange()
        live.exchange.connect(live.handles, live.placement, live)
        live.train_epoch(1 + epochs)  # warm-up of the collective group
        results["live/collective"] = timed_epochs(live, 2 + epochs, epochs)
    finally:
        live.shutdown()
    for n in refresh:
        replicas = replace(config, distillation=replace(config.distillation, teacher_source="replicas",
                                                        refresh_every_steps=n))
        validate(replicas)
        cohort = RayCohort(replicas)
        try:
            cohort.train_epoch(0)
            results[f"replicas/N={n}"] = timed_epochs(cohort, 1, epochs)
        finally:
            cohort.shutdown()
    return results


def measure(setting: str, cohorts: list[tuple[int, RunConfig]], alone: dict[str, float], refresh: list[int],
            epochs: int, measured: Callable[[str], Any]) -> list[dict]:
    """Rows of every variant of each ``(K, config)`` cohort; ``alone``: seconds per epoch of each model alone."""
    cores, rows = os.cpu_count() or 1, []
    for k, config in cohorts:
        slowest = max(alone[p.model] for p in config.peers)
        floor = max(slowest, sum(alone[p.model] for p in config.peers) / cores) if k > cores else slowest
        for variant, result in measure_cohort(config, refresh, epochs).items():
            excess = lambda baseline, result=result: 1e3 * (result["seconds_per_epoch"] - baseline) / result["steps"]  # noqa: E731
            rows.append({"setting": setting, "K": k, "variant": variant, "slowest_alone_seconds": slowest,
                         "cpu_floor_seconds": floor, "overhead_ms_per_step": excess(slowest),
                         "overhead_over_floor_ms_per_step": excess(floor), **result})
        measured(f"{setting} K={k}")
    return rows


def link_ms(bytes_per_exchange: float, steps_per_exchange: int, link: str) -> float:
    """Network time per step of one exchange every ``steps_per_exchange`` steps, on ``link``."""
    bandwidth, latency = LINKS[link]
    return 1e3 * (latency + bytes_per_exchange / bandwidth) / steps_per_exchange


def estimates(rows: list[dict], intervals: list[int]) -> list[dict]:
    """Per K and link: live's and the replicas' (every N of ``intervals``) network ms per step,
    from the bytes of the busiest peer measured on one node."""
    table = []
    for k in sorted({r["K"] for r in rows}):
        mine = {r["variant"]: r for r in rows if r["K"] == k and r["setting"] == "one node"}
        live = max(mine["live/objectref"]["bytes_per_step_per_peer"])
        weights = max(next(r for name, r in mine.items() if name.startswith("replicas"))["bytes_per_refresh_per_peer"])
        for link in LINKS:
            table.append({"K": k, "link": link, "live_ms": link_ms(live, 1, link), "live_bytes_per_step": live,
                          "refresh_bytes": weights, "replicas_ms": {n: link_ms(weights, n, link) for n in intervals}})
    return table




def benchmark_replicas(tiny: RunConfig, sizes: list[int], refresh: list[int], epochs: int, cluster: bool,
                       measured: Callable[[str], Any] = lambda name: None) -> tuple[dict[str, float], list[dict]]:
    """Each model of ``tiny`` alone, then :func:`measure` on one node and (``cluster``) on two."""
    cohorts = [(k, with_peers(tiny, k)) for k in sizes]
    alone = {p.model: time_alone(tiny, k, ALONE_EPOCHS) for k, p in enumerate(tiny.peers)}
    start_ray(max((c for _, c in cohorts), key=lambda c: len(c.peers)))
    try:
        rows = measure("one node", cohorts, alone, refresh, epochs, measured)
    finally:
        ray.shutdown()
    if cluster:
        from ray.cluster_utils import Cluster

        nodes = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False,
                                                              "node_ip_address": "127.0.0.1"})
        try:
            for _ in range(2):
                nodes.add_node(num_cpus=math.ceil(max(sizes) / 2), node_ip_address="127.0.0.1")
            ray.init(address=nodes.address, runtime_env={"py_modules": shipped_modules(tiny)})
            spread = [(k, replace(c, runtime=replace(c.runtime, placement="spread"))) for k, c in cohorts]
            rows += measure("two-node Cluster", spread, alone, refresh, epochs, measured)
        finally:
            ray.shutdown()
            nodes.shutdown()
    return alone, rows
