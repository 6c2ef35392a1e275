"""Fault injection: a peer's actor process killed mid-epoch, a worker node removed, the driver
killed. A lost peer is recovered from the last checkpoint and the run ends exactly as an
uninterrupted one; a dead driver takes its actors with it."""

import io
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import yaml
from conftest import tiny_config, tiny_raw
from fault_injection import KillAtStep, fault_test_config, outcome, run
from ray_head import process_tree, ray_env, scan_processes

from codistill.cohort.base import PeerLost
from codistill.cohort.ray_cohort import RayCohort
from codistill.monitoring import ConsoleProgress
from codistill.runner import prepare_run_dir, run_cohort

pytestmark = pytest.mark.ray
ROOT = Path(__file__).resolve().parent.parent
FAULT_TEST_CONFIG = fault_test_config()


def kill_peer_process(cohort, peer):
    os.kill(cohort.placement[peer]["pid"], signal.SIGKILL)


@pytest.fixture(scope="module")
def uninterrupted(ray_runtime, tmp_path_factory):
    """The outcome of the fault-free run every faulty run must reproduce."""
    run_dir = tmp_path_factory.mktemp("uninterrupted") / "run"
    results = run(FAULT_TEST_CONFIG, run_dir)
    assert results["recoveries"] == 0
    return outcome(results, run_dir)


@pytest.mark.parametrize("runtime, restarted", [({"exchange": "objectref"}, [1]),
                                                ({"exchange": "collective", "max_steps_in_flight": 4}, [0, 1])])
