"""Validating a run configuration: the checks that need more than one field's type.

Each rule is written once, here, and each component checks its own parameters: the registries of
:mod:`codistill.registry` hand back the dataset, model, method, policy, optimizer or exchange a
config names, and validation asks it (``check`` of a dataset — its files under ``data.root`` —,
``check_params`` of a method or policy). Everything raises
:class:`~codistill.errors.ConfigError` naming the field.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from codistill.config.schema import (AMP_MODES, DEVICES, NONFINITE_ACTIONS, PARTITION_KINDS, PLACEMENTS,
                                     PROBE_SOURCES, TEACHER_MODES, TEACHER_SOURCES, DataConfig, PeerConfig, RunConfig)
from codistill.errors import ConfigError
from codistill.registry import DATASETS, EXCHANGES, METHODS, MODELS, OPTIMIZERS, POLICIES, SCHEDULES, Registry
from codistill.saved_network import check_teacher_file
from codistill.schedules import as_schedule, minimum_over

if TYPE_CHECKING:
    from codistill.data.base import DataShape

MODES = ("online", "offline")


def validate(config: RunConfig, *, mode: str = "online") -> None:
    """Check ``config`` for an ``online`` cohort or an ``offline`` student; raises :class:`ConfigError`."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if config.epochs < 1:
        raise ConfigError("epochs", "must be ≥ 1")
    shape = validate_data(config.data)
    _validate_cohort_shape(config, mode)
    for i, peer in enumerate(config.peers):
        _validate_peer(peer, f"peers[{i}]")
    for i, teacher in enumerate(config.teachers):
        component(MODELS, teacher.model, f"teachers[{i}].model")
        check_teacher_file(teacher.checkpoint, teacher.model, f"teachers[{i}].checkpoint", shape)
    _validate_distillation(config)
    _validate_runtime(config)
    _validate_partition(config, shape.num_classes, mode)
    _validate_teacher_source(config, mode)


def component(registry: Registry, name: str, field: str) -> Any:
    """The component ``name`` of ``registry``, or a :class:`ConfigError` naming ``field``."""
    try:
        return registry.get(name)
    except (KeyError, ImportError, ValueError) as error:
        raise ConfigError(field, str(error).strip("'\"")) from None


def one_of(value: str, allowed: tuple[str, ...], field: str) -> None:
    if value not in allowed:
        raise ConfigError(field, f"must be one of {', '.join(allowed)}, got '{value}'")


def check_data_settings(dataset: str, root: str | None, train_fraction: float, label_noise: float,
                        test_fraction: float = 0.0, val_fraction: float | None = None, download: bool = False) -> None:
    """The rules every dataset shares (also applied by :func:`codistill.data.build_dataset`).

    ``val_fraction`` is for datasets with an official test split (a factory's ``default_val_fraction``),
    ``test_fraction`` for those without; ``download`` for a ``downloadable`` factory.
    """
    if not 0.0 < train_fraction <= 1.0:
        raise ConfigError("data.train_fraction", f"must lie in (0, 1], got {train_fraction}")
    if not 0.0 <= label_noise < 1.0:
        raise ConfigError("data.label_noise", f"must lie in [0, 1), got {label_noise}")
    if not 0.0 <= test_fraction < 1.0:
        raise ConfigError("data.test_fraction", f"must lie in [0, 1), got {test_fraction}")
    if val_fraction is not None and not 0.0 < val_fraction <= 0.5:
        raise ConfigError("data.val_fraction", f"must lie in (0, 0.5], got {val_fraction}")
    factory = component(DATASETS, dataset, "data.dataset")
    if factory.default_val_fraction is None and val_fraction is not None:
        raise ConfigError("data.val_fraction", f"dataset '{dataset}' has no official test split, so its validation "
                                               "split is its own; leave data.val_fraction unset (data.test_fraction "
                                               "carves a test split from it)")
    if factory.default_val_fraction is not None and test_fraction > 0:
        without = [name for name in DATASETS.names() if DATASETS.get(name).default_val_fraction is None]
        raise ConfigError("data.test_fraction", f"dataset '{dataset}' has an official test split, evaluated after the "
                                                f"last epoch; data.test_fraction is for datasets without one "
                                                f"({', '.join(without)})")
    if download and not factory.downloadable:
        downloadable = [name for name in DATASETS.names() if DATASETS.get(name).downloadable]
        raise ConfigError("data.download", f"dataset '{dataset}' cannot be downloaded by codistill (only "
                                           f"{', '.join(downloadable)}); put its files under data.root")
    if root is not None and not Path(root).expanduser().is_dir():
        raise ConfigError("data.root", f"directory does not exist: {root}")


