"""The credit estimator of the learned policy: a deterministic policy gradient through the dense credit.

On each step before a sync (every ``update_every`` steps) the policy asks the peer for the dense
credit ``c[b, k] = ∂/∂w[b, k] L_probe(θ − η ∇θ L_train(θ; w))`` of every weight (the one-step
lookahead of Learning to Reweight, Ren et al. 2018, per teacher;
:func:`codistill.peer.feedback.dense_credit`), and :class:`CreditLearner` descends
``Σ_k c[b, k] softmax_k(μ_φ(o_b))``: an exact first-order critic, one number per example and
teacher instead of one per batch. Peers act with the mean: no exploration noise trains the student.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
from torch import Tensor

from codistill import metrics as m
from codistill.policy import Feedback, FeedbackRequest, PolicyLearner
from policies.scorer import TeacherScorer, clipped_step, same_shape_groups, scorer_parameters, weights_from_scores

#: ``uniform_prior`` online when it is not set (offline: 0). Online the candidates are peers of the
#: same run, none bad by construction; without the prior the head credit moved most of the weight
#: to the best peer and to the student itself and lost to uniform (docs/policy-measurements-online.md).
ONLINE_UNIFORM_PRIOR = 0.3
#: ``update_every`` online when it is not set (offline: 1): a credit, and a learner update, every
#: other step. Online no frozen teacher's forward pass hides the probe pass and the learner: a
#: credit every step cost 1.4–1.6× uniform's time per epoch, every other step 1.2–1.4×, and the
#: accuracy was the same or better (docs/learned-policy.md, Cost).
ONLINE_CREDIT_EVERY = 2


class CreditEstimator:
    """Acts with the mean weights and completes a transition with the step's centred credit.

    ``request`` is what the peer computes on the steps before a sync (a probe batch, its loss and
    the credit's scope); the learner's settings are those of :class:`CreditLearner`.
    """

    on_sync_steps_only = True

    def __init__(self, scorer: TeacherScorer, request: FeedbackRequest, *, lr: float, update_epochs: int,
                 max_grad_norm: float, baseline_decay: float, uniform_prior: float) -> None:
        self.scorer, self.request = scorer, request
        self.settings = {"lr": lr, "update_epochs": update_epochs, "max_grad_norm": max_grad_norm,
                         "baseline_decay": baseline_decay, "uniform_prior": uniform_prior}

    def act(self, features: Tensor, mean: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """The mean weights, and the observation to remember for :meth:`complete`."""
        return weights_from_scores(mean), {"observation": features}

    def complete(self, pending: dict[str, Tensor], weights: Tensor,
                 feedback: Feedback) -> tuple[dict[str, Tensor], dict[str, float]] | None:
        """The transition with the dense credit of the weights used ``[B, K]``, centred on each
        example's mixture (``c[b, k] − Σ_j w[b, j] c[b, j]``: only differences between teachers
        move a softmax), and its signal-to-noise to log; ``None`` on a step without credit."""
        if feedback.credit is None:
            return None
        credit = feedback.credit.float()
        centred = credit - (weights * credit).sum(-1, keepdim=True)
        return {**pending, "credit": centred}, {m.POLICY_CREDIT_SNR: credit_snr(centred)}

    def make_learner(self) -> CreditLearner:
        return CreditLearner(copy.deepcopy(self.scorer), **self.settings)


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
        groups = [(torch.stack([batch[i]["observation"] for i in members]),  # [n, B, K, F]
                   torch.stack([credits[i] for i in members]))  # [n, B, K]
                  for members in same_shape_groups(batch, list(range(len(batch))), "credit")]
        loss = torch.zeros(())
        for _ in range(self.update_epochs):
            losses = []
            for observation, credit in groups:
                log_weights = self.scorer(observation).log_softmax(-1)  # log of weights_from_scores, for the KL
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


def credit_snr(credit: Tensor) -> float:
    """Mean over teachers of ``|mean_b c[b, k]| / (std_b c[b, k] / √B)``: how far each teacher's
    batch credit stands out of its per-example spread (0 for a batch of one)."""
    size = credit.shape[0]
    if size < 2:
        return 0.0
    error = credit.std(0) / math.sqrt(size)
    return float((credit.mean(0).abs() / error.clamp_min(1e-12)).mean())
