"""A learned teacher-selection policy: per-example teacher weights, learned from the student's
progress on a held-out probe split, by one of two estimators (``estimator``): ``credit``, a
deterministic policy gradient through the dense per-(example, teacher) credit, or ``ppo``.

Use (online or offline)::

    data: {probe_fraction: 0.1}
    distillation:
      policy: {name: "policies.learned:LearnedPolicy", params: {update_every: 1}}

and to start from a policy trained in :class:`policies.environment.TeacherSelectionEnv`
(``jobs/train_policy.py``): ``params: {checkpoint: PATH, learn: false}`` (frozen: acts with its
mean, needs no probe) or ``learn: true`` (keeps learning).

**Observation** (:func:`observation`), per example ``b`` and candidate teacher ``k``, nothing that
depends on the teacher's architecture (``p_k`` the teacher's softmax, ``q`` the student's, ``y``
the given, possibly noisy label, ``C`` classes; losses are divided by ``log C`` so a policy
transfers between class counts, and clipped at 10):

=====================  =========================================================================
``teacher_ce``         ``−log p_k(y) / log C``: the teacher's loss on the given label
``teacher_confidence`` ``max_c p_k(c)``
``teacher_entropy``    ``H(p_k) / log C``
``kl_teacher_student`` ``KL(p_k ‖ q) / log C``
``agrees_with_student`` ``1[argmax p_k = argmax q]``
``agrees_with_teachers`` share of the other candidates with the same argmax (0 with one teacher)
``kl_teacher_others``  ``KL(p_k ‖ mean of the other candidates' p) / log C`` (0 with one teacher)
``progress``           share of training done, ``t / T``
``student_ce``         ``−log q(y) / log C``: the student's own loss
=====================  =========================================================================

**Policy.** One small MLP (shared by all teachers) maps the features of ``(b, k)`` to a score
``μ_bk``; the action is a logit per example and teacher, ``a_·k ~ N(μ_·k, σ²I + σ_s²11ᵀ)``
independently per teacher, and the weights are ``w_b = softmax_k(a_b)``. The covariance over the
batch's examples has a per-example part ``σ`` and a part ``σ_s`` shared by the batch (both learned):
a reward is one number per batch, and exploration that moves a teacher's weight on the whole
batch is what it can attribute (with independent per-example noise the batch mean of the weights
barely moves, ``∝ σ/√B``, and the gradient drowns in noise). Scoring every teacher with the same
network and normalizing over teachers makes the weights equivariant to the teachers' order and
defined for any number of them. Frozen (``learn: false``), the policy acts with its mean,
``softmax_k(μ_b)``. The last layer starts at zero: an untrained policy weights teachers uniformly.

**Probe loss** (``probe_loss``): the student's loss on a probe batch (``data.probe_fraction`` of
the training split, never trained on, labels as noisy as the rest): cross-entropy (``ce``) or the
mean absolute error ``1 − p_y`` (``mae``), which symmetric label noise does not bias (Ghosh et
al. 2017): cross-entropy on noisy labels rewards soft, uncertain teachers.

**Credit estimator** (``estimator: credit``, :class:`CreditLearner`): on each step before a sync
(every ``update_every`` steps) the peer computes the dense credit ``c[b, k] = ∂/∂w[b, k]
L_probe(θ − η ∇θ L_train(θ; w))`` of every weight (the one-step lookahead of Learning to Reweight,
Ren et al. 2018, per teacher; :func:`codistill.peer.feedback.dense_credit`), and the learner
descends ``Σ_k c[b, k] softmax_k(μ_φ(o_b))``: a deterministic policy gradient with an exact
first-order critic, one number per example and teacher instead of one per batch. Peers act with
the mean: no exploration noise trains the student.

**Reward** (``estimator: ppo``, :func:`probe_reward`): the relative change of the probe loss from
before to after the update those weights produced, ``(L_before − L_after) / L_before``.

**PPO learner** (:class:`PPOLearner`): PPO-clip (Schulman et al. 2017) in the style of CleanRL's
``ppo_continuous_action.py``. The advantage of a step is its reward minus a running baseline (EMA
of rewards), divided by the running mean absolute deviation, clipped to ±5. The loss is
``−E[min(ρA, clip(ρ, 1±ε)A)] − c_H · H(π)`` with ``ρ`` the probability ratio of the step's whole
``[B, K]`` action, Adam, gradient-norm clipping. With ``update_epochs: 1`` and one minibatch, an
update is exactly REINFORCE with a baseline (``ρ = 1``: the gradient is ``−A ∇log π(a|s)``).
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from codistill import metrics as m
from codistill.data.base import mix_seed
from codistill.errors import ConfigError
from codistill.peer.feedback import CREDIT_SCOPES, PROBE_LOSSES
from codistill.policy import Feedback, PolicyContext, PolicyLearner, TeacherBatch, TeacherWeightingPolicy, sync_due
from codistill.progress import Progress

if TYPE_CHECKING:
    from codistill.config import RunConfig

FEATURES = ("teacher_ce", "teacher_confidence", "teacher_entropy", "kl_teacher_student", "agrees_with_student",
            "agrees_with_teachers", "kl_teacher_others", "progress", "student_ce")
SAVED_FORMAT = "codistill-learned-teacher-policy/1"
ESTIMATORS = ("credit", "ppo")
FEATURE_CLIP = 10.0
#: ``uniform_prior`` online when it is not set (offline: 0). Online the candidates are peers of the
#: same run, none bad by construction; without the prior the head credit moved most of the weight
#: to the best peer and to the student itself and lost 0.4–1.6 points to uniform (docs/policies.md).
ONLINE_UNIFORM_PRIOR = 0.3


# ---------------------------------------------------------------------------------------------
# Observation


def observation(student_logits: Tensor, teacher_logits: Tensor, targets: Tensor, progress: float) -> Tensor:
    """Features ``[B, K, len(FEATURES)]`` of every (example, teacher) pair; see the module docstring."""
    count, batch, classes = teacher_logits.shape
    log_c = math.log(max(classes, 2))
    log_p = F.log_softmax(teacher_logits.float(), dim=-1)  # [K, B, C]
    p = log_p.exp()
    log_q = F.log_softmax(student_logits.float(), dim=-1)  # [B, C]
    labels = targets.view(1, batch, 1).expand(count, batch, 1)
    teacher_ce = -log_p.gather(-1, labels).squeeze(-1) / log_c
    confidence, votes = p.max(dim=-1)
    entropy = -(p * log_p).sum(-1) / log_c
    kl_student = (p * (log_p - log_q)).sum(-1) / log_c
    agrees_student = (votes == log_q.argmax(-1)).float()
    if count > 1:
        one_hot = F.one_hot(votes, classes).float()  # [K, B, C]
        same_votes = (one_hot.sum(0, keepdim=True) - one_hot).gather(-1, votes.unsqueeze(-1)).squeeze(-1)
        agrees_teachers = same_votes / (count - 1)
        others = (p.sum(0, keepdim=True) - p) / (count - 1)
        kl_others = (p * (log_p - others.clamp_min(1e-12).log())).sum(-1) / log_c
    else:
        agrees_teachers = kl_others = torch.zeros_like(teacher_ce)
    student_ce = (-log_q.gather(-1, targets.view(batch, 1)).view(1, batch) / log_c).expand(count, batch)
    stacked = torch.stack([teacher_ce, confidence, entropy, kl_student, agrees_student, agrees_teachers, kl_others,
                           torch.full_like(teacher_ce, float(progress)), student_ce], dim=-1)  # [K, B, F]
    return stacked.clamp(-FEATURE_CLIP, FEATURE_CLIP).transpose(0, 1).contiguous()


def probe_reward(loss_before: float, loss_after: float) -> float:
    """Relative improvement of the student's probe loss through one update."""
    return (loss_before - loss_after) / max(loss_before, 1e-8)


