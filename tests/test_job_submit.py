"""`ray job submit` of jobs/online.py to a head node started here with Ray's token
authentication on (as the README recommends), listening on loopback only."""

import json
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml
from conftest import tiny_raw
from ray_head import BIN, LOOPBACK, LocalHead, ray_env, token_env

pytestmark = pytest.mark.cluster
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def head(tmp_path_factory):
    """A head with ``RAY_AUTH_MODE=token``, its token made as the README says, in a temporary HOME
    (never the user's ~/.ray); yields the head and its token."""
    home = tmp_path_factory.mktemp("head-home")
    subprocess.run([str(BIN / "ray"), "get-auth-token", "--generate"], env=token_env(home), check=True,
                   capture_output=True, text=True, timeout=120)
    node = LocalHead(num_cpus=4, auth_home=home).start()
    try:
        yield node, (home / ".ray" / "auth_token").read_text().strip()
    finally:
        node.stop()
    assert not node._pids(), "head node processes survived stop()"


def test_head_listens_on_loopback_only(head):
    addresses = head[0].listening_addresses()
    assert addresses and addresses <= LOOPBACK, addresses


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer not-the-token"}], ids=["no-token", "wrong-token"])
def test_head_refuses_clients_without_its_token(head, headers):
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(urllib.request.Request(f"{head[0].dashboard}/api/jobs/", headers=headers), timeout=60)
    assert refused.value.code in (401, 403)


def test_job_submitted_with_the_token_trains_the_cohort_and_writes_results(head, tmp_path):
    node, token = head
    config_file = tmp_path / "cohort.yaml"
    config_file.write_text(yaml.safe_dump(tiny_raw(epochs=2)))
    run_dir = tmp_path / "run"
    client = {**ray_env(), "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token, "HOME": str(tmp_path)}
    result = node.submit(ROOT, ["python", "jobs/online.py", "--config", str(config_file), "--run-dir", str(run_dir)],
                         env=client)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "succeeded" in result.stdout + result.stderr
    results = json.loads((run_dir / "results.json").read_text())
    assert results["complete"] and [p["name"] for p in results["peers"]] == ["mlp", "cnn"]
    assert results["versions"]["ray"]


def test_submitted_sweep_runs_its_trials_on_the_cluster(head, tmp_path):
    node, token = head
    client = {**ray_env(), "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token, "HOME": str(tmp_path)}
    config_file, space_file = tmp_path / "cohort.yaml", tmp_path / "space.yaml"
    config_file.write_text(yaml.safe_dump(tiny_raw(epochs=1)))
    space_file.write_text(yaml.safe_dump({"distillation.weight": {"grid": [0.5, 1.0]}}))
    result = node.submit(ROOT, ["python", "jobs/sweep.py", "--config", str(config_file), "--space", str(space_file),
                                "--scheduler", "fifo", "--num-samples", "1", "--storage", str(tmp_path / "sweeps"),
                                "--name", "s"], env=client)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    rows = (tmp_path / "sweeps" / "s" / "trials.csv").read_text().splitlines()
    assert len(rows) == 3 and all(",complete," in row for row in rows[1:]), rows
    assert (tmp_path / "sweeps" / "s" / "best.yaml").is_file()

