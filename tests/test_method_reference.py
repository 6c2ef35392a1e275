"""Methods, teacher weights and schedules against their reference implementations.

Each reference below is written out here from the paper and the authors' code conventions
(mdistiller's and RepDistiller's KD, mdistiller's DKD with its 1-based epoch warm-up, CA-MKD's
weights and loss, ONE's sigmoid ramp, TensorFlow Model Optimization's polynomial-decay sparsity),
independently of codistill's code, and compared numerically: values and gradients.
"""

from __future__ import annotations

import functools
import math

import pytest
import torch
import torch.nn.functional as F
from conftest import tiny_config

from codistill.cohort.base import others
from codistill.cohort.sequential import SequentialCohort
from codistill.methods import MethodContext, TeacherView, build_method
from codistill.models import ModelOutput, build_model
from codistill.peer.teachers import teacher_weights
from codistill.policy import PolicyContext, TeacherBatch, TeacherWeightingPolicy
from codistill.progress import Progress
from codistill.pruning import GradualPruner, cubic_sparsity
from codistill.schedules import Ramp
from policies.confidence import ConfidenceAwarePolicy

CLASSES, BATCH = 100, 16


@pytest.fixture(autouse=True)
def seeded():
    torch.manual_seed(0)
    torch.set_num_threads(1)


# -- references --------------------------------------------------------------------------------

def mdistiller_kd(student, teacher, temperature):
    log_pred_student = F.log_softmax(student / temperature, dim=1)
    pred_teacher = F.softmax(teacher / temperature, dim=1)
    return F.kl_div(log_pred_student, pred_teacher, reduction="none").sum(1).mean() * temperature ** 2


def repdistiller_kd(student, teacher, temperature):
    p_s, p_t = F.log_softmax(student / temperature, dim=1), F.softmax(teacher / temperature, dim=1)
    return F.kl_div(p_s, p_t, reduction="sum") * temperature ** 2 / student.shape[0]


def mdistiller_dkd(student, teacher, target, alpha, beta, temperature, epoch, warmup):
    """mdistiller's ``dkd_loss`` times its warm-up ``min(epoch / warmup, 1)`` (``epoch`` from 1)."""
    gt = torch.zeros_like(student).scatter_(1, target[:, None], 1).bool()
    other = torch.ones_like(student).scatter_(1, target[:, None], 0).bool()

    def binary(probs):
        return torch.cat([(probs * gt).sum(1, keepdim=True), (probs * other).sum(1, keepdim=True)], dim=1)

    pred_student = binary(F.softmax(student / temperature, dim=1))
    pred_teacher = binary(F.softmax(teacher / temperature, dim=1))
    batch = student.shape[0]
    tckd = F.kl_div(torch.log(pred_student), pred_teacher, reduction="sum") * temperature ** 2 / batch
    pred_teacher_part2 = F.softmax(teacher / temperature - 1000.0 * gt, dim=1)
    log_pred_student_part2 = F.log_softmax(student / temperature - 1000.0 * gt, dim=1)
    nckd = F.kl_div(log_pred_student_part2, pred_teacher_part2, reduction="sum") * temperature ** 2 / batch
    return min(epoch / warmup, 1.0) * (alpha * tckd + beta * nckd)


def camkd_weights(teacher_logits, target):
    """CA-MKD's ``attention``, shape ``[K, B]``."""
    loss_t = torch.stack([F.cross_entropy(logits, target, reduction="none") for logits in teacher_logits])
    return (1.0 - F.softmax(loss_t, dim=0)) / (len(teacher_logits) - 1)


def camkd_loss(student, teacher_logits, target, temperature):
    """CA-MKD's logit term: per-sample KD weighted by the attention, summed, over ``B · K``."""
    attention = camkd_weights(teacher_logits, target)
    loss_dist = torch.stack([
        F.kl_div(F.log_softmax(student / temperature, dim=1), F.softmax(t / temperature, dim=1),
                 reduction="none").sum(1) * temperature ** 2 for t in teacher_logits])
    return (attention * loss_dist).sum() / (student.shape[0] * len(teacher_logits))


