"""Speed and traffic of codistillation's replicas against live distillation, on one node and two:

    python jobs/benchmark_replicas.py --sizes 2 3 4 8 --refresh 10 --out runs/benchmark-replicas.json

The peers of ``--config`` (an MLP, a CNN and a ResNet-8 on digits) repeated to K = ``--sizes``,
each with ``live`` teachers (both exchanges) and with replicas refreshed every ``--refresh``
steps, on one Ray node and on a simulated two-node ``ray.cluster_utils.Cluster``; then the
estimated network time per step on a real cluster from the measured bytes (10 Gb/s with 50 µs,
1 Gb/s with 0.5 ms). What is measured and estimated: :mod:`codistill.benchmarks.replicas`.
Prints Markdown tables; the JSON goes to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
from pathlib import Path

from codistill.benchmarks.replicas import DISTILL_EVERY_STEP, LINKS, benchmark_replicas, estimates
from codistill.validation import load_config


def print_tables(rows: list[dict], table: list[dict], intervals: list[int]) -> None:
    print("\n| setting | K | teachers | s/epoch | ms/step over slowest alone | over CPU floor | KiB received/step/peer "
          "| replica forward ms/step | replica MiB/peer |")
    print("|" + "---|" * 9)
    for r in rows:
        replica = r["variant"].startswith("replicas")
        print(f"| {r['setting']} ({r['nodes']} node{'s' * (r['nodes'] > 1)}) | {r['K']} | {r['variant']} | "
              f"{r['seconds_per_epoch']:.3f} | {r['overhead_ms_per_step']:.1f} | "
              f"{r['overhead_over_floor_ms_per_step']:.1f} | "
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
    alone, rows = benchmark_replicas(tiny, args.sizes, args.refresh, args.epochs, not args.skip_cluster,
                                     measured=lambda name: print(f"measured {name}", flush=True))
    table = estimates(rows, args.estimate)
    print(f"\n{os.cpu_count()} CPU cores, no GPU; peers {', '.join(p.model for p in tiny.peers)} repeated to K; "
          f"alone s/epoch: " + ", ".join(f"{model} {s:.3f}" for model, s in alone.items()))
    print_tables(rows, table, args.estimate)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"cores": os.cpu_count(), "alone_seconds": alone, "links": LINKS, "rows": rows,
                                    "estimates": table}, indent=2))
    return 0

