"""`ray job submit` of jobs/online.py to a head node started here, on loopback only."""

import json
from pathlib import Path

import pytest
import yaml

from conftest import tiny_raw
from ray_head import LOOPBACK, LocalHead

pytestmark = pytest.mark.cluster
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def head():
    node = LocalHead(num_cpus=4).start()
    try:
        yield node
    finally:
        node.stop()
    assert not node._pids(), "head node processes survived stop()"


def test_head_listens_on_loopback_only(head):
    addresses = head.listening_addresses()
    assert addresses and addresses <= LOOPBACK, addresses


def test_submitted_job_trains_the_cohort_and_writes_results(head, tmp_path):
    config_file = tmp_path / "cohort.yaml"
    config_file.write_text(yaml.safe_dump(tiny_raw(epochs=2)))
    run_dir = tmp_path / "run"
    result = head.submit(ROOT, ["python", "jobs/online.py", "--config", str(config_file), "--run-dir", str(run_dir)])
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "succeeded" in result.stdout + result.stderr
    results = json.loads((run_dir / "results.json").read_text())
    assert results["complete"] and [p["name"] for p in results["peers"]] == ["mlp", "cnn"]
    assert results["versions"]["ray"]


def test_submitted_sweep_runs_its_trials_on_the_cluster(head, tmp_path):
    config_file, space_file = tmp_path / "cohort.yaml", tmp_path / "space.yaml"
    config_file.write_text(yaml.safe_dump(tiny_raw(epochs=1)))
    space_file.write_text(yaml.safe_dump({"distillation.weight": {"grid": [0.5, 1.0]}}))
    result = head.submit(ROOT, ["python", "jobs/sweep.py", "--config", str(config_file), "--space", str(space_file),
                                "--scheduler", "fifo", "--num-samples", "1", "--storage", str(tmp_path / "sweeps"),
                                "--name", "s"])
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    rows = (tmp_path / "sweeps" / "s" / "trials.csv").read_text().splitlines()
    assert len(rows) == 3 and all(",complete," in row for row in rows[1:]), rows
    assert (tmp_path / "sweeps" / "s" / "best.yaml").is_file()


def test_spread_placement_puts_peers_on_different_nodes():
    import subprocess
    import sys

    from ray_head import ray_env

    env = ray_env()
    env["PYTHONPATH"] = str(ROOT / "tests")
    result = subprocess.run([sys.executable, str(ROOT / "tests" / "multinode_probe.py")], env=env,
                            capture_output=True, text=True, timeout=300, cwd=ROOT)
    lines = [line for line in result.stdout.splitlines() if line.startswith("REPORT ")]
    assert result.returncode == 0 and lines, result.stdout[-2000:] + result.stderr[-3000:]
    report = json.loads(lines[0][len("REPORT "):])
    assert len(set(report["nodes"])) == 2, report
    assert report["steps"] > 0
    assert report["after_failure"] != "trained"  # losing a peer's node stops the epoch with a Ray error
