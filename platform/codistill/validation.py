"""A run configuration checked whole: its fields, the rules across them, and the components it names.

Each field's type and range is declared once in :mod:`codistill.config.schema` and the rules
across fields live in :mod:`codistill.config.rules`; here, above the components, each component a
config names checks its own parameters: the registries of :mod:`codistill.registry` hand back the
dataset, model, method, policy, optimizer or schedule, and validation asks it (``check`` of a
dataset — its files under ``data.root`` —, ``check_params`` of a method or policy). Everything
raises :class:`~codistill.errors.ConfigError` naming the field.
"""

from __future__ import annotations

import os
from typing import Any

from codistill.checks import component
from codistill.config import DataConfig, PeerConfig, RunConfig, build_config, check_rules, read_mapping
from codistill.data import DataShape, check_data_settings
from codistill.errors import ConfigError
from codistill.registry import DATASETS, METHODS, MODELS, OPTIMIZERS, POLICIES, SCHEDULES
from codistill.saved_network import check_teacher_file
from codistill.schedules import as_schedule, minimum_over


def load_config(path: str | os.PathLike, overrides: list[str] | None = None, *,
                mode: str = "online", field: str = "--config") -> RunConfig:
    """Read a YAML file, apply ``key=value`` overrides and validate (``mode``: online | offline).

    ``field`` names the file in errors about the file itself.
    """
    return parse_config(read_mapping(path, overrides, field=field), mode=mode)


def parse_config(raw: dict[str, Any], *, mode: str = "online") -> RunConfig:
    """Validate a raw mapping into a :class:`RunConfig`."""
    config = build_config(raw)
    validate(config, mode=mode)
    return config


def validate(config: RunConfig, *, mode: str = "online") -> None:
    """Check ``config`` for an ``online`` cohort or an ``offline`` student; raises :class:`ConfigError`."""
    check_rules(config, mode=mode)
    shape = validate_data(config.data)
    for i, peer in enumerate(config.peers):
        _validate_peer(peer, f"peers[{i}]")
    for i, teacher in enumerate(config.teachers):
        component(MODELS, teacher.model, f"teachers[{i}].model")
        check_teacher_file(teacher.checkpoint, teacher.model, f"teachers[{i}].checkpoint", shape)
    _validate_distillation(config)


def validate_data(data: DataConfig) -> DataShape:
    """The ``data`` section; the dataset checks its own files and settings and returns the data's shape."""
    factory = component(DATASETS, data.dataset, "data.dataset")
    check_data_settings(data.dataset, data.root, data.train_fraction, data.label_noise, data.test_fraction,
                        data.val_fraction, data.download)
    if data.classes is not None and not factory.selects_classes:
        raise ConfigError("data.classes", f"dataset '{data.dataset}' cannot keep a subset of classes; leave it unset")
    if data.partition.kind != "shared" and not factory.partitions:
        raise ConfigError("data.partition", f"dataset '{data.dataset}' cannot be divided among peers; leave it unset")
    shape = factory.check(data)
    if data.classes is not None and max(data.classes) >= shape.num_classes:
        raise ConfigError("data.classes",
                          f"the dataset has classes 0 to {shape.num_classes - 1}, got {list(data.classes)}")
    if data.partition.classes is not None:
        _check_class_lists(data.partition.classes, shape.num_classes)
    return shape


def _check_class_lists(classes: tuple[tuple[int, ...], ...], num_classes: int) -> None:
    """``data.partition.classes`` names only the dataset's classes, and each of them at least once."""
    named = {c for entry in classes for c in entry}
    if named and max(named) >= num_classes:
        raise ConfigError("data.partition.classes", f"the dataset has classes 0 to {num_classes - 1}, "
                                                    f"got {max(named)}")
    missing = sorted(set(range(num_classes)) - named)
    if missing:
        raise ConfigError("data.partition.classes", f"leaves classes {missing} to no peer; give each class to at "
                                                    "least one peer")


def _validate_peer(peer: PeerConfig, path: str) -> None:
    component(MODELS, peer.model, f"{path}.model")
    component(OPTIMIZERS, peer.optimizer.name, f"{path}.optimizer.name")
    kinds = [name for name in SCHEDULES.names() if hasattr(SCHEDULES.get(name), "learning_rate")]
    if not hasattr(component(SCHEDULES, peer.lr_schedule.name, f"{path}.lr_schedule.name"), "learning_rate"):
        raise ConfigError(f"{path}.lr_schedule.name",
                          f"must be one of {', '.join(kinds)}, got '{peer.lr_schedule.name}'")


def _validate_distillation(config: RunConfig) -> None:
    dist = config.distillation
    for key, spec in (("weight", dist.weight), ("gate", dist.gate)):
        if minimum_over(as_schedule(spec, f"distillation.{key}"), config.epochs) < 0:
            raise ConfigError(f"distillation.{key}", "must be ≥ 0 throughout training (λ < 0 is not allowed)")
    for i, method in enumerate(dist.methods):
        path = f"distillation.methods[{i}]"
        component(METHODS, method.name, f"{path}.name").check_params(method.params, f"{path}.params", config.epochs)
    component(POLICIES, dist.policy.name, "distillation.policy.name").check_params(dist.policy.params, config)
