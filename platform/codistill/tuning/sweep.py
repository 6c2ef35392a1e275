"""Running a sweep: Ray started (or joined), the Tuner fitted, the trials tabulated, the best exported.

Everything lands in the sweep's directory (:mod:`.layout`); :func:`run_sweep` returns what a
caller prints. Import this module only once the settings are checked: it imports Ray (through
:mod:`codistill.cohort.ray_runtime`, first, so that a private runtime listens on loopback only).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from codistill.cohort.ray_runtime import start_ray  # before any ``import ray``: see the module docstring
from codistill.safe_io import write_atomic
from codistill.tuning.layout import PEAK_FILE, SUMMARY_FILE, TRIALS_FILE
from codistill.tuning.replay import export_best
from codistill.tuning.results import summarize, write_csv
from codistill.tuning.settings import SweepSettings
from codistill.tuning.tuner import build_tuner, trial_cpus

#: Seconds between Tune's snapshots of the experiment state (each trial's status and newest
#: checkpoint), which ``--resume`` restores. Tune's default (10 s or more) lets a sweep killed
#: meanwhile rerun trials that had finished, or restart one from an older checkpoint; 0 saves it
#: after every event Tune handles (a local write of a few milliseconds), without Tune's warning
#: that it does so often.
TUNE_ENVIRONMENT = {"TUNE_GLOBAL_CHECKPOINT_S": "0", "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0"}


@dataclass(frozen=True)
class SweepOutcome:
    """``rows`` (one per trial, also in ``trials.csv``), ``summary`` (also in ``summary.json``: trials,
    wall_seconds, most_concurrent, best_trial, metric), and ``best_config`` (``best.yaml``) or
    ``export_error`` (why the best trial could not be exported); both None when no trial completed."""

    rows: list[dict[str, Any]]
    summary: dict[str, Any]
    best_config: Path | None = None
    export_error: str | None = None


def run_sweep(settings: SweepSettings, *, resume: bool) -> SweepOutcome:
    """Fit the sweep of ``settings`` (saved with :meth:`SweepSettings.save`), or continue it
    (``resume``), on the cluster of ``RAY_ADDRESS`` or a private Ray runtime."""
    config, directory, options = settings.config, settings.directory, settings.options
    started_ray = start_ray(config, num_cpus=max(options.cpus, trial_cpus(config, options.backend)))
    started = time.perf_counter()
    for name, value in TUNE_ENVIRONMENT.items():
        os.environ.setdefault(name, value)
    try:
        results = build_tuner(settings, resume).fit()
    finally:
        if started_ray:
            import ray

            ray.shutdown()
    seconds = time.perf_counter() - started
    rows, best_id = summarize(results, settings)
    write_csv(directory / TRIALS_FILE, rows)
    peak = directory / PEAK_FILE
    summary = {"trials": len(rows), "wall_seconds": seconds,
               "most_concurrent": int(peak.read_text()) if peak.is_file() else 0,
               "best_trial": best_id, "metric": options.metric}
    write_atomic(directory / SUMMARY_FILE, json.dumps(summary, indent=2).encode())
    if best_id is None:
        return SweepOutcome(rows, summary)
    try:
        return SweepOutcome(rows, summary, best_config=export_best(directory, best_id))
    except ValueError as error:
        return SweepOutcome(rows, summary, export_error=str(error))
