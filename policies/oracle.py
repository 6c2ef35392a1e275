"""The label oracle: a benchmark's ceiling for per-example teacher weights under label noise.

A benchmark that injected the noise knows every training example's true label. Given them (a file
of the training split's true labels, indexed as :attr:`TeacherBatch.example_indices`), this
policy puts each example's weight on the teachers whose prediction is its true label::

    w[b, k] = 1[argmax_c z_k(b)_c = y*_b]       (uniform over the candidates when none is right)

It is not something a user can run (a user does not know the true labels); it bounds what a
per-example policy can gain (the issue's "headroom", oracle − uniform). Use::

    torch.save(codistill.peer.load_dataset(config).clean_train_labels, "true_labels.pt")
    distillation:
      policy: {name: "policies.oracle:LabelOraclePolicy", params: {labels: true_labels.pt}}
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from codistill.errors import ConfigError
from codistill.policy import PolicyContext, TeacherBatch, TeacherWeightingPolicy

if TYPE_CHECKING:
    from codistill.config import RunConfig


def read_labels(path: str) -> Tensor:
    """A 1-D integer tensor of labels saved with ``torch.save``; ``ValueError`` otherwise."""
    try:
        labels = torch.load(Path(path).expanduser(), map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any unreadable file is reported the same way
        raise ValueError(f"cannot read labels from {path}: {error}") from None
    if not isinstance(labels, Tensor) or labels.dim() != 1 or labels.dtype.is_floating_point or labels.numel() == 0:
        raise ValueError(f"{path} does not hold a 1-D tensor of integer labels")
    return labels.long()


class LabelOraclePolicy(TeacherWeightingPolicy):
    """Per example, the teachers that predict its true label (module docstring); ``[B, K]``."""

    def __init__(self, context: PolicyContext, labels: str) -> None:
        super().__init__(context)
        self.labels = read_labels(labels)
        if int(self.labels.min()) < 0 or int(self.labels.max()) >= context.num_classes:
            raise ValueError(f"{labels}: labels outside [0, {context.num_classes})")

    @classmethod
    def check_params(cls, params: dict[str, Any], config: "RunConfig") -> None:
        super().check_params(params, config)
        labels = params.get("labels")
        if not isinstance(labels, str) or not Path(labels).expanduser().is_file():
            raise ConfigError("distillation.policy.params.labels", f"no such file: {labels!r}")
        try:
            read_labels(labels)
        except ValueError as error:
            raise ConfigError("distillation.policy.params.labels", str(error)) from None

    def weights(self, batch: TeacherBatch) -> Tensor:
        if batch.example_indices is None:
            raise ValueError("the label oracle needs the batch's example indices")
        if int(batch.example_indices.max()) >= self.labels.numel():
            raise ValueError(f"the label oracle holds {self.labels.numel()} labels, the training split is larger")
        truth = self.labels[batch.example_indices.cpu()].to(batch.teacher_logits.device)
        right = (batch.teacher_logits.argmax(-1) == truth.unsqueeze(0)).float().t()  # [B, K]
        return torch.where(right.sum(1, keepdim=True) > 0, right, torch.ones_like(right))
