"""data.probe_source: held_out carves the probe out of the clean validation split (the clean meta
set of Learning to Reweight, Ren et al. 2018, and Meta-Weight-Net, Shu et al. 2019) instead of
the noisy training split; validation then counts only the rest, training and test are untouched."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from conftest import tiny_config, tiny_raw, write_fashion_mnist

from codistill.commands import online
from codistill.data import build_dataset
from codistill.peer import PeerTrainer, load_dataset
from codistill.validation import parse_config

LEARNED = "policies.learned:LearnedPolicy"
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def one_thread():
    torch.set_num_threads(1)


def probe_data(source: str = "held_out", fraction: float = 0.2, **data) -> dict:
    return {**tiny_raw()["data"], "probe_fraction": fraction, "probe_source": source, **data}


def whole(batches) -> tuple[torch.Tensor, torch.Tensor]:
    batches = list(batches)
    return torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches])


def rows(images: torch.Tensor) -> set[bytes]:
    return {image.numpy().tobytes() for image in images}


def test_the_default_is_train_and_unchanged():
    assert tiny_config().data.probe_source == "train"
    explicit = load_dataset(tiny_config(data=probe_data("train")))
    by_hand = build_dataset("digits", root=None, train_fraction=0.25, label_noise=0.2, seed=0)
    by_hand.hold_out_probe(0.2, 0)
    assert explicit.info == by_hand.info
    for a, b in zip(explicit.probe_batch(0, 1, 2, 32), by_hand.probe_batch(0, 1, 2, 32)):
        assert torch.equal(a, b)


def test_the_probe_is_a_stratified_slice_of_validation_disjoint_from_what_stays():
    plain = load_dataset(tiny_config())
    held = load_dataset(tiny_config(data=probe_data()))
    val_images, val_labels = whole(plain.val_batches(1000))
    kept_images, kept_labels = whole(held.val_batches(1000))
    probe_images, probe_labels = held.probe
    per_class = torch.bincount(val_labels, minlength=10)
    assert torch.equal(torch.bincount(probe_labels, minlength=10), (0.2 * per_class.double()).round().long())
    assert held.info.val_size == kept_labels.numel() == val_labels.numel() - probe_labels.numel()
    assert torch.equal(torch.bincount(kept_labels, minlength=10) + torch.bincount(probe_labels, minlength=10),
                       per_class)
    assert not rows(probe_images) & rows(kept_images)
    assert rows(probe_images) | rows(kept_images) == rows(val_images)
    images, labels = held.probe_batch(0, 3, 5, 16)
    assert images.shape == (16, 1, 8, 8) and rows(images) <= rows(probe_images)
    assert labels.tolist() == [probe_labels[(probe_images == image).flatten(1).all(1)][0].item() for image in images]


def test_the_training_split_keeps_every_example_and_the_probe_depends_on_the_seed_only():
    plain = load_dataset(tiny_config())
    held = load_dataset(tiny_config(data=probe_data()))
    assert held.info.train_size == plain.info.train_size
    everything = torch.arange(plain.info.train_size)
    for a, b in zip(plain.train_batch(everything, torch.Generator().manual_seed(0), True),
                    held.train_batch(everything, torch.Generator().manual_seed(0), True)):
        assert torch.equal(a, b)
    again = load_dataset(tiny_config(data=probe_data()))
    other = load_dataset(tiny_config(data=probe_data(), seed=1))
    assert all(torch.equal(a, b) for a, b in zip(held.probe, again.probe))
    assert not torch.equal(held.probe[0], other.probe[0])


def test_the_test_split_is_untouched():
    with_test = {"test_fraction": 0.5}
    train_probe = load_dataset(tiny_config(data=probe_data("train", **with_test)))
    held = load_dataset(tiny_config(data=probe_data(**with_test)))
    for a, b in zip(whole(train_probe.eval_batches(1000, "test")), whole(held.eval_batches(1000, "test"))):
        assert torch.equal(a, b)
    assert held.info.val_size == train_probe.info.val_size - held.probe[1].numel()
    assert not rows(held.probe[0]) & rows(whole(held.eval_batches(1000, "test"))[0])


def test_validation_accuracy_counts_only_the_examples_left():
    held = tiny_config(data=probe_data())
    trainer = PeerTrainer(held, 0)
    logits, labels = trainer.evaluate("val")
    full = load_dataset(tiny_config()).info.val_size
    assert logits.shape[0] == labels.numel() == trainer.dataset.info.val_size < full
    assert torch.equal(labels, whole(trainer.dataset.val_batches(1000))[1])


def test_fashion_mnist_carves_its_probe_from_its_validation_split(tmp_path):
    write_fashion_mnist(tmp_path, train=200, test=20)
    data = {"dataset": "fashion_mnist", "root": str(tmp_path), "val_fraction": 0.5}
    plain = load_dataset(tiny_config(data=data))
    held = load_dataset(tiny_config(data={**data, "probe_fraction": 0.2, "probe_source": "held_out"}))
    assert held.info.train_size == plain.info.train_size
    assert held.info.val_size + held.probe[1].numel() == plain.info.val_size
    assert torch.equal(whole(held.eval_batches(1000, "test"))[1], whole(plain.eval_batches(1000, "test"))[1])


def outcome(run_dir: Path) -> list:
    results = json.loads((run_dir / "results.json").read_text())
    return [results["peers"]] + [[p["val_accuracy"] for p in h["peers"]] for h in results["history"]]


def test_a_learning_cohort_with_a_clean_probe_resumes_exactly(tmp_path):
    raw = tiny_raw(data=probe_data(), distillation={**tiny_raw()["distillation"],
                                                    "policy": {"name": LEARNED, "params": {}}})
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(raw))
    common = ["--config", str(tmp_path / "c.yaml"), "--backend", "sequential"]
    assert online.main(common + ["--run-dir", str(tmp_path / "straight")]) == 0
    assert online.main(common + ["--run-dir", str(tmp_path / "split"), "--stop-after-epochs", "1"]) == 0
    assert online.main(["--resume", str(tmp_path / "split"), "--backend", "sequential"]) == 0
    assert outcome(tmp_path / "straight") == outcome(tmp_path / "split")
    for name in ("mlp", "cnn"):
        assert (tmp_path / "straight" / "models" / f"{name}.pt").read_bytes() == \
            (tmp_path / "split" / "models" / f"{name}.pt").read_bytes()


@pytest.mark.parametrize("overrides", [
    pytest.param(["data.probe_source=clean"], id="unknown-value"),
    pytest.param(["data.probe_source=held_out"], id="held-out-without-a-probe-fraction"),
    pytest.param(["data.probe_source=held_out", "data.probe_fraction=0.5", "data.test_fraction=0.95"],
                 id="validation-split-too-small"),
])
def test_the_offline_job_refuses_a_bad_probe_source_with_one_line(overrides, tmp_path):
    teacher = tmp_path / "teacher.pt"
    teacher.write_bytes(PeerTrainer(parse_config(tiny_raw()), 0).model_bytes())
    raw = tiny_raw(peers=[{"name": "student", "model": "mlp"}],
                   teachers=[{"name": "teacher", "model": "mlp", "checkpoint": str(teacher)}])
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(raw))
    before = sorted(tmp_path.rglob("*"))
    command = [sys.executable, str(REPO / "jobs" / "offline.py"), "--config", str(tmp_path / "c.yaml"),
               "--run-dir", str(tmp_path / "run")] + [arg for o in overrides for arg in ("--set", o)]
    result = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and "'data.probe_source'" in result.stderr, result.stderr
    assert sorted(tmp_path.rglob("*")) == before
