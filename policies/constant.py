"""Fixed weights per teacher, named: a ceiling a benchmark can set, or a user's prior.

``w_k = weights[name_k]`` (``default`` for a teacher not named), the same for every example and
step; the engine renormalizes them to sum to one over the batch's candidates, as for every policy
(so ``{weights: {clean: 1}}`` is *that teacher only*, and ``{weights: {weak: 0}, default: 1}``
leaves one teacher out). Use::

    distillation:
      policy: {name: "policies.constant:ConstantPolicy", params: {weights: {clean: 0.7, weak: 0.3}}}
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from codistill.errors import ConfigError
from codistill.peer.teachers import TeacherSlots
from codistill.policy import PolicyContext, TeacherBatch, TeacherWeightingPolicy

if TYPE_CHECKING:
    from codistill.config import RunConfig


class ConstantPolicy(TeacherWeightingPolicy):
    """``w_k = weights.get(name_k, default)``, shape ``[K]``."""

    def __init__(self, context: PolicyContext, weights: dict[str, float], default: float = 0.0) -> None:
        super().__init__(context)
        self.table = torch.tensor([float(weights.get(name, default)) for name in context.teacher_names])

    @classmethod
    def check_params(cls, params: dict[str, Any], config: "RunConfig") -> None:
        super().check_params(params, config)
        path = "distillation.policy.params"
        weights, default = params.get("weights"), params.get("default", 0.0)
        if not isinstance(weights, dict) or not weights:
            raise ConfigError(f"{path}.weights", f"must map teacher names to weights, got {weights!r}")
        if not valid_weight(default):
            raise ConfigError(f"{path}.default", f"must be a finite number ≥ 0, got {default!r}")
        if config.independent:  # nobody distils: there are no teachers to name
            return
        candidates = [TeacherSlots.of(config, index).names for index in range(len(config.peers))]
        known = {name for names in candidates for name in names}
        for name, weight in weights.items():
            if name not in known:
                raise ConfigError(f"{path}.weights.{name}", f"no such teacher (teachers: {', '.join(sorted(known))})")
            if not valid_weight(weight):
                raise ConfigError(f"{path}.weights.{name}", f"must be a finite number ≥ 0, got {weight!r}")
        for index, names in enumerate(candidates):
            if names and sum(float(weights.get(name, default)) for name in names) <= 0:
                raise ConfigError(f"{path}.weights", f"every teacher of peer '{config.peers[index].name}' "
                                                     "would get weight 0")

    def weights(self, batch: TeacherBatch) -> Tensor:
        chosen = self.table[batch.teacher_indices]
        if float(chosen.sum()) <= 0:  # the teachers with weight left out (non-finite): the others alike
            chosen = torch.ones_like(chosen)
        return chosen.to(batch.teacher_logits.device)


def valid_weight(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0
