"""``TeacherSelectionEnv``: teacher selection as a gymnasium environment.

An episode trains one student for ``episode_steps`` steps (full batches of ``data.batch_size``)
with a pool of frozen teachers, exactly as ``jobs/offline.py`` does; the agent chooses the teacher
weights of every step. Observation, action and reward are those of
:class:`policies.learned.LearnedPolicy`, so a policy trained here runs unchanged in a cohort. The
spaces follow the RL libraries' conventions (a flat observation, which no library takes for an
image; a symmetric action normalized to [−1, 1], scaled inside):

- observation: ``float32 [B·K·F]``, the features of :func:`policies.features.observation` for
  every example of the step's batch and every teacher (``F = len(SAME_DATA_FEATURES)``), flattened;
  :func:`features_of` gives them back as ``[B, K, F]``;
- action: ``float32 [B, K]`` in [−1, 1], the teacher logits divided by :data:`ACTION_SCALE`
  (:func:`action_of` maps weights to it); the weights are ``softmax`` over teachers of the logits;
- reward: :func:`policies.ppo.probe_reward`, the relative change of the student's loss on a
  probe batch through the update those weights produced;
- the episode ends (``terminated``) after ``episode_steps`` steps; ``info`` holds the probe losses
  (``probe_loss``: ``mae`` by default, as the learned policy's, or ``ce``), the mean weight each
  teacher received, ``credit``, ``float32 [B, K]``: the dense credit of the weights the agent
  gave (:func:`codistill.peer.feedback.dense_credit`, the first-order effect of ``w[b, k]`` on the
  probe loss after a virtual SGD step; negative helps), for learners that use more than the reward,
  and the student's ``loss_total`` and ``loss_ce``; :func:`feedback_of` makes of it the step's
  :class:`codistill.policy.Feedback` (what a learned policy's ``record`` takes).

``K`` is fixed per environment instance (its pool); the policy itself takes any ``K``. With
``pools`` (a :class:`policies.pool_distribution.PoolDistribution`) every ``reset`` draws a new
pool of ``pool_size`` teachers, world and student settings from the environment's seeded
generator, and ``reset``'s ``info["pool"]`` describes it (a
:class:`policies.pool_distribution.Pool`).
``TeacherSelectionEnv()`` with no arguments builds a small default episode on digits (all the
training data with clean labels, 10% of it the probe; an MLP student on plain SGD): at
construction it trains a pool of three MLP teachers in a few seconds, seeded — ``trained``
(8 epochs), ``weak`` (1 epoch) and ``random`` (untrained, its classifier scaled so it predicts
confidently and at random). Any offline config (one student,
``teachers``, ``data.probe_fraction`` > 0, distillation on at every step) can be passed instead.
"""

from __future__ import annotations

import math
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from codistill.cohort.offline import OfflineCohort
from codistill.config import PolicyConfig, RunConfig
from codistill.peer import PeerTrainer, load_dataset
from codistill.policy import (
    PROBE_LOSSES,
    Feedback,
    FeedbackRequest,
    PolicyContext,
    TeacherBatch,
    TeacherWeightingPolicy,
)
from codistill.progress import Progress
from codistill.validation import parse_config
from policies.features import FEATURE_CLIP, SAME_DATA_FEATURES, observation
from policies.pool_distribution import PoolDistribution, train_teacher
from policies.ppo import probe_reward
from policies.scorer import weights_from_scores

ENV_ID = "codistill/TeacherSelection-v0"  # gymnasium.make(ENV_ID) once this module is imported
ACTION_SCALE = 10.0  # the teacher logits of the action's bounds, ±1
DEFAULT_DATA = {"dataset": "digits", "train_fraction": 1.0, "label_noise": 0.0, "batch_size": 64,
                "probe_fraction": 0.1}
DEFAULT_POOL = (("trained", 8), ("weak", 1), ("random", 0))


