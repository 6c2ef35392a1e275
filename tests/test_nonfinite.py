"""A peer whose loss goes NaN/inf: `runtime.on_nonfinite: stop` ends the run naming it and keeps
the last good checkpoint; `skip` skips its updates and keeps the others from learning its NaNs."""

import json

import pytest
import torch
import yaml
from conftest import tiny_config, tiny_raw

from codistill.checkpoint import load_latest_checkpoint
from codistill.cohort.offline import load_network
from codistill.cohort.sequential import SequentialCohort
from codistill.commands import online
from codistill.errors import ConfigError, NonFiniteLoss

# With these learning rates the MLP's loss turns NaN in epoch 2 (100) or late in epoch 1 (1000).
DIVERGES_IN_EPOCH_2 = "peers.0.optimizer.lr=100.0"
DIVERGES_AT_ONCE = "peers.0.optimizer.lr=1000.0"


@pytest.fixture(autouse=True)
def one_thread():
    torch.set_num_threads(1)


def run_job(tmp_path, *overrides, backend="sequential"):
    config_file = tmp_path / "cohort.yaml"
    config_file.write_text(yaml.safe_dump(tiny_raw(epochs=3)))
    run_dir = tmp_path / "run"
    argv = ["--config", str(config_file), "--run-dir", str(run_dir), "--backend", backend]
    return online.main(argv + [f"--set={o}" for o in overrides]), run_dir


def strict_json(path):
    def refuse(constant):
        raise ValueError(f"{path} holds {constant}, which is not JSON")

    return json.loads(path.read_text(), parse_constant=refuse)


@pytest.mark.parametrize("runtime, field", [({"on_nonfinite": "ignore"}, "runtime.on_nonfinite"),
                                            ({"max_failures": -1}, "runtime.max_failures"),
                                            ({"max_failures": "three"}, "runtime.max_failures")])
def test_reliability_options_are_validated(runtime, field):
    with pytest.raises(ConfigError) as error:
        tiny_config(runtime=runtime)
    assert error.value.field == field


def test_stop_names_the_diverged_peer_and_keeps_the_last_good_checkpoint(tmp_path, capsys):
    status, run_dir = run_job(tmp_path, DIVERGES_IN_EPOCH_2)
    assert status == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("codistill: peer 'mlp' diverged: "), lines
    assert "at epoch 2, step " in lines[0] and str(run_dir / "checkpoints") in lines[0]
    assert not (run_dir / "results.json").exists() and not (run_dir / "models").exists()
    position, states = load_latest_checkpoint(run_dir, 2)
    assert position["epochs_done"] == 1
    cohort = SequentialCohort(tiny_config(epochs=3))
    cohort.load_state_bytes(states)
    for peer in cohort.peers:
        assert all(bool(torch.isfinite(p).all()) for p in peer.model.parameters())


def test_a_teachers_nan_predictions_name_the_teacher():
    config = tiny_config()
    cohort = SequentialCohort(config)
    mlp, cnn = cohort.peers
    payload = mlp.forward(0, 0)
    cnn.forward(0, 0)
    payload.logits[3, 1] = float("nan")
    with pytest.raises(NonFiniteLoss, match=r"peer 'mlp' diverged: its predictions sent to peer 'cnn' are NaN"):
        cnn.update([payload])


def test_skip_completes_counts_skips_and_shields_the_other_peers(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    status, run_dir = run_job(tmp_path, DIVERGES_AT_ONCE, "runtime.on_nonfinite=skip")
    assert status == 0
    results = strict_json(run_dir / "results.json")
    mlp, cnn = results["peers"]
    assert mlp["skipped_steps"] > 0 and mlp["teachers_left_out"] == 0
    assert cnn["skipped_steps"] == 0 and cnn["teachers_left_out"] == mlp["skipped_steps"]
    assert all(h["peers"][1]["train_loss"] is not None for h in results["history"])
    for name in ("mlp", "cnn"):
        network = load_network(run_dir / "models" / f"{name}.pt")
        assert all(bool(torch.isfinite(p).all()) for p in network.parameters()), name
    tags = EventAccumulator(str(run_dir / "tensorboard" / "mlp")).Reload().Tags()["scalars"]
    assert {"nonfinite/skipped", "nonfinite/skipped_steps_epoch"} <= set(tags)


def test_skip_leaves_out_only_the_nan_teacher():
    """A NaN teacher is left out of the step; the student still steps on its own loss."""
    config = tiny_config(runtime={"on_nonfinite": "skip"})
    cohort = SequentialCohort(config)
    mlp, cnn = cohort.peers
    payload = mlp.forward(0, 0)
    cnn.forward(0, 0)
    before = [p.detach().clone() for p in cnn.model.parameters()]
    payload.logits[0, 0] = float("inf")
    metrics = cnn.update([payload])
    assert metrics["nonfinite/teachers_left_out"] == 1.0 and metrics["nonfinite/skipped"] == 0.0
    assert not any(k.startswith("loss/kd") for k in metrics)
    assert any(not torch.equal(a, b) for a, b in zip(before, cnn.model.parameters()))


@pytest.mark.ray
def test_stop_crosses_the_actor_boundary(ray_runtime, tmp_path, capsys):
    status, run_dir = run_job(tmp_path, DIVERGES_IN_EPOCH_2, backend="ray")
    assert status == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("codistill: peer 'mlp' diverged: ") and "at epoch 2, step " in err[0]
    assert not (run_dir / "results.json").exists() and not (run_dir / "models").exists()
