"""The PPO estimator of the learned policy: exploration, a probe reward per step, PPO-clip.

**Reward** (:func:`probe_reward`): the relative change of the student's probe loss from before to
after the update the sampled weights produced, ``(L_before − L_after) / L_before``.

**Learner** (:class:`PPOLearner`): PPO-clip (Schulman et al. 2017) in the style of CleanRL's
``ppo_continuous_action.py``. The advantage of a step is its reward minus a running baseline (EMA
of rewards), divided by the running mean absolute deviation, clipped to ±5. The loss is
``−E[min(ρA, clip(ρ, 1±ε)A)] − c_H · H(π)`` with ``ρ`` the probability ratio of the step's whole
``[B, K]`` action, Adam, gradient-norm clipping. With ``update_epochs: 1`` and one minibatch, an
update is exactly REINFORCE with a baseline (``ρ = 1``: the gradient is ``−A ∇log π(a|s)``).
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import Tensor

from codistill import metrics as m
from codistill.policy import Feedback, FeedbackRequest, PolicyLearner
from policies.scorer import TeacherScorer, clipped_step, same_shape_groups, scorer_parameters, weights_from_scores


def probe_reward(loss_before: float, loss_after: float) -> float:
    """Relative improvement of the student's probe loss through one update."""
    return (loss_before - loss_after) / max(loss_before, 1e-8)


class PPOEstimator:
    """Samples the weights from the scorer's Gaussian (with ``generator``) and completes a
    transition with the step's :func:`probe_reward`; ``request`` asks the peer for the probe loss
    before and after every update. The learner's settings are those of :class:`PPOLearner`."""

    on_sync_steps_only = False

    def __init__(self, scorer: TeacherScorer, generator: torch.Generator, request: FeedbackRequest, *, lr: float,
                 update_epochs: int, minibatches: int, clip: float, entropy_coef: float, max_grad_norm: float,
                 baseline_decay: float, seed: int) -> None:
        self.scorer, self.generator, self.request = scorer, generator, request
        self.settings = {"lr": lr, "update_epochs": update_epochs, "minibatches": minibatches, "clip": clip,
                         "entropy_coef": entropy_coef, "max_grad_norm": max_grad_norm,
                         "baseline_decay": baseline_decay, "seed": seed}

    def act(self, features: Tensor, mean: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """The weights of a sampled action, and the observation, action and its log-probability."""
        action = self.scorer.sample(mean, self.generator)
        return weights_from_scores(action), {"observation": features, "action": action,
                                             "logprob": self.scorer.log_prob(mean, action)}

    def complete(self, pending: dict[str, Tensor], weights: Tensor,
                 feedback: Feedback) -> tuple[dict[str, Tensor], dict[str, float]]:
        """The transition with the step's reward; the reward and the policy's entropy to log."""
        reward = probe_reward(feedback.probe_loss_before, feedback.probe_loss_after)
        size = pending["action"].shape[0]
        return ({**pending, "reward": torch.tensor(float(reward))},
                {m.POLICY_REWARD: float(reward), m.POLICY_ENTROPY: float(self.scorer.entropy(size).detach())})

    def make_learner(self) -> PPOLearner:
        return PPOLearner(copy.deepcopy(self.scorer), **self.settings)


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
