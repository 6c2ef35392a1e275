"""The command line shared by ``jobs/online.py`` and ``jobs/offline.py``.

The config is loaded and validated before anything is written or Ray starts; a config error
prints one line naming the field and exits with status 2.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Callable

from codistill.checkpoint import LATEST
from codistill.config import RunConfig, load_config
from codistill.errors import ConfigError, NonFiniteLoss
from codistill.runner import CONFIG_FILE, prepare_run_dir, run_cohort
from codistill.cohort_base import Cohort, PeerLost


def parse_args(argv: list[str] | None, description: str, backends: tuple[str, ...]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="YAML run configuration (see jobs/configs/)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config field, e.g. peers.0.optimizer.lr=0.1 (repeatable)")
    parser.add_argument("--run-dir", type=Path, help="where to write checkpoints, logs and results.json")
    parser.add_argument("--independent", action="store_true", help="train without distillation (the baseline)")
    parser.add_argument("--resume", type=Path, metavar="RUN_DIR", help="continue the run in RUN_DIR")
    parser.add_argument("--stop-after-epochs", type=int, metavar="N",
                        help="stop (with a checkpoint) after N more epochs; finish later with --resume")
    parser.add_argument("--backend", choices=backends, default=backends[0], help="how the peers run")
    return parser.parse_args(argv)


def resolve(args: argparse.Namespace, mode: str) -> tuple[RunConfig, Path]:
    """The validated config and run directory; raises ConfigError before anything is written."""
    if args.resume is not None:
        if args.config is not None:
            raise ConfigError("--config", "--resume uses the run's own config.yaml; drop --config")
        return load_config(args.resume / CONFIG_FILE, args.overrides, mode=mode), args.resume
    if args.config is None:
        raise ConfigError("--config", "give --config FILE (or --resume RUN_DIR)")
    overrides = args.overrides + (["independent=true"] if args.independent else [])
    config = load_config(args.config, overrides, mode=mode)
    run_dir = args.run_dir or Path("runs") / f"{config.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    return config, run_dir


def main(argv: list[str] | None, *, mode: str, description: str,
         backends: dict[str, Callable[[RunConfig], Cohort]], start_ray: Callable[[RunConfig], bool] | None = None) -> int:
    """Parse, validate, prepare the run directory, train, report. Returns the exit status."""
    args = parse_args(argv, description, tuple(backends))
    try:
        config, run_dir = resolve(args, mode)
    except ConfigError as error:
        print(f"codistill: {error}", file=sys.stderr)
        return 2
    if args.resume is None:
        prepare_run_dir(run_dir, config)
    print(f"run directory: {run_dir}   (tensorboard --logdir {run_dir / 'tensorboard'})", flush=True)
    started_ray = start_ray(config) if start_ray is not None and args.backend == "ray" else False
    try:
        results = run_cohort(config, run_dir, backends[args.backend], resume=args.resume is not None,
                             stop_after_epochs=args.stop_after_epochs)
    except (NonFiniteLoss, PeerLost) as error:
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
