"""Run configuration: YAML validated into typed, frozen objects before Ray starts.

Every check raises :class:`~codistill.errors.ConfigError` naming the offending field, e.g.
``config error in 'peers[1].model': unknown model 'resnet7' (known: ...)``. ``--set key=value``
overrides address fields with dots and list indices: ``distillation.weight=0.5``,
``peers.0.optimizer.lr=0.1``, ``seed=3``.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from codistill.checks import Check, at_least_one, non_negative, positive, rate
from codistill.errors import ConfigError
from codistill.schedules import as_schedule, minimum_over

TEACHER_MODES = ("ensemble", "mean_of_others")
AMP_MODES = ("off", "bf16", "fp16")
PLACEMENTS = ("pack", "spread")
DEVICES = ("auto", "cpu", "cuda")
#: Fields ``--resume RUN_DIR --set`` may change: they cannot change what the run computes.
RESUME_SAFE_FIELDS = ("runtime.progress_every_seconds", "runtime.log_every_steps")
NONFINITE_ACTIONS = ("stop", "skip")
EXCHANGES = ("objectref", "collective")


@dataclass(frozen=True)
class DataConfig:
    dataset: str = "digits"
    root: str | None = None
    train_fraction: float = 1.0
    label_noise: float = 0.0
    batch_size: int = 64
    eval_batch_size: int = 512
    augment: bool = True
    per_peer_augmentation: bool = False
    image_size: int | None = None
    test_fraction: float = 0.0  # share of the held-out split kept as a test split (see data.held_out)
    #: Share of an official training split held out for validation (None: the dataset's default,
    #: 5,000 images for Fashion-MNIST and CIFAR; see data.splits). Only for datasets with an official test split.
    val_fraction: float | None = None
    download: bool = False  # fetch missing Fashion-MNIST files into data.root (torchvision's downloader)
    #: Share of the (reduced, noisy) training split held out as a probe, never trained on (0: none).
    probe_fraction: float = 0.0


@dataclass(frozen=True)
class OptimizerConfig:
    name: str = "sgd"
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    nesterov: bool = True


@dataclass(frozen=True)
class LRScheduleConfig:
    name: str = "cosine"  # cosine | multistep | constant
    milestones: tuple[int, ...] = ()
    gamma: float = 0.1
    warmup_epochs: int = 0


@dataclass(frozen=True)
class ResourcesConfig:
    cpus: float = 1.0
    gpus: float = 0.0


@dataclass(frozen=True)
class SparsityConfig:
    target: float = 0.5
    start_epoch: int = 0
    end_epoch: int | None = None
    every_steps: int = 10
    initial: float = 0.0


@dataclass(frozen=True)
class PeerConfig:
    name: str
    model: str
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    lr_schedule: LRScheduleConfig = field(default_factory=LRScheduleConfig)
    resources: ResourcesConfig = field(default_factory=ResourcesConfig)
    sparsity: SparsityConfig | None = None


@dataclass(frozen=True)
class MethodConfig:
    name: str
    weight: float = 1.0
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PolicyConfig:
    name: str = "uniform"
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DistillationConfig:
    teacher: str = "ensemble"
    weight: Any = 1.0  # λ(t): number or schedule spec
    gate: Any = 1.0  # m(t) ∈ {0, 1}: number or schedule spec (e.g. kind: phases)
    methods: tuple[MethodConfig, ...] = (MethodConfig(name="kd", params={"temperature": 3.0}),)
    policy: PolicyConfig = field(default_factory=PolicyConfig)


@dataclass(frozen=True)
class TeacherConfig:
    """A trained, frozen teacher for offline distillation."""

    name: str
    model: str
    checkpoint: str


@dataclass(frozen=True)
class RuntimeConfig:
    device: str = "auto"
    amp: str = "off"
    placement: str = "pack"
    deterministic: bool = True
    log_every_steps: int = 10
    progress_every_seconds: float = 10.0
    on_nonfinite: str = "stop"  # a peer's loss is NaN/inf: stop the run, or skip that peer's update
    max_failures: int = 3  # lost actors/nodes recovered from the last checkpoint before giving up
    #: How Ray peers exchange payloads: through the object store, or actor-driven steps with a
    #: collective (see codistill.cohort).
    exchange: str = "objectref"
    #: Steps the driver asks the actors for before collecting the oldest (bounds tasks in flight).
    max_steps_in_flight: int = 16


@dataclass(frozen=True)
class RunConfig:
    name: str = "cohort"
    seed: int = 0
    epochs: int = 30
    independent: bool = False
    data: DataConfig = field(default_factory=DataConfig)
    peers: tuple[PeerConfig, ...] = ()
    teachers: tuple[TeacherConfig, ...] = ()
    distillation: DistillationConfig = field(default_factory=DistillationConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ---------------------------------------------------------------------------------------------
# Loading


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
        val_fraction=r.get("val_fraction", float, d.val_fraction),
        download=r.get("download", bool, d.download),
    )
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
    config = DistillationConfig(teacher=r.get("teacher", str, d.teacher), weight=r.any("weight", d.weight),
                                gate=r.any("gate", d.gate), methods=methods, policy=policy)
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


# ---------------------------------------------------------------------------------------------
# Cross-field validation


def validate(config: RunConfig, *, mode: str = "online") -> None:
    """Checks that need more than one field; raises :class:`ConfigError` naming the field."""
    from codistill.data import check_dataset_files, dataset_names
    from codistill.methods import method_class, method_names
    from codistill.models import model_names
    from codistill.offline import check_teacher_file

    if config.epochs < 1:
        raise ConfigError("epochs", "must be ≥ 1")
    data = config.data
    if data.dataset not in dataset_names():
        raise ConfigError("data.dataset", f"unknown dataset '{data.dataset}' (known: {', '.join(dataset_names())})")
    if not 0.0 < data.train_fraction <= 1.0:
        raise ConfigError("data.train_fraction", f"must lie in (0, 1], got {data.train_fraction}")
    if not 0.0 <= data.label_noise < 1.0:
        raise ConfigError("data.label_noise", f"must lie in [0, 1), got {data.label_noise}")
    if not 0.0 <= data.test_fraction < 1.0:
        raise ConfigError("data.test_fraction", f"must lie in [0, 1), got {data.test_fraction}")
    if data.root is not None and not Path(data.root).expanduser().is_dir():
        raise ConfigError("data.root", f"directory does not exist: {data.root}")
    if data.batch_size < 1 or data.eval_batch_size < 1:
        raise ConfigError("data.batch_size", "batch sizes must be ≥ 1")
    shape = check_dataset_files(data)
    if data.probe_fraction != 0.0 and not 0.0 < data.probe_fraction <= 0.5:
        raise ConfigError("data.probe_fraction", f"must be 0 (no probe) or lie in (0, 0.5], got {data.probe_fraction}")

    if mode == "online" and len(config.peers) < 2:
        raise ConfigError("peers", f"online distillation needs at least two peers, got {len(config.peers)}")
    if mode == "offline":
        if len(config.peers) != 1:
            raise ConfigError("peers", f"offline distillation trains exactly one student, got {len(config.peers)}")
        if not config.teachers and not config.independent:
            raise ConfigError("teachers", "offline distillation needs at least one teacher")
    known_models = model_names()
    names = [p.name for p in config.peers] + [t.name for t in config.teachers]
    if len(set(names)) != len(names):
        raise ConfigError("peers", f"peer and teacher names must be unique, got {names}")
    for i, peer in enumerate(config.peers):
        _validate_peer(peer, f"peers[{i}]", known_models)
    for i, teacher in enumerate(config.teachers):
        if teacher.model not in known_models:
            raise ConfigError(f"teachers[{i}].model", f"unknown model '{teacher.model}' (known: {', '.join(known_models)})")
        if not Path(teacher.checkpoint).expanduser().is_file():
            raise ConfigError(f"teachers[{i}].checkpoint", f"no such file: {teacher.checkpoint}")
        check_teacher_file(teacher, f"teachers[{i}].checkpoint", shape)

    dist = config.distillation
    if dist.teacher not in TEACHER_MODES:
        raise ConfigError("distillation.teacher", f"must be one of {', '.join(TEACHER_MODES)}, got '{dist.teacher}'")
    for key, spec in (("weight", dist.weight), ("gate", dist.gate)):
        if minimum_over(as_schedule(spec, f"distillation.{key}"), config.epochs) < 0:
            raise ConfigError(f"distillation.{key}", "must be ≥ 0 throughout training (λ < 0 is not allowed)")
    if not dist.methods and not config.independent:
        raise ConfigError("distillation.methods", "at least one method is needed unless the run is independent")
    for i, method in enumerate(dist.methods):
        path = f"distillation.methods[{i}]"
        if method.name not in method_names():
            raise ConfigError(f"{path}.name", f"unknown method '{method.name}' (known: {', '.join(method_names())})")
        if method.weight < 0:
            raise ConfigError(f"{path}.weight", f"must be ≥ 0, got {method.weight}")
        method_class(method.name).check_params(method.params, f"{path}.params", config.epochs)
    _validate_policy(config)

    runtime = config.runtime
    if runtime.device not in DEVICES:
        raise ConfigError("runtime.device", f"must be one of {', '.join(DEVICES)}")
    if runtime.amp not in AMP_MODES:
        raise ConfigError("runtime.amp", f"must be one of {', '.join(AMP_MODES)}, got '{runtime.amp}'")
    if runtime.placement not in PLACEMENTS:
        raise ConfigError("runtime.placement", f"must be one of {', '.join(PLACEMENTS)}")
    if runtime.on_nonfinite not in NONFINITE_ACTIONS:
        raise ConfigError("runtime.on_nonfinite",
                          f"must be one of {', '.join(NONFINITE_ACTIONS)}, got '{runtime.on_nonfinite}'")
    if runtime.exchange not in EXCHANGES:
        raise ConfigError("runtime.exchange", f"must be one of {', '.join(EXCHANGES)}, got '{runtime.exchange}'")


def _validate_peer(peer: PeerConfig, path: str, known_models: list[str]) -> None:
    if peer.model not in known_models:
        raise ConfigError(f"{path}.model", f"unknown model '{peer.model}' (known: {', '.join(known_models)})")
    if peer.optimizer.name not in ("sgd", "adam", "adamw"):
        raise ConfigError(f"{path}.optimizer.name", f"must be sgd, adam or adamw, got '{peer.optimizer.name}'")
    if peer.optimizer.lr <= 0:
        raise ConfigError(f"{path}.optimizer.lr", "must be > 0")
    if peer.lr_schedule.name not in ("cosine", "multistep", "constant"):
        raise ConfigError(f"{path}.lr_schedule.name", f"must be cosine, multistep or constant, got '{peer.lr_schedule.name}'")
    if peer.sparsity is not None and not 0.0 <= peer.sparsity.target < 1.0:
        raise ConfigError(f"{path}.sparsity.target", f"must lie in [0, 1), got {peer.sparsity.target}")
    if peer.sparsity is not None and peer.sparsity.end_epoch is not None and peer.sparsity.end_epoch <= peer.sparsity.start_epoch:
        raise ConfigError(f"{path}.sparsity.end_epoch", "must come after sparsity.start_epoch")


def _validate_policy(config: RunConfig) -> None:
    from codistill.teachers import resolve_policy

    policy = config.distillation.policy
    try:
        policy_class = resolve_policy(policy.name)
    except (ImportError, AttributeError, KeyError, ValueError) as error:
        raise ConfigError("distillation.policy.name", str(error)) from None
    policy_class.check_params(policy.params, config)
