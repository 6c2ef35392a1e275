"""Time per epoch of Ray cohorts against their peers alone, for each exchange, in one run:

    python jobs/benchmark_cohort.py                     # K = 2, 3, 4, 8 tiny peers + the CIFAR-sized cohort

Cohorts: the peers of ``--config`` (default: the tiny digits cohort, an MLP, a CNN and a
ResNet-8) repeated in turn to K = ``--sizes`` peers, and the peers of ``--large`` (three
CIFAR-sized networks on digits). For each cohort it measures, side by side:

1. ``alone``: each peer trained by itself with the CPUs its config gives it, no distillation —
   the cohort cannot step faster than its slowest peer;
2. ``sequential``: all peers stepped one after another in this process with ``--threads``
   torch threads and the same distillation — how most KD codebases run online distillation;
3. ``ray/<exchange>``: one Ray actor per peer, payloads exchanged every step, for each
   ``runtime.exchange`` in ``--exchanges``.

It prints, per cohort and exchange: seconds per epoch, the overhead per step over the slowest
peer alone ((ray − slowest alone) / steps), the same over the CPU floor (the slowest peer alone
or, when the peers together need more than the machine's cores, the sum of the peers alone
divided by the cores), the ratios, the Ray start-up, and the peak resident memory of the driver
(during that variant) and of each actor. The first epoch of every variant is a warm-up. Timings
on a busy machine are noisy: compare the ratios, taken in the same run.
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

from codistill.cohort import RayCohort, peak_rss_bytes, start_ray, threads_for
from codistill.config import RunConfig, load_config
from codistill.peer import PeerTrainer
from codistill.local import SequentialCohort
from codistill.registry import EXCHANGES

MIB = 1 << 20


def epoch_seconds(train_epoch, epochs: int) -> list[float]:
    times = []
    for epoch in range(epochs + 1):
        started = time.perf_counter()
        train_epoch(epoch)
        times.append(time.perf_counter() - started)
    return times[1:]


def time_alone(config: RunConfig, index: int, epochs: int) -> float:
    torch.set_num_threads(threads_for(config.peers[index]))
    peer = PeerTrainer(replace(config, independent=True), index)
    steps = peer.dataset.steps_per_epoch(config.data.batch_size)

    def train_epoch(epoch: int) -> None:
        for step in range(steps):
            peer.forward(epoch, step)
            peer.update([])

    return statistics.median(epoch_seconds(train_epoch, epochs))


def time_sequential(config: RunConfig, epochs: int, threads: int) -> float:
    torch.set_num_threads(threads)
    return statistics.median(epoch_seconds(SequentialCohort(config).train_epoch, epochs))


def reset_driver_peak() -> bool:
    """Restart this process's peak-RSS count (Linux); False where that is not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def driver_peak_bytes() -> int:
    """This process's peak RSS since the last reset (Linux ``VmHWM``), else since it started."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return peak_rss_bytes()


def time_ray(config: RunConfig, exchange: str, epochs: int) -> dict:
    config = replace(config, runtime=replace(config.runtime, exchange=exchange))
    reset_driver_peak()
    started = time.perf_counter()
    cohort = RayCohort(config)
    startup = time.perf_counter() - started
    try:
        seconds = statistics.median(epoch_seconds(cohort.train_epoch, epochs))
        actors = cohort.peak_rss_bytes()
    finally:
        cohort.shutdown()
    return {"seconds": seconds, "startup_seconds": startup, "driver_peak_mib": driver_peak_bytes() / MIB,
            "actor_peak_mib": [b / MIB for b in actors]}


def with_peers(config: RunConfig, count: int) -> RunConfig:
    """``config`` with its peers repeated in turn to ``count`` peers (names made unique)."""
    base = config.peers
    peers = tuple(replace(base[k % len(base)], name=f"{base[k % len(base)].name}-{k}") for k in range(count))
    return replace(config, peers=peers)


def measure(name: str, config: RunConfig, alone: list[float], exchanges: list[str], epochs: int,
            threads: int) -> dict:
    cores = os.cpu_count() or 1
    steps = PeerTrainer(config, 0).dataset.steps_per_epoch(config.data.batch_size)
    slowest, summed = max(alone), sum(alone)
    cpus = sum(p.resources.cpus for p in config.peers)
    floor = max(slowest, summed / cores) if cpus > cores else slowest
    sequential = time_sequential(config, epochs, threads)
    row = {"cohort": name, "peers": [f"{p.name} ({p.model})" for p in config.peers], "steps_per_epoch": steps,
           "alone_seconds": alone, "slowest_alone_seconds": slowest, "cpu_floor_seconds": floor,
           "sequential_seconds": sequential, "ray": {}}
    for exchange in exchanges:
        ray_row = time_ray(config, exchange, epochs)
        seconds = ray_row["seconds"]
        ray_row.update({"overhead_ms_per_step": 1e3 * (seconds - slowest) / steps,
                        "overhead_over_floor_ms_per_step": 1e3 * (seconds - floor) / steps,
                        "ray_over_slowest_alone": seconds / slowest, "sequential_over_ray": sequential / seconds,
                        "sum_alone_over_ray": summed / seconds})
        row["ray"][exchange] = ray_row
    return row


def print_table(rows: list[dict], epochs: int, threads: int) -> None:
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
    cohorts = [(f"tiny-{k}", with_peers(tiny, k), args.epochs) for k in args.sizes]
    if args.large:
        large = load_config(args.large, args.overrides)
        cohorts.append(("large", large, args.large_epochs))

    start_ray(max((config for _, config, _ in cohorts), key=lambda c: sum(p.resources.cpus for p in c.peers)))
    tiny_alone = [time_alone(tiny, k, args.epochs) for k in range(len(tiny.peers))]
    rows = []
    for name, config, epochs in cohorts:
        alone = ([tiny_alone[k % len(tiny.peers)] for k in range(len(config.peers))] if name.startswith("tiny")
                 else [time_alone(config, k, epochs) for k in range(len(config.peers))])
        rows.append(measure(name, config, alone, args.exchanges, epochs, args.threads))
        print(f"measured {name}", flush=True)
    print_table(rows, args.epochs, args.threads)
    if args.out:
        args.out.write_text(json.dumps({"cores": os.cpu_count(), "threads": args.threads, "cohorts": rows}, indent=2))
    import ray

    ray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
