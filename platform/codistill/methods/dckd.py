"""Decoupled Classifier Knowledge Distillation (Wang, Dong, Zhu & Li, PLOS ONE 20(2):e0314267,
2025).

The paper (abstract confirmed; full formulation not reachable here) decouples the classifier
output into "non-target classes learned by the student, and target classes obtained by both the
teacher and the student", fixing "the correct knowledge that the student has already acquired"
while aligning the rest with the teacher. It builds on DKD (:mod:`codistill.methods.dkd`).

Our reading, documented as such:

- Target part: the binary target distribution is aligned to a *joint* target formed by teacher
  and student together, ``b_joint = γ · b_t + (1 − γ) · sg(b_s)``;
  ``TC = KL(b_joint ‖ b_s)``.
- Non-target part: on examples the student already classifies correctly its own non-target
  distribution is kept as part of the reference (fixed, no gradient), elsewhere the teacher's:
  ``p̂_ref = κ · sg(p̂_s) + (1 − κ) · p̂_t`` if ``argmax z_s = y`` else ``p̂_t``;
  ``NC = KL(p̂_ref ‖ p̂_s)``.
- ``L = min(epoch / warmup, 1) · T² · (α · TC + β · NC)``; defaults as DKD (T = 4, α = 1, β = 8,
  warm-up 20) with γ = 0.5, κ = 0.5.

Conventions shared with :mod:`codistill.methods.dkd`: the warm-up counts 1-based whole epochs as
mdistiller, ``log b_s`` is computed in log space, and both terms are per example (per-example
teacher weights apply). Differs from the reference: no reference code was available; the
formula above is a reading of the abstract.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from codistill.checks import non_negative, unit_interval
from codistill.methods.base import DistillationMethod, MethodContext, TeacherView, teacher_logits
from codistill.methods.dkd import warmup_factor
from codistill.methods.logits import binary_target_log_probs, kl_from_probs, non_target_log_probs
from codistill.models.base import ModelOutput
from codistill.progress import Progress
from codistill.registry import METHODS
from codistill.schedules import as_schedule


@METHODS.register_named
class DCKD(DistillationMethod):
    name = "dckd"
    positive_schedules = ("temperature",)
    param_checks = {"alpha": non_negative, "beta": non_negative, "warmup_epochs": non_negative,
                    "joint_target_share": unit_interval, "kept_student_share": unit_interval}

    def __init__(self, context: MethodContext, temperature: Any = 4.0, alpha: float = 1.0, beta: float = 8.0,
                 warmup_epochs: float = 20.0, joint_target_share: float = 0.5, kept_student_share: float = 0.5) -> None:
        super().__init__(context)
        self.temperature = as_schedule(temperature, f"{self.name}.temperature")
        self.alpha, self.beta, self.warmup_epochs = alpha, beta, warmup_epochs
        self.gamma, self.kappa = joint_target_share, kept_student_share

    def forward(self, student: ModelOutput, teacher: TeacherView | None, targets: Tensor,
                progress: Progress) -> dict[str, Tensor]:
        t = self.temperature(progress)
        scale = warmup_factor(progress, self.warmup_epochs) * t * t
        logits, student_logits = teacher_logits(teacher), student.logits

        log_b_student = binary_target_log_probs(student_logits, targets, t)
        b_teacher = binary_target_log_probs(logits, targets, t).exp()
        b_joint = self.gamma * b_teacher + (1 - self.gamma) * log_b_student.detach().exp()
        target_part = kl_from_probs(b_joint, log_b_student)

        log_student_nt = non_target_log_probs(student_logits, targets, t)
        teacher_nt = non_target_log_probs(logits, targets, t).exp()
        correct = (student_logits.detach().argmax(1) == targets).float()[:, None]
        kept = self.kappa * correct
        reference = kept * log_student_nt.detach().exp() + (1 - kept) * teacher_nt
        non_target_part = kl_from_probs(reference, log_student_nt)
        return {"target": scale * self.alpha * target_part, "non_target": scale * self.beta * non_target_part}
