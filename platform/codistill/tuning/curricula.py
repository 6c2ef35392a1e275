"""Searched and evolved curricula against simple ones: the sweeps and plain runs behind
``jobs/evidence_curricula.py``.

The sweeps tune on seed 0 with a test split no trial sees (:func:`held_out_test_split`: a
dataset's official one, or ``data.test_fraction=0.5``, half of the held-out digits); every
curriculum is then trained from scratch with fresh seeds as a plain run and evaluated on that
test split. Each sweep and each plain run
is its own process (``jobs/sweep.py``, ``jobs/online.py`` in ``jobs_dir``): a sweep gets its own
private Ray runtime, a plain run the sequential backend on one torch thread.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from codistill.config import RunConfig
from codistill.data import has_test_split
from codistill.evidence import run_dir_for
from codistill.tuning.layout import BEST_FILE, SUMMARY_FILE

CARVED_TEST_SPLIT = "data.test_fraction=0.5"  # for a config without a test split
CONSTANT = ["distillation.weight=1.0", "distillation.gate=1.0"]  # λ = 1 at every step, no gate
SWEEPS_DIR, REPLAYS_DIR = "sweeps", "replays"


def set_flags(overrides: Sequence[str]) -> list[str]:
    """``["--set", o1, "--set", o2, …]``."""
    return [flag for override in overrides for flag in ("--set", override)]


def held_out_test_split(config: RunConfig) -> list[str]:
    """The overrides that give ``config`` its test split: none when it has one (a dataset's official
    test split, or a ``data.test_fraction`` of its own), else :data:`CARVED_TEST_SPLIT`."""
    return [] if has_test_split(config.data) else [CARVED_TEST_SPLIT]


def run_sweep_process(jobs_dir: Path, out: Path, scheduler: str, arguments: Sequence[str],
                      overrides: Sequence[str]) -> tuple[Path, dict]:
    """``jobs/sweep.py`` with ``arguments`` as sweep ``out/sweeps/<scheduler>`` on seed 0 (then
    ``overrides``, which hold out the test split: :func:`held_out_test_split`), in its own process;
    its directory and summary."""
    storage = out / SWEEPS_DIR
    command = [sys.executable, str(jobs_dir / "sweep.py"), *arguments, "--scheduler", scheduler,
               "--storage", str(storage), "--name", scheduler, *set_flags(["seed=0", *overrides])]
    print(" ".join(command), flush=True)
    subprocess.run(command, check=True)
    return storage / scheduler, sweep_summary(storage / scheduler)


def sweep_summary(directory: Path) -> dict:
    """What a finished sweep wrote to ``summary.json``."""
    return json.loads((directory / SUMMARY_FILE).read_text())


def curricula(config: str, asha_dir: Path, pbt_dir: Path) -> dict[str, list[str]]:
    """The compared curricula, as ``jobs/online.py`` arguments."""
    return {"the config (ramp λ(t) + progressive gate m(t))": ["--config", config],
            "constant λ = 1, no gate": ["--config", config, *set_flags(CONSTANT)],
            "best ASHA curriculum": ["--config", str(asha_dir / BEST_FILE)],
            "PBT-evolved monotone curriculum (replayed)": ["--config", str(pbt_dir / BEST_FILE)]}


def train_plain_runs(jobs_dir: Path, out: Path, variants: dict[str, list[str]], seeds: Sequence[int],
                     overrides: Sequence[str], jobs: int) -> float:
    """Every variant with every seed as a plain run in ``out/replays``, ``jobs`` at a time; the wall
    seconds. Raises RuntimeError when a run fails (its log is next to its run directory)."""
    replays = out / REPLAYS_DIR
    replays.mkdir()
    pending = [(name, arguments, seed) for name, arguments in variants.items() for seed in seeds]
    running: list[tuple[str, int, subprocess.Popen]] = []
    started = time.perf_counter()
    while pending or running:
        while pending and len(running) < jobs:
            name, arguments, seed = pending.pop(0)
            run_dir = run_dir_for(replays, name, seed)
            command = [sys.executable, str(jobs_dir / "online.py"), *arguments,
                       *set_flags([f"seed={seed}", *overrides]), "--backend", "sequential",
                       "--run-dir", str(run_dir)]
            with run_dir.with_name(f"{run_dir.name}.log").open("w") as log:
                running.append((name, seed, subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                                             env={**os.environ, "OMP_NUM_THREADS": "1"})))
        time.sleep(1)
        for name, seed, process in [entry for entry in running if entry[2].poll() is not None]:
            running.remove((name, seed, process))
            if process.returncode != 0:
                raise RuntimeError(f"{name} seed {seed} failed; see {replays}")
    return time.perf_counter() - started


def test_accuracies(run_dir: Path) -> tuple[float, float, float]:
    """A plain run's mean peer and ensemble top-1 on the test split, and its mean peer last validation top-1."""
    results = json.loads((run_dir / "results.json").read_text())
    peers = results["peers"]
    return (statistics.mean(p["test_accuracy"] for p in peers), results["ensemble"]["test_accuracy"],
            statistics.mean(p["last_val_accuracy"] for p in peers))


def collect(out: Path, variants: Sequence[str], seeds: Sequence[int]) -> dict[str, dict[str, list[float]]]:
    """``{variant: {"peer_test", "ens_test", "peer_val": one value per seed}}`` of the plain runs."""
    rows: dict[str, dict[str, list[float]]] = {}
    for name in variants:
        row = rows.setdefault(name, {"peer_test": [], "ens_test": [], "peer_val": []})
        for seed in seeds:
            for key, value in zip(row, test_accuracies(run_dir_for(out / REPLAYS_DIR, name, seed))):
                row[key].append(value)
    return rows
