"""Every registered method, alone and with KD, in both teacher modes, with any number of teachers:
online cohorts of 2, 3 and 4 peers (sequential, in this process) and offline students of 1, 2 and
3 saved teachers. Two training steps each (epochs 0 and 1, so warm-ups, InDistill's curriculum and
running averages move): finite losses, gradients on the student and its adapters only, teachers
untouched, and per-example teacher weights renormalized to rows summing to one."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from codistill.cohort.base import others
from codistill.cohort.offline import OfflineCohort
from codistill.methods import method_names
from codistill.peer import PeerTrainer, load_dataset
from codistill.policy import TeacherBatch, TeacherWeightingPolicy
from codistill.validation import parse_config

# One step per epoch: about 67 training examples in one batch.
DATA = {"dataset": "digits", "train_fraction": 0.05, "label_noise": 0.0, "batch_size": 128}
PEERS = [{"name": "wide", "model": "resnet8x4"}, {"name": "narrow", "model": "resnet8"},
         {"name": "cnn", "model": "cnn"}, {"name": "mlp", "model": "mlp"}]
TEACHERS = ["resnet8x4", "resnet8", "resnet8x4"]  # offline: as wide as the resnet8 student (InDistill)
PARAMS = {"indistill": {"curriculum_epochs": [1]}}  # epoch 0 distils a feature stage, epoch 1 the logits


def method_spec(name: str) -> dict:
    return {"name": name, "params": PARAMS.get(name, {})}


COMBINATIONS = [[method_spec(name)] for name in method_names()] + \
    [[method_spec("kd"), method_spec(name)] for name in method_names() if name != "kd"]


def combination_id(methods: list[dict]) -> str:
    return "+".join(m["name"] for m in methods)


class RandomPerExamplePolicy(TeacherWeightingPolicy):
    """Unnormalized random weights per example and teacher; keeps what the engine fed back."""

    def __init__(self) -> None:
        self.generator = torch.Generator().manual_seed(0)
        self.fed_back: list[tuple[int, Tensor]] = []

    def weights(self, batch: TeacherBatch) -> Tensor:
        count, size, _ = batch.teacher_logits.shape
        return 0.01 + 3.0 * torch.rand(size, count, generator=self.generator)

    def feedback(self, batch: TeacherBatch, weights: Tensor, losses: dict[str, float]) -> None:
        self.fed_back.append((batch.teacher_logits.shape[0], weights))



def raw_config(methods: list[dict], teacher: str, peers: list[dict], **extra) -> dict:
    return {"name": "matrix", "seed": 0, "epochs": 2, "data": DATA, "peers": peers,
            "distillation": {"teacher": teacher, "weight": 1.0, "methods": methods},
            "runtime": {"progress_every_seconds": 0.0}, **extra}


@pytest.fixture(autouse=True)
def one_thread():
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def dataset():
    config = parse_config(raw_config([method_spec("kd")], "ensemble", PEERS[:2]))
    data = load_dataset(config)
    assert data.steps_per_epoch(DATA["batch_size"]) == 1
    return data


def parameters(trainer: PeerTrainer) -> list[torch.nn.Parameter]:
    return list(trainer.model.parameters()) + list(trainer.objective.parameters())


def check_weights(policy: RandomPerExamplePolicy, candidates: int) -> None:
    count, weights = policy.fed_back.pop()
    assert count == candidates and weights.shape[1] == candidates
    assert torch.allclose(weights.sum(1), torch.ones(weights.shape[0]), atol=1e-6)
    if candidates > 1:
        assert not torch.allclose(weights[0], weights[1])  # per example, not one row for the batch


def check_student_gradients(trainer: PeerTrainer) -> None:
    assert any(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in trainer.model.parameters())
    assert all(p.grad is not None for p in trainer.objective.methods.parameters())  # every adapter trains


def check_finite(metrics: dict[str, float]) -> None:
    assert all(torch.isfinite(torch.tensor(v)) for v in metrics.values()), metrics


def check_every_method_contributed(step: list[dict[str, float]], methods: list[dict]) -> None:
    """Each method gave a term to some student of the step (online, InDistill's feature stage
    teaches nothing to a peer wider than its teacher)."""
    for spec in methods:
        assert any(k.startswith(f"loss/{spec['name']}") for metrics in step for k in metrics), (spec, step)


@pytest.mark.parametrize("methods", COMBINATIONS, ids=combination_id)
@pytest.mark.parametrize("teacher", ["ensemble", "mean_of_others"])
@pytest.mark.parametrize("size", [2, 3, 4])
def test_online_cohort(dataset, methods, teacher, size):
    config = parse_config(raw_config(methods, teacher, PEERS[:size]))
    peers = [PeerTrainer(config, k, dataset=dataset) for k in range(size)]
    for peer in peers:
        peer.policy = RandomPerExamplePolicy()
    candidates = size if teacher == "ensemble" else size - 1
    for epoch in (0, 1):
        payloads = [peer.forward(epoch, 0) for peer in peers]
        assert not any(p.logits.requires_grad or any(f.requires_grad for f in p.features) for p in payloads)
        step = []
        for k, student in enumerate(peers):
            for peer in peers:
                peer.optimization.optimizer.zero_grad(set_to_none=True)
            teachers_before = [[p.detach().clone() for p in parameters(peer)] for j, peer in enumerate(peers) if j != k]
            step.append(student.update(others(payloads, k)))
            check_finite(step[-1])
            check_student_gradients(student)
            check_weights(student.policy, candidates)
            teachers = [peer for j, peer in enumerate(peers) if j != k]
            for peer, before in zip(teachers, teachers_before):
                assert all(p.grad is None for p in parameters(peer))
                assert all(torch.equal(p, q) for p, q in zip(parameters(peer), before))
        check_every_method_contributed(step, methods)


@pytest.fixture(scope="module")
def teacher_checkpoints(tmp_path_factory, dataset):
    """Untrained networks saved as a run saves its peers (``PeerTrainer.model_bytes``)."""
    root = tmp_path_factory.mktemp("teachers")
    peers = [{"name": f"teacher{k}", "model": model} for k, model in enumerate(TEACHERS)]
    config = parse_config({**raw_config([], "ensemble", peers), "independent": True})
    paths = []
    for k in range(len(TEACHERS)):
        path = root / f"teacher{k}.pt"
        path.write_bytes(PeerTrainer(config, k, dataset=dataset).model_bytes())
        paths.append(str(path))
    return paths


@pytest.mark.parametrize("methods", COMBINATIONS, ids=combination_id)
@pytest.mark.parametrize("teacher", ["ensemble", "mean_of_others"])
@pytest.mark.parametrize("count", [1, 2, 3])
def test_offline_student(teacher_checkpoints, methods, teacher, count):
    teachers = [{"name": f"teacher{k}", "model": TEACHERS[k], "checkpoint": teacher_checkpoints[k]}
                for k in range(count)]
    config = parse_config(raw_config(methods, teacher, PEERS[1:2], teachers=teachers), mode="offline")
    cohort = OfflineCohort(config)
    cohort.student.policy = RandomPerExamplePolicy()
    frozen = [[p.clone() for p in network.parameters()] for network in cohort.frozen.networks]
    for epoch in (0, 1):
        (step,) = cohort.train_epoch(epoch)
        check_finite(step[0])
        check_every_method_contributed(step, methods)
        check_student_gradients(cohort.student)
        check_weights(cohort.student.policy, count)
    for network, before in zip(cohort.frozen.networks, frozen):
        assert all(p.grad is None and not p.requires_grad for p in network.parameters())
        assert all(torch.equal(p, q) for p, q in zip(network.parameters(), before))
