"""The learned policy's network: one scorer shared by every teacher, the exploration scales, the
one place where scores become teacher weights, and what its learners share to step it.

One small MLP maps the features of ``(b, k)`` (:mod:`policies.features`) to a score ``μ_bk``;
the weights are ``w_b = softmax_k(·)`` of the scores, or of a sampled action ``a_·k ~ N(μ_·k,
σ²I + σ_s²11ᵀ)`` independently per teacher. The covariance over the batch's examples has a
per-example part ``σ`` and a part ``σ_s`` shared by the batch (both learned): a reward is one
number per batch, and exploration that moves a teacher's weight on the whole batch is what it can
attribute (with independent per-example noise the batch mean of the weights barely moves,
``∝ σ/√B``, and the gradient drowns in noise). Scoring every teacher with the same network and
normalizing over teachers makes the weights equivariant to the teachers' order and defined for
any number of them. The last layer starts at zero: an untrained policy weights teachers uniformly,
up to the fixed prior ``γ · teacher_class_share`` added to every score (``prior`` γ; the feature
is observed only where the teachers' shards are known, :mod:`policies.features`): with it an untrained policy
weights teacher k in proportion to ``(Σ_c p̄(c) s_k(c))^γ``, its share of the training data of
the classes the example looks like.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from policies.features import FEATURES, SAME_DATA_FEATURES


def weights_from_scores(scores: Tensor) -> Tensor:
    """Weights ``[..., B, K]`` from scores or action logits: ``softmax`` over the teachers."""
    return scores.softmax(-1)


class TeacherScorer(nn.Module):
    """Features ``[B, K, F]`` (``features``, :func:`~policies.features.observed_features`) → mean
    action logits ``[B, K]``; the learned exploration scales.

    ``log_std`` is the per-example part ``log σ``, ``log_std_shared`` the batch-shared ``log σ_s``.
    """

    def __init__(self, hidden: int, init_std: float, prior: float = 0.0,
                 features: tuple[str, ...] = SAME_DATA_FEATURES) -> None:
        super().__init__()
        self.features = features
        self.prior = prior if features == FEATURES else 0.0  # the prior reads ``teacher_class_share``, last
        self.net = nn.Sequential(nn.Linear(len(features), hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh(),
                                 nn.Linear(hidden, 1))
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)
        self.log_std = nn.Parameter(torch.tensor(math.log(init_std)))
        self.log_std_shared = nn.Parameter(torch.tensor(math.log(init_std)))

    @property
    def hidden(self) -> int:
        return self.net[0].out_features

    def forward(self, features: Tensor) -> Tensor:
        scores = self.net(features).squeeze(-1)
        return scores + self.prior * features[..., -1] if self.prior else scores

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


def scorer_parameters(scorer: TeacherScorer) -> dict[str, Tensor]:
    """A detached copy of the scorer's parameters: what a learner hands the peers after an update."""
    return {k: v.detach().clone() for k, v in scorer.state_dict().items()}


def clipped_step(optimizer: torch.optim.Optimizer, loss: Tensor, scorer: TeacherScorer, max_grad_norm: float) -> None:
    """One optimizer step on ``loss`` with the scorer's gradient norm clipped to ``max_grad_norm``."""
    optimizer.zero_grad()
    loss.backward()
    nn.utils.clip_grad_norm_(scorer.parameters(), max_grad_norm)
    optimizer.step()


def same_shape_groups(transitions: list[dict[str, Tensor]], indices: list[int], key: str) -> list[list[int]]:
    """``indices`` grouped by the shape of their ``key`` tensor (batch size, teachers), in first-seen order."""
    groups: dict[tuple[int, ...], list[int]] = {}
    for index in indices:
        groups.setdefault(tuple(transitions[index][key].shape), []).append(index)
    return list(groups.values())
