"""Loading a run configuration: YAML (and ``--set`` overrides) read into the typed schema.

``--set key=value`` overrides address fields with dots and list indices:
``distillation.weight=0.5``, ``peers.0.optimizer.lr=0.1``, ``seed=3``. Every mistake is a
:class:`~codistill.errors.ConfigError` naming the field, e.g.
``config error in 'peers[1].model': unknown model 'resnet7' (known: ...)``; the checks that
need more than a field's type live in :mod:`codistill.config.validation`.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Any

import yaml

from codistill.checks import Check, at_least_one, non_negative, positive, rate
from codistill.config.schema import (DataConfig, DistillationConfig, LRScheduleConfig, MethodConfig, OptimizerConfig,
                                     PartitionConfig, PeerConfig, PolicyConfig, ResourcesConfig, RunConfig,
                                     RuntimeConfig, SparsityConfig, TeacherConfig)
from codistill.config.validation import validate
from codistill.errors import ConfigError


class _ConfigLoader(yaml.SafeLoader):
    """Safe YAML that reads numbers as users type them: ``1e6`` and ``1e-3`` are floats
    (YAML 1.1, PyYAML's default, reads an exponent without a decimal point as a string), and
    refuses a key given twice in one mapping (plain YAML silently keeps the last)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"the key '{key}' appears twice",
                                                        key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


_ConfigLoader.add_implicit_resolver("tag:yaml.org,2002:float",
                                    re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
                                    list("-+0123456789"))


def read_yaml(text: str, field: str) -> Any:
    """Parse YAML text; malformed YAML is a one-line :class:`ConfigError` naming ``field``."""
    try:
        return yaml.load(text, Loader=_ConfigLoader)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise ConfigError(field, f"not valid YAML{where}: {getattr(error, 'problem', None) or error}") from None


def load_config(path: str | os.PathLike, overrides: list[str] | None = None, *,
                mode: str = "online", field: str = "--config") -> RunConfig:
    """Read a YAML file, apply ``key=value`` overrides and validate (``mode``: online | offline).

    ``field`` names the file in errors about the file itself.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(field, f"no such file: {path}")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(field, f"cannot read {path}: {error}") from None
    raw = read_yaml(text, field)
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(field, f"{path} must hold a mapping of fields, got {type(raw).__name__}")
    for override in overrides or []:
        apply_override(raw, override)
    return parse_config(raw, mode=mode)


def apply_override(raw: dict[str, Any], override: str) -> None:
    """Set ``a.b.0.c=value`` in a nested mapping; the value is parsed as YAML.

    Errors name the key: an empty value, an index past a list's end, a path through a scalar.
    """
    if "=" not in override:
        raise ConfigError("--set", f"expected key=value, got '{override}'")
    key, text = (part.strip() for part in override.split("=", 1))
    parts = key.split(".")
    if not all(parts):
        raise ConfigError("--set", f"expected a dotted key such as peers.0.optimizer.lr, got '{key}'")
    if not text:
        raise ConfigError(key, "--set gives no value (write key=value)")
    set_field(raw, key, read_yaml(text, key))


def set_field(raw: dict[str, Any], key: str, value: Any) -> None:
    """Set the dotted path ``key`` (``a.b.0.c``) of a nested mapping to ``value``.

    Errors name the key: an index past a list's end, a path through a scalar.
    """
    parts = key.split(".")
    node: Any = raw
    for depth, part in enumerate(parts):
        here, last = ".".join(parts[: depth + 1]), depth == len(parts) - 1
        if isinstance(node, dict):
            if last:
                node[part] = value
            elif node.get(part) is None:
                node[part] = {}
            node = node[part]
        elif isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise ConfigError(here, f"no entry {part} in a list of {len(node)} (indices 0 to {len(node) - 1})")
            if last:
                node[int(part)] = value
            node = node[int(part)]
        else:
            parent = ".".join(parts[:depth])
            raise ConfigError(here, f"'{parent}' holds the value {node!r}, which has no fields to set: "
                                    f"set it whole, e.g. '{parent}={{{part}: ...}}'")


def changed_fields(before: RunConfig, after: RunConfig) -> list[str]:
    """Paths of the fields whose values differ between two configs (``peers[0].optimizer.lr``)."""

    def leaves(value: Any, prefix: str) -> dict[str, Any]:
        if isinstance(value, dict):
            return {k: v for key, item in value.items() for k, v in leaves(item, f"{prefix}.{key}" if prefix else key).items()}
        if isinstance(value, (list, tuple)):
            return {k: v for i, item in enumerate(value) for k, v in leaves(item, f"{prefix}[{i}]").items()} or {prefix: ()}
        return {prefix: value}

    old, new = leaves(before.to_dict(), ""), leaves(after.to_dict(), "")
    return sorted(key for key in old.keys() | new.keys() if old.get(key, KeyError) != new.get(key, KeyError))


def parse_config(raw: dict[str, Any], *, mode: str = "online") -> RunConfig:
    """Validate a raw mapping into a :class:`RunConfig`."""
    reader = _Reader(raw, "")
    config = RunConfig(
        name=reader.get("name", str, "cohort"),
        seed=reader.get("seed", int, 0),
        epochs=reader.get("epochs", int, 30),
        independent=reader.get("independent", bool, False),
        data=_parse_data(reader.section("data")),
        peers=tuple(_parse_peer(r, i) for i, r in enumerate(reader.items("peers"))),
        teachers=tuple(_parse_teacher(r) for r in reader.items("teachers")),
        distillation=_parse_distillation(reader.section("distillation")),
        runtime=_parse_runtime(reader.section("runtime")),
    )
    reader.finish()
    validate(config, mode=mode)
    return config


class _Reader:
    """Reads typed fields from one mapping and reports unknown keys with their full path."""

    def __init__(self, raw: Any, prefix: str) -> None:
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise ConfigError(prefix or "<root>", f"expected a mapping, got {type(raw).__name__}")
        self.raw, self.prefix, self.seen = raw, prefix, set()

    def path(self, key: str) -> str:
        return f"{self.prefix}.{key}" if self.prefix else key

    def get(self, key: str, kind: type | tuple[type, ...], default: Any, check: Check | None = None) -> Any:
        """The field ``key`` as ``kind`` (floats: any finite number, also written as a string such as
        ``"1e6"``); ``check`` returns a complaint about the value, or None."""
        self.seen.add(key)
        value = self.raw.get(key, default)
        if value is default:
            return value
        if value is None:
            raise ConfigError(self.path(key), f"needs a value (the default is {default!r})")
        if kind is float and isinstance(value, str):
            value = _float_or_text(value)
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if kind in (int, float) and isinstance(value, bool) or not isinstance(value, kind):
            expected = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
            raise ConfigError(self.path(key), f"expected {expected}, got {value!r}")
        if kind is float and not math.isfinite(value):
            raise ConfigError(self.path(key), f"must be a finite number, got {value}")
        complaint = check(value) if check is not None else None
        if complaint:
            raise ConfigError(self.path(key), complaint)
        return value

    def any(self, key: str, default: Any) -> Any:
        self.seen.add(key)
        return self.raw.get(key, default)

    def section(self, key: str) -> "_Reader":
        self.seen.add(key)
        return _Reader(self.raw.get(key), self.path(key))

    def items(self, key: str) -> list["_Reader"]:
        self.seen.add(key)
        entries = self.raw.get(key) or []
        if not isinstance(entries, list):
            raise ConfigError(self.path(key), "expected a list")
        return [_Reader(entry, f"{self.path(key)}[{i}]") for i, entry in enumerate(entries)]

    def finish(self) -> None:
        unknown = sorted(set(self.raw) - self.seen)
        if unknown:
            raise ConfigError(self.path(unknown[0]), "unknown field")


def _float_or_text(text: str) -> float | str:
    try:
        return float(text)
    except ValueError:
        return text


def _milestones(values: list[Any]) -> str | None:
    if all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in values):
        return None
    return f"must be a list of epoch numbers ≥ 0, got {values}"


def _class_list(values: list[Any]) -> str | None:
    if values and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in values) \
            and len(set(values)) == len(values):
        return None
    return f"must be a non-empty list of distinct class numbers ≥ 0, got {values}"


def _classes(values: list[int] | None) -> tuple[int, ...] | None:
    return None if values is None else tuple(sorted(values))


def _parse_data(r: _Reader) -> DataConfig:
    d = DataConfig()
    config = DataConfig(
        dataset=r.get("dataset", str, d.dataset),
        root=r.get("root", str, d.root),
        train_fraction=r.get("train_fraction", float, d.train_fraction),
        label_noise=r.get("label_noise", float, d.label_noise),
        batch_size=r.get("batch_size", int, d.batch_size),
        eval_batch_size=r.get("eval_batch_size", int, d.eval_batch_size),
        augment=r.get("augment", bool, d.augment),
        per_peer_augmentation=r.get("per_peer_augmentation", bool, d.per_peer_augmentation),
        image_size=r.get("image_size", int, d.image_size, at_least_one),
        test_fraction=r.get("test_fraction", float, d.test_fraction),
        probe_fraction=r.get("probe_fraction", float, d.probe_fraction),
        probe_source=r.get("probe_source", str, d.probe_source),
        val_fraction=r.get("val_fraction", float, d.val_fraction),
        download=r.get("download", bool, d.download),
        shared_batches=r.get("shared_batches", bool, d.shared_batches),
        classes=_classes(r.get("classes", list, d.classes, _class_list)),
        partition=_parse_partition(r.section("partition")),
    )
    r.finish()
    return config


def _class_lists(values: list[Any]) -> str | None:
    if values and all(isinstance(entry, list) and _class_list(entry) is None for entry in values):
        return None
    return f"must be a list of class lists (one per peer, each of distinct class numbers ≥ 0), got {values}"


def _parse_partition(r: _Reader) -> PartitionConfig:
    d = PartitionConfig()
    classes = r.get("classes", list, d.classes, _class_lists)
    config = PartitionConfig(kind=r.get("kind", str, d.kind), alpha=r.get("alpha", float, d.alpha, positive),
                             classes=None if classes is None else tuple(_classes(entry) for entry in classes))
    r.finish()
    return config


def _parse_peer(r: _Reader, index: int) -> PeerConfig:
    model = r.get("model", str, None)
    if model is None:
        raise ConfigError(r.path("model"), "every peer needs a model")
    opt_r, lr_r, res_r = r.section("optimizer"), r.section("lr_schedule"), r.section("resources")
    o, l, s = OptimizerConfig(), LRScheduleConfig(), ResourcesConfig()
    optimizer = OptimizerConfig(
        name=opt_r.get("name", str, o.name), lr=opt_r.get("lr", float, o.lr),
        momentum=opt_r.get("momentum", float, o.momentum, rate),
        weight_decay=opt_r.get("weight_decay", float, o.weight_decay, non_negative),
        nesterov=opt_r.get("nesterov", bool, o.nesterov))
    lr_schedule = LRScheduleConfig(
        name=lr_r.get("name", str, l.name),
        milestones=tuple(lr_r.get("milestones", list, list(l.milestones), _milestones)),
        gamma=lr_r.get("gamma", float, l.gamma, positive),
        warmup_epochs=lr_r.get("warmup_epochs", int, l.warmup_epochs, non_negative))
    resources = ResourcesConfig(cpus=res_r.get("cpus", float, s.cpus, positive),
                                gpus=res_r.get("gpus", float, s.gpus, non_negative))
    sparsity = None
    if r.raw.get("sparsity") is not None:
        sp_r, sp = r.section("sparsity"), SparsityConfig()
        sparsity = SparsityConfig(
            target=sp_r.get("target", float, sp.target),
            start_epoch=sp_r.get("start_epoch", int, sp.start_epoch, non_negative),
            end_epoch=sp_r.get("end_epoch", int, sp.end_epoch, at_least_one),
            every_steps=sp_r.get("every_steps", int, sp.every_steps, at_least_one),
            initial=sp_r.get("initial", float, sp.initial, rate))
        sp_r.finish()
    else:
        r.seen.add("sparsity")
    config = PeerConfig(name=r.get("name", str, f"{model}-{index}"), model=model, optimizer=optimizer,
                        lr_schedule=lr_schedule, resources=resources, sparsity=sparsity)
    for sub in (opt_r, lr_r, res_r, r):
        sub.finish()
    return config


def _parse_teacher(r: _Reader) -> TeacherConfig:
    model, checkpoint = r.get("model", str, None), r.get("checkpoint", str, None)
    if model is None or checkpoint is None:
        raise ConfigError(r.path("model" if model is None else "checkpoint"), "every teacher needs a model and a checkpoint")
    config = TeacherConfig(name=r.get("name", str, model), model=model, checkpoint=checkpoint)
    r.finish()
    return config


def _parse_distillation(r: _Reader) -> DistillationConfig:
    d = DistillationConfig()
    methods = d.methods
    if "methods" in r.raw:
        methods = []
        for m in r.items("methods"):
            methods.append(MethodConfig(name=m.get("name", str, None) or _missing(m.path("name")),
                                        weight=m.get("weight", float, 1.0), params=m.get("params", dict, {}) or {}))
            m.finish()
        methods = tuple(methods)
    r.seen.add("methods")
    policy_r = r.section("policy") if isinstance(r.raw.get("policy"), dict) else None
    if policy_r is not None:
        policy = PolicyConfig(name=policy_r.get("name", str, "uniform"), params=policy_r.get("params", dict, {}) or {})
        policy_r.finish()
    else:
        policy = PolicyConfig(name=r.get("policy", str, "uniform"))
    config = DistillationConfig(
        teacher=r.get("teacher", str, d.teacher), weight=r.any("weight", d.weight), gate=r.any("gate", d.gate),
        methods=methods, policy=policy, teacher_source=r.get("teacher_source", str, d.teacher_source),
        refresh_every_steps=r.get("refresh_every_steps", int, d.refresh_every_steps, at_least_one),
        refresh_at_epoch_start=r.get("refresh_at_epoch_start", bool, d.refresh_at_epoch_start),
        burn_in_epochs=r.get("burn_in_epochs", int, d.burn_in_epochs, non_negative))
    r.finish()
    return config


def _parse_runtime(r: _Reader) -> RuntimeConfig:
    d = RuntimeConfig()
    amp = r.get("amp", (str, bool), d.amp)
    config = RuntimeConfig(
        device=r.get("device", str, d.device), amp="off" if amp is False else amp,
        placement=r.get("placement", str, d.placement), deterministic=r.get("deterministic", bool, d.deterministic),
        log_every_steps=r.get("log_every_steps", int, d.log_every_steps, at_least_one),
        progress_every_seconds=r.get("progress_every_seconds", float, d.progress_every_seconds, non_negative),
        on_nonfinite=r.get("on_nonfinite", str, d.on_nonfinite), max_failures=r.get("max_failures", int, d.max_failures, non_negative),
        exchange=r.get("exchange", str, d.exchange),
        max_steps_in_flight=r.get("max_steps_in_flight", int, d.max_steps_in_flight, at_least_one))
    r.finish()
    return config


def _missing(field_path: str) -> Any:
    raise ConfigError(field_path, "required")
