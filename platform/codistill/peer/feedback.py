"""The probe: how a learning teacher policy sees the effect of its weights.

A policy that asks for it (``probe_batch_size`` > 0) gets the student's cross-entropy on a batch
of the probe split (``data.probe_fraction`` of the training split, never trained on) just before
and just after each update, in eval mode (no RNG drawn, no BatchNorm statistics touched), inside
the :class:`~codistill.policy.Feedback` of that step.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from codistill.data.base import PeerDataset
from codistill.models import PeerNetwork
from codistill.progress import Progress


class Probe:
    """Probe batches of ``dataset`` and the student's loss on them."""

    def __init__(self, dataset: PeerDataset, seed: int, batch_size: int, device: torch.device,
                 autocast: Callable[[], AbstractContextManager]) -> None:
        self.dataset, self.seed, self.batch_size, self.device, self.autocast = dataset, seed, batch_size, device, autocast

    def batch(self, progress: Progress) -> tuple[Tensor, Tensor]:
        """The probe batch of this step (a pure function of seed, epoch and step)."""
        images, labels = self.dataset.probe_batch(self.seed, progress.epoch, progress.step, self.batch_size)
        return images.to(self.device), labels.to(self.device)

    @torch.no_grad()
    def loss(self, model: PeerNetwork, batch: tuple[Tensor, Tensor]) -> float:
        """The model's cross-entropy on ``batch``, in eval mode (its training mode restored)."""
        images, labels = batch
        was_training = model.training
        model.eval()
        with self.autocast():
            logits = model(images).logits.float()
        model.train(was_training)
        return float(F.cross_entropy(logits, labels))
