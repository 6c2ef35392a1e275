"""Peers that hold their own data (``data.partition``): the division of the training split (disjoint,
covering, stratified, seeded), label noise and the probe within each shard, every peer's dataset and
steps, the class counts a run reports, a bit-exact resume, a Tune space over alpha, and Ray training
exactly as one process does."""

from __future__ import annotations

import json

import pytest
import torch
import yaml
from backend_equality import assert_ray_trains_exactly_as_sequential
from conftest import tiny_raw

from codistill import metrics as m
from codistill.cohort.sequential import SequentialCohort
from codistill.commands import online
from codistill.config import PartitionConfig
from codistill.data.base import mix_seed
from codistill.data.partition import epoch_examples, partition_indices, peer_shards
from codistill.peer import load_dataset, load_shards
from codistill.preflight import check_partition, check_probe_split
from codistill.tuning.space import load_space
from codistill.validation import parse_config

#: 10 classes of uneven sizes (30 to 57 examples), in a shuffled order.
LABELS = torch.cat([torch.full((30 + 3 * c,), c) for c in range(10)])[torch.randperm(435, generator=torch.Generator()
                                                                                      .manual_seed(1))]
KINDS = [PartitionConfig("iid"), PartitionConfig("dirichlet", alpha=0.1), PartitionConfig("dirichlet", alpha=1.0),
         PartitionConfig("classes", classes=((0, 1, 2), (3, 4, 5, 6), (6, 7, 8, 9)))]


def partitioned_raw(partition: dict, epochs: int = 2, **data) -> dict:
    """The tiny cohort on its own shards, learning from replicas (what a partition requires)."""
    raw = tiny_raw(epochs=epochs, distillation={"teacher_source": "replicas", "refresh_every_steps": 2,
                                                "methods": [{"name": "kd"}]})
    raw["data"].update(shared_batches=False, partition=partition, batch_size=32, **data)
    return raw


@pytest.fixture(autouse=True)
def one_thread():
    torch.set_num_threads(1)


def class_counts(labels: torch.Tensor) -> torch.Tensor:
    return torch.bincount(labels, minlength=10)


@pytest.mark.parametrize("partition", KINDS, ids=["iid", "dirichlet-0.1", "dirichlet-1", "classes"])
def test_shards_are_disjoint_sorted_cover_the_split_and_depend_only_on_the_seed(partition):
    shards = partition_indices(LABELS, 3, partition, seed=5)
    every = torch.cat(shards)
    assert every.numel() == LABELS.numel() and torch.equal(every.sort().values, torch.arange(LABELS.numel()))
    assert all(torch.equal(shard, shard.sort().values) for shard in shards)
    again, other = partition_indices(LABELS, 3, partition, seed=5), partition_indices(LABELS, 3, partition, seed=6)
    assert all(torch.equal(a, b) for a, b in zip(shards, again))
    assert not all(torch.equal(a, b) for a, b in zip(shards, other))


def test_iid_shards_are_equal_and_stratified():
    shards = partition_indices(LABELS, 4, PartitionConfig("iid"), seed=0)
    sizes = [shard.numel() for shard in shards]
    assert max(sizes) - min(sizes) <= 1
    counts = torch.stack([class_counts(LABELS[shard]) for shard in shards])
    assert ((counts.max(0).values - counts.min(0).values) <= 1).all()


def test_dirichlet_concentrates_classes_when_alpha_is_small_and_tends_to_iid_when_large():
    def largest_share(alpha: float) -> float:
        counts = torch.stack([class_counts(LABELS[s]) for s in partition_indices(LABELS, 4, PartitionConfig(
            "dirichlet", alpha=alpha), seed=0)]).float()
        return float((counts.max(0).values / counts.sum(0)).mean())

    assert largest_share(0.05) > 0.85
    assert largest_share(1e4) < 0.3  # iid would give 0.25 (with rounding, at most 15/57 above it)
    iid = torch.stack([class_counts(LABELS[s]) for s in partition_indices(LABELS, 4, PartitionConfig("iid"), 0)])
    large = torch.stack([class_counts(LABELS[s]) for s in partition_indices(LABELS, 4, PartitionConfig(
        "dirichlet", alpha=1e6), seed=0)])
    assert (iid - large).abs().max() <= 1