# ---------------------------------------------------------------------------------------------
# The policy network: one scorer shared by every teacher, plus the exploration scale


class TeacherScorer(nn.Module):
    """Features ``[B, K, F]`` → mean action logits ``[B, K]``; the learned exploration scales.

    ``log_std`` is the per-example part ``log σ``, ``log_std_shared`` the batch-shared ``log σ_s``.
    """

    def __init__(self, hidden: int, init_std: float) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(len(FEATURES), hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh(),
                                 nn.Linear(hidden, 1))
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)
        self.log_std = nn.Parameter(torch.tensor(math.log(init_std)))
        self.log_std_shared = nn.Parameter(torch.tensor(math.log(init_std)))

    def forward(self, features: Tensor) -> Tensor:
        return self.net(features).squeeze(-1)

    def sample(self, mean: Tensor, generator: torch.Generator) -> Tensor:
        """``a = μ + σ ε + σ_s η`` with ``ε`` per example and teacher, ``η`` per teacher."""
        count = mean.shape[-1]
        return (mean + self.log_std.exp() * torch.randn(mean.shape, generator=generator)
                + self.log_std_shared.exp() * torch.randn(count, generator=generator))

    def log_prob(self, mean: Tensor, action: Tensor) -> Tensor:
        """``log N(a_·k; μ_·k, σ²I + σ_s²11ᵀ)`` summed over teachers: one number per batch action
        ``[..., B, K]``.

        With ``v = σ²``, ``g = σ_s²`` and ``d = a − μ`` over the ``B`` examples: ``Σ⁻¹ = (I − g/(v + Bg)
        11ᵀ)/v`` and ``log det Σ = (B − 1) log v + log(v + Bg)`` (Sherman–Morrison).
        """
        size = action.shape[-2]
        v, g = (2 * self.log_std).exp(), (2 * self.log_std_shared).exp()
        d = action - mean
        quadratic = ((d ** 2).sum(-2) - g / (v + size * g) * d.sum(-2) ** 2) / v  # [..., K]
        log_det = (size - 1) * 2 * self.log_std + torch.log(v + size * g)
        return (-0.5 * (quadratic + log_det + size * math.log(2 * math.pi))).sum(-1)

    def entropy(self, size: int) -> Tensor:
        """Differential entropy of the action per action dimension (per example and teacher)."""
        v, g = (2 * self.log_std).exp(), (2 * self.log_std_shared).exp()
        log_det = (size - 1) * 2 * self.log_std + torch.log(v + size * g)
        return 0.5 * (1 + math.log(2 * math.pi)) + log_det / (2 * size)


