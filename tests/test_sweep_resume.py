"""A sweep's driver (``jobs/sweep.py``, its own process) killed with SIGKILL mid-way, then
``jobs/sweep.py --resume DIR``: no finished trial reruns, every interrupted trial continues from its
last checkpoint, and the final ``trials.csv``, ``summary.json`` and ``best.yaml`` agree. With FIFO
and a fixed seed every trial's accuracy history is that of an uninterrupted sweep. And a trial whose
node is lost mid-sweep is retried from its checkpoint on another node.

The moment of the kill is read from the sweep's files (which trials wrote ``results.json``, which
hold a checkpoint), not guessed with sleeps."""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from ray_head import process_tree, ray_env
from test_sweep import sweep_args

from codistill.checkpoint import load_latest_checkpoint
from codistill.commands import sweep
from codistill.runner import RESULTS_FILE
from codistill.tuning.layout import BEST_FILE, COHORTS_DIR, SUMMARY_FILE, TRIALS_FILE, trial_id_of
from codistill.validation import parse_config

pytestmark = [pytest.mark.ray, pytest.mark.slow]
ROOT = Path(__file__).resolve().parent.parent
EPOCHS = 3
PEERS = 2  # the tiny cohort's
SETTLED_S = 0.5  # how long the driver may take to record a trial's end in Tune's state
RECORDED_S = 0.25  # ... and a checkpoint a trial reported
SLOWER = ("--set", "data.train_fraction=1.0")  # epochs of a second or two: time to see a trial mid-way


@dataclass(frozen=True)
class TrialOnDisk:
    """What a trial's run directory shows: ``epochs`` of its newest checkpoint (0: none) and, once
    it finished, the time ``results.json`` was written; ``age`` is seconds since its last change."""

    epochs: int
    finished_ns: int | None
    age: float


def trials_on_disk(directory: Path) -> dict[str, TrialOnDisk]:
    """Every trial that started, by id, as its run directory shows it."""
    found = {}
    for run_dir in sorted((directory / COHORTS_DIR).glob("*")) if (directory / COHORTS_DIR).is_dir() else []:
        latest, results = run_dir / "checkpoints" / "LATEST", run_dir / RESULTS_FILE
        try:
            epochs = int(latest.read_text().strip().split("_")[-1]) if latest.is_file() else 0
            changed = max(path.stat().st_mtime for path in (run_dir / "config.yaml", latest, results) if path.exists())
            finished = results.stat().st_mtime_ns if results.is_file() else None
        except (OSError, ValueError):  # caught mid-write: look again at the next poll
            continue
        found[run_dir.name] = TrialOnDisk(epochs, finished, time.time() - changed)
    return found


def start_sweep(arguments: list[str], log: Path) -> subprocess.Popen:
    env = {**ray_env(), "PYTHONPATH": os.pathsep.join([str(ROOT / "platform"), str(ROOT)]), "OMP_NUM_THREADS": "1"}
    with log.open("a") as handle:
        return subprocess.Popen([sys.executable, str(ROOT / "jobs" / "sweep.py"), *arguments], env=env, cwd=ROOT,
                                stdout=handle, stderr=subprocess.STDOUT)


def kill_when(driver: subprocess.Popen, directory: Path, ready: Callable[[dict[str, TrialOnDisk]], bool],
              log: Path, timeout_s: float = 150) -> dict[str, TrialOnDisk]:
    """SIGKILL ``driver`` (then whatever of its Ray runtime outlives it) as soon as ``ready`` holds
    for the trials on disk; what the trials show once every process is gone."""
    deadline = time.monotonic() + timeout_s
    while not ready(trials_on_disk(directory)):
        assert driver.poll() is None, f"the sweep ended before the kill:\n{log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"never ready to kill: {trials_on_disk(directory)}"
        time.sleep(0.05)
    tree = process_tree({driver.pid})
    driver.kill()
    driver.wait()
    for pid in tree - {driver.pid}:  # the runtime dies with its driver; this only makes it prompt
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    while any(Path(f"/proc/{pid}").exists() and not zombie(pid) for pid in tree - {driver.pid}):
        time.sleep(0.1)
    return trials_on_disk(directory)


def zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True


def finished(trials: dict[str, TrialOnDisk]) -> set[str]:
    return {name for name, trial in trials.items() if trial.finished_ns is not None}


