"""One peer's training step, teacher formation and the single-process cohort (no Ray)."""

import pytest
import torch
import torch.nn.functional as F
from conftest import tiny_config, tiny_raw

from codistill.cohort.base import others
from codistill.cohort.sequential import SequentialCohort
from codistill.methods.base import TeacherView
from codistill.peer.teachers import normalized_weights
from codistill.policy import TeacherBatch, TeacherWeightingPolicy
from codistill.progress import Progress
from codistill.schedules import learning_rate_factor
from codistill.validation import parse_config


@pytest.fixture(autouse=True)
def one_thread():
    torch.set_num_threads(1)


def softened_kl(teacher_logits, student_logits, temperature):
    return F.kl_div(F.log_softmax(student_logits / temperature, 1), F.softmax(teacher_logits / temperature, 1),
                    reduction="batchmean") * temperature ** 2


def test_every_peer_sees_the_same_examples_in_the_same_order():
    cohort = SequentialCohort(tiny_config())
    for step in range(3):
        labels = [peer.batches.batch(1, step).targets for peer in cohort.peers]
        assert torch.equal(labels[0], labels[1])
    images = [peer.batches.batch(1, 0).images for peer in cohort.peers]
    assert torch.equal(images[0], images[1])


def test_per_peer_augmentation_gives_each_peer_its_own_view_of_the_same_examples():
    raw = tiny_raw()
    raw["data"]["per_peer_augmentation"] = True
    cohort = SequentialCohort(parse_config(raw))
    (x0, y0), (x1, y1) = ((b.images, b.targets) for b in (peer.batches.batch(0, 0) for peer in cohort.peers))
    assert torch.equal(y0, y1) and not torch.equal(x0, x1)


def test_ensemble_teacher_loss_is_kl_to_the_mean_of_all_peer_logits():
    cohort = SequentialCohort(tiny_config())
    payloads = [peer.forward(0, 0) for peer in cohort.peers]
    student = cohort.peers[1]
    own = student._pending.output.logits.detach()
    ensemble = (payloads[0].logits + own) / 2
    expected = softened_kl(ensemble, own, 3.0)
    metrics = student.update(others(payloads, 1))
    kd_terms = {k: v for k, v in metrics.items() if k.startswith("loss/kd")}
    assert len(kd_terms) == 1
    assert next(iter(kd_terms.values())) == pytest.approx(float(expected), rel=1e-3)
    assert metrics["loss/total"] == pytest.approx(metrics["loss/ce"] + float(expected), rel=1e-4)


def test_mean_of_others_teacher_excludes_the_student():
    cohort = SequentialCohort(tiny_config(distillation={"teacher": "mean_of_others", "methods": [
        {"name": "kd", "params": {"temperature": 2.0}}]}))
    payloads = [peer.forward(0, 0) for peer in cohort.peers]
    own = cohort.peers[0]._pending.output.logits.detach()
    expected = softened_kl(payloads[1].logits, own, 2.0)
    metrics = cohort.peers[0].update(others(payloads, 0))
    kd = [v for k, v in metrics.items() if k.startswith("loss/kd")][0]
    assert kd == pytest.approx(float(expected), rel=1e-3)


def test_no_gradient_flows_into_a_teacher():
    cohort = SequentialCohort(tiny_config())
    payloads = [peer.forward(0, 0) for peer in cohort.peers]
    leaked = TeacherView(logits=payloads[1].logits.clone().requires_grad_(True))
    cohort.peers[0].update([leaked])
    assert leaked.logits.grad is None
    assert all(p.grad is None for p in cohort.peers[1].model.parameters())


def test_independent_trains_with_cross_entropy_alone():
    cohort = SequentialCohort(tiny_config(independent=True))
    payloads = [peer.forward(0, 0) for peer in cohort.peers]
    metrics = cohort.peers[0].update(others(payloads, 0))
    assert len(cohort.peers[0].objective.methods) == 0
    assert metrics["loss/total"] == pytest.approx(metrics["loss/ce"])
    assert not [k for k in metrics if k.startswith("loss/kd")]


def test_gate_off_skips_distillation():
    cohort = SequentialCohort(tiny_config(distillation={"gate": 0.0, "methods": [{"name": "kd"}]}))
    payloads = [peer.forward(0, 0) for peer in cohort.peers]
    metrics = cohort.peers[0].update(others(payloads, 0))
    assert metrics["distill/strength"] == 0.0 and metrics["loss/total"] == pytest.approx(metrics["loss/ce"])


def test_distillation_changes_the_update():
    def first_step_weights(config):
        cohort = SequentialCohort(config)
        payloads = [peer.forward(0, 0) for peer in cohort.peers]
        cohort.peers[0].update(others(payloads, 0))
        return torch.cat([p.detach().flatten() for p in cohort.peers[0].model.parameters()])

    assert not torch.allclose(first_step_weights(tiny_config()), first_step_weights(tiny_config(independent=True)))


