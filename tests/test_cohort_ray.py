"""Peers as Ray actors: same numbers as the single-process cohort, threads, placement, jobs."""

import json
from pathlib import Path

import pytest
import torch
from conftest import tiny_config, tiny_raw

from codistill.cohort.handles import threads_for
from codistill.cohort.ray_cohort import RayCohort
from codistill.cohort.ray_runtime import peer_bundles
from codistill.cohort.sequential import SequentialCohort
from codistill.commands import online

pytestmark = pytest.mark.ray


FEATURE_COHORT = {
    "peers": [{"name": "wide", "model": "resnet8x4"}, {"name": "narrow", "model": "resnet8"}],
    "distillation": {"teacher": "mean_of_others", "methods": [
        {"name": "kd"}, {"name": "feature_decoupled"}, {"name": "indistill", "params": {"curriculum_epochs": [1]}}]},
}


@pytest.mark.parametrize("changes", [{}, FEATURE_COHORT], ids=["logits", "features"])
def test_actors_exchange_predictions_and_match_the_single_process_cohort(ray_runtime, changes):
    """Peer-to-peer payloads (logits; stage features and InDistill's filter norms) give the
    same training, step by step, as every peer in one process."""
    torch.set_num_threads(1)
    config = tiny_config(**changes)
    local = SequentialCohort(config)
    remote = RayCohort(config)
    try:
        for epoch in range(2):
            expected, got = local.train_epoch(epoch), remote.train_epoch(epoch)
            for step_expected, step_got in zip(expected, got):
                for peer_expected, peer_got in zip(step_expected, step_got):
                    assert set(peer_got) == set(peer_expected)
                    for key in ("loss/total", "loss/ce", "train/correct"):
                        assert peer_got[key] == pytest.approx(peer_expected[key], rel=1e-5, abs=1e-6), key
        (local_logits, labels), (remote_logits, remote_labels) = local.evaluate(), remote.evaluate()
        assert torch.equal(labels, remote_labels)
        for a, b in zip(local_logits, remote_logits):
            assert torch.allclose(a, b, atol=1e-4)
    finally:
        remote.shutdown()


def test_each_actor_uses_the_cpus_it_was_given(ray_runtime):
    raw = tiny_raw()
    raw["peers"][0]["resources"] = {"cpus": 2}
    raw["peers"][1]["resources"] = {"cpus": 1}
    config = tiny_config(peers=raw["peers"])
    cohort = RayCohort(config)
    try:
        assert [p["threads"] for p in cohort.placement] == [2, 1]
        assert [p["device"] for p in cohort.placement] == ["cpu", "cpu"]
        assert peer_bundles(config) == [{"CPU": 2.0}, {"CPU": 1.0}]
    finally:
        cohort.shutdown()
    assert threads_for(config.peers[1]) == 1


def test_unplaceable_cohort_fails_with_a_clear_message(ray_runtime):
    raw = tiny_raw()
    raw["peers"][0]["resources"] = {"cpus": 64}
    with pytest.raises(RuntimeError, match="cannot place"):
        RayCohort(tiny_config(peers=raw["peers"]), placement_timeout_s=2)


def test_online_job_runs_resumes_and_reports(ray_runtime, tmp_path, capsys):
    import yaml

    config_file = tmp_path / "cohort.yaml"
    config_file.write_text(yaml.safe_dump(tiny_raw(epochs=3)))
    run_dir = tmp_path / "run"
    assert online.main(["--config", str(config_file), "--run-dir", str(run_dir), "--stop-after-epochs", "1"]) == 0
    assert not (run_dir / "results.json").exists()
    assert online.main(["--resume", str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert "resuming" in out and "ensemble" in out and "best top-1" in out
    results = json.loads((run_dir / "results.json").read_text())
    assert len(results["history"]) == 3 and results["complete"]


def test_standalone_runtime_listens_on_loopback_only():
    """The job's own Ray (no RAY_ADDRESS) binds every socket, actors' included, to loopback,
    even when the environment does not ask for it."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from ray_head import LOOPBACK

    root = Path(__file__).resolve().parent.parent
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "RAY_ADDRESS")}
    env["PYTHONPATH"] = os.pathsep.join([str(root / "platform"), str(root / "tests")])
    result = subprocess.run([sys.executable, str(root / "tests" / "standalone_probe.py"),
                             str(root / "jobs" / "configs" / "digits_cohort.yaml")],
                            env=env, capture_output=True, text=True, timeout=300, cwd=root)
    lines = [line for line in result.stdout.splitlines() if line.startswith("REPORT ")]
    assert result.returncode == 0 and lines, result.stdout[-2000:] + result.stderr[-3000:]
    report = json.loads(lines[0][len("REPORT "):])
    assert report["started"] and report["steps"] > 0
    assert report["addresses"] and set(report["addresses"]) <= LOOPBACK, report


COMMANDS = sorted(path.stem for path in (Path(__file__).resolve().parent.parent / "platform" / "codistill"
                                         / "commands").iterdir()
                  if path.name != "__init__.py" and (path.suffix == ".py" or (path / "__init__.py").exists()))


@pytest.mark.parametrize("command", COMMANDS)
def test_every_job_keeps_a_local_ray_runtime_on_loopback(command):
    """Importing a job's command module (as its script does, first), then the runtime module its
    ``start_ray`` lives in, leaves Ray reading the loopback switch: no module imports ``ray``
    before :mod:`codistill.cohort.ray_runtime` set it."""
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parent.parent
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "RAY_ADDRESS")}
    env["PYTHONPATH"] = os.pathsep.join([str(root / "platform"), str(root)])
    code = (f"import codistill.commands.{command}\n"
            "import codistill.cohort.ray_runtime\n"  # where the job starts Ray, if it imported it late
            "from codistill.private_apis import local_ray_listens_on_every_interface as listens\n"
            "print('LISTENS', listens())")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300, cwd=root)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "LISTENS False" in done.stdout, f"codistill.commands.{command} imports ray before the loopback switch"
