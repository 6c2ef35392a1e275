"""A peer's teachers, formed once in one index space.

Two ways to form a peer's teacher (``distillation.teacher``):

- ``mean_of_others`` — deep mutual learning (Zhang et al., CVPR 2018): peer k distils from each
  teacher l separately, ``Σ_l w_l · D(student_k, teacher_l)``.
- ``ensemble`` — the ensemble teacher of multistructure collaborative online distillation
  (Gao et al., Entropy 2019) and ONE: ``z_ens = Σ_l w_l · z_l`` over the teachers and, online,
  the student's own detached logits, ``D(student_k, z_ens)``.

:class:`TeacherSlots` numbers the candidates once: positions ``0 … P−1`` are the teachers whose
payloads arrive (the other peers in index order online; ``config.teachers`` offline), and online
in ensemble mode position ``P`` is the student itself. The policy's :class:`~codistill.policy.PolicyContext`
names them in that order and every :class:`~codistill.policy.TeacherBatch` points into it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from codistill.config import RunConfig
from codistill.errors import NonFiniteLoss
from codistill.methods.base import TeacherView
from codistill.policy import TeacherBatch
from codistill.progress import Progress


@dataclass(frozen=True)
class TeacherSlots:
    """Which teachers are peer ``index``'s, in the one order used everywhere (module docstring)."""

    names: tuple[str, ...]  # every candidate, payload teachers first (the student itself last, if it is one)
    models: tuple[str, ...]  # model of each payload teacher
    includes_self: bool  # online ensemble: the student's own logits are the last candidate

    @classmethod
    def of(cls, config: RunConfig, index: int) -> "TeacherSlots":
        if config.teachers:
            teachers = [(t.name, t.model) for t in config.teachers]
        else:
            teachers = [(p.name, p.model) for k, p in enumerate(config.peers) if k != index]
        includes_self = not config.teachers and config.distillation.teacher == "ensemble"
        names = tuple(name for name, _ in teachers) + ((config.peers[index].name,) if includes_self else ())
        return cls(names=names, models=tuple(model for _, model in teachers), includes_self=includes_self)

    @property
    def payload_count(self) -> int:
        return len(self.models)

    def finite(self, payloads: list[TeacherView], stop: bool, student: str, progress: Progress) -> list[int]:
        """Positions of the payloads whose predictions are finite (``stop``: raise on the first other)."""
        kept = []
        for position, view in enumerate(payloads):
            if all(bool(torch.isfinite(t).all()) for t in [view.logits, *view.features]):
                kept.append(position)
            elif stop:
                raise NonFiniteLoss(self.names[position], progress.epoch + 1, progress.step + 1,
                                    f"its predictions sent to peer '{student}' are NaN or infinite")
        return kept

    def check_count(self, payloads: list[TeacherView]) -> None:
        """A student that distils needs one payload per teacher slot."""
        if len(payloads) != self.payload_count:
            raise ValueError(f"expected {self.payload_count} teacher payloads, got {len(payloads)}")

    def batch(self, teachers: list[TeacherView], student_logits: Tensor, targets: Tensor, student_index: int,
              progress: Progress, example_indices: Tensor | None = None) -> TeacherBatch:
        """What the policy sees: the kept teachers (``view.index`` = their position) and, if it is
        a candidate, the student itself."""
        logits = [view.logits for view in teachers] + ([student_logits] if self.includes_self else [])
        indices = [view.index for view in teachers] + ([self.payload_count] if self.includes_self else [])
        return TeacherBatch(student_index=student_index, student_logits=student_logits,
                            teacher_logits=torch.stack(logits), teacher_indices=indices, targets=targets,
                            progress=progress, example_indices=example_indices)


def payload_bytes(view: TeacherView) -> int:
    """The bytes of a payload's tensors (logits, stage features, extras): what it carries between peers."""
    return _tensor_bytes([view.logits, view.features, view.extras])


def _tensor_bytes(value: Any) -> int:
    if isinstance(value, Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, dict):
        return _tensor_bytes(list(value.values()))
    if isinstance(value, (list, tuple)):
        return sum(_tensor_bytes(item) for item in value)
    return 0


def normalized_weights(raw: Tensor, count: int, batch_size: int) -> Tensor:
    """Check a policy's output and bring it to shape ``[B, K]`` with rows summing to one."""
    if raw.dim() == 1:
        raw = raw.unsqueeze(0).expand(batch_size, -1)
    if raw.shape != (batch_size, count):
        raise ValueError(f"policy returned weights of shape {tuple(raw.shape)}, "
                         f"expected [{count}] or [{batch_size}, {count}]")
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
    stacked = torch.stack([view.logits.detach().float() for view in views])  # [K, B, C]
    logits = torch.einsum("bk,kbc->bc", weights.to(stacked.dtype), stacked)
    # with weights that require grad (their dense credit), the graph reaches them and nothing else
    return TeacherView(logits=logits, index=None, weights_graph=weights.requires_grad)