class FirstTeacherOnly(TeacherWeightingPolicy):
    def weights(self, batch: TeacherBatch):
        weights = torch.zeros(batch.teacher_logits.shape[0])
        weights[0] = 1.0
        return weights


def test_policy_weights_shape_the_ensemble(monkeypatch):
    cohort = SequentialCohort(tiny_config())
    cohort.peers[1].policy = FirstTeacherOnly(cohort.peers[1].policy.context)
    payloads = [peer.forward(0, 0) for peer in cohort.peers]
    own = cohort.peers[1]._pending.output.logits.detach()
    metrics = cohort.peers[1].update(others(payloads, 1))
    kd = [v for k, v in metrics.items() if k.startswith("loss/kd")][0]
    assert kd == pytest.approx(float(softened_kl(payloads[0].logits, own, 3.0)), rel=1e-3)


def test_normalized_weights_checks_policy_output():
    assert torch.allclose(normalized_weights(torch.tensor([1.0, 3.0]), 2, 4).sum(1), torch.ones(4))
    with pytest.raises(ValueError, match="shape"):
        normalized_weights(torch.ones(3), 2, 4)
    with pytest.raises(ValueError, match="non-negative"):
        normalized_weights(torch.tensor([1.0, -1.0]), 2, 4)


def test_confidence_aware_policy_prefers_the_teacher_with_lower_loss():
    from policies.confidence import ConfidenceAwarePolicy

    targets = torch.tensor([0, 1])
    good = torch.tensor([[5.0, 0.0], [0.0, 5.0]])
    bad = -good
    batch = TeacherBatch(0, good, torch.stack([good, bad]), [1, 2], targets,
                         Progress(0, 0, 1, 1))
    weights = ConfidenceAwarePolicy(SequentialCohort(tiny_config()).peers[0].policy.context).weights(batch)
    assert weights.shape == (2, 2)
    assert torch.allclose(weights.sum(1), torch.ones(2)) and bool((weights[:, 0] > weights[:, 1]).all())


def test_learning_rate_schedules():
    raw = tiny_raw()
    raw["peers"][0]["lr_schedule"] = {"name": "multistep", "milestones": [1, 2], "gamma": 0.1, "warmup_epochs": 1}
    raw["epochs"] = 3
    peer = parse_config(raw).peers[0]
    at = lambda e, s=0: learning_rate_factor(peer.lr_schedule, Progress(e, s, 10, 3))  # noqa: E731
    assert at(0, 0) == pytest.approx(0.1) and at(0, 9) == pytest.approx(1.0)
    assert at(1) == pytest.approx(0.1) and at(2) == pytest.approx(0.01)
    cosine = tiny_config().peers[0]
    assert learning_rate_factor(cosine.lr_schedule, Progress(1, 0, 10, 2)) == pytest.approx(0.5)


def test_sequential_cohort_learns_digits():
    cohort = SequentialCohort(tiny_config(epochs=8))
    for epoch in range(8):
        metrics = cohort.train_epoch(epoch)
    logits, labels = cohort.evaluate()
    accuracy = [float((peer_logits.argmax(1) == labels).float().mean()) for peer_logits in logits]
    assert len(metrics) == cohort.steps_per_epoch()
    assert min(accuracy) > 0.5, accuracy  # chance is 0.1


def test_state_round_trip_restores_training_exactly():
    config = tiny_config()
    first = SequentialCohort(config)
    first.train_epoch(0)
    blobs = first.state_bytes()
    continued = first.train_epoch(1)
    second = SequentialCohort(config)
    second.load_state_bytes(blobs)
    replayed = second.train_epoch(1)
    def losses(epoch):
        return [[m["loss/total"] for m in step] for step in epoch]

    assert losses(continued) == losses(replayed)


@pytest.mark.parametrize("teacher", ["ensemble", "mean_of_others"])
def test_every_method_runs_between_online_peers(teacher):
    methods = [{"name": "kd"}, {"name": "dkd"}, {"name": "dckd"}, {"name": "feature_decoupled"},
               {"name": "indistill", "params": {"curriculum_epochs": [1]}}, {"name": "sfr"}]
    peers = [{"name": "wide", "model": "resnet8x4"}, {"name": "narrow", "model": "resnet8"}]
    cohort = SequentialCohort(tiny_config(peers=peers, distillation={"teacher": teacher, "methods": methods}))
    for epoch in range(2):  # InDistill: a feature stage, then the logits phase
        metrics = cohort.train_epoch(epoch)
    wide, narrow = metrics[-1]
    every_method = {"loss/feature_decoupled/foreground", "loss/sfr/features", "loss/dkd/nckd", "loss/indistill/logits"}
    assert every_method <= set(narrow)
    assert all(torch.isfinite(torch.tensor(v)) for v in narrow.values())
