"""Dense credit (codistill.peer.feedback.dense_credit) against finite differences of the real probe
loss after a plain-SGD step, and the learned policy's credit estimator in a run."""

import pytest
import torch
from conftest import tiny_raw
from torch.func import functional_call

from codistill.cohort.sequential import SequentialCohort
from codistill.methods.base import TeacherView
from codistill.peer import PeerTrainer
from codistill.peer.feedback import Probe, dense_credit, head_change, head_credit, probe_loss
from codistill.policy import Feedback
from codistill.runner import prepare_run_dir, run_cohort
from codistill.validation import parse_config
from policies.credit import CreditLearner
from policies.features import SAME_DATA_FEATURES
from policies.learned import LearnedPolicy

LR = 0.05


@pytest.fixture(autouse=True)
def one_thread():
    torch.set_num_threads(1)


def fixed_state(kind: str, teacher: str):
    """A tiny MLP student in float64 on a real batch and probe batch, three fixed random teachers,
    random weights: the training loss as a function of the weights, and the probe loss of parameters."""
    raw = tiny_raw(data={"dataset": "digits", "train_fraction": 0.5, "label_noise": 0.2, "batch_size": 32,
                         "probe_fraction": 0.2})
    raw["distillation"]["teacher"] = teacher
    trainer = PeerTrainer(parse_config(raw), 0)
    model = trainer.model.double()
    batch = trainer.batches.batch(0, 0)
    images, targets = batch.images.double(), batch.targets
    probe = Probe(trainer.dataset, 0, 64, torch.device("cpu"), trainer.optimization.autocast, kind)
    probe_images, probe_labels = probe.batch(batch.progress)
    probe_images = probe_images.double()
    generator = torch.Generator().manual_seed(1)
    views = [TeacherView(logits=(3 * torch.randn(len(targets), 10, generator=generator)).double()) for _ in range(3)]
    weights = torch.rand(len(targets), 3, generator=generator, dtype=torch.float64) + 0.1
    weights = weights / weights.sum(1, keepdim=True)
    names = [name for name, _ in model.named_parameters()]
    parameters = [p for _, p in model.named_parameters()]

    output = model(images)  # one training-mode forward pass: BatchNorm's statistics move once

    def train_loss(w):
        terms = trainer.objective.terms(output, views, w, False, targets, batch.progress)
        return torch.nn.functional.cross_entropy(output.logits, targets) + sum(terms.values())

    def probe_after(w, scope: str = "network") -> float:
        """The probe loss after a plain-SGD step of every parameter, or of the classifier head only."""
        gradients = torch.autograd.grad(train_loss(w), parameters, retain_graph=True)
        moved = [scope == "network" or n.startswith("classifier.") for n in names]
        stepped = {n: p.detach() - LR * g * move for n, p, g, move in zip(names, parameters, gradients, moved)}
        model.eval()
        with torch.no_grad():
            loss = probe_loss(functional_call(model, stepped, (probe_images,)).logits, probe_labels, kind)
        model.train()
        return float(loss)

    return model, parameters, weights, train_loss, probe_after, (probe_images, probe_labels), probe, output


@pytest.mark.parametrize("scope", ["network", "head"])
@pytest.mark.parametrize("kind", ["ce", "mae"])
@pytest.mark.parametrize("teacher", ["ensemble", "mean_of_others"])
def test_dense_credit_matches_finite_differences_of_the_probe_loss(kind, teacher, scope):
    model, parameters, weights, train_loss, probe_after, probe_batch, probe, output = fixed_state(kind, teacher)
    leaf = weights.clone().requires_grad_(True)
    if scope == "network":
        _, probe_gradient = probe.gradient(model, probe_batch, parameters)
        credit = dense_credit(train_loss(leaf), leaf, parameters, probe_gradient, LR)
    else:
        _, head_gradient = probe.head_gradient(model, probe_batch)
        credit = head_credit(train_loss(leaf), leaf, output, model.classifier, head_gradient, LR)
    assert credit.shape == weights.shape and bool(torch.isfinite(credit).all())

    generator = torch.Generator().manual_seed(2)
    pairs = [(int(b), int(k)) for b, k in zip(torch.randint(0, weights.shape[0], (24,), generator=generator),
                                             torch.randint(0, 3, (24,), generator=generator))]
    epsilon = 1e-3
    numeric, analytic = [], []
    for b, k in pairs:
        step = torch.zeros_like(weights)
        step[b, k] = epsilon
        numeric.append((probe_after(weights + step, scope) - probe_after(weights - step, scope)) / (2 * epsilon))
        analytic.append(float(credit[b, k]))
    numeric, analytic = torch.tensor(numeric), torch.tensor(analytic)
    correlation = torch.corrcoef(torch.stack([numeric, analytic]))[0, 1]
    assert correlation > 0.95, (correlation, numeric, analytic)
    assert (numeric.sign() == analytic.sign()).float().mean() >= 0.9
    # first order in η: the same size, not just the same direction
    assert torch.allclose(analytic, numeric, rtol=0.2, atol=0.05 * float(numeric.abs().max()))


