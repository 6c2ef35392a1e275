"""Every distillation method: zero loss on a perfect teacher, gradients only to the student and
its adapters, shapes across the model zoo, and each method's own formula or schedule."""

import copy

import pytest
import torch
import torch.nn.functional as F

from codistill.methods import MethodContext, TeacherView, build_method, method_class, method_names
from codistill.methods.base import weighted_term
from codistill.methods.dkd import decomposition_residual, nckd, tckd
from codistill.methods.indistill import active_stage, channel_importance, prune_channels
from codistill.models import build_model, model_names
from codistill.progress import Progress

LATE = Progress(epoch=25, step=0, steps_per_epoch=10, total_epochs=30)  # past every warm-up


@pytest.fixture(autouse=True)
def seeded():
    torch.manual_seed(0)
    torch.set_num_threads(1)


def context_for(student, teachers, in_channels, size, classes=10, epochs=30):
    return MethodContext(num_classes=classes, student_feature_shapes=student.feature_shapes(in_channels, size),
                         teacher_feature_shapes=[t.feature_shapes(in_channels, size) for t in teachers],
                         total_epochs=epochs)


def view_of(teacher, output, method_name, index=0, detach=True):
    cls = method_class(method_name)
    take = (lambda t: t.detach()) if detach else (lambda t: t)
    return TeacherView(logits=take(output.logits), features=[take(f) for f in output.features], index=index,
                       extras=cls.teacher_extras(teacher, output))


def total(terms):
    """The batch-mean loss of a method's terms (each ``[B]`` or a scalar)."""
    return sum(value.mean() for value in terms.values())


TEACHER_METHODS = [m for m in ("kd", "dkd", "dckd", "feature_decoupled", "indistill")]


@pytest.mark.parametrize("name", TEACHER_METHODS)
@pytest.mark.parametrize("progress", [LATE, Progress(epoch=1, step=0, steps_per_epoch=10, total_epochs=30)])
def test_zero_loss_when_teacher_is_the_student(name, progress):
    student = build_model("resnet8", 10, 3, 16).eval()
    teacher = copy.deepcopy(student)
    method = build_method(name, context_for(student, [teacher], 3, 16)).eval()
    x, y = torch.randn(4, 3, 16, 16), torch.randint(0, 10, (4,))
    terms = method(student(x), view_of(teacher, teacher(x), name), y, progress)
    assert terms and all(float(v.detach().abs().max()) < 1e-6 for v in terms.values()), terms


@pytest.mark.parametrize("name", TEACHER_METHODS)
def test_gradients_reach_only_the_student_and_its_adapters(name):
    student, teacher = build_model("resnet8", 10, 3, 16), build_model("resnet8x4", 10, 3, 16)
    method = build_method(name, context_for(student, [teacher], 3, 16))
    x, y = torch.randn(4, 3, 16, 16), torch.randint(0, 10, (4,))
    for progress in (Progress(1, 0, 10, 30), LATE):
        teacher_output = teacher(x)  # not detached: the method must not let gradient through
        loss = total(method(student(x), view_of(teacher, teacher_output, name, detach=False), y, progress))
        loss.backward()
    assert all(p.grad is None for p in teacher.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in student.parameters())
    for p in method.parameters():
        assert p.grad is not None  # adapters train with the student


def test_sfr_is_teacher_free_and_trains_shallow_stages_only_through_features():
    student = build_model("resnet8", 10, 3, 16)
    method = build_method("sfr", context_for(student, [], 3, 16))
    assert not method.uses_teacher
    x, y = torch.randn(4, 3, 16, 16), torch.randint(0, 10, (4,))
    output = student(x)
    terms = method(output, None, y, LATE)
    assert float(terms["features"].detach()) > 0 and torch.isfinite(terms["features"])
    assert float(terms["label_smoothing"].detach()) != 0
    deepest = list(student.stages[-1].parameters())
    grads = torch.autograd.grad(terms["features"], deepest + list(student.stages[0].parameters()), allow_unused=True)
    assert all(g is None or g.abs().sum() == 0 for g in grads[:len(deepest)])  # deep target is detached
    assert any(g is not None and g.abs().sum() > 0 for g in grads[len(deepest):])


