"""Sparse-friendly feature-decoupled distillation (SF-KD; "Sparse Friendly Distillation Using
Feature Decoupling", PeerJ Computer Science 11:e3388, 2025).

Sparse students represent foreground and background differently, so each matched stage feature
is split by two poolings and each part matched to the teacher's by its own MSE (our reading of
the paper, documented as such: max pooling keeps the strongest, foreground responses; average
pooling keeps the diffuse, background context)::

    L_fg = MSE(maxpool_k(A(F_s)), maxpool_k(F_t))      L_bg = MSE(avgpool_k(A(F_s)), avgpool_k(F_t))
    L = w_fg · L_fg + w_bg · L_bg,  averaged over matched stages

with ``A`` the student's adapter (:mod:`codistill.methods.adapters`). Both terms are per example
(MSE over each example's elements), so per-example teacher weights apply. The weights are
adjusted dynamically (our rule): each is inversely proportional to an exponential moving average
of its own term, normalized to ``w_fg + w_bg = 2``, so neither part dominates as their scales
drift while the student is pruned (:mod:`codistill.pruning`). The average is updated once per
training step (:meth:`FeatureDecoupled.end_step`) from the step's batch-mean terms averaged over
its teachers, so a step uses the weights of the steps before it (the first step the initial
ones). ``dynamic: false`` keeps the initial weights. Vector features (MLP) are pooled in 1-D
over the feature axis. Differs from the reference: the paper's code and exact weighting rule
were not available; pooling as foreground/background and the weight rule are our reading.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from codistill.checks import non_negative, positive_int, rate
from codistill.methods.adapters import build_adapters, stage_pairs
from codistill.methods.base import DistillationMethod, MethodContext, TeacherView
from codistill.models.base import ModelOutput
from codistill.progress import Progress
from codistill.registry import METHODS


def _pooled(feature: Tensor, kernel: int, kind: str) -> Tensor:
    maps = feature if feature.dim() == 4 else feature[:, None, :, None]
    size = (min(kernel, maps.shape[2]), min(kernel, maps.shape[3]))
    pool = F.max_pool2d if kind == "max" else F.avg_pool2d
    return pool(maps, size, size)


def _per_example_mse(student: Tensor, target: Tensor) -> Tensor:
    return (student - target).pow(2).flatten(1).mean(1)


@METHODS.register_named
class FeatureDecoupled(DistillationMethod):
    name = "feature_decoupled"
    uses_teacher_features = True
    param_checks = {"pool_kernel": positive_int, "foreground_weight": non_negative,
                    "background_weight": non_negative, "momentum": rate}

    def __init__(self, context: MethodContext, pool_kernel: int = 2, foreground_weight: float = 1.0,
                 background_weight: float = 1.0, dynamic: bool = True, momentum: float = 0.9) -> None:
        super().__init__(context)
        self.adapters = build_adapters(context.student_feature_shapes, context.teacher_feature_shapes)
        self.pool_kernel, self.dynamic, self.momentum = pool_kernel, dynamic, momentum
        self.register_buffer("weights", torch.tensor([foreground_weight, background_weight]))
        self.register_buffer("running_terms", torch.zeros(2))
        self._step_terms: list[Tensor] = []  # this step's batch-mean terms, one row per teacher

    def forward(self, student: ModelOutput, teacher: TeacherView | None, targets: Tensor,
                progress: Progress) -> dict[str, Tensor]:
        adapters = self.adapters[teacher.index]
        pairs = stage_pairs(len(student.features), len(teacher.features))
        foreground, background = [], []
        for adapter, (s, t) in zip(adapters, pairs):
            adapted, target = adapter(student.features[s]), adapter.teacher(teacher.features[t].detach())
            foreground.append(_per_example_mse(_pooled(adapted, self.pool_kernel, "max"),
                                               _pooled(target, self.pool_kernel, "max")))
            background.append(_per_example_mse(_pooled(adapted, self.pool_kernel, "avg"),
                                               _pooled(target, self.pool_kernel, "avg")))
        foreground_term, background_term = torch.stack(foreground).mean(0), torch.stack(background).mean(0)
        if self.dynamic and self.training:
            self._step_terms.append(torch.stack([foreground_term.detach().mean(), background_term.detach().mean()]))
        weights = self.weights.clone()  # end_step updates the buffer in place before backward
        return {"foreground": weights[0] * foreground_term, "background": weights[1] * background_term}

    def end_step(self) -> None:
        if self._step_terms:
            terms, self._step_terms = torch.stack(self._step_terms).mean(0), []
            self._update_weights(terms)

    @torch.no_grad()
    def _update_weights(self, terms: Tensor) -> None:
        first = bool((self.running_terms == 0).all())
        self.running_terms.copy_(terms if first else self.momentum * self.running_terms + (1 - self.momentum) * terms)
        if bool((self.running_terms > 1e-12).all()):
            inverse = 1.0 / self.running_terms
            self.weights.copy_(2.0 * inverse / inverse.sum())