def test_a_linear_heads_logit_change_is_its_jacobian_vector_product():
    """The shortcut for a Linear head (the head applied with the direction as its parameters)
    against the Jacobian-vector product any other head takes (the same Linear inside a Sequential)."""
    generator = torch.Generator().manual_seed(3)
    linear = torch.nn.Linear(16, 10).double()
    embedding = torch.randn(8, 16, generator=generator, dtype=torch.float64)
    direction = {name: torch.randn(p.shape, generator=generator, dtype=torch.float64)
                 for name, p in linear.named_parameters()}
    wrapped = torch.nn.Sequential(linear)
    by_jvp = head_change(wrapped, embedding, {f"0.{name}": value for name, value in direction.items()})
    assert torch.allclose(head_change(linear, embedding, direction), by_jvp, rtol=1e-12, atol=1e-12)


def test_credit_of_a_loss_that_ignores_the_weights_is_zero():
    model, parameters, weights, _, _, probe_batch, probe, _ = fixed_state("ce", "ensemble")
    leaf = weights.clone().requires_grad_(True)
    loss = model(torch.zeros(2, 1, 8, 8, dtype=torch.float64)).logits.sum() + 0 * leaf.sum()
    _, probe_gradient = probe.gradient(model, probe_batch, parameters)
    assert torch.equal(dense_credit(loss, leaf, parameters, probe_gradient, LR), torch.zeros_like(weights))


def test_the_credit_learner_moves_weight_to_the_teacher_with_negative_credit():
    """Teacher 0's weight lowers the probe loss (negative credit), teacher 1's raises it: one
    update must give teacher 0 more weight on the same observations."""
    policy = LearnedPolicy(context_of(2), estimator="credit")
    features = torch.rand(16, 2, len(SAME_DATA_FEATURES), generator=torch.Generator().manual_seed(0))
    features[:, 0, 0], features[:, 1, 0] = 0.0, 1.0  # what tells the two teachers apart: their loss
    before = policy.act(features)
    credit = torch.stack([-torch.ones(16), torch.ones(16)], dim=1)
    policy.record(before, Feedback(loss_total=0.0, loss_ce=0.0, credit=credit))
    learner = policy.make_learner()
    assert isinstance(learner, CreditLearner)
    policy.load_parameters(learner.learn([policy.collect_transitions()]))
    after = policy.act(features)
    assert bool((after[:, 0] > before[:, 0]).all())


def test_the_uniform_prior_holds_the_weights_at_the_temperature_of_the_credit():
    """With β = uniform_prior, a fixed credit's optimum is w ∝ exp(−ĉ/β): many updates on one
    credit drive the weights towards it, a larger β keeps them nearer uniform, and β = 0 goes to
    the corner."""
    features = torch.rand(16, 2, len(SAME_DATA_FEATURES), generator=torch.Generator().manual_seed(0))
    features[:, 0, 0], features[:, 1, 0] = 0.0, 1.0
    credit = torch.stack([-torch.ones(16), torch.ones(16)], dim=1)
    final = {}
    for prior in (0.0, 1.0, 4.0):
        policy = LearnedPolicy(context_of(2), estimator="credit", uniform_prior=prior, lr=0.05)
        learner = policy.make_learner()
        for _ in range(150):
            policy.record(policy.act(features), Feedback(loss_total=0.0, loss_ce=0.0, credit=credit))
            policy.load_parameters(learner.learn([policy.collect_transitions()]))
        final[prior] = float(policy.act(features)[:, 0].mean())
    assert final[0.0] > 0.97 > final[1.0] > final[4.0] > 0.5, final


