"""Decoupled Knowledge Distillation (Zhao et al., CVPR 2022; official code: mdistiller).

With ``b = [p_y, 1 − p_y]`` (binary target/non-target probabilities at temperature T) and
``p̂`` the softmax over the non-target classes only (target logit masked)::

    TCKD = KL(b_t ‖ b_s)          NCKD = KL(p̂_t ‖ p̂_s)
    L_DKD = min(epoch / warmup, 1) · T² · (α · TCKD + β · NCKD)

and classical KD decomposes as ``KL(p_t ‖ p_s) = TCKD + (1 − p_t,y) · NCKD``.
Defaults are the official CIFAR ones: T = 4, α = 1, β = 8, warm-up 20 epochs.

As mdistiller: ``epoch`` in the warm-up counts whole epochs from 1 (the first epoch trains at
``1 / warmup``, epoch ``warmup`` and later at 1), the target logit is masked by subtracting 1000
for ``p̂``. Differs from the reference: ``log b`` is computed in log space (mdistiller takes
``log`` of ``b``, which underflows when the target logit lies far below another); the terms are
per example, so per-example teacher weights apply (:mod:`codistill.methods.base`).
"""

from __future__ import annotations

from typing import Any

import torch.nn.functional as F
from torch import Tensor

from codistill.checks import non_negative
from codistill.methods.base import DistillationMethod, MethodContext, TeacherView, teacher_logits
from codistill.methods.logits import binary_target_log_probs, kl_from_log_probs, kl_from_probs, non_target_log_probs
from codistill.models.base import ModelOutput
from codistill.progress import Progress
from codistill.registry import METHODS
from codistill.schedules import as_schedule


def tckd(teacher_logits: Tensor, student_logits: Tensor, targets: Tensor, temperature: float) -> Tensor:
    """``KL(b_t ‖ b_s)`` per example (not scaled by T²)."""
    return kl_from_log_probs(binary_target_log_probs(teacher_logits, targets, temperature),
                             binary_target_log_probs(student_logits, targets, temperature))


def nckd(teacher_logits: Tensor, student_logits: Tensor, targets: Tensor, temperature: float) -> Tensor:
    """``KL(p̂_t ‖ p̂_s)`` over non-target classes, per example (not scaled by T²)."""
    teacher = non_target_log_probs(teacher_logits, targets, temperature).exp()
    return kl_from_probs(teacher, non_target_log_probs(student_logits, targets, temperature))


def warmup_factor(progress: Progress, warmup_epochs: float) -> float:
    """mdistiller's ``min(epoch / warmup, 1)`` with ``epoch`` the 1-based whole epoch."""
    return min((progress.epoch + 1) / warmup_epochs, 1.0) if warmup_epochs > 0 else 1.0


@METHODS.register_named
class DKD(DistillationMethod):
    name = "dkd"
    positive_schedules = ("temperature",)
    param_checks = {"alpha": non_negative, "beta": non_negative, "warmup_epochs": non_negative}

    def __init__(self, context: MethodContext, temperature: Any = 4.0, alpha: float = 1.0, beta: float = 8.0,
                 warmup_epochs: float = 20.0) -> None:
        super().__init__(context)
        self.temperature = as_schedule(temperature, f"{self.name}.temperature")
        self.alpha, self.beta, self.warmup_epochs = alpha, beta, warmup_epochs

    def forward(self, student: ModelOutput, teacher: TeacherView | None, targets: Tensor,
                progress: Progress) -> dict[str, Tensor]:
        t = self.temperature(progress)
        scale = warmup_factor(progress, self.warmup_epochs) * t * t
        logits = teacher_logits(teacher)
        return {"tckd": scale * self.alpha * tckd(logits, student.logits, targets, t),
                "nckd": scale * self.beta * nckd(logits, student.logits, targets, t)}


def decomposition_residual(teacher_logits: Tensor, student_logits: Tensor, targets: Tensor,
                           temperature: float) -> Tensor:
    """``KL(p_t ‖ p_s) − TCKD − (1 − p_t,y)·NCKD`` per example: zero up to rounding."""
    log_student = F.log_softmax(student_logits / temperature, dim=1)
    teacher = F.softmax(teacher_logits / temperature, dim=1)
    full = kl_from_probs(teacher, log_student)
    weight = 1.0 - teacher.gather(1, targets[:, None]).squeeze(1)
    return full - tckd(teacher_logits, student_logits, targets, temperature) - \
        weight * nckd(teacher_logits, student_logits, targets, temperature)
