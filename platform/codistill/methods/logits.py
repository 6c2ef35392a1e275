"""Logit-level pieces shared by the output-distillation methods (KD, DKD, DCKD).

``KL_T(p‖q)``: KL divergence between ``softmax(z_p / T)`` and ``softmax(z_q / T)``, summed over
classes, one value per example (the engine weights and averages examples, see
:mod:`codistill.methods.base`); the methods multiply by T² (Hinton et al. 2015) so gradient
magnitudes do not shrink as T grows.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

MASK_LOGIT = 1000.0  # subtracted from a logit to remove its class from a softmax (as mdistiller)


def softened_kl(teacher_logits: Tensor, student_logits: Tensor, temperature: float) -> Tensor:
    """``T² · KL(softmax(z_t/T) ‖ softmax(z_s/T))`` per example, shape ``[B]``."""
    log_student = F.log_softmax(student_logits.float() / temperature, dim=1)
    log_teacher = F.log_softmax(teacher_logits.float() / temperature, dim=1)
    return (log_teacher.exp() * (log_teacher - log_student)).sum(1) * temperature ** 2


def target_mask(logits: Tensor, targets: Tensor) -> Tensor:
    """Boolean ``[B, C]`` mask of each example's target class."""
    return F.one_hot(targets, logits.shape[1]).bool()


def binary_target_log_probs(logits: Tensor, targets: Tensor, temperature: float) -> Tensor:
    """``log b = [log p_y, log(1 − p_y)]`` at temperature T, shape ``[B, 2]``.

    Both parts come from log-sum-exps (``log(1 − p_y) = logsumexp_{c≠y} log p_c``), never from
    ``log`` of a probability, so they stay exact — and their gradients non-zero — however far the
    target logit lies below the others.
    """
    log_probs = F.log_softmax(logits.float() / temperature, dim=1)
    mask = target_mask(logits, targets)
    log_target = log_probs.gather(1, targets[:, None])
    log_rest = torch.logsumexp(log_probs.masked_fill(mask, float("-inf")), dim=1, keepdim=True)
    return torch.cat([log_target, log_rest], dim=1)


def non_target_log_probs(logits: Tensor, targets: Tensor, temperature: float) -> Tensor:
    """Log-softmax over the non-target classes only (the target logit masked out)."""
    masked = logits.float() / temperature - MASK_LOGIT * target_mask(logits, targets)
    return F.log_softmax(masked, dim=1)


def kl_from_probs(teacher: Tensor, log_student: Tensor) -> Tensor:
    """``Σ_c p_t (log p_t − log p_s)`` per example, for probabilities ``teacher``."""
    return (teacher * (teacher.clamp_min(1e-12).log() - log_student)).sum(1)


def kl_from_log_probs(log_teacher: Tensor, log_student: Tensor) -> Tensor:
    """``Σ_c p_t (log p_t − log p_s)`` per example, for log-probabilities ``log_teacher``."""
    return (log_teacher.exp() * (log_teacher - log_student)).sum(1)
