"""Knowledge distillation (Hinton, Vinyals & Dean, "Distilling the Knowledge in a Neural
Network", 2015)::

    L_KD = T² · KL(softmax(z_t / T) ‖ softmax(z_s / T))

Default T = 4 (mdistiller's CIFAR setting; the online cohort configs use T = 3 as ONE / Gao et
al.). ``temperature`` may be a schedule spec. The term is per example (per-example teacher
weights apply); its batch mean is mdistiller's, RepDistiller's and torchdistill's KD term to
float rounding. Differs from the reference: mdistiller and RepDistiller weigh CE by 0.1 and KD
by 0.9 by default (torchdistill by its ``alpha``); here CE always has weight 1 and KD the
method's ``weight`` times λ(t)·m(t).
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from codistill.methods.base import DistillationMethod, MethodContext, TeacherView, teacher_logits
from codistill.methods.logits import softened_kl
from codistill.models.base import ModelOutput
from codistill.progress import Progress
from codistill.registry import METHODS
from codistill.schedules import as_schedule


@METHODS.register_named
class KD(DistillationMethod):
    name = "kd"
    positive_schedules = ("temperature",)

    def __init__(self, context: MethodContext, temperature: Any = 4.0) -> None:
        super().__init__(context)
        self.temperature = as_schedule(temperature, f"{self.name}.temperature")

    def forward(self, student: ModelOutput, teacher: TeacherView | None, targets: Tensor,
                progress: Progress) -> dict[str, Tensor]:
        return {self.name: softened_kl(teacher_logits(teacher), student.logits, self.temperature(progress))}