def validate_data(data: DataConfig) -> "DataShape":
    """The ``data`` section; the dataset checks its own files and settings and returns the data's shape."""
    factory = component(DATASETS, data.dataset, "data.dataset")
    check_data_settings(data.dataset, data.root, data.train_fraction, data.label_noise, data.test_fraction,
                        data.val_fraction, data.download)
    if data.batch_size < 1 or data.eval_batch_size < 1:
        raise ConfigError("data.batch_size", "batch sizes must be ≥ 1")
    if data.probe_fraction != 0.0 and not 0.0 < data.probe_fraction <= 0.5:
        raise ConfigError("data.probe_fraction", f"must be 0 (no probe) or lie in (0, 0.5], got {data.probe_fraction}")
    one_of(data.probe_source, PROBE_SOURCES, "data.probe_source")
    if data.probe_source == "held_out" and data.probe_fraction == 0.0:
        raise ConfigError("data.probe_source", "held_out carves the probe out of the validation split: set "
                                               "data.probe_fraction > 0, the share of it to carve")
    if data.classes is not None and not factory.selects_classes:
        raise ConfigError("data.classes", f"dataset '{data.dataset}' cannot keep a subset of classes; leave it unset")
    shape = factory.check(data)
    if data.classes is not None and max(data.classes) >= shape.num_classes:
        raise ConfigError("data.classes",
                          f"the dataset has classes 0 to {shape.num_classes - 1}, got {list(data.classes)}")
    return shape


def _validate_cohort_shape(config: RunConfig, mode: str) -> None:
    if mode == "online" and len(config.peers) < 2:
        raise ConfigError("peers", f"online distillation needs at least two peers, got {len(config.peers)}")
    if mode == "offline":
        if len(config.peers) != 1:
            raise ConfigError("peers", f"offline distillation trains exactly one student, got {len(config.peers)}")
        if not config.teachers and not config.independent:
            raise ConfigError("teachers", "offline distillation needs at least one teacher")
    names = [p.name for p in config.peers] + [t.name for t in config.teachers]
    if len(set(names)) != len(names):
        raise ConfigError("peers", f"peer and teacher names must be unique, got {names}")


def _validate_peer(peer: PeerConfig, path: str) -> None:
    component(MODELS, peer.model, f"{path}.model")
    component(OPTIMIZERS, peer.optimizer.name, f"{path}.optimizer.name")
    if peer.optimizer.lr <= 0:
        raise ConfigError(f"{path}.optimizer.lr", "must be > 0")
    kinds = [name for name in SCHEDULES.names() if hasattr(SCHEDULES.get(name), "learning_rate")]
    if not hasattr(component(SCHEDULES, peer.lr_schedule.name, f"{path}.lr_schedule.name"), "learning_rate"):
        raise ConfigError(f"{path}.lr_schedule.name", f"must be one of {', '.join(kinds)}, got '{peer.lr_schedule.name}'")
    sparsity = peer.sparsity
    if sparsity is not None and not 0.0 <= sparsity.target < 1.0:
        raise ConfigError(f"{path}.sparsity.target", f"must lie in [0, 1), got {sparsity.target}")
    if sparsity is not None and sparsity.end_epoch is not None and sparsity.end_epoch <= sparsity.start_epoch:
        raise ConfigError(f"{path}.sparsity.end_epoch", "must come after sparsity.start_epoch")


def _validate_distillation(config: RunConfig) -> None:
    dist = config.distillation
    one_of(dist.teacher, TEACHER_MODES, "distillation.teacher")
    for key, spec in (("weight", dist.weight), ("gate", dist.gate)):
        if minimum_over(as_schedule(spec, f"distillation.{key}"), config.epochs) < 0:
            raise ConfigError(f"distillation.{key}", "must be ≥ 0 throughout training (λ < 0 is not allowed)")
    if not dist.methods and not config.independent:
        raise ConfigError("distillation.methods", "at least one method is needed unless the run is independent")
    for i, method in enumerate(dist.methods):
        path = f"distillation.methods[{i}]"
        method_class = component(METHODS, method.name, f"{path}.name")
        if method.weight < 0:
            raise ConfigError(f"{path}.weight", f"must be ≥ 0, got {method.weight}")
        method_class.check_params(method.params, f"{path}.params", config.epochs)
    component(POLICIES, dist.policy.name, "distillation.policy.name").check_params(dist.policy.params, config)


def _validate_runtime(config: RunConfig) -> None:
    runtime = config.runtime
    one_of(runtime.device, DEVICES, "runtime.device")
    one_of(runtime.amp, AMP_MODES, "runtime.amp")
    one_of(runtime.placement, PLACEMENTS, "runtime.placement")
    one_of(runtime.on_nonfinite, NONFINITE_ACTIONS, "runtime.on_nonfinite")
    component(EXCHANGES, runtime.exchange, "runtime.exchange")


