"""A full disk: a checkpoint, model or results.json write that fails with ENOSPC stops the run with
one line naming the file (exit status 1), leaves the last verified checkpoint usable and nothing
half-written, and ``--resume`` finishes the run once there is space again."""

import errno
import json
import pathlib

import pytest
import torch
import yaml
from conftest import tiny_raw
from fault_injection import outcome

from codistill.checkpoint import LATEST, find_checkpoint
from codistill.commands import online

torch.set_num_threads(1)  # bit-for-bit results (the module fixture runs before function fixtures)


class FullDisk:
    """Patches ``Path.open`` so that writing a file whose path ends with ``suffix`` fails with ENOSPC."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, suffix: str) -> None:
        self.hits, real_open = 0, pathlib.Path.open

        def open_(path: pathlib.Path, mode: str = "r", *args, **kwargs):
            handle = real_open(path, mode, *args, **kwargs)
            if ("w" in mode or "a" in mode) and str(path).endswith(suffix):
                self.hits += 1
                handle.write = self.fail
            return handle

        monkeypatch.setattr(pathlib.Path, "open", open_)

    @staticmethod
    def fail(data: bytes) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")


def train(args: list[str]) -> int:
    return online.main(args + ["--backend", "sequential"])


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """The config file and the outcome of an uninterrupted run."""
    directory = tmp_path_factory.mktemp("straight")
    config_file = directory / "config.yaml"
    config_file.write_text(yaml.safe_dump(tiny_raw(epochs=3)))
    assert train(["--config", str(config_file), "--run-dir", str(directory / "run")]) == 0
    return config_file, outcome(json.loads((directory / "run" / "results.json").read_text()), directory / "run")


@pytest.mark.parametrize("temporary, named, checkpoints", [
    ("checkpoints/.epoch_0002.tmp/.peer_01.pt.tmp", "checkpoints/epoch_0002/peer_01.pt", ["epoch_0001"]),
    ("checkpoints/.epoch_0003.tmp/.manifest.json.tmp", "checkpoints/epoch_0003/manifest.json",
     ["epoch_0001", "epoch_0002"]),
    ("run/.models.tmp/.cnn.pt.tmp", "models/cnn.pt", ["epoch_0002", "epoch_0003"]),
    ("run/.results.json.tmp", "results.json", ["epoch_0002", "epoch_0003"]),
])
def test_full_disk_stops_with_one_line_and_resume_finishes(straight, tmp_path, capsys, monkeypatch,
                                                           temporary, named, checkpoints):
    config_file, uninterrupted = straight
    run_dir = tmp_path / "run"
    disk = FullDisk(monkeypatch, temporary)
    capsys.readouterr()
    assert train(["--config", str(config_file), "--run-dir", str(run_dir)]) == 1
    assert disk.hits == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("codistill: cannot write "), lines
    assert f"cannot write {run_dir / named}: No space left on device;" in lines[0]
    assert "the run stopped, its last complete checkpoint stays in" in lines[0]

    # Nothing half-written: no temporary file or directory, no results.json, models/ only whole.
    assert not [p for p in run_dir.rglob(".*") if p.name.endswith(".tmp")]
    assert not (run_dir / "results.json").exists()
    models = run_dir / "models"
    assert not models.exists() or sorted(p.name for p in models.iterdir()) == ["cnn.pt", "mlp.pt"]
    assert sorted(p.name for p in (run_dir / "checkpoints").glob("epoch_*")) == checkpoints
    checkpoint, warnings = find_checkpoint(run_dir, 2)
    assert checkpoint.directory.name == checkpoints[-1] and not warnings
    assert (run_dir / "checkpoints" / LATEST).read_text() == checkpoints[-1]

    monkeypatch.undo()  # space is back
    assert train(["--resume", str(run_dir)]) == 0
    assert outcome(json.loads((run_dir / "results.json").read_text()), run_dir) == uninterrupted


def test_full_disk_when_preparing_the_run_directory_stops_with_one_line(straight, tmp_path, capsys, monkeypatch):
    config_file, _ = straight
    run_dir = tmp_path / "run"
    disk = FullDisk(monkeypatch, "run/config.yaml")
    capsys.readouterr()
    assert train(["--config", str(config_file), "--run-dir", str(run_dir)]) == 1
    assert disk.hits == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == [f"codistill: cannot write {run_dir / 'config.yaml'}: No space left on device; nothing was trained"]


def test_full_disk_when_recording_a_resume_stops_with_one_line(straight, tmp_path, capsys, monkeypatch):
    config_file, _ = straight
    run_dir = tmp_path / "run"
    assert train(["--config", str(config_file), "--run-dir", str(run_dir), "--stop-after-epochs", "1"]) == 0
    disk = FullDisk(monkeypatch, "run/resume.log")
    capsys.readouterr()
    assert train(["--resume", str(run_dir)]) == 1
    assert disk.hits == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == [f"codistill: cannot write {run_dir / 'resume.log'}: No space left on device; nothing was trained"]


def test_full_disk_under_tensorboard_stops_the_run_naming_the_event_file(straight, tmp_path, capsys, monkeypatch):
    """TensorBoard's writer thread fails; its writer reports it on its next call, naming the file."""
    from tensorboard.compat.tensorflow_stub.io import gfile

    config_file, _ = straight
    run_dir = tmp_path / "run"
    real_write, calls = gfile.GFile.write, []

    def write(self, content):
        if b"tensorboard/mlp/" in self.filename:
            calls.append(self.filename)
            if len(calls) > 2:  # the header and a first flush went through
                raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(self, content)

    monkeypatch.setattr(gfile.GFile, "write", write)
    capsys.readouterr()
    assert train(["--config", str(config_file), "--run-dir", str(run_dir)]) == 1
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith(f"codistill: cannot write {run_dir / 'tensorboard' / 'mlp' / 'events.out.tfevents.'}")
    assert last.endswith("No space left on device; the run stopped, no epoch was complete") or \
        "its last complete checkpoint stays in" in last