class ActionWeights(TeacherWeightingPolicy):
    """The environment's hook into the student's step: returns the weights the agent chose, and
    asks the peer for the probe losses and the dense credit (of the whole network) of every step."""

    def __init__(self, context: PolicyContext, probe_batch_size: int = 128, probe_loss: str = "mae") -> None:
        super().__init__(context)
        self.request = FeedbackRequest(probe_batch_size, probe_loss, probe_losses=True, credit_scope="network")
        self.chosen: torch.Tensor | None = None

    def feedback_request(self, progress: Progress) -> FeedbackRequest:
        return self.request

    def choose(self, weights: torch.Tensor) -> None:
        """The weights ``[B, K]`` of the next step (the agent's action)."""
        self.chosen = weights

    def weights(self, batch: TeacherBatch) -> torch.Tensor:
        if self.chosen is None:
            raise RuntimeError("no action given for this step")
        return self.chosen.to(batch.teacher_logits.device)


class TeacherSelectionEnv(gym.Env):
    """See the module docstring."""

    metadata = {"render_modes": []}

    def __init__(self, config: RunConfig | None = None, episode_steps: int = 60, probe_batch_size: int = 128,
                 probe_loss: str = "mae", pools: PoolDistribution | None = None, pool_size: int = 3) -> None:
        if episode_steps < 1:
            raise ValueError(f"episode_steps must be ≥ 1, got {episode_steps}")
        if probe_loss not in PROBE_LOSSES:
            raise ValueError(f"probe_loss must be one of {', '.join(PROBE_LOSSES)}, got {probe_loss!r}")
        if config is not None and pools is not None:
            raise ValueError("give TeacherSelectionEnv a config or pools, not both")
        self._pool_dir: str | None = None
        if config is None and pools is None:
            self._pool_dir = tempfile.mkdtemp(prefix="codistill-env-pool-")
            config = default_config(Path(self._pool_dir))
        if pools is not None:
            config = pools.config(pools.sample(np.random.default_rng(0), pool_size))  # the spaces' shapes
        if config.data.probe_fraction <= 0:
            raise ValueError("TeacherSelectionEnv needs data.probe_fraction > 0 (its reward)")
        self.policy = PolicyConfig(name=f"{__name__}:ActionWeights",
                                   params={"probe_batch_size": probe_batch_size, "probe_loss": probe_loss})
        self.pools, self.pool_size, self.episode_steps = pools, pool_size, episode_steps
        self.config = self.episode_config(config)
        self.teacher_names = [t.name for t in self.config.teachers]
        size, count = self.config.data.batch_size, len(self.teacher_names)
        width = size * count * len(SAME_DATA_FEATURES)
        self.observation_space = gym.spaces.Box(-FEATURE_CLIP, FEATURE_CLIP, (width,), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (size, count), np.float32)
        self.cohort: OfflineCohort | None = None
        self._schedule: list[tuple[int, int]] = []
        self._views: list[Any] = []
        self._t = 0

    def episode_config(self, config: RunConfig) -> RunConfig:
        """``config`` with the environment's hook as its policy, its schedules spanning the episode."""
        full_steps_per_epoch = load_dataset(config).info.train_size // config.data.batch_size
        epochs = math.ceil(self.episode_steps / full_steps_per_epoch)
        return replace(config, epochs=epochs, distillation=replace(config.distillation, policy=self.policy))

    # -- gymnasium API ----------------------------------------------------------------------------

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        info: dict[str, Any] = {}
        if self.pools is None:
            config = replace(self.config, seed=int(self.np_random.integers(2 ** 31)))
        else:
            info["pool"] = self.pools.sample(self.np_random, self.pool_size)
            config = self.config = self.episode_config(self.pools.config(info["pool"]))
            self.teacher_names = [t.name for t in config.teachers]
        self.cohort = OfflineCohort(config)
        self._schedule = full_batches(self.cohort.student, self.episode_steps)
        self._t = 0
        return self._observe(), info

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self.cohort is None:
            raise RuntimeError("call reset() first")
        logits = ACTION_SCALE * torch.as_tensor(np.asarray(action, dtype=np.float32)).clamp(-1.0, 1.0)
        weights = weights_from_scores(logits)
        student = self.cohort.student
        student.policy.choose(weights)
        student.update(self._views)
        feedback = student.last_feedback
        if feedback is None or feedback.probe_loss_before is None or feedback.credit is None:
            raise RuntimeError("distillation was off at this step (λ·m = 0): the environment needs it on throughout")
        reward = probe_reward(feedback.probe_loss_before, feedback.probe_loss_after)
        self._t += 1
        terminated = self._t >= self.episode_steps
        info = {"probe_loss_before": feedback.probe_loss_before, "probe_loss_after": feedback.probe_loss_after,
                "teacher_weights": dict(zip(self.teacher_names, weights.mean(0).tolist())),
                "credit": feedback.credit.float().numpy(), "loss_total": feedback.loss_total,
                "loss_ce": feedback.loss_ce}
        observation_next = self._observe() if not terminated else np.zeros(self.observation_space.shape, np.float32)
        return observation_next, float(reward), terminated, False, info

    def close(self) -> None:
        if self._pool_dir is not None:
            shutil.rmtree(self._pool_dir, ignore_errors=True)
            self._pool_dir = None

    # -- internals ------------------------------------------------------------------------------

    def _observe(self) -> np.ndarray:
        student = self.cohort.student
        epoch, step = self._schedule[self._t]
        payload = student.forward(epoch, step)
        batch = student.batch_in_progress
        self._views = self.cohort.frozen.views(batch.images)
        teacher_logits = torch.stack([view.logits.float().cpu() for view in self._views])
        features = observation(payload.logits, teacher_logits, batch.targets.cpu(),
                               self._t / self.episode_steps)
        return features.numpy().astype(np.float32).reshape(-1)