def interrupted(trials: dict[str, TrialOnDisk]) -> set[str]:
    return {name for name, trial in trials.items() if trial.finished_ns is None and trial.epochs > 0}


def finished_a_while_ago(trials: dict[str, TrialOnDisk]) -> bool:
    """A trial finished, long enough ago to be recorded so in Tune's experiment state."""
    return any(trials[name].age >= SETTLED_S for name in finished(trials))


def reported_epochs(directory: Path) -> dict[str, list[int]]:
    """The epochs each trial reported to Tune, in order (Tune's ``result.json`` of the trial)."""
    found = {}
    for trial_dir in directory.glob("train_cohort_*"):
        lines = (trial_dir / "result.json").read_text().splitlines() if (trial_dir / "result.json").is_file() else []
        found[trial_id_of(trial_dir)] = [json.loads(line)["epoch"] for line in lines]
    return found


def history(directory: Path, trial: str) -> list[dict]:
    """A trial's epoch records, from its newest checkpoint (a trial stopped early has no results.json)."""
    return load_latest_checkpoint(directory / COHORTS_DIR / trial, PEERS)[0]["history"]


def accuracies(records: list[dict]) -> list[tuple]:
    return [(tuple(p["val_accuracy"] for p in record["peers"]), record["ensemble_val"]) for record in records]


def kill_and_resume(tmp_path: Path, arguments: list[str], ready: Callable[[dict[str, TrialOnDisk]], bool],
                    epochs: int = EPOCHS) -> Path:
    """Run the sweep of ``arguments`` (trials of ``epochs``), kill it when ``ready``, resume it;
    check what any resume must hold and return the sweep's directory."""
    directory, log = tmp_path / "sweeps" / "s", tmp_path / "sweep.log"
    at_kill = kill_when(start_sweep(arguments, log), directory, ready, log)
    assert finished(at_kill) or interrupted(at_kill), at_kill
    stamps = {name: at_kill[name].finished_ns for name in finished(at_kill)}
    epochs_before = reported_epochs(directory)
    resumed = start_sweep(["--resume", str(directory)], log)
    assert resumed.wait(timeout=300) == 0, log.read_text()[-4000:]

    after = trials_on_disk(directory)
    assert {name: after[name].finished_ns for name in stamps} == stamps, "a finished trial was rerun"
    epochs_after = reported_epochs(directory)
    for name in finished(at_kill):
        assert epochs_after[name] == epochs_before[name], name
    for name in interrupted(at_kill):
        # Tune's log of the trial goes on where it stopped. A kill between Tune logging an epoch's
        # result and saving its experiment state leaves that epoch's checkpoint unrecorded: the
        # trial then continues from the checkpoint before and redoes that one epoch, never more.
        before = epochs_before[name]
        assert before, (name, "Tune recorded no checkpoint: the test killed too early")
        assert epochs_after[name][:len(before)] == before == list(range(1, len(before) + 1)), name
        continued = epochs_after[name][len(before):]
        start = continued[0] if continued else len(before) + 1
        assert start in (len(before), len(before) + 1) and continued == list(range(start, start + len(continued))), \
            (name, epochs_after[name])
    assert_consistent(directory, arguments, epochs)
    return directory


def assert_consistent(directory: Path, arguments: list[str], epochs: int) -> None:
    """``trials.csv`` has every trial once, ``summary.json`` counts them and names the best complete
    one by the table, ``best.yaml`` is that trial's config, and each row's numbers are the trial's own."""
    samples = int(arguments[arguments.index("--num-samples") + 1])
    with (directory / TRIALS_FILE).open() as handle:
        rows = {row["trial"]: row for row in csv.DictReader(handle)}
    assert len(rows) == samples and set(rows) == {p.name for p in (directory / COHORTS_DIR).iterdir()}
    summary = json.loads((directory / SUMMARY_FILE).read_text())
    metric = f"last {summary['metric']}"
    complete = {name: float(row[metric]) for name, row in rows.items() if row["state"] == "complete"}
    assert summary["trials"] == samples and summary["best_trial"] == max(complete, key=complete.get)
    for name, row in rows.items():
        records = history(directory, name)
        assert int(row["epochs"]) == len(records) and (row["state"] == "complete") == (len(records) == epochs)
        assert (row["state"] == "complete") == (directory / COHORTS_DIR / name / RESULTS_FILE).is_file(), name
        peers = [p["val_accuracy"] for p in records[-1]["peers"]]
        assert float(row[metric]) == pytest.approx(sum(peers) / len(peers)), name
    best = yaml.safe_load((directory / BEST_FILE).read_text())
    assert best["name"].endswith(f"-replay-{summary['best_trial']}")
    assert parse_config(best).epochs == epochs