def test_sfr_label_term_makes_label_smoothing():
    student = build_model("mlp", 10, 1, 8)
    method = build_method("sfr", context_for(student, [], 1, 8), {"max_smoothing": 0.2})
    x, y = torch.randn(6, 1, 8, 8), torch.randint(0, 10, (6,))
    output = student(x)
    progress = Progress(epoch=15, step=0, steps_per_epoch=10, total_epochs=30)  # ε = 0.1
    with torch.no_grad():
        ours = F.cross_entropy(output.logits, y) + method(output, None, y, progress)["label_smoothing"]
        reference = F.cross_entropy(output.logits, y, label_smoothing=0.1)  # (1 − ε)·CE + ε·CE(uniform)
    assert float(ours) == pytest.approx(float(reference), rel=1e-5)


def test_dkd_decomposes_kd_exactly():
    for temperature in (1.0, 4.0):
        teacher, student = torch.randn(64, 100) * 3, torch.randn(64, 100) * 3
        targets = torch.randint(0, 100, (64,))
        assert decomposition_residual(teacher, student, targets, temperature).abs().max() < 1e-4
        assert float(tckd(teacher, student, targets, temperature).min()) >= -1e-6
        assert float(nckd(teacher, student, targets, temperature).min()) >= -1e-6


@pytest.mark.parametrize("name", ["dkd", "dckd"])
def test_decoupled_methods_warm_up_linearly_over_one_based_whole_epochs(name):
    student, teacher = build_model("mlp", 10, 1, 8), build_model("cnn", 10, 1, 8)
    method = build_method(name, context_for(student, [teacher], 1, 8), {"warmup_epochs": 20})
    x, y = torch.randn(8, 1, 8, 8), torch.randint(0, 10, (8,))
    s, t = student(x), teacher(x)
    at = lambda epoch: float(total(method(s, view_of(teacher, t, name), y, Progress(epoch, 0, 10, 30))).detach())  # noqa: E731
    full = at(29)
    assert at(0) == pytest.approx(full / 20, rel=1e-5)  # mdistiller: epoch 1 of 20 → 1/20
    assert at(4) == pytest.approx(full / 4, rel=1e-5)
    assert at(19) == pytest.approx(full, rel=1e-5)
    late_in_epoch = float(total(method(s, view_of(teacher, t, name), y, Progress(4, 9, 10, 30))).detach())
    assert late_in_epoch == pytest.approx(at(4), rel=1e-6)  # constant within an epoch


def test_dckd_keeps_the_students_own_non_target_knowledge_on_correct_examples():
    student, teacher = build_model("mlp", 10, 1, 8), build_model("cnn", 10, 1, 8)
    context = context_for(student, [teacher], 1, 8)
    x = torch.randn(8, 1, 8, 8)
    s, t = student(x), teacher(x)
    correct_targets = s.logits.argmax(1)
    fully_kept = build_method("dckd", context, {"kept_student_share": 1.0, "joint_target_share": 0.0})
    terms = fully_kept(s, view_of(teacher, t, "dckd"), correct_targets, LATE)
    # the reference is its own (fixed) output
    assert float(terms["non_target"].detach().abs().max()) == pytest.approx(0.0, abs=1e-6)
    assert float(terms["target"].detach().abs().max()) == pytest.approx(0.0, abs=1e-6)
    teacher_only = build_method("dckd", context, {"kept_student_share": 0.0})
    assert float(teacher_only(s, view_of(teacher, t, "dckd"), correct_targets, LATE)["non_target"].detach().mean()) > 0


def test_indistill_curriculum_follows_the_official_schedule():
    expected = [0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 2, None, None, None, None]
    assert [active_stage(epoch, (3, 7, 12), 3) for epoch in range(16)] == expected
    assert [active_stage(epoch, (3, 7, 12), 4) for epoch in range(16)] == expected
    assert active_stage(5, (3, 7, 12), 1) is None


def test_indistill_keeps_the_teachers_top_l1_filters():
    teacher = build_model("resnet8x4", 10, 3, 16)
    with torch.no_grad():
        output = teacher(torch.randn(2, 3, 16, 16))
    scores = channel_importance(teacher, output)
    last_conv = [m for m in teacher.stages[0].modules() if isinstance(m, torch.nn.Conv2d)][-1]
    assert torch.allclose(scores[0], last_conv.weight.abs().sum((1, 2, 3)))
    kept = prune_channels(output.features[0], scores[0], 16)
    top = scores[0].topk(16).indices.sort().values
    assert torch.equal(kept, output.features[0][:, top])


