"""A learned teacher-selection policy: per-example teacher weights, learned from the student's
progress on a held-out probe split, by one of two estimators (``estimator``): ``credit``
(:mod:`policies.credit`), a deterministic policy gradient through the dense per-(example, teacher)
credit, or ``ppo`` (:mod:`policies.ppo`).

Use (online or offline)::

    data: {probe_fraction: 0.1}
    distillation:
      policy: {name: "policies.learned:LearnedPolicy", params: {update_every: 2}}

and to start from a policy trained in :class:`policies.environment.TeacherSelectionEnv`
(``jobs/train_policy.py``; :mod:`policies.checkpoint`): ``params: {checkpoint: PATH, learn: false}``
(frozen: acts with its mean, needs no probe) or ``learn: true`` (keeps learning).

The policy observes the features of :mod:`policies.features` and scores them with the
:class:`~policies.scorer.TeacherScorer`; the weights are ``softmax`` over teachers of the scores
(frozen, or learning from credit) or of a sampled action (PPO).

**Probe loss** (``probe_loss``): the student's loss on a probe batch (``data.probe_fraction`` of
the training split, never trained on, labels as noisy as the rest): cross-entropy (``ce``) or the
mean absolute error ``1 − p_y`` (``mae``), which symmetric label noise does not bias (Ghosh et
al. 2017): cross-entropy on noisy labels rewards soft, uncertain teachers.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from codistill.checks import boolean, non_negative, numeric, one_of, optional, positive, positive_int, rate
from codistill.data.base import mix_seed
from codistill.errors import ConfigError
from codistill.policy import (
    CREDIT_SCOPES,
    PROBE_LOSSES,
    Feedback,
    FeedbackRequest,
    PolicyContext,
    PolicyLearner,
    TeacherBatch,
    TeacherWeightingPolicy,
    sync_due,
)
from codistill.progress import Progress
from policies.checkpoint import load_policy, save_policy
from policies.credit import ONLINE_CREDIT_EVERY, ONLINE_UNIFORM_PRIOR, CreditEstimator
from policies.features import observation, observed_features
from policies.ppo import PPOEstimator
from policies.scorer import TeacherScorer, weights_from_scores

if TYPE_CHECKING:
    from codistill.config import RunConfig

ESTIMATORS = ("credit", "ppo")
#: ``uniform_floor`` when the peers hold their own shards and it is not set: half of every example's
#: weight stays uniform, which kept every seed of the partition evidence above uniform − 0.5 (without
#: it a seed fell 2.4 points below uniform; docs/partitions.md).
PARTITION_UNIFORM_FLOOR = 0.5


class LearnedPolicy(TeacherWeightingPolicy):
    """Per-example teacher weights from :class:`TeacherScorer`; learns online unless ``learn`` is false.

    Parameters (``distillation.policy.params``): ``checkpoint`` a saved policy to start from;
    ``learn``; ``estimator`` (``credit`` | ``ppo``); ``probe_loss`` (``ce`` | ``mae``); ``credit_scope``
    (``head`` | ``network``: the parameters the credit's virtual step moves); ``uniform_prior`` β of
    :class:`~policies.credit.CreditLearner` (default :data:`~policies.credit.ONLINE_UNIFORM_PRIOR`
    online, 0 offline); ``update_every`` steps between learner updates (and, with ``credit``,
    between credits; default :data:`~policies.credit.ONLINE_CREDIT_EVERY` online with ``credit``,
    else 1); ``probe_batch_size``; ``hidden`` width of the scorer; ``init_std`` initial
    exploration σ (PPO); the learners' ``lr``, ``update_epochs``, ``max_grad_norm``; PPO's
    ``minibatches``, ``clip``, ``entropy_coef``; ``baseline_decay`` of the reward baseline (PPO) or
    of the credit's scale; ``uniform_floor`` ε: the weights used are ``(1 − ε)·w + ε/K``, so no
    teacher's weight falls below ε/K (default :data:`PARTITION_UNIFORM_FLOOR` when the teachers'
    shards are known, ``data.partition``; else 0); ``class_share_prior`` γ of
    :class:`~policies.scorer.TeacherScorer` (no effect unless the shards are known).
    """

    param_checks = {**{name: positive_int for name in ("probe_batch_size", "hidden", "update_epochs", "minibatches")},
                    "update_every": optional(positive_int),
                    **{name: numeric(positive) for name in ("init_std", "lr", "clip", "max_grad_norm")},
                    "baseline_decay": numeric(rate), "uniform_prior": optional(numeric(non_negative)),
                    "uniform_floor": optional(numeric(rate)), "class_share_prior": numeric(non_negative),
                    "estimator": one_of(*ESTIMATORS), "probe_loss": one_of(*PROBE_LOSSES),
                    "credit_scope": one_of(*CREDIT_SCOPES), "learn": boolean}

    def __init__(self, context: PolicyContext, checkpoint: str | None = None, learn: bool = True,
                 update_every: int | None = None, probe_batch_size: int = 64, hidden: int = 32, init_std: float = 1.0,
                 lr: float = 1e-2, update_epochs: int = 2, minibatches: int = 1, clip: float = 0.2,
                 entropy_coef: float = 1e-3, max_grad_norm: float = 0.5, baseline_decay: float = 0.9,
                 estimator: str = "credit", probe_loss: str = "mae", credit_scope: str = "head",
                 uniform_prior: float | None = None, uniform_floor: float | None = None,
                 class_share_prior: float = 1.0) -> None:
        super().__init__(context)
        features = observed_features(context.class_counts is not None)
        saved = load_policy(checkpoint, features) if checkpoint else None
        with torch.random.fork_rng(devices=[]):  # the same initial network in every peer
            torch.manual_seed(mix_seed(context.seed, 0x7EAC))
            self.scorer = TeacherScorer(saved["hidden"] if saved else hidden, init_std, class_share_prior, features)
        if saved:
            self.scorer.load_state_dict(saved["scorer"])
        if update_every is None:
            update_every = ONLINE_CREDIT_EVERY if context.online and estimator == "credit" else 1
        self.update_every = update_every if learn else 0
        # Each peer explores with its own stream, independent of the peer's training randomness.
        self.generator = torch.Generator().manual_seed(mix_seed(context.seed, context.student_index, 0xAC7))
        learner = {"lr": lr, "update_epochs": update_epochs, "max_grad_norm": max_grad_norm,
                   "baseline_decay": baseline_decay}
        self.estimator: CreditEstimator | PPOEstimator | None = None
        if learn and estimator == "credit":
            prior = uniform_prior if uniform_prior is not None else ONLINE_UNIFORM_PRIOR if context.online else 0.0
            self.estimator = CreditEstimator(self.scorer, FeedbackRequest(probe_batch_size, probe_loss,
                                                                          credit_scope=credit_scope),
                                             **learner, uniform_prior=prior)
        elif learn:
            self.estimator = PPOEstimator(self.scorer, self.generator,
                                          FeedbackRequest(probe_batch_size, probe_loss, probe_losses=True), **learner,
                                          minibatches=minibatches, clip=clip, entropy_coef=entropy_coef,
                                          seed=mix_seed(context.seed, 0x1EA4))
        counts = context.class_counts
        self.class_counts = None if counts is None else torch.tensor(counts, dtype=torch.float32)
        self.uniform_floor = uniform_floor if uniform_floor is not None else \
            PARTITION_UNIFORM_FLOOR if counts is not None else 0.0
        self._pending: dict[str, Tensor] | None = None
        self._transitions: list[dict[str, Tensor]] = []

    @classmethod
    def check_params(cls, params: dict[str, Any], config: "RunConfig") -> None:
        """The declared checks (``param_checks``), then the saved policy and the probe split it needs."""
        super().check_params(params, config)
        path = "distillation.policy.params"
        checkpoint = params.get("checkpoint")
        if checkpoint is not None:
            if not isinstance(checkpoint, str) or not Path(checkpoint).expanduser().is_file():
                raise ConfigError(f"{path}.checkpoint", f"no such file: {checkpoint}")
            try:
                saved = load_policy(checkpoint, observed_features(config.data.partition.kind != "shared"))
            except ValueError as error:
                raise ConfigError(f"{path}.checkpoint", str(error)) from None
            if "hidden" in params and params["hidden"] != saved["hidden"]:
                raise ConfigError(f"{path}.hidden", f"the saved policy has hidden={saved['hidden']}")
        if params.get("learn", True) and config.data.probe_fraction == 0:
            raise ConfigError("data.probe_fraction", "the learned teacher policy needs a probe split to learn from: "
                              "set it in (0, 0.5], or give the policy learn: false and a checkpoint")

    # -- acting ---------------------------------------------------------------------------------

    def feedback_request(self, progress: Progress) -> FeedbackRequest | None:
        """The estimator's request: every step (PPO), or on the steps before a sync only (credit)."""
        if self.estimator is None or (self.estimator.on_sync_steps_only and not sync_due(self, progress)):
            return None
        return self.estimator.request

    def weights(self, batch: TeacherBatch) -> Tensor:
        counts = None if self.class_counts is None else self.class_counts[batch.teacher_indices]
        features = observation(batch.student_logits, batch.teacher_logits, batch.targets, batch.progress.fraction,
                               counts)
        weights = self.act(features)
        weights = (1 - self.uniform_floor) * weights + self.uniform_floor / weights.shape[-1]
        return weights.to(batch.teacher_logits.device)

    @torch.no_grad()
    def act(self, features: Tensor) -> Tensor:
        """Weights ``[B, K]`` for features ``[B, K, F]``: the scores' when frozen, else the estimator's
        (which remembers what :meth:`record` completes into a transition)."""
        features = features.detach().float().cpu()
        mean = self.scorer(features)
        if self.estimator is None:
            self._pending = None
            return weights_from_scores(mean)
        weights, self._pending = self.estimator.act(features, mean)
        return weights

    def feedback(self, batch: TeacherBatch, weights: Tensor, feedback: Feedback) -> dict[str, float] | None:
        return self.record(weights, feedback)

    def record(self, weights: Tensor, feedback: Feedback) -> dict[str, float] | None:
        """Complete the last action's transition with the outcome of the update the weights ``[B, K]``
        produced; return scalars to log (``None``: nothing to learn from this step)."""
        if self._pending is None:
            return None
        completed = self.estimator.complete(self._pending, weights.detach().cpu(), feedback)
        if completed is None:
            return None
        transition, metrics = completed
        self._transitions.append(transition)
        self._pending = None
        return metrics

    # -- learning -------------------------------------------------------------------------------

    def collect_transitions(self) -> list[dict[str, Tensor]]:
        transitions, self._transitions = self._transitions, []
        return transitions

    @torch.no_grad()
    def load_parameters(self, parameters: dict[str, Tensor]) -> None:
        """Copy the learner's parameters (:func:`~policies.scorer.scorer_parameters`) into the scorer,
        in place (cheaper than ``load_state_dict`` on every step)."""
        for name, parameter in self.scorer.named_parameters():
            parameter.copy_(parameters[name])

    def make_learner(self) -> PolicyLearner | None:
        return None if self.estimator is None else self.estimator.make_learner()

    def save(self, path: str | Path) -> None:
        save_policy(path, self.scorer)

    def state_dict(self) -> dict[str, Any]:
        return {"scorer": self.scorer.state_dict(), "generator": self.generator.get_state(),
                "transitions": list(self._transitions)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.scorer.load_state_dict(state["scorer"])
        self.generator.set_state(state["generator"])
        self._transitions = list(state["transitions"])
