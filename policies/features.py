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
``teacher_class_share`` ``log(K · Σ_c p̄(c) s_k(c))``: how much of the training data of the classes
                       the candidates predict teacher k held (label-free, below)
=====================  =========================================================================

``teacher_class_share`` reads what each candidate was trained on: with ``data.partition`` every
peer knows every shard's class counts n_k(c), so ``s_k(c) = n_k(c) / Σ_j n_j(c)`` is candidate k's
share of class c among the K candidates (``1/K`` for a class none holds) and ``p̄`` the mean of the
candidates' softmax. It is 0 when k holds an average share of the classes the example looks like,
negative when it holds less (a teacher that never saw the class); it is left out when the counts
are not known (every candidate trained on the same data). It needs no label, so it also
tells the teachers apart on unlabeled examples (``data.shared_fraction``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

#: What the policy observes when every candidate trained on the same data.
SAME_DATA_FEATURES = ("teacher_ce", "teacher_confidence", "teacher_entropy", "kl_teacher_student",
                      "agrees_with_student", "agrees_with_teachers", "kl_teacher_others", "progress", "student_ce")
#: What it observes when the candidates' shards are known (``data.partition``): one more, last.
FEATURES = (*SAME_DATA_FEATURES, "teacher_class_share")
FEATURE_CLIP = 10.0


def observed_features(shards_known: bool) -> tuple[str, ...]:
    """The features a policy observes: :data:`FEATURES` when the candidates' shards are known, else
    :data:`SAME_DATA_FEATURES` (a policy without partition sees, and is initialized, as before)."""
    return FEATURES if shards_known else SAME_DATA_FEATURES


def observation(student_logits: Tensor, teacher_logits: Tensor, targets: Tensor, progress: float,
                class_counts: Tensor | None = None) -> Tensor:
    """Features ``[B, K, F]`` of every (example, teacher) pair, ``class_counts`` ``[K, C]`` the
    candidates' training examples per class (None: unknown, and ``teacher_class_share`` left out:
    ``F = len(observed_features(class_counts is not None))``); see the module docstring."""
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
    columns = [teacher_ce, confidence, entropy, kl_student, agrees_student, agrees_teachers, kl_others,
               torch.full_like(teacher_ce, float(progress)), student_ce]
    if class_counts is not None:
        columns.append(shard_knowledge(p, class_counts))
    stacked = torch.stack(columns, dim=-1)  # [K, B, F]
    return stacked.clamp(-FEATURE_CLIP, FEATURE_CLIP).transpose(0, 1).contiguous()


def shard_knowledge(p: Tensor, class_counts: Tensor) -> Tensor:
    """``log(K · Σ_c p̄_b(c) s_k(c))`` ``[K, B]`` for softmax ``p`` ``[K, B, C]`` and counts ``[K, C]``
    (``teacher_class_share`` of the module docstring)."""
    count = class_counts.shape[0]
    counts = class_counts.to(p.device, torch.float32)
    total = counts.sum(0, keepdim=True)
    share = torch.where(total > 0, counts / total.clamp_min(1.0), torch.full_like(counts, 1.0 / count))  # [K, C]
    expected = torch.einsum("bc,kc->kb", p.mean(0), share)
    return (count * expected).clamp_min(1e-4).log()
