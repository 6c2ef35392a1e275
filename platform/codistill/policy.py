"""The teacher-weighting policy interface: per batch, a weight per candidate teacher and example.

The engine only knows this interface. A policy is asked once per batch (:meth:`TeacherWeightingPolicy.weights`)
with a :class:`TeacherBatch` and told the outcome of the update through a typed :class:`Feedback`;
learning policies also hand transitions to one :class:`PolicyLearner` per cohort. Built-in: ``uniform``;
learned policies live in the top-level ``policies`` package and are named in a config as
``module:Class`` (e.g. ``policies.confidence:ConfidenceAwarePolicy``), built as
``PolicyClass(context, **params)`` from a :class:`PolicyContext`.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from codistill.checks import check_keyword_params
from codistill.progress import Progress
from codistill.registry import POLICIES

if TYPE_CHECKING:
    from codistill.config import RunConfig


@dataclass
class TeacherBatch:
    """What a policy sees for one batch of one student."""

    student_index: int
    student_logits: Tensor  # [B, C], detached
    teacher_logits: Tensor  # [K, B, C], detached, one row per candidate teacher
    teacher_indices: list[int]  # position of each candidate in PolicyContext.teacher_names (some may be left out)
    targets: Tensor  # [B]
    progress: Progress
    example_indices: Tensor | None = None  # [B], CPU: each example's index in the training split


@dataclass(frozen=True)
class PolicyContext:
    """What a policy is built from (like :class:`~codistill.methods.MethodContext` for methods)."""

    teacher_names: tuple[str, ...]  # every candidate teacher; TeacherBatch.teacher_indices point into it
    num_classes: int
    device: torch.device
    online: bool
    student_index: int
    student_name: str
    total_epochs: int
    steps_per_epoch: int
    seed: int
    probe_available: bool  # data.probe_fraction > 0

    @property
    def num_teachers(self) -> int:
        return len(self.teacher_names)


@dataclass(frozen=True)
class Feedback:
    """What a policy learns from one update: the student's losses, and on a probe batch (when the
    policy asked for one with ``probe_batch_size``) its loss before and after the update, and the
    dense credit of every weight (when :meth:`TeacherWeightingPolicy.wants_credit`; see
    :func:`codistill.peer.feedback.dense_credit`): ``credit[b, k]`` is the first-order change of
    the probe loss after a virtual plain-SGD step per unit of ``w[b, k]``; negative helps."""

    loss_total: float
    loss_ce: float
    probe_loss_before: float | None = None
    probe_loss_after: float | None = None
    credit: Tensor | None = None  # [B, K], CPU, over the batch's candidates (TeacherBatch.teacher_indices)


class PolicyLearner:
    """Updates a learned policy from the transitions every peer collected since the last sync.

    One learner serves the whole cohort (in-process, or as its own Ray actor). :meth:`learn`
    receives each peer's :meth:`TeacherWeightingPolicy.collect_transitions` in peer-index order and
    returns the new policy parameters, which every peer loads before its next step. ``metrics``
    holds, per peer, scalars of the last update (for TensorBoard).
    """

    metrics: list[dict[str, float]]

    def learn(self, transitions_per_peer: list[Any]) -> dict[str, Tensor]:  # pragma: no cover - interface
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:  # pragma: no cover - interface
        raise NotImplementedError

    def load_state_dict(self, state: dict[str, Any]) -> None:  # pragma: no cover - interface
        raise NotImplementedError


class TeacherWeightingPolicy:
    """Returns, per batch, a weight per candidate teacher: shape ``[K]`` or per example ``[B, K]``.

    Weights must be non-negative; the engine renormalizes them to sum to one over teachers.
    ``feedback`` receives a :class:`Feedback` after the update (the reward signal of learned
    policies) and may return scalars to log; ``state_dict``/``load_state_dict`` let a policy
    resume with the run.

    Learning policies set the optional members: ``probe_batch_size`` > 0 makes the peer measure
    the student's loss on that many probe examples before and after each update
    (:attr:`Feedback.probe_loss_before`/``after``); ``update_every`` > 0 makes
    the cohort gather every peer's :meth:`collect_transitions` after each step ``s`` with
    ``(global step + 1) % update_every == 0``, run the :meth:`make_learner` learner once on them
    (peer-index order) and :meth:`load_parameters` the result into every peer before step ``s + 1``.
    ``probe_loss`` names the loss the probe measures (:data:`codistill.peer.feedback.PROBE_LOSSES`),
    ``credit_scope`` which parameters the credit's virtual step moves (``network`` or ``head``,
    :data:`codistill.peer.feedback.CREDIT_SCOPES`);
    :meth:`wants_probe_losses` and :meth:`wants_credit` say, step by step, what the peer measures.
    """

    probe_batch_size: int = 0
    update_every: int = 0
    probe_loss: str = "ce"
    credit_scope: str = "network"

    def __init__(self, context: PolicyContext) -> None:
        self.context = context

    @classmethod
    def check_params(cls, params: dict[str, Any], config: "RunConfig") -> None:
        """Validate ``distillation.policy.params`` before anything runs; errors name
        ``distillation.policy.params.<param>``. By default: parameters ``__init__`` does not take,
        and NaN or infinity. Policies with further constraints extend this."""
        check_keyword_params(cls.__init__, params, "distillation.policy.params", f"policy '{cls.__name__}'",
                             skip=("self", "context"))

    def weights(self, batch: TeacherBatch) -> Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def wants_probe_losses(self, progress: Progress) -> bool:
        """Whether the peer measures the probe loss before and after this step's update."""
        return self.probe_batch_size > 0

    def wants_credit(self, progress: Progress) -> bool:
        """Whether the peer computes this step's dense credit (:attr:`Feedback.credit`; needs a probe)."""
        return False

    def feedback(self, batch: TeacherBatch, weights: Tensor, feedback: Feedback) -> dict[str, float] | None:
        """Called after each update with the weights used and its outcome; returns scalars to log."""
        return None

    def collect_transitions(self) -> Any:
        """What was gathered since the last sync (picklable, CPU tensors), emptying the buffer."""
        return []

    def load_parameters(self, parameters: dict[str, Tensor]) -> None:
        """Take the learner's new parameters."""

    def make_learner(self) -> PolicyLearner | None:
        """The learner shared by the cohort (``None`` for a fixed rule)."""
        return None

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""