def test_class_lists_are_respected_and_a_class_named_twice_is_divided():
    classes = ((0, 1, 2), (3, 4, 5, 6), (6, 7, 8, 9))
    shards = partition_indices(LABELS, 3, PartitionConfig("classes", classes=classes), seed=0)
    for shard, own in zip(shards, classes):
        assert set(LABELS[shard].tolist()) == set(own)
    sixes = [int((LABELS[shard] == 6).sum()) for shard in shards]
    assert sixes[0] == 0 and abs(sixes[1] - sixes[2]) <= 1 and sum(sixes) == int((LABELS == 6).sum())


def test_noise_is_applied_within_each_shard_at_the_rate_and_the_probe_is_a_slice_of_it():
    shards = peer_shards(LABELS, 10, 2, PartitionConfig("iid"), seed=0, label_noise=0.4, probe_fraction=0.1)
    for shard in shards:
        flipped = int((shard.labels != LABELS[shard.indices]).sum())
        assert flipped == round(0.4 * shard.indices.numel())
        given = torch.bincount(shard.labels, minlength=10).tolist()
        assert shard.indices.numel() - shard.train_examples == sum(max(1, round(0.1 * n)) for n in given)
    first, second = (s.labels != LABELS[s.indices] for s in shards)
    assert not torch.equal(first[:100], second[:100])  # each peer's noise drawn from its own seed
    assert epoch_examples(shards, 32) == 32 * (sum(s.train_examples for s in shards) // 2 // 32)


def test_each_peer_trains_on_its_shard_as_the_front_door_computed_it_and_validates_on_the_common_split():
    config = parse_config(partitioned_raw({"kind": "dirichlet", "alpha": 0.5}, label_noise=0.3, probe_fraction=0.1))
    shards = load_shards(config)
    datasets = [load_dataset(config, k) for k in range(2)]
    whole = load_dataset(parse_config(tiny_raw()))
    for shard, dataset in zip(shards, datasets):
        assert dataset.info.train_size == shard.train_examples
        assert class_counts(dataset.clean_train_labels).tolist() == shard.class_counts
        assert dataset.epoch_examples == epoch_examples(shards, 32) <= dataset.info.train_size + 32
        assert dataset.probe_labels.numel() == shard.indices.numel() - shard.train_examples > 0
        assert [torch.equal(a, b) for (a, _), (b, _) in zip(dataset.val_batches(512), whole.val_batches(512))] == [True]
    assert datasets[0].steps_per_epoch(32) == datasets[1].steps_per_epoch(32) == epoch_examples(shards, 32) // 32
    drawn = torch.cat(datasets[0].batch_indices(0, 0, 32, order=1))
    assert drawn.numel() == datasets[0].epoch_examples and int(drawn.max()) < datasets[0].info.train_size
    with pytest.raises(ValueError, match="name the peer"):
        load_dataset(config)


def test_a_probe_from_the_validation_split_leaves_the_shards_whole_and_passes_the_front_door():
    config = parse_config(partitioned_raw({"kind": "iid"}, probe_fraction=0.1, probe_source="held_out"))
    check_partition(config)
    check_probe_split(config)
    shards = load_shards(config)
    assert [s.train_examples for s in shards] == [s.indices.numel() for s in shards]
    assert load_dataset(config, 1).info.train_size == shards[1].train_examples


def test_a_shared_split_draws_one_pass_per_epoch_as_before():
    dataset = load_dataset(parse_config(tiny_raw()))
    batches = dataset.batch_indices(3, 1, 64)
    assert dataset.epoch_examples == dataset.info.train_size
    assert torch.equal(torch.cat(batches).sort().values, torch.arange(dataset.info.train_size))
    generator = torch.Generator().manual_seed(mix_seed(3, 1))
    assert torch.equal(torch.cat(batches), torch.randperm(dataset.info.train_size, generator=generator))


def test_a_run_prints_records_and_logs_every_peers_class_counts_and_resumes_bit_identical(tmp_path, capsys):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    raw = partitioned_raw({"kind": "classes", "classes": [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]}, epochs=3,
                          label_noise=0.2)
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(raw))
    split, straight = tmp_path / "split", tmp_path / "straight"
    run = lambda *argv: online.main([*argv, "--backend", "sequential"])  # noqa: E731
    assert run("--config", str(tmp_path / "c.yaml"), "--run-dir", str(straight)) == 0
    shards = load_shards(parse_config(raw))
    printed = [line for line in capsys.readouterr().out.splitlines() if line.startswith("peer ") and ":" in line]
    assert printed == [f"peer {name}: {s.train_examples} training examples, per class {s.class_counts}"
                       for name, s in zip(("mlp", "cnn"), shards)]
    assert run("--config", str(tmp_path / "c.yaml"), "--run-dir", str(split), "--stop-after-epochs", "2") == 0
    assert run("--resume", str(split)) == 0
    a, b = (json.loads((r / "results.json").read_text()) for r in (split, straight))
    assert a["peers"] == b["peers"] and a["ensemble"] == b["ensemble"] and a["history"] != []
    for epoch_a, epoch_b in zip(a["history"], b["history"]):
        assert [(p["val_accuracy"], p["train_loss"]) for p in epoch_a["peers"]] == \
               [(p["val_accuracy"], p["train_loss"]) for p in epoch_b["peers"]]
    assert [p["class_counts"] for p in a["peers"]] == [s.class_counts for s in shards]
    assert a["peers"][0]["class_counts"][5:] == [0] * 5 and a["peers"][1]["class_counts"][:5] == [0] * 5
    logged = EventAccumulator(str(straight / "tensorboard" / "cnn")).Reload()
    assert f"{m.CLASS_COUNTS}/text_summary" in logged.Tags()["tensors"]


