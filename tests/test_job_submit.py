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
