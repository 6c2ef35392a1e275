"""Schedules: pure functions of training progress.

A schedule maps a :class:`~codistill.progress.Progress` to a number. They drive the distillation
weight λ(t), the on/off gate m(t) of discontinuous distillation, temperatures and any method
parameter given as a spec instead of a number. Specs come from YAML::

    3.0                                            # constant
    {kind: linear, start: 0.0, end: 1.0, start_epoch: 0, end_epoch: 20}
    {kind: ramp, value: 1.0, ramp_epochs: 80}      # ONE/DML ramp: value·exp(−5(1 − min(t/ramp,1))²)
    {kind: steps, values: [0.0, 0.5, 1.0], epochs: [10, 20]}   # piecewise constant
    {kind: steps, values: [{kind: ramp, value: 1.0, ramp_epochs: 10}, 1.5], epochs: [12]}  # piecewise
    {kind: phases, period_epochs: 4, on_start: 0.25, on_end: 1.0, start_epoch: 0}
    {kind: cosine}                                 # 0.5·(1 + cos(π·t/T)): the default LR decay
    {kind: multistep, milestones: [15, 25], gamma: 0.1}

A peer's learning rate is ``optimizer.lr`` times the schedule its ``lr_schedule`` names (``cosine``,
``multistep`` or ``constant``: the kinds with a :meth:`learning_rate` constructor), after a linear
warm-up over ``lr_schedule.warmup_epochs`` (:func:`learning_rate_factor`).

``phases`` is the on/off gate of *Multistructure-Based Collaborative Online Distillation*
(Gao et al., Entropy 2019): training is cut into periods; within each period distillation is on
for the first ``on_share(t)`` of the period and off for the rest, and ``on_share`` grows linearly
from ``on_start`` to ``on_end`` over training, so the constraint is discontinuous and tightens
progressively (our reading of the paper; see PAPERS.md). Before ``start_epoch`` it is off.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from codistill.config import LRScheduleConfig
from codistill.errors import ConfigError
from codistill.progress import Progress
from codistill.registry import SCHEDULES

Schedule = Callable[[Progress], float]


@SCHEDULES.register("constant")
@dataclass(frozen=True)
class Constant:
    value: float

    def __call__(self, progress: Progress) -> float:
        return self.value

    @classmethod
    def learning_rate(cls, config: LRScheduleConfig) -> "Constant":
        return cls(1.0)


@SCHEDULES.register("cosine")
@dataclass(frozen=True)
class Cosine:
    """Cosine decay from ``start`` to 0 over training (SGDR without restarts): ``start·½(1 + cos(π·t/T))``."""

    start: float = 1.0

    def __call__(self, progress: Progress) -> float:
        return self.start * 0.5 * (1.0 + math.cos(math.pi * progress.fraction))

    @classmethod
    def learning_rate(cls, config: LRScheduleConfig) -> "Cosine":
        return cls()


@SCHEDULES.register("multistep")
@dataclass(frozen=True)
class MultiStep:
    """``start · gamma^(number of milestones passed)``, milestones in whole epochs."""

    milestones: tuple[int, ...]
    gamma: float = 0.1
    start: float = 1.0

    def __call__(self, progress: Progress) -> float:
        return self.start * self.gamma ** sum(1 for milestone in self.milestones if progress.epoch >= milestone)

    @classmethod
    def learning_rate(cls, config: LRScheduleConfig) -> "MultiStep":
        return cls(milestones=tuple(config.milestones), gamma=config.gamma)


@SCHEDULES.register("linear")
@dataclass(frozen=True)
class Linear:
    """Linear from ``start`` at ``start_epoch`` to ``end`` at ``end_epoch``, flat outside."""

    start: float
    end: float
    start_epoch: float = 0.0
    end_epoch: float | None = None

    def __call__(self, progress: Progress) -> float:
        end_epoch = progress.total_epochs if self.end_epoch is None else self.end_epoch
        span = max(end_epoch - self.start_epoch, 1e-12)
        share = min(max((progress.epoch_float - self.start_epoch) / span, 0.0), 1.0)
        return self.start + (self.end - self.start) * share


@SCHEDULES.register("ramp")
@dataclass(frozen=True)
class Ramp:
    """Sigmoid-shaped ramp-up of ONE / DML: ``value · exp(−5 (1 − min(t / ramp_epochs, 1))²)``.

    Differs from the reference: ``t`` is fractional (updated every step); ONE's code evaluates it
    once per epoch, so the two agree at the start of each epoch and ours is higher within it.
    """

    value: float
    ramp_epochs: float

    def __call__(self, progress: Progress) -> float:
        t = min(progress.epoch_float / max(self.ramp_epochs, 1e-12), 1.0)
        return self.value * math.exp(-5.0 * (1.0 - t) ** 2)


@SCHEDULES.register("steps")
@dataclass(frozen=True)
class Steps:
    """Piecewise: ``values[i]`` from ``epochs[i-1]`` (``values[0]`` before ``epochs[0]``).

    A piece is a number or itself a schedule (of overall progress), so a curriculum whose
    parameters changed mid-training (a PBT trial's, see ``codistill.tuning.replay``) is one spec.
    """

    values: tuple[float | Schedule, ...]
    epochs: tuple[float, ...]

    def __call__(self, progress: Progress) -> float:
        index = sum(1 for boundary in self.epochs if progress.epoch_float >= boundary)
        piece = self.values[index]
        return piece(progress) if callable(piece) else piece


@SCHEDULES.register("phases")
@dataclass(frozen=True)
class Phases:
    """Discontinuous on/off gate whose "on" share of each period grows over training."""

    period_epochs: float
    on_start: float
    on_end: float = 1.0
    start_epoch: float = 0.0

    def on_share(self, progress: Progress) -> float:
        span = max(progress.total_epochs - self.start_epoch, 1e-12)
        share = min(max((progress.epoch_float - self.start_epoch) / span, 0.0), 1.0)
        return self.on_start + (self.on_end - self.on_start) * share

    def __call__(self, progress: Progress) -> float:
        if progress.epoch_float < self.start_epoch:
            return 0.0
        position = ((progress.epoch_float - self.start_epoch) % self.period_epochs) / self.period_epochs
        return 1.0 if position < self.on_share(progress) else 0.0


def learning_rate_factor(config: LRScheduleConfig, progress: Progress) -> float:
    """A peer's LR multiplier: linear warm-up × the ``lr_schedule.name`` kind's :meth:`learning_rate` schedule."""
    warmup = min(1.0, (progress.epoch_float + 1.0 / max(progress.steps_per_epoch, 1)) / config.warmup_epochs) \
        if config.warmup_epochs > 0 else 1.0
    return warmup * SCHEDULES.get(config.name).learning_rate(config)(progress)


def as_schedule(spec: Any, field: str = "schedule") -> Schedule:
    """Turn a number, a schedule, or a ``{kind: ..., ...}`` mapping into a schedule.

    Raises :class:`ConfigError` naming ``field`` when the spec is malformed.
    """
    if callable(spec):
        return spec
    if isinstance(spec, bool):
        raise ConfigError(field, f"expected a number or a schedule mapping, got {spec!r}")
    if isinstance(spec, (int, float)):
        if not math.isfinite(spec):
            raise ConfigError(field, f"must be a finite number, got {spec}")
        return Constant(float(spec))
    if not isinstance(spec, dict) or "kind" not in spec:
        raise ConfigError(field, f"expected a number or a mapping with 'kind', got {spec!r}")
    params = {k: v for k, v in spec.items() if k != "kind"}
    kind = spec["kind"]
    if kind not in SCHEDULES.names():
        raise ConfigError(f"{field}.kind", f"unknown schedule '{kind}' (known: {', '.join(SCHEDULES.names())})")
    for key, value in params.items():
        params[key] = tuple(value) if isinstance(value, list) else value
        for number in params[key] if isinstance(params[key], tuple) else (params[key],):
            if isinstance(number, float) and not math.isfinite(number):
                raise ConfigError(f"{field}.{key}", f"must be a finite number, got {number}")
    if kind == "steps" and isinstance(params.get("values"), tuple):
        params["values"] = tuple(value if isinstance(value, (int, float)) and not isinstance(value, bool)
                                 else as_schedule(value, f"{field}.values[{i}]")
                                 for i, value in enumerate(params["values"]))
    try:
        schedule = SCHEDULES.get(kind)(**params)
    except TypeError as error:
        raise ConfigError(field, f"bad parameters for schedule '{kind}': {error}") from None
    _check(schedule, field)
    return schedule


def _check(schedule: Schedule, field: str) -> None:
    if isinstance(schedule, Steps) and len(schedule.values) != len(schedule.epochs) + 1:
        raise ConfigError(field, "steps needs exactly one more value than epoch boundaries")
    if isinstance(schedule, Phases):
        if schedule.period_epochs <= 0:
            raise ConfigError(f"{field}.period_epochs", "must be > 0")
        if not (0.0 <= schedule.on_start <= 1.0 and 0.0 <= schedule.on_end <= 1.0):
            raise ConfigError(field, "on_start and on_end must lie in [0, 1]")
    if isinstance(schedule, Ramp) and schedule.ramp_epochs <= 0:
        raise ConfigError(f"{field}.ramp_epochs", "must be > 0")


def minimum_over(schedule: Schedule, total_epochs: int, points: Sequence[float] | None = None) -> float:
    """Smallest value a schedule takes on a grid of epochs (for validating e.g. T > 0)."""
    grid = points if points is not None else [e / 4 for e in range(4 * total_epochs + 1)]
    return min(schedule(Progress(epoch=int(e), step=int(round((e % 1) * 4)), steps_per_epoch=4,
                                 total_epochs=total_epochs)) for e in grid)