def features_of(observation: np.ndarray, teachers: int) -> torch.Tensor:
    """The environment's flat observation as features ``[B, K, F]`` (what a policy's ``act`` takes)."""
    return torch.from_numpy(np.asarray(observation, dtype=np.float32)).view(-1, teachers, len(SAME_DATA_FEATURES))


def feedback_of(info: dict[str, Any]) -> Feedback:
    """The :class:`~codistill.policy.Feedback` of a step, from its ``info``."""
    return Feedback(loss_total=info["loss_total"], loss_ce=info["loss_ce"], probe_loss_before=info["probe_loss_before"],
                    probe_loss_after=info["probe_loss_after"], credit=torch.from_numpy(info["credit"]))


def action_of(weights: torch.Tensor) -> np.ndarray:
    """The action in [−1, 1] whose teacher weights are ``weights`` ``[B, K]`` (each row's log-weights
    centred, scaled by :data:`ACTION_SCALE`; weights below ``e^−20`` of a row's geometric mean clip)."""
    logits = weights.clamp_min(1e-30).log()
    return ((logits - logits.mean(-1, keepdim=True)) / ACTION_SCALE).clamp(-1.0, 1.0).numpy()


def full_batches(student: PeerTrainer, steps: int) -> list[tuple[int, int]]:
    """The first ``steps`` (epoch, step) pairs of the student's batch order whose batch is full."""
    size, seed, schedule, epoch = student.config.data.batch_size, student.config.seed, [], 0
    while len(schedule) < steps:
        batches = student.dataset.batch_indices(seed, epoch, size)
        schedule += [(epoch, step) for step, indices in enumerate(batches) if len(indices) == size]
        epoch += 1
    return schedule[:steps]


def default_config(pool_dir: Path, seed: int = 0) -> RunConfig:
    """The default episode's offline config; trains its teacher pool into ``pool_dir`` (seconds)."""
    data = dict(DEFAULT_DATA)
    teachers = []
    for name, epochs in DEFAULT_POOL:
        teacher_config = parse_config({"name": name, "seed": seed, "epochs": max(epochs, 1), "independent": True,
                                       "data": data, "peers": [{"name": name, "model": "mlp"}]}, mode="offline")
        path = pool_dir / f"{name}.pt"
        train_teacher(teacher_config, epochs, path)
        teachers.append({"name": name, "model": "mlp", "checkpoint": str(path)})
    # Plain SGD: each step's probe reward then reflects that step's weights, not a momentum of earlier ones.
    student = {"name": "student", "model": "mlp", "optimizer": {"lr": 0.1, "momentum": 0.0}}
    return parse_config({"name": "teacher-selection", "seed": seed, "epochs": 1, "data": data, "peers": [student],
                         "teachers": teachers,
                         "distillation": {"weight": 1.0, "methods": [{"name": "kd", "params": {"temperature": 1.0}}]}},
                        mode="offline")


if ENV_ID not in gym.registry:
    gym.register(id=ENV_ID, entry_point=f"{__name__}:TeacherSelectionEnv")
