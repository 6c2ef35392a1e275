"""The slice every peer sees (``data.shared_fraction``): taken before the split is divided, held out
of every shard, the same batch for every peer at a step, trained on without its labels (CE only on
the own rows), the oracle's true labels for it, a bit-exact resume, and Ray as one process."""

from __future__ import annotations

import json

import pytest
import torch
import yaml
from backend_equality import assert_ray_trains_exactly_as_sequential
from test_partition import partitioned_raw

from codistill import metrics as m
from codistill.cohort.sequential import SequentialCohort
from codistill.commands import online
from codistill.commands.evidence_policy.pool import write_true_labels
from codistill.peer import load_dataset, load_shards, shared_slice_size
from codistill.validation import parse_config

SHARED = 0.3  # of the tiny cohort's 449 digits: a slice of 100, batches of 32


@pytest.fixture(autouse=True)
def one_thread():
    torch.set_num_threads(1)


def shared_raw(epochs: int = 2, **data) -> dict:
    return partitioned_raw({"kind": "dirichlet", "alpha": 1.0}, epochs=epochs, shared_fraction=SHARED, **data)


def test_the_slice_is_stratified_held_out_of_every_shard_and_without_it_the_shards_are_unchanged():
    config = parse_config(shared_raw())
    plain = parse_config(partitioned_raw({"kind": "dirichlet", "alpha": 1.0}))
    shards, whole = load_shards(config), load_shards(plain)
    size = shared_slice_size(config)
    assert size == 100 and shared_slice_size(plain) == 0
    every = torch.cat([shard.indices for shard in shards])
    assert every.unique().numel() == every.numel() == sum(s.indices.numel() for s in whole) - size
    dataset = load_dataset(config, 0)
    labels = dataset.shared_labels()
    assert labels.numel() == size and torch.bincount(labels, minlength=10).min() >= 9
    assert load_dataset(plain, 0).shared_labels() is None


def test_every_peer_draws_the_same_shared_batch_and_trains_ce_on_its_own_rows_only(tmp_path):
    config = parse_config(shared_raw())
    first, second = load_dataset(config, 0), load_dataset(config, 1)
    images_a, positions_a = first.shared_batch(0, 1, 2, 64)
    images_b, positions_b = second.shared_batch(0, 1, 2, 64)
    assert torch.equal(images_a, images_b) and torch.equal(positions_a, positions_b)
    assert not torch.equal(positions_a, first.shared_batch(0, 1, 3, 64)[1])
    cohort = SequentialCohort(config)
    steps = [metrics for step in cohort.train_epoch(0) for metrics in step]
    assert all(metrics[m.TRAIN_EXAMPLES] <= 32 for metrics in steps)  # the own rows, not the shared ones
    assert all(torch.isfinite(torch.tensor(metrics[m.LOSS_TOTAL])) for metrics in steps)
    cohort.shutdown()
    write_true_labels(config, tmp_path / "labels.pt")
    saved = torch.load(tmp_path / "labels.pt")
    assert [t.numel() for t in saved] == [load_dataset(config, k).info.train_size + 100 for k in range(2)]


def test_a_run_with_a_shared_slice_resumes_bit_identical(tmp_path):
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(shared_raw(epochs=3)))
    split, straight = tmp_path / "split", tmp_path / "straight"
    run = lambda *argv: online.main([*argv, "--backend", "sequential"])  # noqa: E731
    assert run("--config", str(tmp_path / "c.yaml"), "--run-dir", str(straight)) == 0
    assert run("--config", str(tmp_path / "c.yaml"), "--run-dir", str(split), "--stop-after-epochs", "2") == 0
    assert run("--resume", str(split)) == 0
    a, b = (json.loads((r / "results.json").read_text()) for r in (split, straight))
    assert a["peers"] == b["peers"] and a["ensemble"] == b["ensemble"]


@pytest.mark.ray
def test_actors_with_a_shared_slice_train_exactly_like_one_process(ray_runtime):
    assert_ray_trains_exactly_as_sequential(parse_config(shared_raw()))


def test_the_learned_policy_tells_which_teacher_holds_a_class_without_labels_and_keeps_a_uniform_floor():
    """Two teachers, one holding class 3 and one never shown it: on examples the teachers take for
    class 3 the untrained learned policy weights the first more, whatever the given label; without
    class counts the feature is left out and the weights uniform; the floor keeps ε/K for every teacher."""
    from codistill.policy import PolicyContext, TeacherBatch
    from codistill.progress import Progress
    from policies.features import FEATURES, SAME_DATA_FEATURES, observation
    from policies.learned import PARTITION_UNIFORM_FLOOR, LearnedPolicy

    counts = ((0, 0, 0, 90, 10, 0, 0, 0, 0, 0), (50, 50, 0, 0, 10, 0, 0, 0, 0, 0))
    logits = torch.zeros(2, 8, 10)
    logits[:, :, 3] = 4.0  # both teachers take every example for class 3
    student = torch.zeros(8, 10)
    labels = torch.randint(0, 10, (8,), generator=torch.Generator().manual_seed(0))
    share = FEATURES.index("teacher_class_share")
    known = observation(student, logits, labels, 0.5, torch.tensor(counts))
    assert bool((known[:, 0, share] > 0).all()) and bool((known[:, 1, share] < 0).all())
    unknown = observation(student, logits, labels, 0.5)  # without counts the feature is left out
    assert unknown.shape[-1] == len(SAME_DATA_FEATURES) and torch.equal(unknown, known[..., :-1])

    def context(class_counts):
        return PolicyContext(teacher_names=("a", "b"), num_classes=10, device=torch.device("cpu"), online=True,
                             student_index=2, student_name="s", total_epochs=2, steps_per_epoch=5, seed=0,
                             probe_available=True, class_counts=class_counts)

    batch = TeacherBatch(student_index=2, student_logits=student, teacher_logits=logits, teacher_indices=[0, 1],
                         targets=labels, progress=Progress(0, 0, 5, 2))
    weights = LearnedPolicy(context(counts)).weights(batch)
    assert bool((weights[:, 0] > 0.65).all()) and bool((weights[:, 1] >= PARTITION_UNIFORM_FLOOR / 2 - 1e-6).all())
    assert torch.allclose(LearnedPolicy(context(None)).weights(batch), torch.full((8, 2), 0.5))
