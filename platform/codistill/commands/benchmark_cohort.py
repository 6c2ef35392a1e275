"""Time per epoch of Ray cohorts against their peers alone, for each exchange, in one run:

    python jobs/benchmark_cohort.py                     # K = 2, 3, 4, 8 tiny peers + the CIFAR-sized cohort

Cohorts: the peers of ``--config`` (default: the tiny digits cohort, an MLP, a CNN and a
ResNet-8) repeated in turn to K = ``--sizes`` peers, and the peers of ``--large`` (three
CIFAR-sized networks on digits). What is measured: :mod:`codistill.benchmarks.cohort`.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from codistill.benchmarks.cohort import benchmark_cohorts
from codistill.registry import EXCHANGES
from codistill.validation import load_config


def print_table(rows: list[dict], epochs: int, threads: int) -> None:
    """The measurements as a fixed-width table."""
    print(f"\n{os.cpu_count()} cores; sequential threads {threads}; each peer (alone and in Ray) on the CPUs its "
          f"config gives it; median of {epochs} epochs after a warm-up; overhead = (ray − X) / steps")
    header = (f"{'cohort':<10}{'K':>3}{'steps':>6}{'exchange':>12}{'alone max s':>12}{'ray s':>8}"
              f"{'ms/step over slowest':>22}{'over floor':>11}{'ray/slowest':>12}{'seq/ray':>8}{'sum/ray':>8}"
              f"{'start s':>8}{'driver MiB':>11}  actors MiB")
    print(header)
    for row in rows:
        for exchange, r in row["ray"].items():
            actors = ", ".join(f"{m:.0f}" for m in r["actor_peak_mib"])
            print(f"{row['cohort']:<10}{len(row['peers']):>3}{row['steps_per_epoch']:>6}{exchange:>12}"
                  f"{row['slowest_alone_seconds']:>12.3f}{r['seconds']:>8.3f}{r['overhead_ms_per_step']:>22.2f}"
                  f"{r['overhead_over_floor_ms_per_step']:>11.2f}{r['ray_over_slowest_alone']:>11.2f}x"
                  f"{r['sequential_over_ray']:>7.2f}x{r['sum_alone_over_ray']:>7.2f}x{r['startup_seconds']:>8.1f}"
                  f"{r['driver_peak_mib']:>11.0f}  {actors}")
    print("\nsequential s/epoch: " + ", ".join(f"{row['cohort']} {row['sequential_seconds']:.3f}" for row in rows))
    print("CPU floor s/epoch:  " + ", ".join(f"{row['cohort']} {row['cpu_floor_seconds']:.3f}" for row in rows))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="jobs/configs/digits_cohort.yaml", help="the tiny peers")
    parser.add_argument("--sizes", type=int, nargs="*", default=[2, 3, 4, 8], help="cohort sizes K of tiny peers")
    parser.add_argument("--large", default="jobs/configs/digits_cohort_large.yaml",
                        help="a cohort timed as it is ('' to skip)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="applied to both configs")
    parser.add_argument("--exchanges", nargs="+", default=list(EXCHANGES), choices=EXCHANGES)
    parser.add_argument("--epochs", type=int, default=8, help="timed epochs per tiny variant (after one warm-up)")
    parser.add_argument("--large-epochs", type=int, default=3, help="timed epochs per large variant")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="torch threads of the sequential variant")
    parser.add_argument("--out", type=Path, help="write the measurements as JSON here")
    args = parser.parse_args(argv)
    tiny = load_config(args.config, args.overrides)
    large = load_config(args.large, args.overrides) if args.large else None
    rows = benchmark_cohorts(tiny, args.sizes, large, args.exchanges, epochs=args.epochs,
                             large_epochs=args.large_epochs, threads=args.threads,
                             measured=lambda name: print(f"measured {name}", flush=True))
    print_table(rows, args.epochs, args.threads)
    if args.out:
        args.out.write_text(json.dumps({"cores": os.cpu_count(), "threads": args.threads, "cohorts": rows}, indent=2))
    return 0

