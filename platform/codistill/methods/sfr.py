"""Self-Feature Regularization (Xu et al., arXiv 2103.07350). Teacher-free: a network's deepest
stage supervises its shallower stages, plus dynamic label smoothing at the output. (Versions of
the paper were withdrawn for errors in their experimental data: the method is implemented, its
numbers are never quoted.)

Feature term, for each shallower stage k against the deepest stage D (our reading, documented):

1. many-to-one channel grouping: the wider of the two maps is reduced to the narrower channel
   count by averaging groups of adjacent channels;
2. the larger map is average-pooled to the smaller one's H×W;
3. each spatial position is a local feature vector, ℓ2-normalized; the two sets (uniform mass)
   are matched by the earth mover's distance with ℓ2 ground cost, approximated differentiably by
   ``sinkhorn_iterations`` Sinkhorn iterations at entropic regularization ``epsilon``;
4. the deep features are the target (no gradient); the term is averaged over stages.

Label term: label smoothing whose strength grows linearly from 0 to ``max_smoothing`` over
training, written as ``ε(t) · (CE(uniform, p) − CE(y, p))`` so that CE plus it is the smoothed CE.
Both terms are batch means (scalars): the method has no teacher to weight per example.
Differs from the reference: no code was available; steps 1–4 are our reading of the paper.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from codistill.checks import positive, positive_int, unit_interval
from codistill.methods.base import DistillationMethod, MethodContext, TeacherView
from codistill.models.base import ModelOutput
from codistill.progress import Progress
from codistill.registry import METHODS


def group_channels(feature: Tensor, channels: int) -> Tensor:
    """Average adjacent channel groups of ``[B, C, H, W]`` down to ``channels``."""
    if feature.shape[1] == channels:
        return feature
    batch, _, height, width = feature.shape
    grouped = F.adaptive_avg_pool1d(feature.flatten(2).transpose(1, 2), channels)  # [B, HW, channels]
    return grouped.transpose(1, 2).reshape(batch, channels, height, width)


def local_features(feature: Tensor) -> Tensor:
    """``[B, C, H, W]`` → ``[B, H·W, C]`` unit-norm local feature vectors."""
    return F.normalize(feature.flatten(2).transpose(1, 2), dim=2)


def sinkhorn_emd(source: Tensor, target: Tensor, epsilon: float, iterations: int) -> Tensor:
    """Entropic EMD between equal-mass point sets ``[B, N, C]`` and ``[B, M, C]`` (ℓ2 cost)."""
    cost = torch.cdist(source, target)  # [B, N, M]
    batch, n, m = cost.shape
    log_a = torch.full((batch, n), -torch.log(torch.tensor(float(n))), device=cost.device)
    log_b = torch.full((batch, m), -torch.log(torch.tensor(float(m))), device=cost.device)
    f, g = torch.zeros_like(log_a), torch.zeros_like(log_b)
    for _ in range(iterations):
        f = -epsilon * torch.logsumexp((g[:, None, :] - cost) / epsilon + log_b[:, None, :], dim=2)
        g = -epsilon * torch.logsumexp((f[:, :, None] - cost) / epsilon + log_a[:, :, None], dim=1)
    plan = torch.exp((f[:, :, None] + g[:, None, :] - cost) / epsilon + log_a[:, :, None] + log_b[:, None, :])
    return (plan * cost).sum((1, 2)).mean()


def as_maps(feature: Tensor) -> Tensor:
    return feature if feature.dim() == 4 else feature[:, :, None, None]


@METHODS.register_named
class SelfFeatureRegularization(DistillationMethod):
    name = "sfr"
    uses_teacher = False
    param_checks = {"max_smoothing": unit_interval, "epsilon": positive, "sinkhorn_iterations": positive_int}

    def __init__(self, context: MethodContext, max_smoothing: float = 0.1, epsilon: float = 0.05,
                 sinkhorn_iterations: int = 20) -> None:
        super().__init__(context)
        self.max_smoothing, self.epsilon, self.iterations = max_smoothing, epsilon, sinkhorn_iterations

    def feature_term(self, features: list[Tensor]) -> Tensor:
        deep = as_maps(features[-1]).detach()
        terms = []
        for shallow in features[:-1]:
            shallow = as_maps(shallow)
            channels = min(shallow.shape[1], deep.shape[1])
            size = (min(shallow.shape[2], deep.shape[2]), min(shallow.shape[3], deep.shape[3]))
            source = local_features(F.adaptive_avg_pool2d(group_channels(shallow, channels), size))
            target = local_features(F.adaptive_avg_pool2d(group_channels(deep, channels), size))
            terms.append(sinkhorn_emd(source, target, self.epsilon, self.iterations))
        return torch.stack(terms).mean()

    def forward(self, student: ModelOutput, teacher: TeacherView | None, targets: Tensor,
                progress: Progress) -> dict[str, Tensor]:
        log_probs = F.log_softmax(student.logits.float(), dim=1)
        smoothing = self.max_smoothing * progress.fraction
        label_term = smoothing * (-log_probs.mean(1) + log_probs.gather(1, targets[:, None]).squeeze(1)).mean()
        return {"features": self.feature_term(student.features), "label_smoothing": label_term}
