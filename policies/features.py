"""What the learned teacher policy observes, per example ``b`` and candidate teacher ``k``.

Nothing depends on the teacher's architecture (``p_k`` the teacher's softmax, ``q`` the student's,
``y`` the given, possibly noisy label, ``C`` classes; losses are divided by ``log C`` so a policy
transfers between class counts, and every feature is clipped at ±:data:`FEATURE_CLIP`):

=====================  =========================================================================
``teacher_ce``         ``−log p_k(y) / log C``: the teacher's loss on the given label
``teacher_confidence`` ``max_c p_k(c)``
``teacher_entropy``    ``H(p_k) / log C``
``kl_teacher_student`` ``KL(p_k ‖ q) / log C``
``agrees_with_student`` ``1[argmax p_k = argmax q]``
``agrees_with_teachers`` share of the other candidates with the same argmax (0 with one teacher)
``kl_teacher_others``  ``KL(p_k ‖ mean of the other candidates' p) / log C`` (0 with one teacher)
``progress``           share of training done, ``t / T``
``student_ce``         ``−log q(y) / log C``: the student's own loss
=====================  =========================================================================
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

FEATURES = ("teacher_ce", "teacher_confidence", "teacher_entropy", "kl_teacher_student", "agrees_with_student",
            "agrees_with_teachers", "kl_teacher_others", "progress", "student_ce")
FEATURE_CLIP = 10.0


def observation(student_logits: Tensor, teacher_logits: Tensor, targets: Tensor, progress: float) -> Tensor:
    """Features ``[B, K, len(FEATURES)]`` of every (example, teacher) pair; see the module docstring."""
    count, batch, classes = teacher_logits.shape
    log_c = math.log(max(classes, 2))
    log_p = F.log_softmax(teacher_logits.float(), dim=-1)  # [K, B, C]
    p = log_p.exp()
    log_q = F.log_softmax(student_logits.float(), dim=-1)  # [B, C]
    labels = targets.view(1, batch, 1).expand(count, batch, 1)
    teacher_ce = -log_p.gather(-1, labels).squeeze(-1) / log_c
    confidence, votes = p.max(dim=-1)
    entropy = -(p * log_p).sum(-1) / log_c
    kl_student = (p * (log_p - log_q)).sum(-1) / log_c
    agrees_student = (votes == log_q.argmax(-1)).float()
    if count > 1:
        one_hot = F.one_hot(votes, classes).float()  # [K, B, C]
        same_votes = (one_hot.sum(0, keepdim=True) - one_hot).gather(-1, votes.unsqueeze(-1)).squeeze(-1)
        agrees_teachers = same_votes / (count - 1)
        others = (p.sum(0, keepdim=True) - p) / (count - 1)
        kl_others = (p * (log_p - others.clamp_min(1e-12).log())).sum(-1) / log_c
    else:
        agrees_teachers = kl_others = torch.zeros_like(teacher_ce)
    student_ce = (-log_q.gather(-1, targets.view(batch, 1)).view(1, batch) / log_c).expand(count, batch)
    stacked = torch.stack([teacher_ce, confidence, entropy, kl_student, agrees_student, agrees_teachers, kl_others,
                           torch.full_like(teacher_ce, float(progress)), student_ce], dim=-1)  # [K, B, F]
    return stacked.clamp(-FEATURE_CLIP, FEATURE_CLIP).transpose(0, 1).contiguous()
