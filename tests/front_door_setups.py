"""Builders of the front door's bad-input cases (``tests/test_bad_inputs.py``): each returns a
setup that writes its inputs under a temporary directory and names the job and its arguments."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import yaml
from conftest import tiny_raw, write_fashion_mnist

from codistill.commands import offline, online
from codistill.data import fashion_mnist
from codistill.peer import PeerTrainer
from codistill.validation import parse_config

Setup = Callable[[Path], tuple[Callable[[list[str]], int], list[str]]]


# -- builders of the cases -------------------------------------------------------------------


def config(changes: dict | None = None, *extra: str, job: str = "online", text: str | None = None) -> Setup:
    """The tiny config with ``changes`` to its top-level sections (or raw ``text``), plus arguments."""
    def setup(tmp: Path):
        path = tmp / "config.yaml"
        path.write_text(text if text is not None else yaml.safe_dump(tiny_raw(**(changes or {}))))
        main = online.main if job == "online" else offline.main
        return main, ["--config", str(path), "--run-dir", str(tmp / "run"), *extra]
    return setup


def peer0(**fields) -> dict:
    """The tiny cohort with fields of its first peer replaced."""
    peers = tiny_raw()["peers"]
    peers[0] = {**peers[0], **fields}
    return {"peers": peers}


def method(name: str, **params) -> dict:
    return {"distillation": {"methods": [{"name": name, "params": params}]}}


def sets(*overrides: str) -> Setup:
    return config(None, *[arg for o in overrides for arg in ("--set", o)])


def data_root(dataset: str, build: Callable[[Path], None], **data) -> Setup:
    def setup(tmp: Path):
        root = tmp / "data"
        root.mkdir()
        build(root)
        return config({"data": {"dataset": dataset, "root": str(root), **data}})(tmp)
    return setup


def fashion_files(damage: Callable[[Path], None] | None = None) -> Callable[[Path], None]:
    """Tiny Fashion-MNIST files, damaged by ``damage`` (given the folder) if asked."""
    def build(root: Path) -> None:
        write_fashion_mnist(root)
        if damage is not None:
            damage(root)
    return build


def cut(name: str, keep: int) -> Callable[[Path], None]:
    """Keep the first ``keep`` bytes of ``name`` (a negative number cuts that many off the end)."""
    return lambda root: (root / name).write_bytes((root / name).read_bytes()[:keep])


def fashion_not_installed(**data) -> Callable:
    """fashion_mnist with ``data`` settings, its package folder missing and torchvision's
    downloader failing as it does without internet (after writing part of a file)."""
    def setup(tmp: Path, monkeypatch: pytest.MonkeyPatch):
        import urllib.error

        import torchvision.datasets.utils as tv_utils

        def offline(url: str, root: str, filename: str, md5: str) -> None:
            (Path(root) / filename).write_bytes(b"partial")
            raise urllib.error.URLError("no route to host")

        monkeypatch.setattr(fashion_mnist, "DEFAULT_ROOT", str(tmp / "not-installed"))
        monkeypatch.setattr(tv_utils, "download_url", offline)
        if "root" in data:
            (tmp / data["root"]).mkdir()
        return config({"data": {"dataset": "fashion_mnist", **data}})(tmp)
    setup.needs_monkeypatch = True  # type: ignore[attr-defined]
    return setup


def image_tree(train: list[str], val: list[str], with_images: bool = True) -> Callable[[Path], None]:
    def build(root: Path) -> None:
        for split, classes in (("train", train), ("val", val)):
            for name in classes:
                (root / split / name).mkdir(parents=True)
                if with_images:
                    (root / split / name / "a.png").write_bytes(b"not decoded by the check")
    return build


def existing_run(setup_run: Callable[[Path], None]) -> Setup:
    """A run directory already holding a run, then ``--config`` pointed at it."""
    def setup(tmp: Path):
        (tmp / "run").mkdir()
        setup_run(tmp / "run")
        return config()(tmp)
    return setup


def run_dir_at(place: Callable[[Path], Path]) -> Setup:
    """The tiny config run in the directory ``place`` returns (after making whatever it needs)."""
    def setup(tmp: Path):
        main, argv = config()(tmp)
        return main, argv[:3] + [str(place(tmp))]
    return setup


def resume(*extra: str, damage: Callable[[Path], None] | None = None) -> Setup:
    """``--resume`` of a copy of the finished run, damaged first if asked."""
    def setup(tmp: Path, finished: Path):
        run = tmp / "resumed"
        shutil.copytree(finished, run)
        if damage is not None:
            damage(run)
        return online.main, ["--resume", str(run), *extra]
    setup.needs_run = True  # type: ignore[attr-defined]
    return setup


def damage_every_checkpoint(run: Path) -> None:
    for directory in (run / "checkpoints").glob("epoch_*"):
        (directory / "peer_00.pt").write_bytes(b"garbage")


def teacher(write: Callable[[Path], None], model: str = "resnet8x4", **student) -> Setup:
    """An offline student whose teacher file is written by ``write``."""
    def setup(tmp: Path):
        path = tmp / "teacher.pt"
        write(path)
        raw = tiny_raw(peers=[{"name": "student", "model": "mlp", **student}],
                       teachers=[{"name": "teacher", "model": model, "checkpoint": str(path)}])
        return config(job="offline", text=yaml.safe_dump(raw))(tmp)
    return setup


class Payload:
    """Unpickling this creates a file: what a malicious "model" would do."""

    def __init__(self, target: str) -> None:
        self.target = target

    def __reduce__(self):
        return Path.touch, (Path(self.target),)


def malicious(path: Path) -> None:
    torch.save({"model": "resnet8x4", "payload": Payload(str(path.parent / "pwned"))}, path)


def saved_mlp(path: Path) -> None:
    path.write_bytes(PeerTrainer(parse_config(tiny_raw()), 0).model_bytes())


def narrow_indistill_teacher(tmp: Path):
    """InDistill prunes a teacher's channels down to the student's: a narrower offline teacher cannot work."""
    path = tmp / "teacher.pt"
    path.write_bytes(PeerTrainer(parse_config(tiny_raw(peers=[{"name": "t", "model": "resnet8"}, {"model": "mlp"}])),
                                 0).model_bytes())
    raw = tiny_raw(peers=[{"name": "student", "model": "resnet8x4"}],
                   teachers=[{"name": "teacher", "model": "resnet8", "checkpoint": str(path)}],
                   distillation={"methods": [{"name": "indistill"}]})
    return config(job="offline", text=yaml.safe_dump(raw))(tmp)


def policy(name: str, probe: float = 0.0, **params) -> Setup:
    """The tiny cohort with the teacher policy ``name`` given ``params`` (and a probe share)."""
    return config({"data": {**tiny_raw()["data"], "probe_fraction": probe},
                   "distillation": {**tiny_raw()["distillation"], "policy": {"name": name, "params": params}}})


def oracle_labels(labels) -> Setup:
    """The label oracle reading ``labels`` saved to a file."""
    def setup(tmp: Path):
        torch.save(labels, tmp / "labels.pt")
        return policy("policies.oracle:LabelOraclePolicy", labels=str(tmp / "labels.pt"))(tmp)
    return setup


def replicas(**fields) -> dict:
    """The tiny cohort learning from replicas (codistillation), with distillation fields replaced."""
    return {"distillation": {**tiny_raw()["distillation"], "teacher_source": "replicas", **fields}}


def partition(kind: str | None = "dirichlet", peers: int = 2, distillation: dict | None = None, **fields) -> dict:
    """The tiny cohort on shards of the training split (replicas, own batches), with partition fields."""
    spec = {"kind": kind, **fields} if kind is not None else fields
    data = {**tiny_raw()["data"], "shared_batches": False, "partition": spec}
    cohort = [{"name": f"p{k}", "model": "plain_network:PlainMLP"} for k in range(peers)]
    return {"data": data, "peers": cohort, **replicas(**(distillation or {}))}


def imagefolder_partition(tmp: Path):
    """A cohort otherwise fit for shards (replicas, own batches) on a dataset that cannot be divided."""
    root = tmp / "data"
    root.mkdir()
    image_tree(["cat", "dog"], ["cat", "dog"])(root)
    data = {"dataset": "imagefolder", "root": str(root), "shared_batches": False, "partition": {"kind": "iid"}}
    return config({"data": data, **replicas()})(tmp)


def offline_partition(tmp: Path):
    """An offline student asking for a partition: it has no peers to divide the data among."""
    main, argv = teacher(saved_mlp, model="mlp")(tmp)
    raw = yaml.safe_load(Path(argv[1]).read_text())
    raw["data"] = {**raw["data"], "partition": {"kind": "iid"}}
    Path(argv[1]).write_text(yaml.safe_dump(raw))
    return main, argv


def offline_replicas(tmp: Path):
    """An offline student asking for replicas: there are no online peers to copy."""
    main, argv = teacher(saved_mlp, model="mlp")(tmp)
    raw = yaml.safe_load(Path(argv[1]).read_text())
    raw["distillation"]["teacher_source"] = "replicas"
    Path(argv[1]).write_text(yaml.safe_dump(raw))
    return main, argv


def more_workers_than_gpus(tmp: Path, monkeypatch) -> tuple[Callable[[list[str]], int], list[str]]:
    """A machine with one GPU and a cohort whose workers ask for three."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    return config({"peers": [{"model": "mlp", "resources": {"gpus": 1}},
                             {"model": "cnn", "data_parallel": 2, "resources": {"gpus": 1}}]})(tmp)


more_workers_than_gpus.needs_monkeypatch = True  # type: ignore[attr-defined]