def one_sigmoid_rampup(current, rampup_length):
    """ONE / OKDDip's consistency ramp, evaluated once per (0-based) epoch."""
    current = min(max(current, 0.0), rampup_length)
    phase = 1.0 - current / rampup_length
    return math.exp(-5.0 * phase * phase)


def tfmot_polynomial_decay(step, begin, end, initial, final, power=3):
    """TensorFlow Model Optimization's ``PolynomialDecay`` sparsity (Zhu & Gupta's schedule)."""
    p = min(1.0, max(0.0, (step - begin) / (end - begin)))
    return (initial - final) * (1.0 - p) ** power + final


# -- helpers -----------------------------------------------------------------------------------

def logit_method(name, **params):
    context = MethodContext(num_classes=CLASSES, student_feature_shapes=[], teacher_feature_shapes=[[]],
                            total_epochs=30)
    return build_method(name, context, params)


def batch_loss(method, student, teacher, targets, progress):
    terms = method(ModelOutput(logits=student), TeacherView(logits=teacher, index=0), targets, progress)
    assert all(value.shape == (student.shape[0],) for value in terms.values())  # per example
    return sum(value.mean() for value in terms.values())


def logits_pair(scale=3.0):
    student = (scale * torch.randn(BATCH, CLASSES)).requires_grad_()
    return student, scale * torch.randn(BATCH, CLASSES), torch.randint(0, CLASSES, (BATCH,))


def assert_same_value_and_gradient(ours, reference, student, teacher):
    """``ours`` (float32) against ``reference(student, teacher)`` evaluated in float64."""
    student64 = student.detach().double().requires_grad_()
    expected = reference(student64, teacher.double())
    assert float(ours.detach()) == pytest.approx(float(expected.detach()), rel=1e-4)  # float32 rounding
    (grad_ours,) = torch.autograd.grad(ours, student, retain_graph=True)
    (grad_expected,) = torch.autograd.grad(expected, student64)
    error = (grad_ours.double() - grad_expected).abs().max() / grad_expected.abs().max()
    assert float(error) < 1e-4, float(error)  # float32 rounding, relative to the gradient's scale


# -- KD and DKD --------------------------------------------------------------------------------

@pytest.mark.parametrize("temperature", [1.0, 2.0, 4.0, 8.0])
def test_kd_matches_mdistiller_and_repdistiller(temperature):
    student, teacher, targets = logits_pair()
    method = logit_method("kd", temperature=temperature)
    ours = batch_loss(method, student, teacher, targets, Progress(0, 0, 10, 30))
    assert_same_value_and_gradient(ours, lambda s, t: mdistiller_kd(s, t, temperature), student, teacher)
    assert_same_value_and_gradient(ours, lambda s, t: repdistiller_kd(s, t, temperature), student, teacher)


@pytest.mark.parametrize("temperature", [1.0, 4.0, 8.0])
@pytest.mark.parametrize("alpha, beta", [(1.0, 8.0), (0.5, 2.0), (2.0, 0.0)])
def test_dkd_matches_mdistiller_with_its_warm_up(temperature, alpha, beta):
    student, teacher, targets = logits_pair()
    method = logit_method("dkd", temperature=temperature, alpha=alpha, beta=beta, warmup_epochs=20)
    for epoch in (1, 5, 20, 25):  # mdistiller's epochs count from 1; codistill's Progress from 0
        for step in (0, 7):  # constant within an epoch
            ours = batch_loss(method, student, teacher, targets, Progress(epoch - 1, step, 10, 30))
            reference = functools.partial(mdistiller_dkd, target=targets, alpha=alpha, beta=beta,
                                          temperature=temperature, epoch=epoch, warmup=20)
            assert_same_value_and_gradient(ours, reference, student, teacher)


