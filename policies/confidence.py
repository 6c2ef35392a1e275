"""Confidence-aware per-example teacher weights (CA-MKD; Zhang, Chen & Wang, ICASSP 2022).

For each example, teachers that predict the true label with less cross-entropy count more::

    w_k = (1 − softmax_k(CE(z_k, y))) / (K − 1)        (for K ≥ 2 teachers)

the softmax being taken over teachers, so a teacher with a larger loss gets a smaller weight and
the weights sum to one over teachers. With a single teacher the weight is 1. Methods applied
teacher by teacher weight each example's term by its own weight. Differs from the reference:
CA-MKD's code also divides the weighted sum over teachers by K, so with KD at the same weight
this loss is K times CA-MKD's logit term (fold 1/K into the method's ``weight`` to match).
Use: ``distillation.policy: {name: "policies.confidence:ConfidenceAwarePolicy"}``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from codistill.policy import TeacherBatch, TeacherWeightingPolicy


class ConfidenceAwarePolicy(TeacherWeightingPolicy):
    def weights(self, batch: TeacherBatch) -> Tensor:
        count, batch_size, classes = batch.teacher_logits.shape
        if count == 1:
            return torch.ones(batch_size, 1, device=batch.teacher_logits.device)
        losses = F.cross_entropy(batch.teacher_logits.reshape(-1, classes),
                                 batch.targets.repeat(count), reduction="none").view(count, batch_size)
        return ((1.0 - losses.softmax(dim=0)) / (count - 1)).t()
