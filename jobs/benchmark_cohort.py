"""Time per epoch of one cohort three ways, measured side by side in one run:

1. ``ray``: one Ray actor per peer, predictions exchanged every step (codistill);
2. ``alone``: each peer trained by itself with the CPUs its config gives it, no distillation —
   the floor for the cohort, which cannot step faster than its slowest peer;
3. ``sequential``: all peers stepped one after another in a single process, with the same
   distillation — how most KD codebases run online distillation.

    python jobs/benchmark_cohort.py --config jobs/configs/digits_cohort.yaml --epochs 3

The first epoch of every variant is a warm-up and is not counted. The sequential variant uses
``--threads`` torch threads (default: all cores); each Ray peer, and each peer alone, uses the
CPUs its config gives it. Timings on a busy machine are noisy: compare the ratios, taken in the
same run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import _bootstrap  # noqa: F401
import torch

from codistill.cohort import RayCohort, start_ray, threads_for
from codistill.config import RunConfig, load_config
from codistill.peer import PeerTrainer
from codistill.cohort_base import Cohort
from codistill.sequential import SequentialCohort


def epoch_seconds(train_epoch, epochs: int) -> list[float]:
    times = []
    for epoch in range(epochs + 1):
        started = time.perf_counter()
        train_epoch(epoch)
        times.append(time.perf_counter() - started)
    return times[1:]


def time_cohort(cohort: Cohort, epochs: int) -> list[float]:
    try:
        return epoch_seconds(cohort.train_epoch, epochs)
    finally:
        cohort.shutdown()


def time_alone(config: RunConfig, index: int, epochs: int) -> list[float]:
    torch.set_num_threads(threads_for(config.peers[index]))
    peer = PeerTrainer(replace(config, independent=True), index)
    steps = peer.dataset.steps_per_epoch(config.data.batch_size)

    def train_epoch(epoch: int) -> None:
        for step in range(steps):
            peer.forward(epoch, step)
            peer.update([])

    return epoch_seconds(train_epoch, epochs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="jobs/configs/digits_cohort.yaml")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs per variant (after one warm-up)")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="torch threads of single-process variants")
    parser.add_argument("--out", type=Path, help="write the measurements as JSON here")
    args = parser.parse_args(argv)
    config = load_config(args.config, args.overrides)

    torch.set_num_threads(args.threads)
    measured: dict[str, list[float]] = {}
    measured["sequential"] = time_cohort(SequentialCohort(config), args.epochs)
    for k, peer in enumerate(config.peers):
        measured[f"alone:{peer.name}"] = time_alone(config, k, args.epochs)
    started = time.perf_counter()
    start_ray(config)
    cohort = RayCohort(config)
    startup = time.perf_counter() - started
    measured["ray"] = time_cohort(cohort, args.epochs)

    median = {name: statistics.median(times) for name, times in measured.items()}
    slowest_alone = max(v for k, v in median.items() if k.startswith("alone:"))
    summed_alone = sum(v for k, v in median.items() if k.startswith("alone:"))
    print(f"\ncohort: {', '.join(f'{p.name} ({p.model})' for p in config.peers)}; dataset {config.data.dataset}; "
          f"{os.cpu_count()} cores; single-process threads {args.threads}; median of {args.epochs} epochs")
    print(f"{'variant':<22}{'s/epoch':>10}")
    for name, value in median.items():
        print(f"{name:<22}{value:>10.3f}")
    print(f"ray start + actor start-up: {startup:.1f} s (once per run)")
    ratios = {"sequential / ray": median["sequential"] / median["ray"],
              "ray / slowest peer alone": median["ray"] / slowest_alone,
              "sum of peers alone / ray": summed_alone / median["ray"]}
    for name, value in ratios.items():
        print(f"{name:<28}{value:>6.2f}x")
    if args.out:
        args.out.write_text(json.dumps({"seconds": measured, "median": median, "ratios": ratios,
                                        "startup_seconds": startup, "threads": args.threads,
                                        "cores": os.cpu_count()}, indent=2))
    import ray

    ray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
