"""data.test_fraction: a stratified test split carved from the held-out data, evaluated at the end only."""

import json

import pytest
import torch
from conftest import tiny_config, tiny_raw

from codistill.cohort.sequential import SequentialCohort
from codistill.data import build_dataset
from codistill.errors import ConfigError
from codistill.runner import RESULTS_FILE, prepare_run_dir, run_cohort


def split_labels(dataset, split):
    return torch.cat([labels for _, labels in dataset.eval_batches(1000, split)])


def test_validation_and_test_partition_the_held_out_split_the_same_for_every_seed():
    whole = build_dataset("digits", root=None, train_fraction=1.0, label_noise=0.0, seed=0)
    halves = [build_dataset("digits", root=None, train_fraction=0.5, label_noise=0.4, seed=seed, test_fraction=0.5)
              for seed in (0, 1)]
    held_out = split_labels(whole, "val")
    val, test = split_labels(halves[0], "val"), split_labels(halves[0], "test")
    assert val.numel() + test.numel() == held_out.numel() and halves[0].info.val_size == val.numel()
    assert abs(val.numel() - test.numel()) <= 10  # stratified halves, per class rounding
    assert torch.equal(torch.bincount(val) + torch.bincount(test), torch.bincount(held_out))
    assert (torch.bincount(test, minlength=10) > 0).all()
    for split in ("val", "test"):
        a, b = ([images for images, _ in d.eval_batches(1000, split)] for d in halves)
        assert all(torch.equal(x, y) for x, y in zip(a, b)), split
    with pytest.raises(ValueError, match="test_fraction"):
        next(whole.eval_batches(10, "test"))


@pytest.mark.parametrize("value", [-0.1, 1.0])
def test_bad_test_fraction_names_the_field(value):
    with pytest.raises(ConfigError) as error:
        tiny_config(data={**tiny_raw()["data"], "test_fraction": value})
    assert error.value.field == "data.test_fraction"


def test_results_gain_test_accuracy_and_history_keeps_the_curriculum(tmp_path):
    torch.set_num_threads(1)
    config = tiny_config(data={**tiny_raw()["data"], "test_fraction": 0.5}, epochs=1)
    prepare_run_dir(tmp_path, config)
    results = run_cohort(config, tmp_path, SequentialCohort)
    saved = json.loads((tmp_path / RESULTS_FILE).read_text())
    assert all(0.0 <= p["test_accuracy"] <= 1.0 for p in saved["peers"]) and "test_accuracy" in saved["ensemble"]
    record = results["history"][0]
    assert record["curriculum"] == {"distillation.weight": 1.0, "distillation.gate": 1.0,
                                    "distillation.methods.0.params.temperature": 3.0}
    assert record["distill_strength"] == 1.0


def test_a_probe_split_and_a_test_split_together():
    """The probe comes out of the training split behind the test wrapper: steps and probe batches
    follow the shrunken training split."""
    from codistill.peer import load_dataset

    plain = load_dataset(tiny_config(data={**tiny_raw()["data"], "probe_fraction": 0.2}))
    both = load_dataset(tiny_config(data={**tiny_raw()["data"], "probe_fraction": 0.2, "test_fraction": 0.5}))
    assert both.info.train_size == plain.info.train_size < load_dataset(tiny_config()).info.train_size
    assert both.steps_per_epoch(64) == plain.steps_per_epoch(64)
    for a, b in zip(plain.probe_batch(0, 1, 2, 32), both.probe_batch(0, 1, 2, 32)):
        assert torch.equal(a, b)
