"""The teacher-weighting policy interface: per batch, a weight per candidate teacher and example.

The engine only knows this interface. A policy is asked once per batch (:meth:`TeacherWeightingPolicy.weights`)
with a :class:`TeacherBatch` and told the outcome of the update through a typed :class:`Feedback`; a
policy that learns from more than the losses says, step by step, what the engine measures for it
(:class:`FeedbackRequest`). Learning policies also hand transitions to one :class:`PolicyLearner`
per cohort. Built-in: ``uniform``;
learned policies live in the top-level ``policies`` package and are named in a config as
``module:Class`` (e.g. ``policies.confidence:ConfidenceAwarePolicy``), built as
``PolicyClass(context, **params)`` from a :class:`PolicyContext`.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import Tensor

from codistill.checks import Check, check_declared_params, check_keyword_params
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
    #: With ``data.partition``: each candidate's training examples per class, in ``teacher_names``
    #: order (known from the shards); None: every candidate trained on the same data.
    class_counts: tuple[tuple[int, ...], ...] | None = None

    @property
    def num_teachers(self) -> int:
        return len(self.teacher_names)


#: Losses a probe can measure (:func:`codistill.peer.feedback.probe_loss`).
PROBE_LOSSES = ("ce", "mae")
#: Parameters a credit's virtual step can move: the classifier head, or the whole network.
CREDIT_SCOPES = ("head", "network")


@dataclass(frozen=True)
class FeedbackRequest:
    """What the engine measures around one update for a policy that asks for it
    (:meth:`TeacherWeightingPolicy.feedback_request`), on a batch of ``probe_batch_size`` examples
    of the probe split scored by ``probe_loss`` (one of :data:`PROBE_LOSSES`):

    - ``probe_losses``: the probe loss before and after the update;
    - ``credit_scope`` (one of :data:`CREDIT_SCOPES`; ``None``: none): the dense credit of every
      weight, ``c[b, k]``, with the virtual step moving the classifier ``head`` or the ``network``.
    """

    probe_batch_size: int
    probe_loss: str = "ce"
    probe_losses: bool = False
    credit_scope: str | None = None

    def __post_init__(self) -> None:
        if self.probe_batch_size < 1:
            raise ValueError(f"a probe batch needs at least one example, got {self.probe_batch_size}")
        if self.probe_loss not in PROBE_LOSSES:
            raise ValueError(f"unknown probe loss {self.probe_loss!r} (known: {', '.join(PROBE_LOSSES)})")
        if self.credit_scope is not None and self.credit_scope not in CREDIT_SCOPES:
            raise ValueError(f"unknown credit scope {self.credit_scope!r} (known: {', '.join(CREDIT_SCOPES)})")


@dataclass(frozen=True)
class Feedback:
    """What a policy learns from one update: the student's losses, and what its
    :class:`FeedbackRequest` asked for: the probe loss before and after the update, and the dense
    credit of every weight (see :func:`codistill.peer.feedback.dense_credit`): ``credit[b, k]`` is
    the first-order change of the probe loss after a virtual plain-SGD step per unit of
    ``w[b, k]``; negative helps."""

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

    Learning policies override :meth:`feedback_request` (what the peer measures for this step's
    :class:`Feedback`) and set ``update_every`` > 0, which makes the cohort gather every peer's
    :meth:`collect_transitions` after each step ``s`` with ``(global step + 1) % update_every == 0``,
    run the :meth:`make_learner` learner once on them (peer-index order) and :meth:`load_parameters`
    the result into every peer before step ``s + 1``. ``param_checks`` declares range checks of
    parameters by name (see :mod:`codistill.checks`), run by :meth:`check_params`.
    """

    update_every: int = 0
    param_checks: ClassVar[dict[str, Check]] = {}

    def __init__(self, context: PolicyContext) -> None:
        self.context = context

    @classmethod
    def check_params(cls, params: dict[str, Any], config: "RunConfig") -> None:
        """Validate ``distillation.policy.params`` before anything runs; errors name
        ``distillation.policy.params.<param>``. By default: parameters ``__init__`` does not take,
        NaN or infinity, and values failing ``param_checks``. Policies with constraints across
        parameters or on the rest of the config extend this."""
        check_keyword_params(cls.__init__, params, "distillation.policy.params", f"policy '{cls.__name__}'",
                             skip=("self", "context"))
        check_declared_params(params, cls.param_checks, "distillation.policy.params")

    def weights(self, batch: TeacherBatch) -> Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def feedback_request(self, progress: Progress) -> FeedbackRequest | None:
        """What the peer measures around this step's update for its :class:`Feedback` (``None``:
        only the losses); asked once per distilling step, after :meth:`weights`."""
        return None

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


def learns(policy: type[TeacherWeightingPolicy]) -> bool:
    """Whether a policy learns from what follows its weights: it overrides :meth:`~TeacherWeightingPolicy.feedback`,
    ``feedback_request``, ``make_learner`` or ``collect_transitions`` (a fixed rule overrides none)."""
    return any(getattr(policy, name) is not getattr(TeacherWeightingPolicy, name)
               for name in ("feedback", "feedback_request", "make_learner", "collect_transitions"))


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
