"""The curriculum of a run: the constraint fields that tighten (or loosen) distillation over training.

They are the distillation weight λ(t), the on/off gate m(t), each method's temperature T(t) — all
schedule specs (:mod:`codistill.schedules`) — and each pruned peer's sparsity target s. The runner
records them with every epoch, so a run whose parameters changed between epochs (a Population
Based Training trial that cloned another trial and mutated its constraints) keeps the piecewise
curriculum it actually followed (see :mod:`codistill.tuning.replay`).
"""

from __future__ import annotations

from typing import Any

from codistill.config import RunConfig

#: Dotted config paths (``N`` = any index) whose values are schedule specs.
SCHEDULE_FIELDS = ("distillation.weight", "distillation.gate", "distillation.methods.N.params.temperature")
#: Curriculum fields that are plain numbers.
NUMBER_FIELDS = ("peers.N.sparsity.target",)


def curriculum_fields(config: RunConfig) -> dict[str, Any]:
    """``{dotted path: value}`` of every curriculum field present in ``config``."""
    fields: dict[str, Any] = {"distillation.weight": config.distillation.weight,
                              "distillation.gate": config.distillation.gate}
    for i, method in enumerate(config.distillation.methods):
        if "temperature" in method.params:
            fields[f"distillation.methods.{i}.params.temperature"] = method.params["temperature"]
    for i, peer in enumerate(config.peers):
        if peer.sparsity is not None:
            fields[f"peers.{i}.sparsity.target"] = peer.sparsity.target
    return fields


def field_pattern(path: str) -> str:
    """``path`` with list indices replaced by ``N`` (``peers.2.sparsity.target`` → ``peers.N.sparsity.target``)."""
    return ".".join("N" if part.isdigit() else part for part in path.split("."))


def is_schedule_field(path: str) -> bool:
    return field_pattern(path) in SCHEDULE_FIELDS


def curriculum_field_of(key: str) -> str | None:
    """The curriculum field that dotted ``key`` sets or lies inside (``distillation.weight.value`` →
    ``distillation.weight``), or None when ``key`` is no part of the curriculum."""
    parts = key.split(".")
    for length in range(len(parts), 0, -1):
        prefix = ".".join(parts[:length])
        if field_pattern(prefix) in SCHEDULE_FIELDS + NUMBER_FIELDS:
            return prefix
    return None