@POLICIES.register("uniform")
class UniformPolicy(TeacherWeightingPolicy):
    """Every teacher counts the same: ``w_l = 1 / K``."""

    def weights(self, batch: TeacherBatch) -> Tensor:
        count = batch.teacher_logits.shape[0]
        return torch.full((count,), 1.0 / count, device=batch.teacher_logits.device)


def sync_due(policy: TeacherWeightingPolicy, progress: Progress) -> bool:
    """Whether the cohort synchronizes the policy after the update of this step."""
    return policy.update_every > 0 and (progress.global_step + 1) % policy.update_every == 0


def learn_in_process(learner: PolicyLearner, policies: list[TeacherWeightingPolicy],
                     step_metrics: list[dict[str, float]]) -> None:
    """One synchronization in this process: every policy's transitions (peer order) → learner →
    new parameters into every policy; the learner's scalars join each peer's step metrics."""
    parameters = learner.learn([policy.collect_transitions() for policy in policies])
    for policy, metrics, learned in zip(policies, step_metrics, learner.metrics):
        policy.load_parameters(parameters)
        metrics.update(learned)


def learner_state_bytes(learner: PolicyLearner | None) -> bytes | None:
    """The learner's state as bytes that ``torch.load(weights_only=True)`` reads (``None``: no learner)."""
    if learner is None:
        return None
    buffer = io.BytesIO()
    torch.save(learner.state_dict(), buffer)
    return buffer.getvalue()


def load_learner_state_bytes(learner: PolicyLearner | None, blob: bytes | None) -> None:
    if learner is not None and blob is not None:
        learner.load_state_dict(torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True))
