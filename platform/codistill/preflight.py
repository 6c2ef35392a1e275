"""The front door's checks of what lies outside the config: devices, the run directory, checkpoints.

:mod:`codistill.cli` runs them after the config validated and before Ray starts or anything is
written; each failure is a one-line :class:`~codistill.errors.ConfigError` naming the field
(``runtime.device``, ``peers[1].resources.gpus``, ``--run-dir``, ``--resume``).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from codistill.checkpoint import CheckpointError, find_checkpoint
from codistill.config import RunConfig
from codistill.errors import ConfigError
from codistill.runner import CONFIG_FILE


def check_devices(config: RunConfig, cuda_available: bool) -> None:
    """Refuse GPUs on a machine without CUDA (for runs whose peers run on this machine)."""
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
    if (run_dir / CONFIG_FILE).exists():
        raise ConfigError("--run-dir", f"{run_dir} already holds a run; resume it with --resume {run_dir} "
                                       "or choose another --run-dir")
    check_writable(run_dir, "--run-dir")


def check_resume(run_dir: Path, peers: int) -> list[str]:
    """A run to resume needs a writable directory and a checkpoint that verifies; returns the
    warnings about newer checkpoints skipped."""
    check_writable(run_dir, "--resume")
    try:
        _, skipped = find_checkpoint(run_dir, peers)
    except CheckpointError as error:
        raise ConfigError("--resume", str(error)) from None
    return skipped
