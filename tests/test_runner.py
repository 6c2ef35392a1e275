"""The epoch loop: results.json, TensorBoard files, atomic checkpoints, resume, bad input."""

import json

import pytest
import torch
import yaml
from conftest import tiny_config, tiny_raw

from codistill import safe_io
from codistill.checkpoint import LATEST, load_latest_checkpoint, save_checkpoint
from codistill.cohort.sequential import SequentialCohort
from codistill.commands import online
from codistill.runner import RESULTS_FILE, prepare_run_dir, run_cohort


@pytest.fixture(autouse=True)
def one_thread():
    torch.set_num_threads(1)


def run_sequential(config, run_dir, **kwargs):
    if not kwargs.get("resume"):
        prepare_run_dir(run_dir, config)
    return run_cohort(config, run_dir, SequentialCohort, **kwargs)


def test_results_json_and_tensorboard_files(tmp_path):
    results = run_sequential(tiny_config(), tmp_path / "run")
    saved = json.loads((tmp_path / "run" / RESULTS_FILE).read_text())
    assert saved["peers"] == results["peers"]
    assert [p["name"] for p in saved["peers"]] == ["mlp", "cnn"]
    for entry in saved["peers"] + [saved["ensemble"]]:
        assert 0.0 <= entry["last_val_accuracy"] <= entry["best_val_accuracy"] <= 1.0
        assert 1 <= entry["best_epoch"] <= 2
    assert saved["seed"] == 0 and saved["config"]["data"]["label_noise"] == 0.2
    assert saved["versions"]["torch"] == torch.__version__
    assert len(saved["history"]) == 2
    for name in ("mlp", "cnn", "cohort"):
        assert list((tmp_path / "run" / "tensorboard" / name).glob("events.out.tfevents.*")), name
    assert sorted(p.name for p in (tmp_path / "run" / "models").iterdir()) == ["cnn.pt", "mlp.pt"]


def test_tensorboard_holds_the_documented_scalars(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_sequential(tiny_config(), tmp_path / "run")
    peer = EventAccumulator(str(tmp_path / "run" / "tensorboard" / "cnn")).Reload().Tags()["scalars"]
    for tag in ("loss/ce", "loss/total", "lr", "time/step", "time/exchange_wait", "time/data_wait", "val/accuracy",
                "train/accuracy", "distill/strength"):
        assert tag in peer, (tag, peer)
    assert any(t.startswith("loss/kd") for t in peer)
    cohort = EventAccumulator(str(tmp_path / "run" / "tensorboard" / "cohort")).Reload().Tags()["scalars"]
    assert {"val/ensemble_accuracy", "val/agreement"} <= set(cohort)


def test_checkpoint_is_atomic_and_keeps_the_newest(tmp_path):
    blob = lambda value: safe_io.dumps({"value": torch.tensor(value)})  # noqa: E731
    for epoch in (1, 2, 3):
        save_checkpoint(tmp_path, epoch, {"history": [epoch]}, [blob(epoch), blob(0)], keep=2)
    assert (tmp_path / "checkpoints" / LATEST).read_text() == "epoch_0003"
    assert sorted(p.name for p in (tmp_path / "checkpoints").glob("epoch_*")) == ["epoch_0002", "epoch_0003"]
    position, states = load_latest_checkpoint(tmp_path, 2)
    assert position == {"epochs_done": 3, "history": [3]} and states == [blob(3), blob(0)]
    # A crash while writing epoch 4 leaves a staging directory behind, never a broken LATEST.
    (tmp_path / "checkpoints" / ".epoch_0004.tmp").mkdir()
    assert load_latest_checkpoint(tmp_path, 2)[0]["epochs_done"] == 3


def test_resume_ends_with_the_result_of_an_uninterrupted_run(tmp_path):
    config = tiny_config(epochs=3)
    straight = run_sequential(config, tmp_path / "straight")
    partial = run_sequential(config, tmp_path / "split", stop_after_epochs=2)
    assert partial == {"complete": False, "epochs_done": 2}
    resumed = run_sequential(config, tmp_path / "split", resume=True)
    assert resumed["peers"] == straight["peers"] and resumed["ensemble"] == straight["ensemble"]
    deterministic = lambda results: [[(p["val_accuracy"], p["train_loss"]) for p in h["peers"]]  # noqa: E731
                                     for h in results["history"]]
    assert deterministic(resumed) == deterministic(straight)
    for name in ("mlp", "cnn"):
        a = torch.load(tmp_path / "straight" / "models" / f"{name}.pt", weights_only=True)["state"]
        b = torch.load(tmp_path / "split" / "models" / f"{name}.pt", weights_only=True)["state"]
        assert all(torch.equal(a[key], b[key]) for key in a)


def test_existing_run_is_not_overwritten(tmp_path):
    prepare_run_dir(tmp_path, tiny_config())
    with pytest.raises(FileExistsError, match="--resume"):
        prepare_run_dir(tmp_path, tiny_config())


@pytest.mark.parametrize("change, field", [
    ({"peers": [{"model": "mlp"}, {"model": "resnet7"}]}, "peers[1].model"),
    ({"peers": [{"model": "mlp"}]}, "peers"),
    ({"data": {"dataset": "imagenet22k"}}, "data.dataset"),
    ({"data": {"dataset": "cifar100", "root": "/no/such/dir"}}, "data.root"),
    ({"data": {"dataset": "digits", "train_fraction": 2.0}}, "data.train_fraction"),
    ({"distillation": {"methods": [{"name": "kd", "params": {"temperature": 0.0}}]}},
     "distillation.methods[0].params.temperature"),
    ({"distillation": {"weight": -1.0}}, "distillation.weight"),
    ({"runtime": {"exchange": "nccl"}}, "runtime.exchange"),
    ({"runtime": {"max_steps_in_flight": 0}}, "runtime.max_steps_in_flight"),
])
def test_job_rejects_bad_config_before_ray_and_writes_nothing(tmp_path, capsys, change, field):
    config_file = tmp_path / "bad.yaml"
    config_file.write_text(yaml.safe_dump(tiny_raw(**change)))
    run_dir = tmp_path / "run"
    assert online.main(["--config", str(config_file), "--run-dir", str(run_dir)]) == 2
    err = capsys.readouterr().err
    assert f"'{field}'" in err and err.count("\n") == 1
    assert not run_dir.exists()