def test_a_tune_space_may_search_alpha(tmp_path):
    (tmp_path / "space.yaml").write_text("data.partition.alpha: {loguniform: [0.05, 10.0]}\n")
    dimensions = load_space(tmp_path / "space.yaml", partitioned_raw({"kind": "dirichlet", "alpha": 1.0}))
    assert [d.key for d in dimensions] == ["data.partition.alpha"]


@pytest.mark.ray
def test_actors_on_their_shards_train_exactly_like_one_process(ray_runtime):
    assert_ray_trains_exactly_as_sequential(parse_config(partitioned_raw({"kind": "dirichlet", "alpha": 1.0},
                                                                         label_noise=0.2)))


@pytest.mark.parametrize("policy", [{"name": "policies.confidence:ConfidenceAwarePolicy"},
                                    {"name": "policies.learned:LearnedPolicy"},
                                    {"name": "policies.oracle:LabelOraclePolicy"}])
def test_the_policies_weight_replicas_on_each_peers_own_shard(policy, tmp_path):
    """CA-MKD, the learned policy (learning from its probe) and the oracle (each peer's labels) train a
    partitioned, noisy cohort whose teachers are replicas: finite, weights per teacher recorded."""
    raw = partitioned_raw({"kind": "dirichlet", "alpha": 0.5}, epochs=1, label_noise=0.4, probe_fraction=0.1)
    if policy["name"].endswith("LabelOraclePolicy"):
        torch.save([load_dataset(parse_config(raw), k).clean_train_labels for k in range(2)], tmp_path / "labels.pt")
        policy = {**policy, "params": {"labels": str(tmp_path / "labels.pt")}}
    raw["distillation"]["policy"] = policy
    cohort = SequentialCohort(parse_config(raw))
    steps = [metrics for step in cohort.train_epoch(0) for metrics in step]
    weights = [metrics[m.teacher_weight(other)] for metrics, other in zip(steps, ["cnn", "mlp"] * len(steps))
               if m.teacher_weight(other) in metrics]
    assert weights and all(0.0 <= w <= 1.0 for w in weights)
    assert all(torch.isfinite(torch.tensor(metrics[m.LOSS_TOTAL])) for metrics in steps)
    if policy["name"].endswith("LearnedPolicy"):
        assert any(m.PROBE_LOSS_BEFORE in metrics for metrics in steps)  # its credit measured on the probe
    cohort.shutdown()