def target_logit_far_below() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A student (requiring grad) whose target logit lies 40 below the others, a teacher, the targets."""
    student = torch.rand(4, CLASSES)
    targets = torch.arange(4)
    student[torch.arange(4), targets] = -40.0
    return student.requires_grad_(), torch.randn(4, CLASSES), targets


def test_tckd_keeps_its_target_gradient_when_the_target_logit_lies_far_below():
    """At T = 1 a gap of 40 puts p_y near 4e-18: log space keeps TCKD and its gradient exact."""
    student, teacher, targets = target_logit_far_below()
    ours = batch_loss(logit_method("dkd", temperature=1.0, alpha=1.0, beta=0.0, warmup_epochs=0),
                      student, teacher, targets, Progress(0, 0, 10, 30))
    student64 = student.detach().double().requires_grad_()
    reference = mdistiller_dkd(student64, teacher.double(), targets, 1.0, 0.0, 1.0, 1, 1)  # exact in float64
    assert float(ours.detach()) == pytest.approx(float(reference.detach()), rel=1e-5)
    (grad,), (grad64,) = torch.autograd.grad(ours, student), torch.autograd.grad(reference, student64)
    target_grad = grad[torch.arange(4), targets]
    assert bool((target_grad.abs() > 1e-5).all())  # the clamped version gave exactly 0
    assert torch.allclose(target_grad.double(), grad64[torch.arange(4), targets], rtol=1e-4)


def test_dckd_target_term_keeps_its_gradient_when_the_target_logit_lies_far_below():
    """DCKD's target term at T = 1 has gradient ``γ (p_s,y − p_t,y)`` on the target logit."""
    student, teacher, targets = target_logit_far_below()
    method = logit_method("dckd", temperature=1.0, alpha=1.0, beta=0.0, warmup_epochs=0, joint_target_share=0.5)
    terms = method(ModelOutput(logits=student), TeacherView(logits=teacher, index=0), targets, Progress(0, 0, 10, 30))
    (grad,) = torch.autograd.grad(terms["target"].sum(), student)
    p_student, p_teacher = (F.softmax(z.double(), 1)[torch.arange(4), targets] for z in (student.detach(), teacher))
    assert torch.allclose(grad[torch.arange(4), targets].double(), 0.5 * (p_student - p_teacher), rtol=1e-4)


# -- CA-MKD weights and loss, per-example weights in the engine ---------------------------------

@pytest.mark.parametrize("count", [2, 3, 4])
def test_confidence_aware_weights_match_camkd(count):
    teachers = 3.0 * torch.randn(count, BATCH, 10)
    targets = torch.randint(0, 10, (BATCH,))
    batch = TeacherBatch(0, torch.randn(BATCH, 10), teachers, list(range(1, count + 1)), targets, Progress(0, 0, 1, 1))
    context = PolicyContext(teacher_names=tuple(f"t{k}" for k in range(count)), num_classes=10,
                            device=torch.device("cpu"), online=False, student_index=0, student_name="s",
                            total_epochs=1, steps_per_epoch=1, seed=0, probe_available=False)
    ours = ConfidenceAwarePolicy(context).weights(batch)
    assert torch.allclose(ours, camkd_weights(list(teachers), targets).t(), atol=1e-6)


@pytest.mark.parametrize("peers", [3, 4])
def test_confidence_aware_kd_loss_is_camkd_times_the_number_of_teachers(peers):
    """CA-MKD divides its weighted sum by K as well; codistill's weights sum to one per example."""
    models = ["mlp", "cnn", "resnet8", "mlp"][:peers]
    config = tiny_config(peers=[{"name": f"p{k}", "model": m} for k, m in enumerate(models)], distillation={
        "teacher": "mean_of_others", "policy": "policies.confidence:ConfidenceAwarePolicy",
        "methods": [{"name": "kd", "params": {"temperature": 3.0}}]})
    cohort = SequentialCohort(config)
    payloads = [peer.forward(0, 0) for peer in cohort.peers]
    targets = cohort.peers[0].batches.batch(0, 0).targets
    metrics = cohort.peers[0].update(others(payloads, 0))
    teachers = [p.logits for p in payloads[1:]]
    expected = (peers - 1) * camkd_loss(payloads[0].logits, teachers, targets, 3.0)
    assert metrics["loss/kd/kd"] == pytest.approx(float(expected), rel=1e-4)


