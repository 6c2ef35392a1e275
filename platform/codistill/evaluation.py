"""Validation metrics of a cohort: each peer's top-1, the ensemble's, and how much peers agree."""

from __future__ import annotations

import itertools

import torch
from torch import Tensor


def finite_rows(logits: Tensor) -> Tensor:
    """Which examples' outputs are all finite (a peer that diverged under ``on_nonfinite: skip``
    may output NaN or infinity)."""
    return torch.isfinite(logits).all(dim=1)


def top1(logits: Tensor, labels: Tensor) -> float:
    """Share of examples predicted right; a NaN/inf output counts as wrong."""
    return float(((logits.argmax(dim=1) == labels) & finite_rows(logits)).float().mean())


def ensemble_probabilities(peer_logits: list[Tensor]) -> Tensor:
    """Mean of the peers' softmax outputs: the cohort's ensemble prediction. Per example, only
    peers with finite outputs count (no finite peer: a NaN row, which :func:`top1` counts wrong)."""
    finite = torch.stack([finite_rows(logits) for logits in peer_logits]).unsqueeze(-1)
    probabilities = torch.stack([logits.float().softmax(dim=1) for logits in peer_logits])
    return torch.where(finite, probabilities, 0.0).sum(dim=0) / finite.sum(dim=0)


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
