"""The front door's checks of what lies outside the config: the run directory, checkpoints, and
whether the networks and methods the config names can be built for the data, and whether a probe
carved from the validation split leaves enough of it, whether every peer's shard of a partitioned
training split holds a batch (the devices are checked by
:func:`codistill.config.check_devices`).

:mod:`codistill.cli` runs them after the config validated and before Ray starts or anything is
written; each failure is a one-line :class:`~codistill.errors.ConfigError` naming the field
(``runtime.device``, ``peers[1].resources.gpus``, ``runtime.exchange``, ``--run-dir``, ``--resume``,
``data.probe_source``, ``data.partition``).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch

from codistill.checkpoint import CheckpointError, find_checkpoint
from codistill.checks import component
from codistill.config import RunConfig
from codistill.data import DataShape
from codistill.errors import ConfigError
from codistill.methods import build_method
from codistill.peer import feature_shapes, load_dataset, load_shards, method_context, partitioned, shared_slice_size
from codistill.peer.teachers import TeacherSlots
from codistill.registry import EXCHANGES
from codistill.runner import holds_a_run


def check_networks(config: RunConfig, shape: DataShape) -> None:
    """Build every peer's network and distillation methods once, aside, as the peers will: a model
    that cannot take the data's images, or a method that cannot pair a student with its teachers
    (InDistill with a narrower offline teacher), is refused here rather than inside a peer."""
    shapes: dict[str, list] = {}
    models = [(f"peers[{k}].model", peer.model) for k, peer in enumerate(config.peers)]
    models += [(f"teachers[{i}].model", teacher.model) for i, teacher in enumerate(config.teachers)]
    for field, model in models:
        if model not in shapes:
            try:
                shapes[model] = feature_shapes(model, shape)
            except (RuntimeError, ValueError) as error:
                raise ConfigError(field, f"'{model}' cannot take {shape.in_channels}×{shape.image_size}×"
                                         f"{shape.image_size} images: {_first_line(error)}") from None
    if config.independent:
        return
    for k, peer in enumerate(config.peers):
        context = method_context(config, shape.num_classes, shapes[peer.model],
                                 [shapes[name] for name in TeacherSlots.of(config, k).models])
        for j, spec in enumerate(config.distillation.methods):
            try:
                with torch.random.fork_rng():
                    build_method(spec.name, context, spec.params)
            except (RuntimeError, ValueError, TypeError) as error:
                raise ConfigError(f"distillation.methods[{j}]", f"{spec.name} cannot teach peer '{peer.name}': "
                                                               f"{_first_line(error)}") from None


def check_exchange(config: RunConfig) -> None:
    """An exchange of your own (``runtime.exchange: package.module:Name``) must import and be an
    :class:`~codistill.cohort.exchanges.Exchange`; the config checked the built-in names without loading them."""
    component(EXCHANGES, config.runtime.exchange, "runtime.exchange")


def check_probe_split(config: RunConfig) -> None:
    """A probe carved from the validation split (``data.probe_source: held_out``) must leave a
    validation split to select on: it is carved here once, aside, as every peer will carve it (from
    the common validation split, also with a partition: peer 0's dataset stands for every peer's)."""
    if config.data.probe_fraction > 0 and config.data.probe_source == "held_out":
        load_dataset(config, peer=0)


def check_partition(config: RunConfig) -> None:
    """With ``data.partition`` every peer's training examples (its shard, less its probe) and the
    shared slice (``data.shared_fraction``) must each fill a batch: they are computed here from the
    training split's labels, as every peer will."""
    if not partitioned(config):
        return
    batch_size = config.data.batch_size
    for peer, shard in zip(config.peers, load_shards(config)):
        if shard.train_examples < batch_size:
            raise ConfigError("data.partition", f"leaves peer '{peer.name}' {shard.train_examples} training "
                                                f"examples, fewer than one batch (data.batch_size {batch_size}); "
                                                "use a larger alpha, fewer peers, a smaller batch or more data")
    shared = shared_slice_size(config)
    if 0 < shared < batch_size:
        raise ConfigError("data.shared_fraction", f"gives a shared slice of {shared} examples, fewer than one batch "
                                                  f"(data.batch_size {batch_size}); use a larger fraction")


def _first_line(error: Exception) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def check_writable(directory: Path, field: str) -> None:
    """``directory`` (or, if it does not exist yet, its nearest existing parent) must be a writable folder."""
    existing = directory
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(field, f"{existing} is not a directory")
    try:
        with tempfile.TemporaryFile(dir=existing, prefix=".codistill-probe-"):
            pass
    except OSError as error:
        raise ConfigError(field, f"cannot write in {existing}: {error.strerror or error}") from None


def check_new_run_dir(run_dir: Path) -> None:
    """A new run needs a directory that holds no run yet and can be written."""
    complaint = holds_a_run(run_dir)
    if complaint:
        raise ConfigError("--run-dir", complaint)
    check_writable(run_dir, "--run-dir")


def check_resume(run_dir: Path, peers: int) -> list[str]:
    """A run to resume needs a writable directory and a checkpoint that verifies; returns the
    warnings about newer checkpoints skipped (or a damaged LATEST)."""
    check_writable(run_dir, "--resume")
    try:
        _, warnings = find_checkpoint(run_dir, peers)
    except CheckpointError as error:
        raise ConfigError("--resume", str(error)) from None
    return warnings
