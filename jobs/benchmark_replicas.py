"""Speed and traffic of codistillation's replicas against live distillation, on one node and two:

    python jobs/benchmark_replicas.py --sizes 2 3 4 8 --refresh 10 --out runs/benchmark-replicas.json

Cohorts: the peers of ``--config`` (an MLP, a CNN and a ResNet-8 on digits) repeated in turn to
K = ``--sizes`` peers, every step distilling (λ = 1, no gate), each peer an actor with one CPU.
Each cohort runs with ``live`` teachers through both exchanges (``objectref``, then
``collective`` on the same actors) and with replicas refreshed every ``--refresh`` steps (none at
epoch starts, so N is the interval), first on one Ray node, then on a simulated two-node cluster
(``ray.cluster_utils.Cluster`` on loopback, peers spread over the nodes). Per variant: seconds per
epoch (mean of ``--epochs`` after a warm-up epoch), the overhead per step over the slowest peer
alone and over the CPU floor (the slowest peer alone, or the peers' summed time over the cores
when they need more CPUs than the machine has, as in ``benchmark_cohort.py``), the bytes a peer
receives from the others per step (payload tensors; serialized parameters at refreshes, averaged
over the steps), the replicas' extra forward time per step and their memory.

The estimate for a real cluster is one peer's network time per step from the measured bytes:
live pays ``latency + bytes received per step / bandwidth`` every step; replicas pay ``latency +
bytes received per refresh / bandwidth`` once per N steps (the K − 1 transfers in parallel, no
compute overlapped: a lower bound for live, which also waits for the slowest peer every step).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import _bootstrap  # noqa: F401
from benchmark_cohort import time_alone, with_peers

from codistill import metrics as m
from codistill.cohort import RayCohort, shipped_modules, start_ray  # sets Ray's loopback switch before Ray loads
from codistill.config import RunConfig, load_config, validate
from codistill.exchanges import CollectiveExchange

import ray  # noqa: E402  (after codistill.cohort: loopback)

LINKS = {"10 Gb/s, 50 µs": (10e9 / 8, 50e-6), "1 Gb/s, 0.5 ms": (1e9 / 8, 0.5e-3)}
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
        live.exchange.connect(live.actors, live.placement, live)
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
            epochs: int, cores: int) -> list[dict]:
    rows = []
    for k, config in cohorts:
        slowest = max(alone[p.model] for p in config.peers)
        floor = max(slowest, sum(alone[p.model] for p in config.peers) / cores) if k > cores else slowest
        for variant, result in measure_cohort(config, refresh, epochs).items():
            excess = lambda baseline: 1e3 * (result["seconds_per_epoch"] - baseline) / result["steps"]  # noqa: E731
            rows.append({"setting": setting, "K": k, "variant": variant, "slowest_alone_seconds": slowest,
                         "cpu_floor_seconds": floor, "overhead_ms_per_step": excess(slowest),
                         "overhead_over_floor_ms_per_step": excess(floor), **result})
        print(f"measured {setting} K={k}", flush=True)
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


def print_tables(rows: list[dict], table: list[dict], intervals: list[int]) -> None:
    print("\n| setting | K | teachers | s/epoch | ms/step over slowest alone | over CPU floor | KiB received/step/peer "
          "| replica forward ms/step | replica MiB/peer |")
    print("|" + "---|" * 9)
    for r in rows:
        replica = r["variant"].startswith("replicas")
        print(f"| {r['setting']} ({r['nodes']} node{'s' * (r['nodes'] > 1)}) | {r['K']} | {r['variant']} | "
              f"{r['seconds_per_epoch']:.3f} | {r['overhead_ms_per_step']:.1f} | {r['overhead_over_floor_ms_per_step']:.1f} | "
              f"{statistics.mean(r['bytes_per_step_per_peer']) / 1024:.1f} | "
              + (f"{statistics.mean(r['replica_forward_ms_per_step']):.2f} | {max(r['replica_memory_mib']):.2f} |"
                 if replica else "– | – |"))
    print("\nEstimated network time per step of the busiest peer on a real cluster (ms):\n")
    print("| K | link | live (KiB/step) | live | " + " | ".join(f"replicas N={n}" for n in intervals)
          + " | refresh KiB/peer |")
    print("|" + "---|" * (5 + len(intervals)))
    for e in table:
        print(f"| {e['K']} | {e['link']} | {e['live_bytes_per_step'] / 1024:.1f} | {e['live_ms']:.3f} | "
              + " | ".join(f"{e['replicas_ms'][n]:.3f}" for n in intervals) + f" | {e['refresh_bytes'] / 1024:.0f} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="jobs/configs/digits_cohort.yaml", help="the tiny peers")
    parser.add_argument("--sizes", type=int, nargs="+", default=[2, 3, 4, 8], help="cohort sizes K")
    parser.add_argument("--refresh", type=int, nargs="+", default=[10], help="refresh intervals N timed")
    parser.add_argument("--estimate", type=int, nargs="+", default=[1, 10, 50, 200],
                        help="refresh intervals N of the cluster estimate")
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs per variant (after one warm-up)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="applied to every cohort")
    parser.add_argument("--skip-cluster", action="store_true", help="one node only")
    parser.add_argument("--out", type=Path, default=Path("runs/benchmark-replicas.json"))
    args = parser.parse_args(argv)
    tiny = load_config(args.config, DISTILL_EVERY_STEP + args.overrides)
    cohorts = [(k, with_peers(tiny, k)) for k in args.sizes]
    cores = os.cpu_count() or 1
    alone = {p.model: time_alone(tiny, k, args.epochs) for k, p in enumerate(tiny.peers)}

    start_ray(max((c for _, c in cohorts), key=lambda c: len(c.peers)))
    rows = measure("one node", cohorts, alone, args.refresh, args.epochs, cores)
    ray.shutdown()
    if not args.skip_cluster:
        from ray.cluster_utils import Cluster

        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False,
                                                                "node_ip_address": "127.0.0.1"})
        for _ in range(2):
            cluster.add_node(num_cpus=math.ceil(max(args.sizes) / 2), node_ip_address="127.0.0.1")
        ray.init(address=cluster.address, runtime_env={"py_modules": shipped_modules(tiny)})
        try:
            spread = [(k, replace(c, runtime=replace(c.runtime, placement="spread"))) for k, c in cohorts]
            rows += measure("two-node Cluster", spread, alone, args.refresh, args.epochs, cores)
        finally:
            ray.shutdown()
            cluster.shutdown()
    table = estimates(rows, args.estimate)
    print(f"\n{cores} CPU cores, no GPU; peers {', '.join(p.model for p in tiny.peers)} repeated to K; "
          f"alone s/epoch: " + ", ".join(f"{model} {s:.3f}" for model, s in alone.items()))
    print_tables(rows, table, args.estimate)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"cores": cores, "alone_seconds": alone, "links": LINKS, "rows": rows,
                                    "estimates": table}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
