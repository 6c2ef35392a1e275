"""A peer's training objective (Gao et al., Entropy 2019, eq. 6, with any set of methods)::

    L_k = CE(z_k, y) + λ(t)·m(t) · Σ_methods w_method · D_method(student_k, teacher)

λ(t) is ``distillation.weight`` and m(t) ∈ {0, 1} the gate of discontinuous distillation
(``distillation.gate``), both schedules; λ(t)·m(t) is 0 in the first ``distillation.burn_in_epochs``
(the burn-in of Anil et al., ICLR 2018). Each method is applied to the weighted logit ensemble
(ensemble mode, logit methods) or teacher by teacher with each example weighted by its teacher
weight (mean of others, and every method that reads teacher features: features of different
architectures cannot be averaged); see :mod:`codistill.methods.base` for the term shapes.
"""

from __future__ import annotations

from torch import Tensor, nn

from codistill.config import RunConfig
from codistill.methods import DistillationMethod, MethodContext, build_method
from codistill.methods.base import TeacherView, weighted_term
from codistill.models import ModelOutput, PeerNetwork
from codistill.peer.teachers import ensemble_view, teacher_weights
from codistill.progress import Progress
from codistill.schedules import as_schedule


class DistillationObjective(nn.Module):
    """The configured methods (their adapters train with the student) and the λ(t)·m(t) schedule."""

    def __init__(self, config: RunConfig, context: MethodContext) -> None:
        super().__init__()
        self.specs = () if config.independent else config.distillation.methods
        self.methods = nn.ModuleList([build_method(spec.name, context, spec.params) for spec in self.specs])
        self.ensemble = config.distillation.teacher == "ensemble"
        self.weight_schedule = as_schedule(config.distillation.weight, "distillation.weight")
        self.gate_schedule = as_schedule(config.distillation.gate, "distillation.gate")
        self.burn_in_epochs = config.distillation.burn_in_epochs
        names = [spec.name for spec in self.specs]
        self.prefixes = [name if names.count(name) == 1 else f"{name}{i}" for i, name in enumerate(names)]

    @property
    def active(self) -> bool:
        return len(self.methods) > 0

    @property
    def needs_teacher_features(self) -> bool:
        return any(method.uses_teacher_features for method in self.methods)

    def strength(self, progress: Progress) -> float:
        """λ(t)·m(t); 0 during the first ``distillation.burn_in_epochs`` (codistillation's burn-in)."""
        if progress.epoch < self.burn_in_epochs:
            return 0.0
        return self.weight_schedule(progress) * self.gate_schedule(progress)

    def teacher_payload(self, network: PeerNetwork, output: ModelOutput) -> TeacherView:
        """What a teacher must send for these methods: logits, and stage features and extras only
        when a method reads them (detached; left on the teacher's device)."""
        view = TeacherView(logits=output.logits.detach().float())
        if self.needs_teacher_features:
            view.features = [f.detach().float() for f in output.features]
        for method in self.methods:
            view.extras.update(type(method).teacher_extras(network, output))
        return view

    def terms(self, student: ModelOutput, teachers: list[TeacherView], weights: Tensor, includes_self: bool,
              targets: Tensor, progress: Progress) -> dict[str, Tensor]:
        """Named, weighted method terms; ``weights`` ``[B, K]`` over the candidates (``teachers``,
        then the student itself when ``includes_self``), rows summing to one."""
        per_teacher = teacher_weights(weights, len(teachers))
        terms: dict[str, Tensor] = {}
        for method, spec, prefix in zip(self.methods, self.specs, self.prefixes):
            for weight, result in self._method_terms(method, student, teachers, weights, per_teacher, includes_self,
                                              targets, progress):
                for name, value in result.items():
                    key = f"{prefix}/{name}"
                    terms[key] = terms.get(key, 0.0) + spec.weight * weighted_term(value, weight, targets.numel(), key)
            method.end_step()
        return terms

    def _method_terms(self, method: DistillationMethod, student: ModelOutput, teachers: list[TeacherView],
                      weights: Tensor, per_teacher: Tensor, includes_self: bool, targets: Tensor, progress: Progress):
        if not method.uses_teacher:
            return [(None, method(student, None, targets, progress))]
        if self.ensemble and not method.uses_teacher_features:
            views = teachers + ([TeacherView(logits=student.logits.detach().float())] if includes_self else [])
            return [(None, method(student, ensemble_view(views, weights), targets, progress))]
        return [(per_teacher[:, k], method(student, view, targets, progress)) for k, view in enumerate(teachers)]