def test_indistill_rejects_a_teacher_narrower_than_the_student():
    student, teacher = build_model("resnet8x4", 10, 3, 16), build_model("resnet8", 10, 3, 16)
    with pytest.raises(ValueError, match="fewer than the student"):
        build_method("indistill", context_for(student, [teacher], 3, 16))


def test_feature_decoupled_weights_adapt_to_term_magnitudes():
    student, teacher = build_model("resnet8", 10, 3, 16), build_model("resnet8x4", 10, 3, 16)
    method = build_method("feature_decoupled", context_for(student, [teacher], 3, 16))
    x, y = torch.randn(4, 3, 16, 16), torch.randint(0, 10, (4,))
    terms = method(student(x), view_of(teacher, teacher(x), "feature_decoupled"), y, LATE)
    assert torch.equal(method.weights, torch.ones(2))  # the first step uses the initial weights
    method.end_step()
    assert float(method.weights.sum()) == pytest.approx(2.0)
    # After the update the two weighted terms are balanced (equal to the running magnitudes' mean).
    balanced = float(method.weights[1] * method.running_terms[1])
    assert float(method.weights[0] * method.running_terms[0]) == pytest.approx(balanced, rel=1e-5)
    assert set(terms) == {"foreground", "background"}


def test_feature_decoupled_moving_average_moves_once_per_step_over_all_teachers():
    student = build_model("resnet8", 10, 3, 16)
    teachers = [build_model("resnet8x4", 10, 3, 16), build_model("resnet8", 10, 3, 16)]
    method = build_method("feature_decoupled", context_for(student, teachers, 3, 16), {"momentum": 0.5})
    x, y = torch.randn(4, 3, 16, 16), torch.randint(0, 10, (4,))
    s = student(x)

    def step():
        terms = [method(s, view_of(t, t(x), "feature_decoupled", index=k), y, LATE) for k, t in enumerate(teachers)]
        used = method.weights.clone()
        method.end_step()
        means = torch.stack([torch.stack([v["foreground"].mean(), v["background"].mean()]) / used for v in terms])
        return means.mean(0).detach()

    first = step()
    assert torch.allclose(method.running_terms, first)  # the first step's mean over both teachers
    second = step()
    assert torch.allclose(method.running_terms, 0.5 * first + 0.5 * second)
    inverse = 1.0 / method.running_terms
    assert torch.allclose(method.weights, 2.0 * inverse / inverse.sum())


def test_a_term_of_the_wrong_shape_is_an_error():
    with pytest.raises(ValueError, match="'kd/kd' has shape"):
        weighted_term(torch.ones(3, 2), None, 3, "kd/kd")
    weights = torch.tensor([0.0, 1.0, 0.5])
    assert float(weighted_term(torch.tensor([4.0, 2.0, 2.0]), weights, 3, "x")) == pytest.approx(1.0)
    assert float(weighted_term(torch.tensor(3.0), weights, 3, "x")) == pytest.approx(1.5)


@pytest.mark.parametrize("in_channels, size", [(1, 8), (3, 32)])
@pytest.mark.parametrize("model", model_names())
def test_every_method_handles_every_model(model, in_channels, size):
    """Each registry model as student against a fixed teacher, and as teacher of a fixed student."""
    partner = "resnet8x4" if in_channels == 3 else "cnn"
    x, y = torch.randn(2, in_channels, size, size), torch.randint(0, 10, (2,))
    for student_name, teacher_name in ((model, partner), (partner, model)):
        student = build_model(student_name, 10, in_channels, size).eval()
        teacher = build_model(teacher_name, 10, in_channels, size).eval()
        s, t = student(x), teacher(x)
        for name in method_names():
            context = context_for(student, [teacher], in_channels, size)
            try:
                method = build_method(name, context).eval()
            except ValueError as error:
                assert name == "indistill" and "fewer than the student" in str(error)
                continue
            view = None if not method.uses_teacher else view_of(teacher, t, name)
            for progress in (Progress(1, 0, 10, 30), LATE):
                loss = total(method(s, view, y, progress))
                assert loss.dim() == 0 and torch.isfinite(loss), (name, student_name, teacher_name)