def test_killed_peer_is_recovered_and_the_run_ends_as_an_uninterrupted_one(uninterrupted, tmp_path, runtime,
                                                                           restarted):
    """With the ObjectRef exchange only the lost peer restarts and the healthy one is rolled back
    in place; the collective's group re-forms, so every peer restarts (in chunks of 2 steps, so
    that the kill comes mid-epoch)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    config = replace(FAULT_TEST_CONFIG, runtime=replace(FAULT_TEST_CONFIG.runtime, **runtime))
    cohorts, pids = [], []

    def kill():
        pids.extend(where["pid"] for where in cohorts[-1].placement)
        kill_peer_process(cohorts[-1], 1)

    progress = KillAtStep(config, epoch=1, step=2, kill=kill)
    got = run(config, tmp_path / "faulty", progress, cohorts)
    assert progress.fired
    log = progress.stream.getvalue()
    assert "lost peer 'cnn'" in log and "recovery 1/3" in log, log
    assert got["recoveries"] == 1
    assert len(cohorts) == 1 and cohorts[0].restarted == restarted
    assert [where["pid"] != pid for where, pid in zip(cohorts[0].placement, pids)] == [k in restarted for k in (0, 1)]
    assert outcome(got, tmp_path / "faulty") == uninterrupted
    tags = EventAccumulator(str(tmp_path / "faulty" / "tensorboard" / "cohort")).Reload().Tags()["scalars"]
    assert "faults/recoveries" in tags


@pytest.mark.slow
def test_peer_lost_while_the_final_models_are_fetched_is_recovered(uninterrupted, tmp_path):
    """The loss comes after the last epoch, as the networks are fetched for ``models/``: the
    peers restart from the last checkpoint, and models/ and results.json are those of an
    uninterrupted run."""
    config, killed = FAULT_TEST_CONFIG, []
    progress = ConsoleProgress(config.epochs, 0.0, stream=io.StringIO())

    def make(c):
        cohort = RayCohort(c)
        fetch = cohort.model_bytes

        def kill_then_fetch():
            if not killed:  # once: the restarted peers fetch undisturbed
                killed.append(cohort.placement[1]["pid"])
                kill_peer_process(cohort, 1)
            return fetch()

        cohort.model_bytes = kill_then_fetch
        return cohort

    prepare_run_dir(tmp_path / "run", config)
    got = run_cohort(config, tmp_path / "run", make, progress=progress)
    log = progress.stream.getvalue()
    assert "lost peer 'cnn'" in log and f"from the checkpoint after epoch {config.epochs}" in log, log
    assert len(killed) == 1 and got["recoveries"] == 1
    assert outcome(got, tmp_path / "run") == uninterrupted


def test_recovery_gives_up_after_max_failures(ray_runtime, tmp_path):
    config = tiny_config(epochs=2, runtime={"max_failures": 0, "progress_every_seconds": 0.0})
    cohorts = []
    progress = KillAtStep(config, epoch=1, step=1, kill=lambda: kill_peer_process(cohorts[-1], 0))
    with pytest.raises(PeerLost, match=r"lost peer 'mlp'.*giving up after 0 recoveries \(runtime.max_failures\)"):
        run(config, tmp_path / "run", progress, cohorts)
    assert (tmp_path / "run" / "checkpoints" / "epoch_0001").is_dir()
    assert not (tmp_path / "run" / "results.json").exists()


def test_node_loss_is_recovered_on_another_node(uninterrupted, tmp_path):
    """Three nodes (``ray.cluster_utils.Cluster``), peers spread; the worker node of one peer is
    removed mid-epoch; its bundle is re-placed and the run ends as the uninterrupted one."""
    env = ray_env()
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "platform"), str(ROOT / "tests")])
    result = subprocess.run([sys.executable, str(ROOT / "tests" / "multinode_probe.py"), str(tmp_path)], env=env,
                            capture_output=True, text=True, timeout=400, cwd=ROOT)
    lines = [line for line in result.stdout.splitlines() if line.startswith("REPORT ")]
    assert result.returncode == 0 and lines, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads(lines[0][len("REPORT "):])
    assert len(set(report["nodes_before"])) == 2, report
    assert report["removed"] in report["nodes_before"] and report["removed"] not in report["nodes_after"]
    assert report["recoveries"] == 1 and report["lost"] and len(report["restarted"]) == 1, report
    assert report["faulty"] == uninterrupted


def test_dead_driver_takes_its_actors_and_ray_processes_with_it(tmp_path):
    """SIGKILL of a standalone ``jobs/online.py``: its peer actors, raylet, GCS and monitors exit
    within seconds. Ray's two agents notice at once too, but then spend Ray's fixed 60 s trying to
    report the raylet's death to the dead GCS before exiting; the test stops them itself."""
    config_file = tmp_path / "cohort.yaml"
    config_file.write_text(yaml.safe_dump(tiny_raw(epochs=200)))
    env = ray_env()
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "platform"), str(ROOT)])
    driver = subprocess.Popen([sys.executable, str(ROOT / "jobs" / "online.py"), "--config", str(config_file),
                               "--run-dir", str(tmp_path / "run")], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True, cwd=ROOT)
    try:
        for line in driver.stdout:
            if line.startswith("epoch 1/"):
                break
        processes = scan_processes()
        started = process_tree({driver.pid}, processes) - {driver.pid}
    finally:
        driver.kill()
        driver.wait()
    agents = {pid for pid in started if processes[pid][1].startswith(("ray::DashboardAgent", "ray::RuntimeEnvAgent"))}
    actors = {pid for pid in started if processes[pid][1].startswith("ray::PeerActor")}
    assert len(actors) == 2 and len(started - agents - actors) >= 3, {pid: processes[pid][1][:80] for pid in started}
    deadline = time.monotonic() + 30
    while alive(started - agents) and time.monotonic() < deadline:
        time.sleep(0.5)
    survivors = alive(started - agents)
    for pid in alive(started):  # ours: stop what is left before asserting
        os.kill(pid, signal.SIGKILL)
    assert not survivors, f"still running 30 s after the driver died: {[processes[p][1][:80] for p in survivors]}"


def alive(pids):
    """The PIDs still running (a zombie has exited; only its parent has not collected it)."""
    running = set()
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state != "Z":
            running.add(pid)
    return running
