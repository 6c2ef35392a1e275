"""Checkpoint integrity and safe loading: every kind of corruption either falls back to an older
complete checkpoint (and the resumed run ends exactly as an uninterrupted one) or, when none
verifies, stops the job at the front door; files that need arbitrary unpickling are refused."""

from __future__ import annotations

import io
import json
import pickle
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from conftest import tiny_raw

from codistill import safe_io
from codistill.checkpoint import LATEST, MANIFEST, CheckpointError, find_checkpoint, save_checkpoint
from codistill.commands import online
from codistill.errors import ConfigError


@pytest.fixture(autouse=True)
def one_thread():
    torch.set_num_threads(1)


def run(argv: list[str]) -> int:
    return online.main(argv + ["--backend", "sequential"])


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """An uninterrupted 3-epoch run, and the same run stopped after 2 epochs (checkpoints 1 and 2)."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("runs")
    (root / "c.yaml").write_text(yaml.safe_dump(tiny_raw(epochs=3)))
    assert run(["--config", str(root / "c.yaml"), "--run-dir", str(root / "straight")]) == 0
    assert run(["--config", str(root / "c.yaml"), "--run-dir", str(root / "split"), "--stop-after-epochs", "2"]) == 0
    return {"straight": root / "straight", "split": root / "split"}


def outcome(run_dir: Path) -> list:
    results = json.loads((run_dir / "results.json").read_text())
    return [results["peers"], results["ensemble"]] + [[(p["val_accuracy"], p["train_loss"]) for p in h["peers"]]
                                                      for h in results["history"]]


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])


NEWEST = "checkpoints/epoch_0002"
FALLBACKS = [
    pytest.param(lambda run: truncate(run / NEWEST / "peer_01.pt"), "epoch_0002", id="truncated-peer-file"),
    pytest.param(lambda run: (run / NEWEST / "peer_00.pt").unlink(), "epoch_0002", id="missing-peer-file"),
    pytest.param(lambda run: truncate(run / NEWEST / "cohort.json"), "epoch_0002", id="truncated-cohort-json"),
    pytest.param(lambda run: truncate(run / NEWEST / MANIFEST), "epoch_0002", id="truncated-manifest"),
    pytest.param(lambda run: (run / "checkpoints" / LATEST).unlink(), LATEST, id="missing-LATEST"),
    pytest.param(lambda run: (run / "checkpoints" / LATEST).write_bytes(b"\x00garbage"), LATEST, id="garbage-LATEST"),
]


@pytest.mark.parametrize("damage, named", FALLBACKS)
def test_resume_uses_the_newest_checkpoint_that_verifies(runs, tmp_path, capsys, damage, named):
    copy = tmp_path / "run"
    shutil.copytree(runs["split"], copy)
    damage(copy)
    capsys.readouterr()
    assert run(["--resume", str(copy)]) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("codistill: warning")]
    assert len(warnings) == 1 and named in warnings[0]
    assert outcome(copy) == outcome(runs["straight"])


@pytest.mark.parametrize("damage", [
    pytest.param(truncate, id="truncated"),
    pytest.param(Path.unlink, id="missing"),
    pytest.param(lambda path: path.write_bytes(b"{}"), id="replaced"),
])
@pytest.mark.parametrize("name", ["peer_00.pt", "cohort.json", MANIFEST])
def test_with_no_checkpoint_left_resume_stops_before_anything_runs(runs, tmp_path, capsys, damage, name):
    copy = tmp_path / "run"
    shutil.copytree(runs["split"], copy)
    for directory in (copy / "checkpoints").glob("epoch_*"):
        damage(directory / name)
    before = sorted((p.name, p.stat().st_mtime_ns) for p in copy.rglob("*"))
    capsys.readouterr()
    assert run(["--resume", str(copy)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "'--resume'" in err and "epoch_0002" in err and "epoch_0001" in err
    assert sorted((p.name, p.stat().st_mtime_ns) for p in copy.rglob("*")) == before


def test_extra_files_are_saved_verified_and_returned(tmp_path):
    state = safe_io.dumps({"w": torch.ones(3)})
    for epoch in (1, 2):
        save_checkpoint(tmp_path, epoch, {}, [state, state], extra_files={"policy_learner.pt": safe_io.dumps([epoch])})
    checkpoint, skipped = find_checkpoint(tmp_path, 2)
    assert skipped == [] and checkpoint.position["epochs_done"] == 2
    assert safe_io.loads(checkpoint.extra_files["policy_learner.pt"]) == [2]
    truncate(tmp_path / "checkpoints" / "epoch_0002" / "policy_learner.pt")
    checkpoint, skipped = find_checkpoint(tmp_path, 2)
    assert checkpoint.position["epochs_done"] == 1 and "policy_learner.pt" in skipped[0]
    with pytest.raises(CheckpointError, match="3 peers"):
        find_checkpoint(tmp_path, 3)
    with pytest.raises(ValueError, match="reserved"):
        save_checkpoint(tmp_path, 3, {}, [state], extra_files={"cohort.json": b"{}"})


class Payload:
    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):
        return Path.touch, (self.target,)


def test_a_checkpoint_that_needs_unpickling_is_refused_without_running(tmp_path):
    evil = pickle.dumps({"model": Payload(tmp_path / "pwned")})
    buffer_path = tmp_path / "evil.pt"
    torch.save({"state": Payload(tmp_path / "pwned")}, buffer_path)
    save_checkpoint(tmp_path, 1, {}, [buffer_path.read_bytes()])  # checksums match: only loading can tell
    with pytest.raises(CheckpointError, match="refused"):
        find_checkpoint(tmp_path, 1)
    with pytest.raises(safe_io.UnsafeFileError):
        safe_io.loads(evil)
    assert not (tmp_path / "pwned").exists()


def test_only_tensors_and_plain_values_are_saved():
    value = {"model": "resnet8", "shape": torch.Size([3, 8]), "w": torch.zeros(2), "n": [1, 2.5, None, b"rng"],
             "dtype": torch.float16, "device": torch.device("cpu"), "by_index": {0: (1, "a")}}
    loaded = torch.load(io.BytesIO(safe_io.dumps(value)), weights_only=True)
    assert loaded.keys() == value.keys()
    assert loaded["shape"] == torch.Size([3, 8]) and loaded["by_index"] == {0: (1, "a")}
    with pytest.raises(TypeError, match=r"object\['policy'\]\['net'\] is a .*Linear"):
        safe_io.dumps({"policy": {"net": torch.nn.Linear(2, 2)}})


def test_saved_models_load_with_weights_only(runs):
    for name in ("mlp", "cnn"):
        saved = torch.load(runs["straight"] / "models" / f"{name}.pt", weights_only=True)
        assert saved["model"] == name and isinstance(saved["image_size"], int)


def test_config_error_survives_pickling():
    error = pickle.loads(pickle.dumps(ConfigError("data.root", "empty\ndirectory")))
    assert isinstance(error, ConfigError) and error.field == "data.root"
    assert str(error) == "config error in 'data.root': empty directory"


def test_resume_records_the_overrides_it_accepts(runs, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(runs["split"], copy)
    assert run(["--resume", str(copy), "--set", "runtime.log_every_steps=5", "--stop-after-epochs", "1"]) == 0
    assert yaml.safe_load((copy / "config.yaml").read_text())["runtime"]["log_every_steps"] == 5
    assert "--set runtime.log_every_steps=5" in (copy / "resume.log").read_text()
    assert outcome(copy) == outcome(runs["straight"])
