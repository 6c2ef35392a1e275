"""The label oracle: a benchmark's ceiling for per-example teacher weights under label noise.

A benchmark that injected the noise knows every training example's true label. Given them (a file
of the training split's true labels, indexed as :attr:`TeacherBatch.example_indices`; with
``data.partition`` a list of them, one per peer's shard, as each peer's batches index its own,
followed by the shared slice's with ``data.shared_fraction``), this policy puts each example's
weight on the teachers whose prediction is its true label::

    w[b, k] = 1[argmax_c z_k(b)_c = y*_b]       (uniform over the candidates when none is right)

It is not something a user can run (a user does not know the true labels); it bounds what a
per-example policy can gain (the issue's "headroom", oracle − uniform). Use::

    torch.save(codistill.peer.load_dataset(config).clean_train_labels, "true_labels.pt")
    # with data.partition: one tensor per peer (codistill.commands.evidence_policy.pool.true_labels)
    torch.save([true_labels(d) for d in codistill.peer.peer_datasets(config)], "true_labels.pt")
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


def read_labels(path: str) -> list[Tensor]:
    """The labels saved with ``torch.save`` at ``path``: a 1-D integer tensor (one element: the
    labels every peer indexes) or a list of them (one per peer's shard); ``ValueError`` otherwise."""
    try:
        labels = torch.load(Path(path).expanduser(), map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any unreadable file is reported the same way
        raise ValueError(f"cannot read labels from {path}: {error}") from None
    per_peer = labels if isinstance(labels, list) and labels else [labels]
    if not all(isinstance(t, Tensor) and t.dim() == 1 and not t.dtype.is_floating_point and t.numel() > 0
               for t in per_peer):
        raise ValueError(f"{path} holds neither a 1-D tensor of integer labels nor a list of them, one per peer")
    return [t.long() for t in per_peer]


class LabelOraclePolicy(TeacherWeightingPolicy):
    """Per example, the teachers that predict its true label (module docstring); ``[B, K]``."""

    def __init__(self, context: PolicyContext, labels: str) -> None:
        super().__init__(context)
        per_peer = read_labels(labels)
        self.labels = per_peer[context.student_index if len(per_peer) > 1 else 0]
        if int(self.labels.min()) < 0 or int(self.labels.max()) >= context.num_classes:
            raise ValueError(f"{labels}: labels outside [0, {context.num_classes})")

    @classmethod
    def check_params(cls, params: dict[str, Any], config: "RunConfig") -> None:
        super().check_params(params, config)
        labels = params.get("labels")
        if not isinstance(labels, str) or not Path(labels).expanduser().is_file():
            raise ConfigError("distillation.policy.params.labels", f"no such file: {labels!r}")
        try:
            per_peer = read_labels(labels)
        except ValueError as error:
            raise ConfigError("distillation.policy.params.labels", str(error)) from None
        expected = len(config.peers) if config.data.partition.kind != "shared" else 1
        if len(per_peer) != expected:
            shape = f"a list of {expected} tensors, one per peer's shard" if expected > 1 else "one tensor"
            raise ConfigError("distillation.policy.params.labels",
                              f"{labels} holds {len(per_peer)} label tensors; this run needs {shape}")

    def weights(self, batch: TeacherBatch) -> Tensor:
        if batch.example_indices is None:
            raise ValueError("the label oracle needs the batch's example indices")
        if int(batch.example_indices.max()) >= self.labels.numel():
            raise ValueError(f"the label oracle holds {self.labels.numel()} labels, the training split is larger")
        truth = self.labels[batch.example_indices.cpu()].to(batch.teacher_logits.device)
        right = (batch.teacher_logits.argmax(-1) == truth.unsqueeze(0)).float().t()  # [B, K]
        return torch.where(right.sum(1, keepdim=True) > 0, right, torch.ones_like(right))
