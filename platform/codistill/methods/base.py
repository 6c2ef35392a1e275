"""The interface every distillation method implements.

A method is an ``nn.Module`` (so adapters it owns train with the student and are saved with it)
built from a :class:`MethodContext` plus its own keyword parameters, and called once per teacher
(or once with ``teacher=None`` for teacher-free methods, or once with the logit ensemble). It
returns named loss terms, each of one of two shapes:

- ``[B]``, one value per example, wherever the formula decomposes over examples (KD, DKD, …).
  The engine multiplies a teacher's per-example terms by that teacher's per-example weight
  ``w[b, k]`` (the teacher-weighting policy's, rows renormalized over the teachers) and averages
  over the batch: ``mean_b(w[b, k] · term[b])``;
- a scalar, for terms that are not a mean over examples; it takes the batch-mean weight
  ``mean_b(w[b, k]) · term``.

Terms computed from an ensemble teacher, or teacher-free, carry weight 1 (a ``[B]`` term is then
averaged). The engine multiplies the sum of the weighted terms by the method's configured weight
and the scheduled distillation weight λ(t)·m(t). After the last teacher of a training step it
calls :meth:`DistillationMethod.end_step` once (for state such as running averages, which must
change once per step, never between the teachers of a step, and never in place on a tensor a
returned term still needs for backward). Numeric parameters that may change over training
(temperature, …) accept a schedule spec: see :func:`codistill.schedules.as_schedule`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from codistill.checks import Check, check_declared_params, check_keyword_params, numeric
from codistill.errors import ConfigError
from codistill.models.base import ModelOutput, PeerNetwork
from codistill.progress import Progress
from codistill.schedules import as_schedule, minimum_over


@dataclass
class TeacherView:
    """What a student sees of one teacher (or of the ensemble): detached tensors only.

    One exception, ``weights_graph``: the weighted ensemble's logits ``Σ_l w_l z_l``, built from
    detached teachers, keep their graph to the weights ``w`` (never to a network) when the policy
    asks for the weights' dense credit; methods read teacher logits through :func:`teacher_logits`.

    ``index`` is the teacher's slot (0 … K−1) so per-teacher modules (adapters) can be chosen;
    it is ``None`` for an ensemble teacher. ``extras`` holds what methods asked the teacher side to
    compute (see :meth:`DistillationMethod.teacher_extras`).
    """

    logits: Tensor
    features: list[Tensor] = field(default_factory=list)
    index: int | None = None
    extras: dict[str, Any] = field(default_factory=dict)
    weights_graph: bool = False


def teacher_logits(view: TeacherView) -> Tensor:
    """The teacher's logits as a method may use them: detached, except for an ensemble whose
    graph reaches the teacher weights only (``weights_graph``), so no gradient reaches a teacher."""
    return view.logits if view.weights_graph else view.logits.detach()


@dataclass
class MethodContext:
    """Shapes and sizes a method needs to build its adapters."""

    num_classes: int
    student_feature_shapes: list[torch.Size]
    teacher_feature_shapes: list[list[torch.Size]]
    total_epochs: int
    #: True between the peers of an online cohort (teachers are peers of any size), False offline.
    online: bool = False


class DistillationMethod(nn.Module):
    """Base class of all methods; subclasses set the class variables and implement ``forward``."""

    name: ClassVar[str] = ""
    #: False for teacher-free methods (called once per step with ``teacher=None``).
    uses_teacher: ClassVar[bool] = True
    #: True when the method reads teacher stage features (then it is applied per teacher, never
    #: to the logit ensemble, whose features do not exist across architectures).
    uses_teacher_features: ClassVar[bool] = False
    #: Parameters given as a number or a schedule that must stay > 0 all through training (temperatures).
    positive_schedules: ClassVar[tuple[str, ...]] = ()
    #: Range checks of plain numeric parameters, by name (see :mod:`codistill.checks`).
    param_checks: ClassVar[dict[str, Check]] = {}

    @classmethod
    def check_params(cls, params: dict[str, Any], field: str, total_epochs: int) -> None:
        """Validate this method's config parameters before anything runs; errors name ``field.<param>``.

        Refuses parameters ``__init__`` does not take, NaN and infinity, schedules of
        ``positive_schedules`` that reach 0 or below, and values failing ``param_checks``.
        """
        check_keyword_params(cls.__init__, params, field, f"method '{cls.name}'", skip=("self", "context"))
        for key in cls.positive_schedules:
            if key in params:
                low = minimum_over(as_schedule(params[key], f"{field}.{key}"), total_epochs)
                if not low > 0:
                    raise ConfigError(f"{field}.{key}", f"must be > 0 throughout training, got {low}")
        check_declared_params(params, {key: numeric(check) for key, check in cls.param_checks.items()}, field)

    def __init__(self, context: MethodContext) -> None:
        super().__init__()
        self.context = context

    @classmethod
    def teacher_extras(cls, teacher: PeerNetwork, output: ModelOutput) -> dict[str, Any]:
        """Extra tensors this method needs computed on the teacher's side (default: none)."""
        return {}

    def forward(self, student: ModelOutput, teacher: TeacherView | None, targets: Tensor,
                progress: Progress) -> dict[str, Tensor]:  # pragma: no cover - interface
        """Named loss terms, each ``[B]`` (per example) or a scalar: see the module docstring."""
        raise NotImplementedError

    def end_step(self) -> None:
        """Called once per training step after every teacher of the step (default: nothing)."""


def weighted_term(value: Tensor, weight: Tensor | None, batch_size: int, name: str) -> Tensor:
    """A method's term as a scalar: ``mean_b(w_b · term_b)`` for a ``[B]`` term, ``mean_b(w_b) · term``
    for a scalar; ``weight`` is one teacher's per-example weights ``[B]``, or ``None`` for 1."""
    if value.dim() == 0:
        return value if weight is None else value * weight.mean()
    if value.shape != (batch_size,):
        raise ValueError(f"method term '{name}' has shape {tuple(value.shape)}, expected [{batch_size}] or a scalar")
    return value.mean() if weight is None else (value * weight).mean()
