"""The benchmarks' ceilings: fixed weights per teacher (policies.constant), the label oracle
(policies.oracle) and the example indices it reads (each peer's own with a partition), and
specialists' class subsets (data.classes)."""

import pytest
import torch
from conftest import tiny_raw

from codistill.errors import ConfigError
from codistill.peer import PeerTrainer, load_dataset, peer_datasets
from codistill.policy import PolicyContext, TeacherBatch
from codistill.progress import Progress
from codistill.validation import parse_config
from policies.constant import ConstantPolicy
from policies.oracle import LabelOraclePolicy


def context(names):
    return PolicyContext(teacher_names=tuple(names), num_classes=4, device=torch.device("cpu"), online=False,
                         student_index=0, student_name="s", total_epochs=1, steps_per_epoch=1, seed=0,
                         probe_available=False)


def batch(teacher_logits, indices, teacher_indices=None):
    count, size, _ = teacher_logits.shape
    return TeacherBatch(0, torch.zeros(size, 4), teacher_logits, teacher_indices or list(range(count)),
                        torch.zeros(size, dtype=torch.long), Progress(0, 0, 1, 1), torch.tensor(indices))


def test_constant_weights_follow_the_teachers_names_and_the_default():
    policy = ConstantPolicy(context(["a", "b", "c"]), weights={"a": 3.0, "c": 1.0}, default=0.5)
    logits = torch.zeros(3, 2, 4)
    assert torch.equal(policy.weights(batch(logits, [0, 1])), torch.tensor([3.0, 0.5, 1.0]))
    # teacher "a" left out of the step (non-finite predictions): the rest keep their own weights
    assert torch.equal(policy.weights(batch(logits[1:], [0, 1], [1, 2])), torch.tensor([0.5, 1.0]))
    only = ConstantPolicy(context(["a", "b"]), weights={"a": 1.0})
    assert torch.equal(only.weights(batch(logits[1:2], [0, 1], [1])), torch.tensor([1.0]))  # a gone: b alone


def test_the_oracle_weights_the_teachers_that_predict_the_true_label(tmp_path):
    torch.save(torch.tensor([0, 1, 2, 3, 2]), tmp_path / "labels.pt")
    policy = LabelOraclePolicy(context(["a", "b"]), labels=str(tmp_path / "labels.pt"))
    true = "examples 0, 1 and 4 of the training split: true labels 0, 1, 2"
    cases = [  # teacher a's and b's predictions for the three examples → the oracle's weights
        ([[0, 1, 2], [0, 3, 1]], [[1.0, 1.0], [1.0, 0.0], [1.0, 0.0]]),
        ([[0, 0, 1], [3, 1, 2]], [[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]]),
        ([[1, 0, 0], [2, 3, 3]], [[1.0, 1.0], [1.0, 1.0], [1.0, 1.0]]),  # nobody right: uniform
    ]
    for votes, expected in cases:
        logits = 5 * torch.nn.functional.one_hot(torch.tensor(votes), 4).float()
        assert torch.equal(policy.weights(batch(logits, [0, 1, 4])), torch.tensor(expected)), (true, votes)


def test_a_batch_carries_the_indices_of_its_examples_in_the_training_split():
    """What the oracle looks its labels up by: the given labels at those indices are the batch's."""
    config = parse_config(tiny_raw(data={"dataset": "digits", "train_fraction": 0.5, "label_noise": 0.4,
                                         "batch_size": 64, "probe_fraction": 0.1}))
    trainer = PeerTrainer(config, 0)
    dataset = trainer.dataset
    for step in range(3):
        b = trainer.batches.batch(1, step)
        assert torch.equal(dataset.noisy_train_labels[b.indices], b.targets)
    assert int((dataset.noisy_train_labels != dataset.clean_train_labels).sum()) > 0  # there is noise to see past


def test_a_specialist_trains_on_its_classes_only_and_is_validated_on_all():
    data = {"dataset": "digits", "train_fraction": 0.5, "label_noise": 0.0, "batch_size": 64}
    every = load_dataset(parse_config(tiny_raw(data=data)))
    low = load_dataset(parse_config(tiny_raw(data={**data, "classes": [3, 1, 0]})))
    assert set(low.noisy_train_labels.tolist()) == {0, 1, 3}
    assert low.info.train_size == int(torch.isin(every.noisy_train_labels, torch.tensor([0, 1, 3])).sum())
    assert low.info.val_size == every.info.val_size and low.info.num_classes == 10


def test_with_a_partition_the_oracle_reads_its_own_peers_labels_as_its_shards_batches_index_them(tmp_path):
    """One labels tensor per peer's shard; each peer's oracle reads its own, by its batches' indices."""
    raw = tiny_raw(distillation={"teacher_source": "replicas", "refresh_every_steps": 2, "methods": [{"name": "kd"}]})
    raw["data"].update(shared_batches=False, batch_size=32, label_noise=0.4, probe_fraction=0.1,
                       partition={"kind": "dirichlet", "alpha": 0.5})
    datasets = peer_datasets(parse_config(raw))
    path = tmp_path / "labels.pt"
    torch.save([d.clean_train_labels for d in datasets], path)
    raw["distillation"]["policy"] = {"name": "policies.oracle:LabelOraclePolicy", "params": {"labels": str(path)}}
    config = parse_config(raw)
    for k, dataset in enumerate(datasets):
        trainer = PeerTrainer(config, k, dataset=dataset)
        assert torch.equal(trainer.policy.labels, dataset.clean_train_labels)
        b = trainer.batches.batch(0, 1)
        assert torch.equal(dataset.noisy_train_labels[b.indices], b.targets)
        truth = dataset.clean_train_labels[b.indices]
        logits = 5 * torch.nn.functional.one_hot(torch.stack([truth, (truth + 1) % 10]), 10).float()
        weights = trainer.policy.weights(TeacherBatch(k, torch.zeros(len(truth), 10), logits, [0, 1], b.targets,
                                                      Progress(0, 1, 1, 1), b.indices))
        assert torch.equal(weights, torch.tensor([[1.0, 0.0]]).expand(len(truth), 2))  # the first is always right
    torch.save(datasets[0].clean_train_labels, path)  # one tensor for two shards
    with pytest.raises(ConfigError, match="needs a list of 2 tensors, one per peer's shard"):
        parse_config(raw)
    torch.save([datasets[0].clean_train_labels, torch.tensor([0.5])], path)
    with pytest.raises(ConfigError, match="nor a list of them"):
        parse_config(raw)
