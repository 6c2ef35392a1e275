"""Recovery time of a Ray cohort that loses one peer, only the lost actor restarted against every
actor (``jobs/benchmark_recovery.py``).

For each K, K tiny peers (:func:`~codistill.benchmarks.cohort.with_peers`) train with
:func:`codistill.runner.run_cohort` and the ObjectRef exchange; in the second epoch, once step 2
has returned, peer 0's actor process is killed with SIGKILL. The recovery time runs from the kill
to the first step of the redone epoch returning to the driver: noticing the loss, the restart, the
checkpoint reload and that step. Both ways run alternately, ``repeats`` times per K, so that they
share the machine's load; on a busy machine compare their ratio.
"""

from __future__ import annotations

import io
import os
import signal
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from codistill.benchmarks.cohort import with_peers
from codistill.cohort.ray_cohort import RayCohort
from codistill.cohort.ray_runtime import start_ray
from codistill.config import RunConfig
from codistill.monitoring import ConsoleProgress
from codistill.runner import prepare_run_dir, run_cohort

KILL_AT = (1, 2)  # (epoch, steps done), both from 0 / counted in the epoch


class KillAndTime(ConsoleProgress):
    """Silent progress that calls ``kill`` once at :data:`KILL_AT` and notes when training resumed:
    the first step after the epoch restarts."""

    def __init__(self, config: RunConfig, kill: Callable[[], None]) -> None:
        super().__init__(config.epochs, float("inf"), stream=io.StringIO())
        self.kill, self.epoch = kill, -1
        self.killed_at: float | None = None
        self.restarted_epoch = False
        self.resumed_at: float | None = None

    def start_epoch(self, epoch: int) -> None:
        super().start_epoch(epoch)
        self.epoch = epoch
        self.restarted_epoch = self.killed_at is not None

    def step(self, done: int, total: int) -> None:
        super().step(done, total)
        if self.killed_at is None and (self.epoch, done) == KILL_AT:
            self.killed_at = time.perf_counter()
            self.kill()
        elif self.restarted_epoch and self.resumed_at is None:
            self.resumed_at = time.perf_counter()


def time_recovery(config: RunConfig, restart_only_lost: bool, run_dir: Path) -> dict[str, Any]:
    """One run of ``config`` whose peer 0 is killed: recovery seconds and the peers restarted."""
    cohorts: list[RayCohort] = []

    def make(c: RunConfig) -> RayCohort:
        cohorts.append(RayCohort(c, restart_only_lost=restart_only_lost))
        return cohorts[-1]

    progress = KillAndTime(config, lambda: os.kill(cohorts[-1].placement[0]["pid"], signal.SIGKILL))
    prepare_run_dir(run_dir, config)
    results = run_cohort(config, run_dir, make, progress=progress)
    if results["recoveries"] != 1 or progress.killed_at is None or progress.resumed_at is None:
        raise RuntimeError(f"the kill did not happen as planned: {results['recoveries']} recoveries")
    return {"seconds": progress.resumed_at - progress.killed_at, "restarted": len(cohorts[-1].restarted)}


def benchmark_recovery(tiny: RunConfig, sizes: list[int], repeats: int,
                       measured: Callable[[str], Any] = lambda name: None) -> list[dict[str, Any]]:
    """Per K in ``sizes``: median recovery seconds with only the lost peer restarted and with every
    peer restarted (``repeats`` runs each, alternating), and their ratio; Ray started for the largest."""
    configs = {k: with_peers(replace(tiny, epochs=2, runtime=replace(tiny.runtime, exchange="objectref")), k)
               for k in sizes}
    started_ray = start_ray(configs[max(sizes)])
    rows = []
    try:
        with tempfile.TemporaryDirectory(prefix="recovery") as scratch:
            for k, config in configs.items():
                runs: dict[bool, list[dict[str, Any]]] = {True: [], False: []}
                for repeat in range(repeats):
                    for only_lost in (True, False):
                        run_dir = Path(scratch) / f"k{k}-{repeat}-{'lost' if only_lost else 'all'}"
                        runs[only_lost].append(time_recovery(config, only_lost, run_dir))
                lost, every = (statistics.median(r["seconds"] for r in runs[flag]) for flag in (True, False))
                rows.append({"K": k, "only_lost_seconds": lost, "all_seconds": every,
                             "all_over_only_lost": every / lost,
                             "restarted_only_lost": runs[True][0]["restarted"],
                             "restarted_all": runs[False][0]["restarted"],
                             "runs": {"only_lost": runs[True], "all": runs[False]}})
                measured(f"K={k}")
    finally:
        if started_ray:
            import ray

            ray.shutdown()
    return rows
