"""Teachers of an online cohort, and the teacher-weighting policy interface.

Two ways to form a peer's teacher from the cohort (``distillation.teacher``):

- ``mean_of_others`` — deep mutual learning (Zhang et al., CVPR 2018): peer k distils from each
  other peer l separately, ``Σ_l w_l · D(student_k, peer_l)``.
- ``ensemble`` — the ensemble teacher of multistructure collaborative online distillation
  (Gao et al., Entropy 2019) and ONE: ``z_ens = Σ_l w_l · z_l`` over *all* peers (the student's own
  logits included, detached), ``D(student_k, z_ens)``.

The weights ``w`` come from a :class:`TeacherWeightingPolicy`, asked once per batch. The engine
only knows this interface; learned policies live in the top-level ``policies`` package and are
named in a config as ``module:Class`` (e.g. ``policies.confidence:ConfidenceAwarePolicy``).
Methods that read teacher *features* always go teacher by teacher (features of different
architectures cannot be averaged), each example weighted by its own weights over the other peers
(:func:`teacher_weights`).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from codistill.checks import check_keyword_params
from codistill.methods.base import TeacherView
from codistill.progress import Progress
from codistill.registry import Registry


@dataclass
class TeacherBatch:
    """What a policy sees for one batch of one student."""

    student_index: int
    student_logits: Tensor  # [B, C], detached
    teacher_logits: Tensor  # [K, B, C], detached, one row per candidate teacher
    teacher_indices: list[int]  # online: peer index of each candidate (the student's own last in ensemble mode); offline: teacher index
    targets: Tensor  # [B]
    progress: Progress


class TeacherWeightingPolicy:
    """Returns, per batch, a weight per candidate teacher: shape ``[K]`` or per example ``[B, K]``.

    Weights must be non-negative; the engine renormalizes them to sum to one over teachers.
    ``feedback`` receives the student's losses after the update (the reward signal of learned
    policies); ``state_dict``/``load_state_dict`` let a learned policy resume with the run.
    """

    @classmethod
    def check_params(cls, params: dict[str, Any], field: str) -> None:
        """Validate ``distillation.policy.params`` before anything runs; errors name ``field.<param>``.

        By default: parameters ``__init__`` does not take, and NaN or infinity. Policies with
        further constraints extend this.
        """
        check_keyword_params(cls.__init__, params, field, f"policy '{cls.__name__}'")

    def weights(self, batch: TeacherBatch) -> Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def feedback(self, batch: TeacherBatch, weights: Tensor, losses: dict[str, float]) -> None:
        """Called after each update with the weights used and the student's loss terms."""

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