def test_the_uniform_prior_defaults_to_its_online_value_online_and_to_none_offline():
    from policies.credit import ONLINE_UNIFORM_PRIOR
    assert LearnedPolicy(context_of(2, online=True)).make_learner().uniform_prior == ONLINE_UNIFORM_PRIOR > 0
    assert LearnedPolicy(context_of(2)).make_learner().uniform_prior == 0.0
    assert LearnedPolicy(context_of(2, online=True), uniform_prior=0.0).make_learner().uniform_prior == 0.0


def context_of(teachers: int, online: bool = False):
    from codistill.policy import PolicyContext
    return PolicyContext(teacher_names=tuple(f"t{k}" for k in range(teachers)), num_classes=10,
                         device=torch.device("cpu"), online=online, student_index=0, student_name="s", total_epochs=2,
                         steps_per_epoch=5, seed=0, probe_available=True)


def test_credit_is_computed_on_sync_steps_only_and_moves_the_weights():
    """The credit estimator in a cohort: the credit (and its SNR) on the steps before a sync only,
    a learner update at each, the policy acting with its mean (uniform until the first update, then
    not), no probe losses before/after measured (the credit needs one probe pass)."""
    raw = tiny_raw()
    raw["data"]["probe_fraction"] = 0.1
    raw["distillation"]["policy"] = {"name": "policies.learned:LearnedPolicy",
                                     "params": {"estimator": "credit", "update_every": 2, "probe_loss": "mae"}}
    cohort = SequentialCohort(parse_config(raw))
    steps = cohort.train_epoch(0)
    for step, peers in enumerate(steps):
        for metrics in peers:
            assert ("policy/credit_snr" in metrics) == (step % 2 == 1), (step, sorted(metrics))
            assert "policy/probe_loss_after" not in metrics
    assert steps[0][0]["policy/weight/cnn"] == pytest.approx(0.5)  # an untrained scorer: uniform
    assert cohort.learner.updates == len(steps) // 2
    assert abs(steps[-1][0]["policy/weight/cnn"] - 0.5) > 1e-4


def test_a_credit_run_resumes_to_the_result_of_an_uninterrupted_run(tmp_path):
    raw = tiny_raw(epochs=3)
    raw["data"]["probe_fraction"] = 0.1
    raw["distillation"]["policy"] = {"name": "policies.learned:LearnedPolicy",
                                     "params": {"estimator": "credit", "update_every": 3}}  # syncs straddle epochs
    config = parse_config(raw)
    prepare_run_dir(tmp_path / "straight", config)
    straight = run_cohort(config, tmp_path / "straight", SequentialCohort)
    prepare_run_dir(tmp_path / "split", config)
    assert run_cohort(config, tmp_path / "split", SequentialCohort, stop_after_epochs=2)["epochs_done"] == 2
    resumed = run_cohort(config, tmp_path / "split", SequentialCohort, resume=True)
    def history(results):
        return [[(p["val_accuracy"], p["train_loss"], p["teacher_weights"]) for p in h["peers"]]
                for h in results["history"]]
    assert resumed["peers"] == straight["peers"] and history(resumed) == history(straight)
    learner = torch.load(tmp_path / "split" / "checkpoints" / "epoch_0003" / "policy_learner.pt", weights_only=True)
    assert {"scorer", "optimizer", "scale", "updates"} <= set(learner) and learner["updates"] > 0


def test_the_ensembles_graph_reaches_the_weights_and_no_teacher():
    """In ensemble mode with weights that require grad, the KD term's gradient reaches the weights
    (for their credit) but not a teacher's logits, even ones that would carry a graph."""
    from codistill.methods import MethodContext, build_method
    from codistill.models import ModelOutput
    from codistill.peer.teachers import ensemble_view
    from codistill.progress import Progress

    kd = build_method("kd", MethodContext(num_classes=10, student_feature_shapes=[], teacher_feature_shapes=[],
                                          total_epochs=1, online=False), {})
    teachers = [torch.randn(4, 10, requires_grad=True) for _ in range(2)]
    weights = torch.full((4, 2), 0.5, requires_grad=True)
    student = ModelOutput(logits=torch.randn(4, 10, requires_grad=True), features=[])
    view = ensemble_view([TeacherView(logits=t) for t in teachers], weights)
    loss = kd(student, view, torch.zeros(4, dtype=torch.long), Progress(0, 0, 1, 1))["kd"].mean()
    loss.backward()
    assert weights.grad is not None and bool(weights.grad.abs().sum() > 0)
    assert all(t.grad is None for t in teachers)
    plain = ensemble_view([TeacherView(logits=t) for t in teachers], weights.detach())
    assert not plain.weights_graph and not plain.logits.requires_grad