def save_policy(path: str | Path, scorer: TeacherScorer) -> None:
    """Write a policy in the safe format (tensors and plain containers: ``torch.load(weights_only=True)``)."""
    hidden = scorer.net[0].out_features
    torch.save({"format": SAVED_FORMAT, "features": list(FEATURES), "hidden": hidden,
                "scorer": {k: v.detach().cpu() for k, v in scorer.state_dict().items()}}, Path(path))


def load_policy(path: str | Path) -> dict[str, Any]:
    """A saved policy; ``ValueError`` when the file is not one or was trained on other features."""
    try:
        saved = torch.load(Path(path).expanduser(), map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any unreadable file is reported the same way
        raise ValueError(f"cannot read a saved policy from {path}: {error}") from None
    if not isinstance(saved, dict) or saved.get("format") != SAVED_FORMAT:
        raise ValueError(f"{path} is not a saved teacher policy ({SAVED_FORMAT})")
    if tuple(saved.get("features", ())) != FEATURES:
        raise ValueError(f"{path} was trained on features {saved.get('features')}, this policy observes "
                         f"{list(FEATURES)}")
    return saved


# ---------------------------------------------------------------------------------------------
# The policy: acts in every peer


class LearnedPolicy(TeacherWeightingPolicy):
    """Per-example teacher weights from :class:`TeacherScorer`; learns online unless ``learn`` is false.

    Parameters (``distillation.policy.params``): ``checkpoint`` a saved policy to start from;
    ``learn``; ``estimator`` (``credit`` | ``ppo``); ``probe_loss`` (``ce`` | ``mae``); ``credit_scope``
    (``head`` | ``network``: the parameters the credit's virtual step moves); ``uniform_prior`` β of
    :class:`CreditLearner` (default :data:`ONLINE_UNIFORM_PRIOR` online, 0 offline);
    ``update_every`` steps between learner updates (and, with ``credit``, between credits);
    ``probe_batch_size``; ``hidden`` width of the scorer; ``init_std`` initial exploration σ (PPO);
    the learners' ``lr``, ``update_epochs``, ``max_grad_norm``; PPO's ``minibatches``, ``clip``,
    ``entropy_coef``; ``baseline_decay`` of the reward baseline (PPO) or of the credit's scale.
    """

    def __init__(self, context: PolicyContext, checkpoint: str | None = None, learn: bool = True,
                 update_every: int = 1, probe_batch_size: int = 64, hidden: int = 32, init_std: float = 1.0,
                 lr: float = 1e-2, update_epochs: int = 2, minibatches: int = 1, clip: float = 0.2,
                 entropy_coef: float = 1e-3, max_grad_norm: float = 0.5, baseline_decay: float = 0.9,
                 estimator: str = "credit", probe_loss: str = "mae", credit_scope: str = "head",
                 uniform_prior: float | None = None) -> None:
        super().__init__(context)
        saved = load_policy(checkpoint) if checkpoint else None
        with torch.random.fork_rng(devices=[]):  # the same initial network in every peer
            torch.manual_seed(mix_seed(context.seed, 0x7EAC))
            self.scorer = TeacherScorer(saved["hidden"] if saved else hidden, init_std)
        if saved:
            self.scorer.load_state_dict(saved["scorer"])
        self.learning, self.estimator, self.probe_loss, self.credit_scope = learn, estimator, probe_loss, credit_scope
        self.update_every = update_every if learn else 0
        self.probe_batch_size = probe_batch_size if learn else 0
        self.learner_settings = {"lr": lr, "update_epochs": update_epochs, "minibatches": minibatches, "clip": clip,
                                 "entropy_coef": entropy_coef, "max_grad_norm": max_grad_norm,
                                 "baseline_decay": baseline_decay, "seed": mix_seed(context.seed, 0x1EA4)}
        if uniform_prior is None:
            uniform_prior = ONLINE_UNIFORM_PRIOR if context.online else 0.0
        self.uniform_prior = uniform_prior
        # Each peer explores with its own stream, independent of the peer's training randomness.
        self.generator = torch.Generator().manual_seed(mix_seed(context.seed, context.student_index, 0xAC7))
        self._pending: dict[str, Tensor] | None = None
        self._transitions: list[dict[str, Tensor]] = []

    @classmethod
    def check_params(cls, params: dict[str, Any], config: "RunConfig") -> None:
        super().check_params(params, config)
        path = "distillation.policy.params"
        for name in ("update_every", "probe_batch_size", "hidden", "update_epochs", "minibatches"):
            value = params.get(name, 1)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{path}.{name}", f"must be an integer ≥ 1, got {value!r}")
        for name in ("init_std", "lr", "clip", "max_grad_norm"):
            value = params.get(name, 1.0)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ConfigError(f"{path}.{name}", f"must be a number > 0, got {value!r}")
        if not 0.0 <= params.get("baseline_decay", 0.9) < 1.0:
            raise ConfigError(f"{path}.baseline_decay", "must lie in [0, 1)")
        prior = params.get("uniform_prior")
        if prior is not None and (isinstance(prior, bool) or not isinstance(prior, (int, float))
                                  or not 0.0 <= prior < math.inf):
            raise ConfigError(f"{path}.uniform_prior", f"must be a number ≥ 0, got {prior!r}")
        for name, known, default in (("estimator", ESTIMATORS, "credit"), ("probe_loss", PROBE_LOSSES, "mae"),
                                     ("credit_scope", CREDIT_SCOPES, "head")):
            if params.get(name, default) not in known:
                raise ConfigError(f"{path}.{name}", f"must be one of {', '.join(known)}, got {params[name]!r}")
        if not isinstance(params.get("learn", True), bool):
            raise ConfigError(f"{path}.learn", f"must be true or false, got {params['learn']!r}")
        checkpoint = params.get("checkpoint")
        if checkpoint is not None:
            if not isinstance(checkpoint, str) or not Path(checkpoint).expanduser().is_file():
                raise ConfigError(f"{path}.checkpoint", f"no such file: {checkpoint}")
            try:
                saved = load_policy(checkpoint)
            except ValueError as error:
                raise ConfigError(f"{path}.checkpoint", str(error)) from None
            if "hidden" in params and params["hidden"] != saved["hidden"]:
                raise ConfigError(f"{path}.hidden", f"the saved policy has hidden={saved['hidden']}")
        if params.get("learn", True) and config.data.probe_fraction == 0:
            raise ConfigError("data.probe_fraction", "the learned teacher policy needs a probe split to learn from: "
                              "set it in (0, 0.5], or give the policy learn: false and a checkpoint")

    # -- acting ---------------------------------------------------------------------------------

    def wants_probe_losses(self, progress: Progress) -> bool:
        return self.learning and self.estimator == "ppo"

    def wants_credit(self, progress: Progress) -> bool:
        return self.learning and self.estimator == "credit" and sync_due(self, progress)

    def weights(self, batch: TeacherBatch) -> Tensor:
        features = observation(batch.student_logits, batch.teacher_logits, batch.targets, batch.progress.fraction)
        return self.act(features).to(batch.teacher_logits.device)

    @torch.no_grad()
    def act(self, features: Tensor) -> Tensor:
        """Weights ``[B, K]`` for features ``[B, K, F]``: sampled while PPO learns (and remembered for
        :meth:`record`), the distribution's mean when frozen or learning from credit (then the
        observation is remembered for :meth:`record_credit`)."""
        features = features.detach().float().cpu()
        mean = self.scorer(features)
        if not self.learning or self.estimator == "credit":
            self._pending = {"observation": features} if self.learning else None
            return mean.softmax(-1)
        action = self.scorer.sample(mean, self.generator)
        self._pending = {"observation": features, "action": action, "logprob": self.scorer.log_prob(mean, action)}
        return action.softmax(-1)

    def feedback(self, batch: TeacherBatch, weights: Tensor, feedback: Feedback) -> dict[str, float] | None:
        if self._pending is None:
            return None
        if self.estimator == "credit":
            return None if feedback.credit is None else self.record_credit(weights.detach().cpu(), feedback.credit)
        return self.record(probe_reward(feedback.probe_loss_before, feedback.probe_loss_after))

    def record_credit(self, weights: Tensor, credit: Tensor) -> dict[str, float]:
        """Complete the last observation's transition with the dense credit of the weights used
        ``[B, K]``, centred on each example's mixture (``c[b, k] − Σ_j w[b, j] c[b, j]``: only
        differences between teachers move a softmax); return its signal-to-noise to log."""
        if self._pending is None:
            raise RuntimeError("record_credit() without a preceding observation")
        centred = credit.float() - (weights * credit.float()).sum(-1, keepdim=True)
        self._transitions.append({**self._pending, "credit": centred})
        self._pending = None
        return {m.POLICY_CREDIT_SNR: credit_snr(centred)}

    def record(self, reward: float) -> dict[str, float]:
        """Complete the last action's transition with its reward; return scalars to log."""
        if self._pending is None:
            raise RuntimeError("record() without a preceding sampled action")
        size = self._pending["action"].shape[0]
        self._transitions.append({**self._pending, "reward": torch.tensor(float(reward))})
        self._pending = None
        return {m.POLICY_REWARD: float(reward), m.POLICY_ENTROPY: float(self.scorer.entropy(size).detach())}

    # -- learning -------------------------------------------------------------------------------

    def collect_transitions(self) -> list[dict[str, Tensor]]:
        transitions, self._transitions = self._transitions, []
        return transitions

    def load_parameters(self, parameters: dict[str, Tensor]) -> None:
        self.scorer.load_state_dict(parameters)

    def make_learner(self) -> PolicyLearner | None:
        if not self.learning:
            return None
        if self.estimator == "credit":
            settings = {key: self.learner_settings[key] for key in ("lr", "update_epochs", "max_grad_norm",
                                                                   "baseline_decay")}
            return CreditLearner(copy.deepcopy(self.scorer), **settings, uniform_prior=self.uniform_prior)
        return PPOLearner(copy.deepcopy(self.scorer), **self.learner_settings)

    def save(self, path: str | Path) -> None:
        save_policy(path, self.scorer)

    def state_dict(self) -> dict[str, Any]:
        return {"scorer": self.scorer.state_dict(), "generator": self.generator.get_state(),
                "transitions": list(self._transitions)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.scorer.load_state_dict(state["scorer"])
        self.generator.set_state(state["generator"])
        self._transitions = list(state["transitions"])


# ---------------------------------------------------------------------------------------------
# The learner: one per cohort, fed every peer's transitions


class PPOLearner(PolicyLearner):
    """PPO-clip on the transitions of all peers; see the module docstring for the loss."""

    def __init__(self, scorer: TeacherScorer, *, lr: float, update_epochs: int, minibatches: int, clip: float,
                 entropy_coef: float, max_grad_norm: float, baseline_decay: float, seed: int) -> None:
        self.scorer = scorer
        self.optimizer = torch.optim.Adam(scorer.parameters(), lr=lr, eps=1e-5)
        self.update_epochs, self.minibatches, self.clip = update_epochs, minibatches, clip
        self.entropy_coef, self.max_grad_norm, self.baseline_decay = entropy_coef, max_grad_norm, baseline_decay
        self.baseline = torch.zeros(())  # EMA of rewards
        self.scale = torch.zeros(())  # EMA of |reward − baseline|
        self.updates = 0
        self.generator = torch.Generator().manual_seed(seed)
        self.metrics: list[dict[str, float]] = []

    def advantages(self, rewards: Tensor) -> Tensor:
        """``(r − baseline) / scale``, clipped to ±5, then the running statistics take these rewards."""
        if self.updates == 0 and float(self.scale) == 0.0:  # first rewards ever: start the statistics from them
            self.baseline = rewards.mean()
            self.scale = (rewards - self.baseline).abs().mean().clamp_min(rewards.abs().mean())
        advantages = ((rewards - self.baseline) / self.scale.clamp_min(1e-8)).clamp(-5.0, 5.0)
        for reward in rewards:
            self.scale = self.baseline_decay * self.scale + (1 - self.baseline_decay) * (reward - self.baseline).abs()
            self.baseline = self.baseline_decay * self.baseline + (1 - self.baseline_decay) * reward
        return advantages

    @torch.enable_grad()
    def learn(self, transitions_per_peer: list[list[dict[str, Tensor]]]) -> dict[str, Tensor]:
        owners = [peer for peer, transitions in enumerate(transitions_per_peer) for _ in transitions]
        batch = [t for transitions in transitions_per_peer for t in transitions]
        self.metrics = [{} for _ in transitions_per_peer]
        if not batch:
            return scorer_parameters(self.scorer)
        advantages = self.advantages(torch.stack([t["reward"] for t in batch]))

        loss = torch.zeros(())
        for _ in range(self.update_epochs):
            order = torch.randperm(len(batch), generator=self.generator)
            for chunk in order.chunk(min(self.minibatches, len(batch))):
                losses = []
                for members in same_shape_groups(batch, chunk.tolist(), "action"):  # stacked: one forward pass each
                    observation = torch.stack([batch[i]["observation"] for i in members])  # [n, B, K, F]
                    action = torch.stack([batch[i]["action"] for i in members])  # [n, B, K]
                    old_logprob = torch.stack([batch[i]["logprob"] for i in members])
                    advantage = advantages[members]
                    ratio = (self.scorer.log_prob(self.scorer(observation), action) - old_logprob).exp()
                    policy_loss = torch.max(-advantage * ratio, -advantage * ratio.clamp(1 - self.clip, 1 + self.clip))
                    entropy = self.scorer.entropy(action.shape[-2])
                    losses.append((policy_loss - self.entropy_coef * entropy).sum())
                loss = torch.stack(losses).sum() / len(chunk)
                clipped_step(self.optimizer, loss, self.scorer, self.max_grad_norm)
        self.updates += 1

        for peer in range(len(transitions_per_peer)):
            mine = [float(advantages[i]) for i, owner in enumerate(owners) if owner == peer]
            self.metrics[peer] = {m.LEARNER_LOSS: float(loss.detach()), m.LEARNER_UPDATES: float(self.updates)}
            if mine:
                self.metrics[peer][m.POLICY_ADVANTAGE] = sum(mine) / len(mine)
        return scorer_parameters(self.scorer)

    def state_dict(self) -> dict[str, Any]:
        return {"scorer": self.scorer.state_dict(), "optimizer": self.optimizer.state_dict(),
                "baseline": self.baseline, "scale": self.scale, "updates": self.updates,
                "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.scorer.load_state_dict(state["scorer"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.baseline, self.scale, self.updates = state["baseline"], state["scale"], int(state["updates"])
        self.generator.set_state(state["generator"])


class CreditLearner(PolicyLearner):
    """A deterministic policy gradient through the dense credit, an exact first-order critic.

    To first order, the probe loss after a step with weights ``w'`` near ``w`` is
    ``L(w) + Σ_bk c[b, k] (w'[b, k] − w[b, k])`` (:func:`codistill.peer.feedback.dense_credit`, the
    lookahead of Ren et al. 2018). The learner descends its model of it,
    ``J(φ) = mean_transitions mean_b [Σ_k ĉ[b, k] w_bk + β KL(w_b ‖ uniform)]``, ``w_b =
    softmax_k(μ_φ(o_b))``, with ``ĉ`` the centred credit divided by a running scale (EMA of its mean
    absolute value) and clipped to ±5, and ``β`` the ``uniform_prior`` (0: none; for a fixed
    credit the optimum is ``w ∝ exp(−ĉ/β)``, so β is the temperature of the choice), by
    ``update_epochs`` Adam steps with gradient-norm clipping. No exploration: every peer acts with
    the mean, so no student trains on random weightings.
    """

    def __init__(self, scorer: TeacherScorer, *, lr: float, update_epochs: int, max_grad_norm: float,
                 baseline_decay: float, uniform_prior: float = 0.0) -> None:
        self.scorer = scorer
        self.optimizer = torch.optim.Adam(scorer.parameters(), lr=lr, eps=1e-5)
        self.update_epochs, self.max_grad_norm, self.decay = update_epochs, max_grad_norm, baseline_decay
        self.uniform_prior = uniform_prior
        self.scale = torch.zeros(())  # EMA of mean |credit|
        self.updates = 0
        self.metrics: list[dict[str, float]] = []

    def normalized(self, credit: Tensor) -> Tensor:
        """``credit / scale`` clipped to ±5; the running scale then takes this credit."""
        size = credit.abs().mean()
        self.scale = size if float(self.scale) == 0.0 else self.decay * self.scale + (1 - self.decay) * size
        return (credit / self.scale.clamp_min(1e-12)).clamp(-5.0, 5.0)

    @torch.enable_grad()
    def learn(self, transitions_per_peer: list[list[dict[str, Tensor]]]) -> dict[str, Tensor]:
        batch = [t for transitions in transitions_per_peer for t in transitions]
        self.metrics = [{} for _ in transitions_per_peer]
        if not batch:
            return scorer_parameters(self.scorer)
        credits = [self.normalized(t["credit"]) for t in batch]
        loss = torch.zeros(())
        for _ in range(self.update_epochs):
            losses = []
            for members in same_shape_groups(batch, list(range(len(batch))), "credit"):
                observation = torch.stack([batch[i]["observation"] for i in members])  # [n, B, K, F]
                credit = torch.stack([credits[i] for i in members])  # [n, B, K]
                log_weights = self.scorer(observation).log_softmax(-1)
                weights = log_weights.exp()
                modelled = (credit * weights).sum(-1)
                # KL(w_b ‖ uniform) = Σ_k w log w + log K
                divergence = (weights * log_weights).sum(-1) + math.log(log_weights.shape[-1])
                losses.append((modelled + self.uniform_prior * divergence).mean(-1).sum())
            loss = torch.stack(losses).sum() / len(batch)
            clipped_step(self.optimizer, loss, self.scorer, self.max_grad_norm)
        self.updates += 1
        self.metrics = [{m.LEARNER_LOSS: float(loss.detach()), m.LEARNER_UPDATES: float(self.updates)}
                        for _ in transitions_per_peer]
        return scorer_parameters(self.scorer)

    def state_dict(self) -> dict[str, Any]:
        return {"scorer": self.scorer.state_dict(), "optimizer": self.optimizer.state_dict(), "scale": self.scale,
                "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.scorer.load_state_dict(state["scorer"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scale, self.updates = state["scale"], int(state["updates"])


def scorer_parameters(scorer: TeacherScorer) -> dict[str, Tensor]:
    """A detached copy of the scorer's parameters: what a learner hands the peers after an update."""
    return {k: v.detach().clone() for k, v in scorer.state_dict().items()}


def clipped_step(optimizer: torch.optim.Optimizer, loss: Tensor, scorer: TeacherScorer, max_grad_norm: float) -> None:
    """One optimizer step on ``loss`` with the scorer's gradient norm clipped to ``max_grad_norm``."""
    optimizer.zero_grad()
    loss.backward()
    nn.utils.clip_grad_norm_(scorer.parameters(), max_grad_norm)
    optimizer.step()


def credit_snr(credit: Tensor) -> float:
    """Mean over teachers of ``|mean_b c[b, k]| / (std_b c[b, k] / √B)``: how far each teacher's
    batch credit stands out of its per-example spread (0 for a batch of one)."""
    size = credit.shape[0]
    if size < 2:
        return 0.0
    error = credit.std(0) / math.sqrt(size)
    return float((credit.mean(0).abs() / error.clamp_min(1e-12)).mean())


def same_shape_groups(transitions: list[dict[str, Tensor]], indices: list[int], key: str) -> list[list[int]]:
    """``indices`` grouped by the shape of their ``key`` tensor (batch size, teachers), in first-seen order."""
    groups: dict[tuple[int, ...], list[int]] = {}
    for index in indices:
        groups.setdefault(tuple(transitions[index][key].shape), []).append(index)
    return list(groups.values())
