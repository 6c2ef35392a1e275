"""The rules that join several fields of a config, needing nothing but the config.

Each field's own type and range is declared with it (:mod:`codistill.config.schema`); what a
component says about its own parameters (a dataset's files, a method's parameters) is asked by
:mod:`codistill.validation`, above the components. Everything raises
:class:`~codistill.errors.ConfigError` naming the field.
"""

from __future__ import annotations

from codistill.config.exchange_names import REPLICAS_EXCHANGE
from codistill.config.fields import check_fields
from codistill.config.schema import RunConfig
from codistill.errors import ConfigError

MODES = ("online", "offline")


def check_rules(config: RunConfig, *, mode: str = "online") -> None:
    """Every field's range (also of a config built in code) and the rules across fields, for an
    ``online`` cohort or an ``offline`` student."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    check_fields(config)
    data = config.data
    if data.probe_source == "held_out" and data.probe_fraction == 0.0:
        raise ConfigError("data.probe_source", "held_out carves the probe out of the validation split: set "
                                               "data.probe_fraction > 0, the share of it to carve")
    _check_cohort_shape(config, mode)
    for index, peer in enumerate(config.peers):
        sparsity = peer.sparsity
        if sparsity is not None and sparsity.end_epoch is not None and sparsity.end_epoch <= sparsity.start_epoch:
            raise ConfigError(f"peers[{index}].sparsity.end_epoch", "must come after sparsity.start_epoch")
    if not config.distillation.methods and not config.independent:
        raise ConfigError("distillation.methods", "at least one method is needed unless the run is independent")
    _check_partition(config, mode)
    _check_teacher_source(config, mode)
    _check_data_parallel(config)


def _check_data_parallel(config: RunConfig) -> None:
    """A peer's data-parallel workers (``peers[k].data_parallel``: R) each train on their rows of
    the global batch, each on a device of its own."""
    for index, peer in enumerate(config.peers):
        workers = peer.data_parallel
        if workers > config.data.batch_size:
            raise ConfigError(f"peers[{index}].data_parallel", f"is {workers} but data.batch_size is "
                                                               f"{config.data.batch_size}: every worker needs at "
                                                               "least one row of the global batch")
        if workers > 1 and config.data.shared_fraction > 0:
            raise ConfigError(f"peers[{index}].data_parallel",
                              f"is {workers} but data.shared_fraction is {config.data.shared_fraction:g}: the shared "
                              "slice's batch is not divided among data-parallel workers; set 1, or shared_fraction 0")
        if workers > 1 and peer.resources.gpus not in (0, 1):
            raise ConfigError(f"peers[{index}].resources.gpus",
                              f"is {peer.resources.gpus:g} but the peer has {workers} data-parallel workers, each "
                              "reserving these resources: a worker needs a whole GPU of its own (NCCL runs one "
                              "rank per device; set 1), or none (0: gloo on the CPU)")


def _check_partition(config: RunConfig, mode: str) -> None:
    """``data.partition``: its fields together, and what a cohort whose peers hold disjoint shards
    needs (each peer's teachers are replicas run on its own batch, drawn from its own shard). The
    class numbers and the dataset's support are checked against the dataset
    (:func:`codistill.validation.validate_data`), whether every shard holds a batch on the data
    (:func:`codistill.preflight.check_partition`)."""
    data, partition = config.data, config.data.partition
    if partition.alpha is not None and partition.kind != "dirichlet":
        raise ConfigError("data.partition.alpha", f"is for kind: dirichlet, not {partition.kind}")
    if partition.kind == "dirichlet" and partition.alpha is None:
        raise ConfigError("data.partition.alpha", "kind dirichlet needs alpha > 0, the concentration of Dir(alpha)")
    if partition.classes is not None and partition.kind != "classes":
        raise ConfigError("data.partition.classes", f"is for kind: classes, not {partition.kind}")
    if partition.kind == "shared":
        if data.shared_fraction > 0:
            raise ConfigError("data.shared_fraction", "is a slice every peer sees beside its own shard: it needs a "
                                                      "data.partition other than shared")
        return
    if mode == "offline" or config.teachers:
        raise ConfigError("data.partition", "divides the training split among online peers; an offline student "
                                            "learns on all of it (leave it unset)")
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
        if partition.classes is None:
            raise ConfigError("data.partition.classes", "kind classes needs one list of classes per peer")
        if len(partition.classes) != len(config.peers):
            raise ConfigError("data.partition.classes", f"needs one list per peer ({len(config.peers)}), "
                                                        f"got {len(partition.classes)}")


def _check_cohort_shape(config: RunConfig, mode: str) -> None:
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


def _check_teacher_source(config: RunConfig, mode: str) -> None:
    """Codistillation's options (``distillation.teacher_source: replicas``) and what cannot apply with them."""
    dist = config.distillation
    if dist.burn_in_epochs >= config.epochs:
        raise ConfigError("distillation.burn_in_epochs", f"is {dist.burn_in_epochs} but the run has {config.epochs} "
                                                         "epochs: distillation would never start")
    replicas = dist.teacher_source == "replicas"
    if replicas and mode == "offline":
        raise ConfigError("distillation.teacher_source", "replicas are copies of online peers; an offline student "
                                                         "learns from its frozen teachers (use live)")
    if replicas and config.runtime.exchange != REPLICAS_EXCHANGE:
        raise ConfigError("runtime.exchange", f"'{config.runtime.exchange}' does not apply with "
                                              "distillation.teacher_source: replicas (peers exchange parameters "
                                              "through the object store, not predictions); leave it "
                                              f"{REPLICAS_EXCHANGE}")
    if not replicas and not config.data.shared_batches:
        raise ConfigError("data.shared_batches", "false needs distillation.teacher_source: replicas (live "
                                                 "teachers predict on the student's batch only if it is theirs too)")


def check_devices(config: RunConfig, cuda_available: bool, gpu_count: int | None = None) -> None:
    """Refuse GPUs on a machine without CUDA (checked where the peers run: the front door, each peer),
    and more data-parallel workers' GPUs than the machine's ``gpu_count`` where it is known."""
    if cuda_available:
        _check_worker_gpus(config, gpu_count)
        return
    if config.runtime.device == "cuda":
        raise ConfigError("runtime.device", "is cuda but this machine has no CUDA device "
                                            "(torch.cuda.is_available() is False); use auto or cpu")
    for index, peer in enumerate(config.peers):
        if peer.resources.gpus > 0:
            raise ConfigError(f"peers[{index}].resources.gpus",
                              f"asks for {peer.resources.gpus:g} GPU but this machine has no CUDA device; set it "
                              "to 0, or submit the job to a GPU cluster with ray job submit")


def _check_worker_gpus(config: RunConfig, gpu_count: int | None) -> None:
    """Every data-parallel worker of a peer with GPUs takes a whole device: they must all fit."""
    parallel = [index for index, peer in enumerate(config.peers) if peer.data_parallel > 1]
    if gpu_count is None or not parallel:
        return
    asked = sum(peer.data_parallel * peer.resources.gpus for peer in config.peers)
    if asked > gpu_count:
        raise ConfigError(f"peers[{parallel[0]}].data_parallel",
                          f"the cohort's workers ask for {asked:g} GPUs but this machine has {gpu_count}; lower "
                          "data_parallel, or submit the job to a cluster with enough GPUs (ray job submit)")