def one_running_and_one_pending(samples: int) -> Callable[[dict[str, TrialOnDisk]], bool]:
    """Ready once a trial finished, the newest one (one trial runs at a time) holds its first epoch's
    checkpoint, reported a moment ago (so Tune has recorded it), and not every trial has started."""
    def ready(trials: dict[str, TrialOnDisk]) -> bool:
        newest = min(trials.values(), key=lambda trial: trial.age, default=None)
        return (finished_a_while_ago(trials) and len(trials) < samples and newest is not None
                and newest.epochs == 1 and newest.finished_ns is None and newest.age >= RECORDED_S)
    return ready


def test_killed_fifo_sweep_resumes_to_the_uninterrupted_sweeps_histories(ray_runtime, tmp_path):
    arguments = sweep_args(tmp_path, "--scheduler", "fifo", "--num-samples", "3", "--max-concurrent", "1",
                           "--backend", "sequential", "--set", f"epochs={EPOCHS}", *SLOWER)
    reference = tmp_path / "reference"
    assert sweep.main([*arguments, "--storage", str(reference)]) == 0  # in this process, uninterrupted
    directory = kill_and_resume(tmp_path, arguments, one_running_and_one_pending(3))
    expected = {name.split("_")[-1]: accuracies(history(reference / "s", name))
                for name in os.listdir(reference / "s" / COHORTS_DIR)}
    got = {name.split("_")[-1]: accuracies(history(directory, name)) for name in os.listdir(directory / COHORTS_DIR)}
    assert got == expected


def test_killed_asha_sweep_resumes_without_rerunning_a_trial(tmp_path):
    """No rung before epoch 2, so the trial killed after its first epoch was running."""
    arguments = sweep_args(tmp_path, "--scheduler", "asha", "--num-samples", "4", "--grace-epochs", "2",
                           "--max-concurrent", "1", "--backend", "sequential", "--set", f"epochs={EPOCHS}", *SLOWER)
    kill_and_resume(tmp_path, arguments, one_running_and_one_pending(4))


def test_killed_pbt_sweep_resumes_and_completes(tmp_path):
    """Synchronous PBT, exploits every 2 epochs: killed once a trial finished and another has not."""
    arguments = sweep_args(tmp_path, "--scheduler", "pbt", "--num-samples", "3", "--perturbation-interval", "2",
                           "--backend", "sequential", "--set", "epochs=4", *SLOWER)
    directory = kill_and_resume(tmp_path, arguments, lambda trials: finished_a_while_ago(trials) and bool(
        interrupted(trials)), epochs=4)
    assert (directory / "pbt_global.txt").read_text().strip(), "no exploit happened"


def test_a_trial_whose_node_is_lost_retries_from_its_checkpoint(tmp_path):
    """``tests/sweep_node_probe.py``: the node holding a trial's driver and peers is removed after the
    trial's first checkpoint; Tune retries the trial on another node, from that checkpoint."""
    env = {**ray_env(), "PYTHONPATH": os.pathsep.join([str(ROOT / "platform"), str(ROOT / "tests")]),
           "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, str(ROOT / "tests" / "sweep_node_probe.py"), str(tmp_path)], env=env,
                            capture_output=True, text=True, timeout=400, cwd=ROOT)
    lines = [line for line in result.stdout.splitlines() if line.startswith("REPORT ")]
    assert result.returncode == 0 and lines, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads(lines[0][len("REPORT "):])
    assert report["removed"] and report["code"] == 0, report
    (trial, before), = report["epochs_before"].items()
    after = report["epochs_after"][trial]
    assert before and after[:len(before)] == before and after == list(range(1, 11)), report
    resumed = re.findall(rf"resuming \S+/{trial} after epoch (\d+)/10", result.stdout)
    assert len(resumed) == 1 and int(resumed[0]) >= 1, result.stdout[-3000:]
    assert len(report["errors"]) == 1 and "Failure # 1" in report["errors"][0], report["errors"]
    assert_consistent(tmp_path / "sweeps" / "s", ["--num-samples", "1"], 10)