def _validate_teacher_source(config: RunConfig, mode: str) -> None:
    """Codistillation's options (``distillation.teacher_source: replicas``) and what cannot apply with them."""
    dist = config.distillation
    one_of(dist.teacher_source, TEACHER_SOURCES, "distillation.teacher_source")
    if dist.burn_in_epochs >= config.epochs:
        raise ConfigError("distillation.burn_in_epochs", f"is {dist.burn_in_epochs} but the run has {config.epochs} "
                                                         "epochs: distillation would never start")
    replicas = dist.teacher_source == "replicas"
    if replicas and mode == "offline":
        raise ConfigError("distillation.teacher_source", "replicas are copies of online peers; an offline student "
                                                         "learns from its frozen teachers (use live)")
    if replicas and config.runtime.exchange != "objectref":
        raise ConfigError("runtime.exchange", f"'{config.runtime.exchange}' does not apply with "
                                              "distillation.teacher_source: replicas (peers exchange parameters "
                                              "through the object store, not predictions); leave it objectref")
    if not replicas and not config.data.shared_batches:
        raise ConfigError("data.shared_batches", "false needs distillation.teacher_source: replicas (live "
                                                 "teachers predict on the student's batch only if it is theirs too)")


def _validate_partition(config: RunConfig, num_classes: int, mode: str) -> None:
    """``data.partition``: its own fields, and what a cohort whose peers hold disjoint shards needs (each
    peer's teachers are replicas run on its own batch, drawn from its own shard); whether every
    shard holds a batch is checked on the data, by :func:`codistill.preflight.check_partition`."""
    data, partition = config.data, config.data.partition
    one_of(partition.kind, PARTITION_KINDS, "data.partition.kind")
    if partition.alpha is not None and partition.kind != "dirichlet":
        raise ConfigError("data.partition.alpha", f"is for kind: dirichlet, not {partition.kind}")
    if partition.kind == "dirichlet" and partition.alpha is None:
        raise ConfigError("data.partition.alpha", "kind dirichlet needs alpha > 0, the concentration of Dir(alpha)")
    if partition.classes is not None and partition.kind != "classes":
        raise ConfigError("data.partition.classes", f"is for kind: classes, not {partition.kind}")
    if partition.kind == "shared":
        return
    if mode == "offline" or config.teachers:
        raise ConfigError("data.partition", "divides the training split among online peers; an offline student "
                                            "learns on all of it (leave it unset)")
    if not component(DATASETS, data.dataset, "data.dataset").partitions:
        raise ConfigError("data.partition", f"dataset '{data.dataset}' cannot be divided among peers; leave it unset")
    if config.distillation.teacher_source != "replicas":
        raise ConfigError("distillation.teacher_source", f"is {config.distillation.teacher_source}, but with "
                                                         f"data.partition: {partition.kind} the peers share no "
                                                         "example to exchange predictions on: use replicas "
                                                         "(teachers run on the student's own batch)")
    if data.shared_batches:
        raise ConfigError("data.shared_batches", f"must be false with data.partition: {partition.kind} (each peer "
                                                 "draws its own batches from its own shard)")
    if data.classes is not None:
        raise ConfigError("data.classes", "does not combine with data.partition (give each peer its classes "
                                          "with data.partition: {kind: classes, classes: [...]})")
    if partition.kind == "classes":
        _check_class_lists(partition.classes, len(config.peers), num_classes)


def _check_class_lists(classes: tuple[tuple[int, ...], ...] | None, peers: int, num_classes: int) -> None:
    field = "data.partition.classes"
    if classes is None:
        raise ConfigError(field, "kind classes needs one list of classes per peer")
    if len(classes) != peers:
        raise ConfigError(field, f"needs one list per peer ({peers}), got {len(classes)}")
    named = {c for entry in classes for c in entry}
    if max(named) >= num_classes:
        raise ConfigError(field, f"the dataset has classes 0 to {num_classes - 1}, got {max(named)}")
    missing = sorted(set(range(num_classes)) - named)
    if missing:
        raise ConfigError(field, f"leaves classes {missing} to no peer; give each class to at least one peer")


def check_devices(config: RunConfig, cuda_available: bool) -> None:
    """Refuse GPUs on a machine without CUDA (checked where the peers run: the front door, each peer)."""
    if cuda_available:
        return
    if config.runtime.device == "cuda":
        raise ConfigError("runtime.device", "is cuda but this machine has no CUDA device "
                                            "(torch.cuda.is_available() is False); use auto or cpu")
    for index, peer in enumerate(config.peers):
        if peer.resources.gpus > 0:
            raise ConfigError(f"peers[{index}].resources.gpus",
                              f"asks for {peer.resources.gpus:g} GPU but this machine has no CUDA device; set it "
                              "to 0, or submit the job to a GPU cluster with ray job submit")
