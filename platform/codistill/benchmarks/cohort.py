"""Time per epoch of Ray cohorts against their peers alone, for each exchange (``jobs/benchmark_cohort.py``).

For a cohort, :func:`measure` times side by side:

1. ``alone``: each peer trained by itself with the CPUs its config gives it, no distillation —
   the cohort cannot step faster than its slowest peer (:func:`time_alone`);
2. ``sequential``: all peers stepped one after another in this process with ``threads`` torch
   threads and the same distillation — how most KD codebases run online distillation;
3. ``ray/<exchange>``: one Ray actor per peer, payloads exchanged every step, for each
   ``runtime.exchange`` asked for (:func:`time_ray`).

Per exchange it reports seconds per epoch, the overhead per step over the slowest peer alone
((ray − slowest alone) / steps), the same over the CPU floor (the slowest peer alone or, when the
peers together need more than the machine's cores, the sum of the peers alone divided by the
cores), the ratios, the Ray start-up, and the peak resident memory of the driver (during that
variant) and of each actor. The first epoch of every variant is a warm-up. Timings on a busy
machine are noisy: compare the ratios, taken in the same run. :func:`benchmark_cohorts` times
K copies of a tiny cohort's peers and one large cohort as it is, on a Ray runtime of its own.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from codistill.cohort.handles import peak_rss_bytes, threads_for
from codistill.cohort.ray_cohort import RayCohort
from codistill.cohort.ray_runtime import start_ray
from codistill.cohort.sequential import SequentialCohort
from codistill.config import RunConfig
from codistill.peer import PeerTrainer

MIB = 1 << 20


def epoch_seconds(train_epoch: Callable[[int], Any], epochs: int) -> list[float]:
    """Seconds of each of ``epochs`` epochs after one warm-up."""
    times = []
    for epoch in range(epochs + 1):
        started = time.perf_counter()
        train_epoch(epoch)
        times.append(time.perf_counter() - started)
    return times[1:]


def time_alone(config: RunConfig, index: int, epochs: int) -> float:
    """Median seconds per epoch of peer ``index`` trained alone on its own CPUs."""
    torch.set_num_threads(threads_for(config.peers[index]))
    peer = PeerTrainer(replace(config, independent=True), index)
    steps = peer.dataset.steps_per_epoch(config.data.batch_size)

    def train_epoch(epoch: int) -> None:
        for step in range(steps):
            peer.forward(epoch, step)
            peer.update([])

    return statistics.median(epoch_seconds(train_epoch, epochs))


def time_sequential(config: RunConfig, epochs: int, threads: int) -> float:
    """Median seconds per epoch of the whole cohort in this process on ``threads`` threads."""
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


def time_ray(config: RunConfig, exchange: str, epochs: int) -> dict[str, Any]:
    """Median seconds per epoch of the Ray cohort with ``exchange``, its start-up and peak memory."""
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
            threads: int) -> dict[str, Any]:
    """One cohort's row: its peers alone (``alone``, seconds per epoch), sequential, and per exchange."""
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


def benchmark_cohorts(tiny: RunConfig, sizes: list[int], large: RunConfig | None, exchanges: list[str], *,
                      epochs: int, large_epochs: int, threads: int,
                      measured: Callable[[str], Any] = lambda name: None) -> list[dict[str, Any]]:
    """:func:`measure` rows of ``tiny``'s peers repeated to each of ``sizes`` (``tiny-K``, ``epochs``
    timed epochs) and of ``large`` (``large_epochs``), with Ray started for the biggest of them;
    ``measured(name)`` after each cohort."""
    cohorts = [(f"tiny-{k}", with_peers(tiny, k), epochs) for k in sizes]
    if large is not None:
        cohorts.append(("large", large, large_epochs))
    largest = max((config for _, config, _ in cohorts), key=lambda c: sum(p.resources.cpus for p in c.peers))
    started_ray = start_ray(largest)
    try:
        tiny_alone = [time_alone(tiny, k, epochs) for k in range(len(tiny.peers))]
        rows = []
        for name, config, timed in cohorts:
            alone = ([tiny_alone[k % len(tiny.peers)] for k in range(len(config.peers))] if name.startswith("tiny")
                     else [time_alone(config, k, timed) for k in range(len(config.peers))])
            rows.append(measure(name, config, alone, exchanges, timed, threads))
            measured(name)
        return rows
    finally:
        if started_ray:
            import ray

            ray.shutdown()
