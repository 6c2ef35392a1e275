"""Teachers of an online cohort, and the teacher-weighting policy interface.

Two ways to form a peer's teacher from the cohort (``distillation.teacher``):

- ``mean_of_others`` — deep mutual learning (Zhang et al., CVPR 2018): peer k distils from each
  other peer l separately, ``Σ_l w_l · D(student_k, peer_l)``.
- ``ensemble`` — the ensemble teacher of multistructure collaborative online distillation
  (Gao et al., Entropy 2019) and ONE: ``z_ens = Σ_l w_l · z_l`` over *all* peers (the student's own
  logits included, detached), ``D(student_k, z_ens)``.

The weights ``w`` come from a :class:`TeacherWeightingPolicy`, asked once per batch. The engine
only knows this interface; learned policies live in the top-level ``policies`` package and are
named in a config as ``module:Class`` (e.g. ``policies.confidence:ConfidenceAwarePolicy``) and
built as ``PolicyClass(context, **params)`` from a :class:`PolicyContext`.
Methods that read teacher *features* always go teacher by teacher (features of different
architectures cannot be averaged), each example weighted by its own weights over the other peers
(:func:`teacher_weights`).
"""

from __future__ import annotations

import importlib
import io
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from codistill.checks import check_keyword_params
from codistill.methods.base import TeacherView
from codistill.progress import Progress
from codistill.registry import Registry

if TYPE_CHECKING:
    from codistill.config import RunConfig


@dataclass
class TeacherBatch:
    """What a policy sees for one batch of one student."""

    student_index: int
    student_logits: Tensor  # [B, C], detached
    teacher_logits: Tensor  # [K, B, C], detached, one row per candidate teacher
    teacher_indices: list[int]  # online: peer index of each candidate (the student's own last in ensemble mode); offline: teacher index
    targets: Tensor  # [B]
    progress: Progress


@dataclass(frozen=True)
class PolicyContext:
    """What a policy is built from (like :class:`~codistill.methods.MethodContext` for methods)."""

    teacher_names: tuple[str, ...]  # the candidate teachers, in the order of TeacherBatch.teacher_logits
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
    ``feedback`` receives the student's losses after the update (the reward signal of learned
    policies) and may return scalars to log; ``state_dict``/``load_state_dict`` let a policy
    resume with the run.

    Learning policies set the optional members: ``probe_batch_size`` > 0 makes the peer measure
    the student's loss on that many probe examples before and after each update
    (``metrics.PROBE_LOSS_BEFORE``/``AFTER`` in ``feedback``'s losses); ``update_every`` > 0 makes
    the cohort gather every peer's :meth:`collect_transitions` after each step ``s`` with
    ``(global step + 1) % update_every == 0``, run the :meth:`make_learner` learner once on them
    (peer-index order) and :meth:`load_parameters` the result into every peer before step ``s + 1``.
    """

    probe_batch_size: int = 0
    update_every: int = 0

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

    def feedback(self, batch: TeacherBatch, weights: Tensor, losses: dict[str, float]) -> dict[str, float] | None:
        """Called after each update with the weights used and the student's loss terms."""
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


POLICIES: Registry = Registry("teacher-weighting policy")


@POLICIES.register("uniform")
class UniformPolicy(TeacherWeightingPolicy):
    """Every teacher counts the same: ``w_l = 1 / K``."""

    def weights(self, batch: TeacherBatch) -> Tensor:
        count = batch.teacher_logits.shape[0]
        return torch.full((count,), 1.0 / count, device=batch.teacher_logits.device)


def resolve_policy(name: str) -> type[TeacherWeightingPolicy]:
    """A registered policy name, or ``package.module:ClassName`` of a policy class."""
    if ":" not in name:
        return POLICIES.get(name)
    module_name, class_name = name.split(":", 1)
    policy = getattr(importlib.import_module(module_name), class_name)
    if not (isinstance(policy, type) and issubclass(policy, TeacherWeightingPolicy)):
        raise KeyError(f"'{name}' is not a TeacherWeightingPolicy subclass")
    return policy


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


def normalized_weights(raw: Tensor, count: int, batch_size: int) -> Tensor:
    """Check a policy's output and bring it to shape ``[B, K]`` with rows summing to one."""
    if raw.dim() == 1:
        raw = raw.unsqueeze(0).expand(batch_size, -1)
    if raw.shape != (batch_size, count):
        raise ValueError(f"policy returned weights of shape {tuple(raw.shape)}, expected [{count}] or [{batch_size}, {count}]")
    if bool((raw < 0).any()) or not bool(torch.isfinite(raw).all()):
        raise ValueError("policy weights must be finite and non-negative")
    return raw / raw.sum(dim=1, keepdim=True).clamp_min(1e-12)


def teacher_weights(weights: Tensor, count: int) -> Tensor:
    """The first ``count`` columns of normalized ``[B, K]`` weights, rows renormalized to one.

    Online in ensemble mode the last candidate is the student itself; methods applied teacher by
    teacher leave it out and share its weight among the teachers, example by example.
    """
    teachers = weights[:, :count]
    return teachers / teachers.sum(dim=1, keepdim=True).clamp_min(1e-12)


def ensemble_view(views: list[TeacherView], weights: Tensor) -> TeacherView:
    """The weighted logit ensemble ``Σ_l w_l z_l`` (weights ``[B, K]``) as one teacher."""
    stacked = torch.stack([view.logits.float() for view in views])  # [K, B, C]
    logits = torch.einsum("bk,kbc->bc", weights.to(stacked.dtype), stacked)
    return TeacherView(logits=logits, index=None)
