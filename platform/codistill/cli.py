"""The command line shared by ``jobs/online.py`` and ``jobs/offline.py``: the front door.

Every user error — the command line, the config and its ``--set`` overrides, the data files,
the devices, the run directory, the checkpoints to resume from — is found before anything is
written or Ray starts, printed as one line naming the field, and ends the job with status 2.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from codistill.arguments import ArgumentParser, reported
from codistill.checkpoint import LATEST
from codistill.cohort.backends import BACKENDS, check_data_parallel
from codistill.cohort.base import PeerLost
from codistill.config import RESUME_SAFE_FIELDS, RunConfig, changed_fields, check_devices
from codistill.data import data_shape
from codistill.errors import ConfigError, NonFiniteLoss, UnreadableFile, WriteFailed
from codistill.preflight import (
    check_exchange,
    check_networks,
    check_new_run_dir,
    check_partition,
    check_probe_split,
    check_resume,
)
from codistill.runner import CONFIG_FILE, prepare_run_dir, record_backend, record_resume, recorded_backend, run_cohort
from codistill.validation import load_config


def parse_args(argv: list[str] | None, description: str, backends: tuple[str, ...]) -> argparse.Namespace:
    parser = ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="YAML run configuration (see jobs/configs/)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config field, e.g. peers.0.optimizer.lr=0.1 (repeatable); with --resume "
                             f"only {', '.join(RESUME_SAFE_FIELDS)}")
    parser.add_argument("--run-dir", type=Path, help="where to write checkpoints, logs and results.json")
    parser.add_argument("--independent", action="store_true", help="train without distillation (the baseline)")
    parser.add_argument("--resume", type=Path, metavar="RUN_DIR", help="continue the run in RUN_DIR")
    parser.add_argument("--stop-after-epochs", type=int, metavar="N",
                        help="stop (with a checkpoint) after N more epochs; finish later with --resume")
    parser.add_argument("--backend", choices=backends,
                        help=f"how the peers run (default: {backends[0]}; with --resume, the run's own)")
    args = parser.parse_args(argv)
    args.backend = args.backend or _default_backend(args.resume, backends)
    return args


def _default_backend(resume: Path | None, backends: tuple[str, ...]) -> str:
    """The backend a run uses when ``--backend`` is not given: a resumed run's own, else the first."""
    recorded = recorded_backend(resume) if resume is not None else None
    if recorded is not None and recorded not in backends:
        raise ConfigError("--resume", f"the run trained on the backend '{recorded}', which this command does not "
                                      f"offer ({', '.join(backends)})")
    return recorded or backends[0]


def resolve(args: argparse.Namespace, mode: str) -> tuple[RunConfig, Path]:
    """The validated config and run directory; raises ConfigError before anything is written."""
    if args.stop_after_epochs is not None and args.stop_after_epochs < 1:
        raise ConfigError("--stop-after-epochs", f"must be ≥ 1, got {args.stop_after_epochs}")
    if args.resume is not None:
        return _resolve_resume(args, mode), args.resume
    if args.config is None:
        raise ConfigError("--config", "give --config FILE (or --resume RUN_DIR)")
    overrides = args.overrides + (["independent=true"] if args.independent else [])
    config = load_config(args.config, overrides, mode=mode)
    run_dir = args.run_dir or Path("runs") / f"{config.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    check_new_run_dir(run_dir)
    return config, run_dir


def _resolve_resume(args: argparse.Namespace, mode: str) -> RunConfig:
    """The run's own config with the ``--set`` overrides that cannot change its result."""
    for flag, given in (("--config", args.config), ("--run-dir", args.run_dir), ("--independent", args.independent)):
        if given:
            raise ConfigError(flag, f"--resume continues the run with its own config.yaml and directory; drop {flag}")
    saved_file = args.resume / CONFIG_FILE
    if not saved_file.is_file():
        raise ConfigError("--resume", f"{args.resume} holds no run (no {CONFIG_FILE})")
    saved = load_config(saved_file, mode=mode, field="--resume")
    config = load_config(saved_file, args.overrides, mode=mode, field="--resume")
    refused = [name for name in changed_fields(saved, config) if name not in RESUME_SAFE_FIELDS]
    if refused:
        raise ConfigError(refused[0], f"--resume cannot change it, since that would change the result "
                                      f"(--resume accepts only {', '.join(RESUME_SAFE_FIELDS)})")
    return config


def main(argv: list[str] | None, *, mode: str, description: str, backends: tuple[str, ...],
         start_ray: Callable[[RunConfig], bool] | None = None) -> int:
    """Parse, validate, prepare the run directory, train, report. Returns the exit status.

    ``backends``: the names (in :data:`codistill.cohort.backends.BACKENDS`) ``--backend`` may choose, the default first.
    """
    try:
        args = parse_args(argv, description, backends)
        config, run_dir = resolve(args, mode)
        if args.backend != "ray" or not os.environ.get("RAY_ADDRESS"):  # the peers run on this machine
            check_devices(config, torch.cuda.is_available(), torch.cuda.device_count())
        check_data_parallel(config, args.backend)
        check_networks(config, data_shape(config.data))
        check_partition(config)
        check_probe_split(config)
        check_exchange(config)
        warnings = check_resume(run_dir, len(config.peers)) if args.resume is not None else []
    except ConfigError as error:
        return reported(error)
    for warning in warnings:
        print(f"codistill: warning: {warning}", file=sys.stderr)
    try:
        if args.resume is None:
            prepare_run_dir(run_dir, config)
        else:
            record_resume(run_dir, config, args.overrides)
        record_backend(run_dir, args.backend)
    except WriteFailed as error:
        print(f"codistill: {error}; nothing was trained", file=sys.stderr)
        return 1
    print(f"run directory: {run_dir}   (tensorboard --logdir {run_dir / 'tensorboard'})", flush=True)
    started_ray = start_ray(config) if start_ray is not None and args.backend == "ray" else False
    try:
        results = run_cohort(config, run_dir, BACKENDS.get(args.backend), resume=args.resume is not None,
                             stop_after_epochs=args.stop_after_epochs)
    except (NonFiniteLoss, PeerLost, UnreadableFile, WriteFailed) as error:
        checkpoints = run_dir / "checkpoints"
        kept = f"its last complete checkpoint stays in {checkpoints}" if (checkpoints / LATEST).is_file() \
            else "no epoch was complete"
        print(f"codistill: {error}; the run stopped, {kept}", file=sys.stderr)
        return 1
    finally:
        if started_ray:
            import ray

            ray.shutdown()
    return 0 if results.get("complete") or args.stop_after_epochs else 1
