"""The search space of a sweep, read and checked without Ray.

A YAML mapping from the dotted config keys of ``--set`` to one domain each::

    distillation.weight.value: {uniform: [0.25, 2.0], tightens: up}
    distillation.weight.ramp_epochs: {randint: [2, 16]}
    distillation.methods.0.params.temperature: {choice: [2.0, 3.0, 4.0], tightens: down}
    peers.0.optimizer.lr: {loguniform: [0.01, 0.2]}
    seed: {grid: [0, 1]}

``uniform`` / ``loguniform`` ``[low, high]`` (loguniform needs low > 0), ``randint [low, high]``
(both ends included), ``choice`` (a non-empty list, sampled), ``grid`` (every value, crossed with
the other samples). ``tightens: up | down`` marks a constraint for monotone population-based
training (:mod:`.monotone`): λ and sparsity targets tighten up, temperatures down. Every entry is
checked against the run's config (each extreme value is applied and the config validated), so an
unknown key or a value the config refuses fails here, naming the entry, before Ray starts.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from codistill.config import set_field
from codistill.errors import ConfigError
from codistill.validation import parse_config

RANGE_DOMAINS = ("uniform", "loguniform", "randint")
LIST_DOMAINS = ("choice", "grid")
DIRECTIONS = ("up", "down")
SCHEDULERS = ("fifo", "asha", "pbt", "pb2")  # built by codistill.tuning.schedulers


@dataclass(frozen=True)
class Dimension:
    """One searched config key: ``domain`` over ``values`` (``[low, high]`` for ranges)."""

    key: str
    domain: str
    values: tuple[Any, ...]
    tightens: str | None = None

    @property
    def is_range(self) -> bool:
        return self.domain in RANGE_DOMAINS

    @property
    def bounds(self) -> tuple[Any, Any] | None:
        """``(low, high)`` of a range, or of a choice of numbers; None otherwise."""
        if self.is_range:
            return self.values[0], self.values[1]
        if all(_is_number(v) for v in self.values):
            return min(self.values), max(self.values)
        return None

    def extremes(self) -> list[Any]:
        """The values that must all give a valid config."""
        return list(self.values)

    def to_tune(self) -> Any:
        """The Ray Tune domain (imported here, so reading a space needs no Ray)."""
        from ray import tune

        low, high = self.values[0], self.values[-1]
        return {"uniform": lambda: tune.uniform(low, high), "loguniform": lambda: tune.loguniform(low, high),
                "randint": lambda: tune.randint(low, high + 1), "choice": lambda: tune.choice(list(self.values)),
                "grid": lambda: tune.grid_search(list(self.values))}[self.domain]()


def mutated(dimensions: list[Dimension], scheduler: str) -> list[Dimension]:
    """The entries a population scheduler (pbt, pb2) changes during training: never a grid; pb2
    (a GP bandit over continuous bounds) only the ranges."""
    if scheduler == "pb2":
        return [d for d in dimensions if d.is_range]
    return [d for d in dimensions if d.domain != "grid"]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def parse_dimension(key: str, spec: Any, field: str) -> Dimension:
    """One entry of a space file; raises :class:`ConfigError` naming ``field``."""
    if not isinstance(spec, dict):
        raise ConfigError(field, f"expected a mapping like {{uniform: [low, high]}}, got {spec!r}")
    spec = dict(spec)
    tightens = spec.pop("tightens", None)
    if tightens is not None and tightens not in DIRECTIONS:
        raise ConfigError(field, f"tightens must be up or down, got {tightens!r}")
    if len(spec) != 1:
        raise ConfigError(field, f"give exactly one domain ({', '.join(RANGE_DOMAINS + LIST_DOMAINS)}), "
                                 f"got {sorted(spec) or 'none'}")
    domain, values = next(iter(spec.items()))
    if domain not in RANGE_DOMAINS + LIST_DOMAINS:
        raise ConfigError(field, f"unknown domain '{domain}' (known: {', '.join(RANGE_DOMAINS + LIST_DOMAINS)})")
    if not isinstance(values, list) or not values:
        raise ConfigError(field, f"{domain} needs a non-empty list, got {values!r}")
    if domain in RANGE_DOMAINS:
        if len(values) != 2 or not all(_is_number(v) for v in values):
            raise ConfigError(field, f"{domain} needs [low, high] numbers, got {values!r}")
        low, high = values
        if low > high:
            raise ConfigError(field, f"low {low} > high {high}")
        if domain == "loguniform" and low <= 0:
            raise ConfigError(field, f"loguniform needs low > 0, got {low}")
        if domain == "randint" and not all(isinstance(v, int) for v in values):
            raise ConfigError(field, f"randint needs integer bounds, got {values!r}")
    dimension = Dimension(key=key, domain=domain, values=tuple(values), tightens=tightens)
    if tightens is not None and dimension.bounds is None:
        raise ConfigError(field, "only a numeric entry can tighten")
    if tightens is not None and domain == "grid":
        raise ConfigError(field, "a grid entry is never mutated, so it cannot tighten")
    return dimension


def load_space(path: str | Path, base_raw: dict[str, Any]) -> list[Dimension]:
    """Read and check a space file against the run's raw config (after its ``--set`` overrides)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError("--space", f"no such file: {path}")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise ConfigError("--space", f"{path} is not YAML: {error}") from None
    if not isinstance(raw, dict) or not raw:
        raise ConfigError("--space", f"{path} must map config keys to domains")
    dimensions = []
    for key, spec in raw.items():
        field = f"{path.name}: {key}"
        dimension = parse_dimension(str(key), spec, field)
        for value in dimension.extremes():
            check_value(base_raw, dimension.key, value, field)
        dimensions.append(dimension)
    return dimensions


def check_value(base_raw: dict[str, Any], key: str, value: Any, field: str) -> None:
    """Validate the config with ``key`` set to ``value``; a failure names the space entry."""
    try:
        parse_config(apply_values(base_raw, {key: value}))
    except ConfigError as error:
        raise ConfigError(field, f"{key}={value!r} gives {error}") from None


def apply_values(base_raw: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``base_raw`` with every dotted key of ``values`` set (values made plain Python)."""
    raw = copy.deepcopy(base_raw)
    for key, value in values.items():
        set_field(raw, key, plain(value))
    return raw


def plain(value: Any) -> Any:
    """Plain Python numbers for YAML and JSON (Tune samples numpy scalars)."""
    if hasattr(value, "item") and not isinstance(value, (list, dict, str)):
        return value.item()
    return value
