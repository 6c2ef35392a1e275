"""Ray Tune sweeps over a cohort's config: searched, early-stopped or population-based curricula.

    python jobs/sweep.py --config jobs/configs/digits_cohort.yaml --space jobs/configs/digits_cohort_space.yaml \\
        --scheduler asha --num-samples 16
    python jobs/sweep.py --config FILE --space FILE --scheduler pbt --num-samples 4 --storage runs/sweeps
    python jobs/sweep.py --resume runs/sweeps/NAME          # continue a killed sweep
    ray job submit --working-dir . -- python jobs/sweep.py --config FILE --space FILE

One trial is one cohort run of ``jobs/online.py``'s runner (:mod:`codistill.tuning.trainable`),
reporting validation accuracy every epoch with a checkpoint of the whole cohort. The sweep writes
under ``STORAGE/NAME``: Tune's experiment state, ``cohorts/<trial>/`` (each trial's run directory
with its TensorBoard curves: ``tensorboard --logdir STORAGE``), ``trials.csv`` (one row per trial)
and ``best.yaml``, the best complete trial's curriculum as a plain config (``jobs/online.py
--config best.yaml`` replays it without Tune). Config and space errors stop the sweep before Ray
starts, with one line naming the entry.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields
from pathlib import Path

from codistill import metrics as m
from codistill.cohort.backends import ONLINE_BACKENDS
from codistill.errors import ConfigError
from codistill.tuning.layout import TRIALS_FILE
from codistill.tuning.results import format_table
from codistill.tuning.settings import SweepOptions, SweepSettings, new_sweep, saved_sweep
from codistill.tuning.space import SCHEDULERS

DEFAULTS = SweepOptions()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="YAML run configuration (see jobs/configs/)")
    parser.add_argument("--space", help="YAML search space: dotted config keys mapped to domains")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config field of every trial (repeatable)")
    parser.add_argument("--scheduler", choices=SCHEDULERS, default=DEFAULTS.scheduler)
    parser.add_argument("--num-samples", type=int, default=DEFAULTS.num_samples,
                        help="trials (times every grid combination)")
    parser.add_argument("--metric", default=DEFAULTS.metric,
                        help=f"what to maximize: {m.MEAN_PEER_VAL}, {m.ENSEMBLE_VAL} or <peer>_val_accuracy")
    parser.add_argument("--storage", type=Path, default=Path("runs/sweeps"), help="where sweeps are written")
    parser.add_argument("--name", help="the sweep's directory under --storage (default: config name, scheduler, time)")
    parser.add_argument("--resume", type=Path, metavar="SWEEP_DIR", help="continue the sweep in SWEEP_DIR")
    parser.add_argument("--backend", choices=ONLINE_BACKENDS, default=DEFAULTS.backend,
                        help="ray: one actor per peer in the trial's bundles; "
                             "sequential: the cohort in the trial's process")
    parser.add_argument("--perturbation-interval", type=int, default=DEFAULTS.perturbation_interval,
                        help="pbt/pb2: epochs between exploits")
    parser.add_argument("--grace-epochs", type=int, default=DEFAULTS.grace_epochs,
                        help="asha: epochs before a trial may be stopped")
    parser.add_argument("--max-failures", type=int, default=DEFAULTS.max_failures,
                        help="retries of a failing trial (from its checkpoint)")
    parser.add_argument("--max-concurrent", type=int, default=DEFAULTS.max_concurrent,
                        help="at most this many trials at once (0: as resources allow)")
    parser.add_argument("--cpus", type=int, default=DEFAULTS.cpus,
                        help="logical CPUs of a private Ray runtime (0: this machine's, at least one trial's)")
    return parser.parse_args(argv)


def settings_of(args: argparse.Namespace) -> SweepSettings:
    """The checked settings of the sweep the command line asks for (nothing written)."""
    if args.resume is not None:
        if args.config or args.space:
            raise ConfigError("--resume", "a resumed sweep keeps its own config and space; drop --config/--space")
        return saved_sweep(args.resume)
    if args.config is None or args.space is None:
        raise ConfigError("--config", "give --config FILE and --space FILE (or --resume SWEEP_DIR)")
    options = SweepOptions(**{option.name: getattr(args, option.name) for option in fields(SweepOptions)})
    return new_sweep(args.config, args.space, args.overrides, options, args.storage, args.name)


def main(argv: list[str] | None = None) -> int:
    """Check, save, fit, tabulate and export a sweep; the exit status (2: bad input, 1: nothing to export)."""
    args = parse_args(argv)
    try:
        settings = settings_of(args)
    except ConfigError as error:
        print(f"codistill: {error}", file=sys.stderr)
        return 2
    resume = args.resume is not None
    if not resume:
        settings.save()
    directory = settings.directory
    print(f"sweep directory: {directory}   (tensorboard --logdir {directory})", flush=True)

    from codistill.tuning.sweep import run_sweep  # imports Ray, only once the inputs are valid

    outcome = run_sweep(settings, resume=resume)
    summary = outcome.summary
    print(format_table(outcome.rows, f"last {summary['metric']}"))
    print(f"{summary['trials']} trials in {summary['wall_seconds']:.0f} s wall time, at most "
          f"{summary['most_concurrent']} at once; table: {directory / TRIALS_FILE}")
    if summary["best_trial"] is None:
        print("no trial completed; nothing to export", file=sys.stderr)
        return 1
    if outcome.export_error is not None:
        print(f"best trial {summary['best_trial']}: {outcome.export_error}", file=sys.stderr)
        return 1
    print(f"best trial {summary['best_trial']}: replay its curriculum with  python jobs/online.py "
          f"--config {outcome.best_config}")
    return 0