class OneTeacherPerExample(TeacherWeightingPolicy):
    """Example b learns from teacher ``b mod K`` alone."""

    def weights(self, batch: TeacherBatch) -> torch.Tensor:
        count, size, _ = batch.teacher_logits.shape
        return F.one_hot(torch.arange(size) % count, count).float()


def test_methods_applied_teacher_by_teacher_take_each_examples_own_weight():
    config = tiny_config(peers=[{"name": f"p{k}", "model": "mlp"} for k in range(3)], distillation={
        "teacher": "mean_of_others", "methods": [{"name": "kd", "params": {"temperature": 2.0}}]})
    cohort = SequentialCohort(config)
    cohort.peers[0].policy = OneTeacherPerExample(cohort.peers[0].policy.context)
    payloads = [peer.forward(0, 0) for peer in cohort.peers]
    metrics = cohort.peers[0].update(others(payloads, 0))
    student = payloads[0].logits
    chosen = torch.stack([payloads[1 + b % 2].logits[b] for b in range(student.shape[0])])
    per_example = F.kl_div(F.log_softmax(student / 2.0, 1), F.softmax(chosen / 2.0, 1), reduction="none").sum(1) * 4.0
    assert metrics["loss/kd/kd"] == pytest.approx(float(per_example.mean()), rel=1e-5)


def test_teacher_weights_drop_the_students_own_slot_and_renormalize_each_example():
    weights = torch.tensor([[0.2, 0.3, 0.5], [0.6, 0.2, 0.2], [0.0, 0.0, 1.0]])
    ours = teacher_weights(weights, 2)
    assert torch.allclose(ours[:2], torch.tensor([[0.4, 0.6], [0.75, 0.25]]))
    assert torch.equal(ours[2], torch.zeros(2))  # all weight on the student itself: no teacher term


# -- schedules -----------------------------------------------------------------------------------

def test_ramp_matches_one_at_every_epoch_start_and_rises_within_epochs():
    """ONE holds the ramp constant within an epoch; codistill updates it every step (documented)."""
    ramp = Ramp(value=2.0, ramp_epochs=80)
    for epoch in range(100):
        assert ramp(Progress(epoch, 0, 10, 100)) == pytest.approx(2.0 * one_sigmoid_rampup(epoch, 80), rel=1e-12)
    for epoch in range(79):
        within = [ramp(Progress(epoch, step, 10, 100)) for step in range(10)] + [ramp(Progress(epoch + 1, 0, 10, 100))]
        assert all(a < b for a, b in zip(within, within[1:]))


@pytest.mark.parametrize("initial, final", [(0.0, 0.5), (0.0, 0.9), (0.2, 0.8)])
def test_cubic_sparsity_matches_tfmot_polynomial_decay(initial, final):
    begin, end = 30, 230
    for step in range(begin, end + 50):
        assert cubic_sparsity(step, begin, end, initial, final) == pytest.approx(
            tfmot_polynomial_decay(step, begin, end, initial, final), abs=1e-12)
    assert cubic_sparsity(begin - 1, begin, end, initial, final) == 0.0  # tfmot does not prune before begin


def test_magnitude_pruning_ranks_weights_globally_not_per_layer():
    """Zhu & Gupta prune each layer to the schedule; codistill ranks all layers together (documented)."""
    model = build_model("resnet8", 10, 1, 8)
    pruner = GradualPruner(model, target_sparsity=0.5, start_epoch=0, end_epoch=1)
    pruner.prune_to(0.5)
    total = sum(layer.weight_mask.numel() for layer in pruner.layers)
    assert pruner.sparsity() == pytest.approx(0.5, abs=1.0 / total)
    shares = [1.0 - float(layer.weight_mask.mean()) for layer in pruner.layers]
    assert max(shares) - min(shares) > 0.1
