"""A sweep's settings: its base config, its search space and how it runs, checked without Ray.

:func:`new_sweep` reads and checks a config and a space file; :func:`saved_sweep` reads back the
settings a sweep saved (``sweep.json``, see :mod:`.layout`) so that it can be resumed. Every
mistake raises :class:`~codistill.errors.ConfigError` naming the field or the space entry, before
anything is written or Ray starts.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import yaml

from codistill import metrics as m
from codistill.cohort.backends import ONLINE_BACKENDS, check_data_parallel
from codistill.config import RunConfig
from codistill.curriculum import NUMBER_FIELDS, SCHEDULE_FIELDS, curriculum_field_of
from codistill.errors import ConfigError
from codistill.safe_io import write_atomic
from codistill.tuning.layout import SETTINGS_FILE
from codistill.tuning.space import SCHEDULERS, Dimension, load_space, mutated, parse_dimension
from codistill.validation import load_config, parse_config

POPULATION_SCHEDULERS = ("pbt", "pb2")  # they change values during training


@dataclass(frozen=True)
class SweepOptions:
    """How a sweep runs, besides its config and space (the command line's flags, same names)."""

    scheduler: str = "asha"
    num_samples: int = 8
    metric: str = m.MEAN_PEER_VAL
    backend: str = "ray"
    perturbation_interval: int = 4
    grace_epochs: int = 2
    max_failures: int = 2
    max_concurrent: int = 0  # 0: as many trials as the resources allow
    cpus: int = 0  # logical CPUs of a private Ray runtime; 0: this machine's, at least one trial's

    def check(self) -> None:
        """Raise :class:`ConfigError` naming the first bad option (as its ``--flag``); the metric
        is checked against the config by :func:`check_metric`."""
        for name, known in (("scheduler", SCHEDULERS), ("backend", ONLINE_BACKENDS)):
            if getattr(self, name) not in known:
                raise ConfigError(_flag(name), f"unknown {name} '{getattr(self, name)}' (known: {', '.join(known)})")
        for name in ("num_samples", "perturbation_interval", "grace_epochs"):
            if getattr(self, name) < 1:
                raise ConfigError(_flag(name), f"must be ≥ 1, got {getattr(self, name)}")
        for name in ("max_failures", "max_concurrent", "cpus"):
            if getattr(self, name) < 0:
                raise ConfigError(_flag(name), f"must be ≥ 0, got {getattr(self, name)}")


def _flag(option: str) -> str:
    return "--" + option.replace("_", "-")


@dataclass(frozen=True)
class SweepSettings:
    """Everything a sweep needs: ``base_raw`` (the config every trial starts from, as plain lists
    and dicts), the ``space`` as written and its checked ``dimensions``, the sweep's ``directory``."""

    base_raw: dict[str, Any]
    space: dict[str, Any]
    dimensions: tuple[Dimension, ...]
    directory: Path
    options: SweepOptions

    @property
    def config(self) -> RunConfig:
        """The base config, parsed."""
        return parse_config(self.base_raw)

    def save(self) -> None:
        """Create the sweep's directory with its ``sweep.json`` (the directory must not exist)."""
        self.directory.mkdir(parents=True)
        saved = {"base_raw": self.base_raw, "space": self.space, "directory": str(self.directory),
                 **asdict(self.options)}
        write_atomic(self.directory / SETTINGS_FILE, json.dumps(saved, indent=2).encode())


def new_sweep(config_file: str | Path, space_file: str | Path, overrides: Sequence[str], options: SweepOptions,
              storage: Path, name: str | None = None) -> SweepSettings:
    """The checked settings of a new sweep in ``storage/name`` (default name: config, scheduler,
    time); nothing is written."""
    options.check()
    config = load_config(config_file, list(overrides))
    base_raw = json.loads(json.dumps(config.to_dict()))  # plain lists and dicts, as --set addresses them
    if config.data.root is not None:  # trials run in their own working directories
        base_raw["data"]["root"] = str(Path(config.data.root).expanduser().resolve())
    dimensions = load_space(space_file, base_raw)
    check_metric(options.metric, config)
    check_data_parallel(config, options.backend)
    if options.scheduler in POPULATION_SCHEDULERS:
        check_population(dimensions, options.scheduler, Path(space_file).name)
    name = name or f"{config.name}-{options.scheduler}-{time.strftime('%Y%m%d-%H%M%S')}"
    directory = (storage / name).resolve()
    if directory.exists():
        raise ConfigError("--name", f"{directory} already exists; continue it with --resume {directory}")
    space = yaml.safe_load(Path(space_file).read_text())
    return SweepSettings(base_raw, space, tuple(dimensions), directory, options)


def saved_sweep(directory: Path) -> SweepSettings:
    """The settings the sweep in ``directory`` saved when it started."""
    settings_file = directory / SETTINGS_FILE
    if not settings_file.is_file():
        raise ConfigError("--resume", f"{directory} holds no sweep (missing {SETTINGS_FILE})")
    saved = json.loads(settings_file.read_text())
    options = SweepOptions(**{option.name: saved[option.name] for option in fields(SweepOptions)})
    dimensions = tuple(parse_dimension(key, spec, key) for key, spec in saved["space"].items())
    return SweepSettings(saved["base_raw"], saved["space"], dimensions, Path(saved["directory"]), options)


def check_metric(metric: str, config: RunConfig) -> None:
    """``metric`` must be one the trials report."""
    known = [m.MEAN_PEER_VAL, m.ENSEMBLE_VAL] + [m.peer_val(p.name) for p in config.peers]
    if metric not in known:
        raise ConfigError("--metric", f"unknown metric '{metric}' (known: {', '.join(known)})")


def check_population(dimensions: Sequence[Dimension], scheduler: str, space_name: str) -> None:
    """PBT/PB2 change values mid-run: only curriculum fields, whose history the runner records."""
    changing = mutated(list(dimensions), scheduler)
    if scheduler == "pb2" and not changing:
        raise ConfigError("--space", "pb2 needs at least one uniform, loguniform or randint entry")
    for dimension in changing:
        if curriculum_field_of(dimension.key) is None:
            raise ConfigError(f"{space_name}: {dimension.key}",
                              f"{scheduler} changes values during training only in curriculum fields "
                              f"({', '.join(SCHEDULE_FIELDS + NUMBER_FIELDS)}) so that the trial can be replayed; "
                              "search this key with --scheduler asha or fifo")
