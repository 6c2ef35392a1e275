"""Validation metrics of a cohort: each peer's top-1, the ensemble's, and how much peers agree."""

from __future__ import annotations

import itertools

import torch
from torch import Tensor


def top1(logits: Tensor, labels: Tensor) -> float:
    return float((logits.argmax(dim=1) == labels).float().mean())


def ensemble_probabilities(peer_logits: list[Tensor]) -> Tensor:
    """Mean of the peers' softmax outputs: the cohort's ensemble prediction."""
    return torch.stack([logits.float().softmax(dim=1) for logits in peer_logits]).mean(dim=0)


def pairwise_agreement(peer_logits: list[Tensor]) -> float:
    """Mean over peer pairs of the share of examples on which both predict the same class."""
    predictions = [logits.argmax(dim=1) for logits in peer_logits]
    pairs = list(itertools.combinations(predictions, 2))
    if not pairs:
        return 1.0
    return float(sum((a == b).float().mean() for a, b in pairs) / len(pairs))


def cohort_metrics(peer_logits: list[Tensor], labels: Tensor) -> dict[str, object]:
    """``peers``: per-peer top-1; ``ensemble``: top-1 of the mean softmax; ``agreement``."""
    return {"peers": [top1(logits, labels) for logits in peer_logits],
            "ensemble": top1(ensemble_probabilities(peer_logits), labels),
            "agreement": pairwise_agreement(peer_logits)}
