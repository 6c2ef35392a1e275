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
import json
import math
import re
import sys
import time
from pathlib import Path
from typing import Any

import yaml

import _bootstrap  # noqa: F401  (puts platform/ on sys.path when codistill is not installed)

from codistill import metrics as m
from codistill.config import RunConfig, load_config, parse_config
from codistill.curriculum import SCHEDULE_FIELDS, NUMBER_FIELDS, curriculum_field_of
from codistill.errors import ConfigError
from codistill.checkpoint import load_latest_checkpoint
from codistill.runner import CONFIG_FILE
from codistill.tuning.results import COMPLETE, format_table, trial_row, write_csv
from codistill.tuning.space import SCHEDULERS, Dimension, load_space, mutated, parse_dimension
from codistill.tuning.replay import replay_config

SETTINGS_FILE = "sweep.json"  # what --resume needs to rebuild the trainable
TRIALS_FILE = "trials.csv"
BEST_FILE = "best.yaml"
SUMMARY_FILE = "summary.json"  # trials, wall time, most trials at once, best trial
PEAK_FILE = "most_trials_at_once.txt"
BACKENDS = ("ray", "sequential")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="YAML run configuration (see jobs/configs/)")
    parser.add_argument("--space", help="YAML search space: dotted config keys mapped to domains")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config field of every trial (repeatable)")
    parser.add_argument("--scheduler", choices=SCHEDULERS, default="asha")
    parser.add_argument("--num-samples", type=int, default=8, help="trials (times every grid combination)")
    parser.add_argument("--metric", default=m.MEAN_PEER_VAL,
                        help=f"what to maximize: {m.MEAN_PEER_VAL}, {m.ENSEMBLE_VAL} or <peer>_val_accuracy")
    parser.add_argument("--storage", type=Path, default=Path("runs/sweeps"), help="where sweeps are written")
    parser.add_argument("--name", help="the sweep's directory under --storage (default: config name, scheduler, time)")
    parser.add_argument("--resume", type=Path, metavar="SWEEP_DIR", help="continue the sweep in SWEEP_DIR")
    parser.add_argument("--backend", choices=BACKENDS, default="ray",
                        help="ray: one actor per peer in the trial's bundles; sequential: the cohort in the trial's process")
    parser.add_argument("--perturbation-interval", type=int, default=4, help="pbt/pb2: epochs between exploits")
    parser.add_argument("--grace-epochs", type=int, default=2, help="asha: epochs before a trial may be stopped")
    parser.add_argument("--max-failures", type=int, default=2, help="retries of a failing trial (from its checkpoint)")
    parser.add_argument("--max-concurrent", type=int, default=0, help="at most this many trials at once (0: as resources allow)")
    parser.add_argument("--cpus", type=int, default=0, help="logical CPUs of a private Ray runtime (0: this machine's, "
                                                           "at least one trial's)")
    return parser.parse_args(argv)


def check_metric(metric: str, config: RunConfig) -> None:
    known = [m.MEAN_PEER_VAL, m.ENSEMBLE_VAL] + [m.peer_val(p.name) for p in config.peers]
    if metric not in known:
        raise ConfigError("--metric", f"unknown metric '{metric}' (known: {', '.join(known)})")


def check_population(dimensions: list[Dimension], scheduler: str, space_name: str) -> None:
    """PBT/PB2 change values mid-run: only curriculum fields, whose history the runner records."""
    changing = mutated(dimensions, scheduler)
    if scheduler == "pb2" and not changing:
        raise ConfigError("--space", "pb2 needs at least one uniform, loguniform or randint entry")
    for dimension in changing:
        if curriculum_field_of(dimension.key) is None:
            raise ConfigError(f"{space_name}: {dimension.key}",
                              f"{scheduler} changes values during training only in curriculum fields "
                              f"({', '.join(SCHEDULE_FIELDS + NUMBER_FIELDS)}) so that the trial can be replayed; "
                              "search this key with --scheduler asha or fifo")


def prepare(args: argparse.Namespace) -> dict[str, Any]:
    """Validated settings of a new sweep (nothing written), or those saved by the sweep to resume."""
    if args.resume is not None:
        if args.config or args.space:
            raise ConfigError("--resume", "a resumed sweep keeps its own config and space; drop --config/--space")
        settings_file = args.resume / SETTINGS_FILE
        if not settings_file.is_file():
            raise ConfigError("--resume", f"{args.resume} holds no sweep (missing {SETTINGS_FILE})")
        settings = json.loads(settings_file.read_text())
        settings["dimensions"] = [parse_dimension(k, v, k) for k, v in settings["space"].items()]
        return settings
    if args.config is None or args.space is None:
        raise ConfigError("--config", "give --config FILE and --space FILE (or --resume SWEEP_DIR)")
    for flag, value in (("--num-samples", args.num_samples), ("--perturbation-interval", args.perturbation_interval),
                        ("--grace-epochs", args.grace_epochs)):
        if value < 1:
            raise ConfigError(flag, f"must be ≥ 1, got {value}")
    if args.max_failures < 0 or args.max_concurrent < 0 or args.cpus < 0:
        raise ConfigError("--max-failures", "--max-failures, --max-concurrent and --cpus must be ≥ 0")
    config = load_config(args.config, args.overrides)
    base_raw = json.loads(json.dumps(config.to_dict()))  # plain lists and dicts, as --set addresses them
    if config.data.root is not None:  # trials run in their own working directories
        base_raw["data"]["root"] = str(Path(config.data.root).expanduser().resolve())
    dimensions = load_space(args.space, base_raw)
    check_metric(args.metric, config)
    if args.scheduler in ("pbt", "pb2"):
        check_population(dimensions, args.scheduler, Path(args.space).name)
    name = args.name or f"{config.name}-{args.scheduler}-{time.strftime('%Y%m%d-%H%M%S')}"
    space = yaml.safe_load(Path(args.space).read_text())
    directory = (args.storage / name).resolve()
    if directory.exists():
        raise ConfigError("--name", f"{directory} already exists; continue it with --resume {directory}")
    return {"base_raw": base_raw, "space": space, "dimensions": dimensions, "scheduler": args.scheduler,
            "num_samples": args.num_samples, "metric": args.metric, "directory": str(directory),
            "backend": args.backend, "perturbation_interval": args.perturbation_interval,
            "grace_epochs": args.grace_epochs, "max_failures": args.max_failures,
            "max_concurrent": args.max_concurrent, "cpus": args.cpus}


def build_tuner(settings: dict[str, Any], resume: bool) -> Any:
    from ray import tune

    from codistill.tuning.schedulers import build_scheduler
    from codistill.tuning.trainable import RunningTrials, train_cohort, trial_resources

    config = parse_config(settings["base_raw"])
    directory = Path(settings["directory"])
    trainable = tune.with_resources(
        tune.with_parameters(train_cohort, base_raw=settings["base_raw"], backend=settings["backend"],
                             experiment_dir=str(directory)),
        trial_resources(config, settings["backend"]))
    if resume:
        return tune.Tuner.restore(str(directory), trainable=trainable, resume_unfinished=True, resume_errored=True)
    dimensions = settings["dimensions"]
    scheduler = build_scheduler(settings["scheduler"], dimensions, epochs=config.epochs,
                                interval=settings["perturbation_interval"], grace_epochs=settings["grace_epochs"])
    return tune.Tuner(
        trainable, param_space={d.key: d.to_tune() for d in dimensions},
        tune_config=tune.TuneConfig(metric=settings["metric"], mode="max", scheduler=scheduler,
                                    num_samples=settings["num_samples"], reuse_actors=True,
                                    max_concurrent_trials=settings["max_concurrent"] or None),
        run_config=tune.RunConfig(name=directory.name, storage_path=str(directory.parent),
                                  callbacks=[RunningTrials(directory / PEAK_FILE)],
                                  failure_config=tune.FailureConfig(max_failures=settings["max_failures"]),
                                  # PBT may clone any trial's latest checkpoint while that trial moves on
                                  checkpoint_config=tune.CheckpointConfig(
                                      num_to_keep=None if settings["scheduler"] in ("pbt", "pb2") else 2)))


def summarize(results: Any, settings: dict[str, Any]) -> tuple[list[dict[str, Any]], str | None]:
    """One row per trial, and the id of the best complete trial by its last ``metric``."""
    config = parse_config(settings["base_raw"])
    keys, metric = [d.key for d in settings["dimensions"]], settings["metric"]
    rows = []
    for result in results:
        history = result.metrics_dataframe
        reported = {name: value for name, value in (result.metrics or {}).items()
                    if name.endswith("_accuracy") and isinstance(value, float)}
        best = float(history[metric].max()) if history is not None and metric in history else None
        trial_id = trial_id_of(result.path)
        rows.append(trial_row(trial_id, result.config or {},
                              keys, int((result.metrics or {}).get("epoch", 0)), config.epochs, reported, best,
                              metric, result.error is not None))
    complete = [row for row in rows if row["state"] == COMPLETE and row[f"last {metric}"] is not None]
    best_id = max(complete, key=lambda row: row[f"last {metric}"])["trial"] if complete else None
    return rows, best_id


def trial_id_of(trial_path: str) -> str:
    """A trial's id from its directory name (``train_cohort_<id>_<index>_<values>_<date>``); its
    metrics cannot tell, since after a PBT exploit they may be the clone's."""
    match = re.search(r"_([0-9a-f]+_\d{5})_", Path(trial_path).name)
    return match.group(1) if match else Path(trial_path).name


def export_best(directory: Path, trial_id: str) -> Path:
    """``best.yaml``: the best trial's curriculum as a plain config (its piecewise PBT schedule included)."""
    from codistill.tuning.trainable import trial_run_dir

    run_dir = trial_run_dir(directory, trial_id)
    trial_raw = yaml.safe_load((run_dir / CONFIG_FILE).read_text())
    # Tune may stop a trial before results.json: its newest verified checkpoint holds the history.
    history = load_latest_checkpoint(run_dir, len(trial_raw["peers"]))[0]["history"]
    raw = replay_config(trial_raw, history, name=f"{trial_raw['name']}-replay-{trial_id}")
    parse_config(raw)  # the export must itself be a valid config
    path = directory / BEST_FILE
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def trial_cpus(config: RunConfig, backend: str) -> int:
    peers = sum(p.resources.cpus for p in config.peers)
    return math.ceil(peers + (1 if backend == "ray" else 0))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        settings = prepare(args)
    except ConfigError as error:
        print(f"codistill: {error}", file=sys.stderr)
        return 2
    directory = Path(settings["directory"])
    resume = args.resume is not None
    if not resume:
        directory.mkdir(parents=True)
        saved = {k: v for k, v in settings.items() if k != "dimensions"}
        (directory / SETTINGS_FILE).write_text(json.dumps(saved, indent=2))
    print(f"sweep directory: {directory}   (tensorboard --logdir {directory})", flush=True)

    from codistill.cohort import start_ray

    import ray

    config = parse_config(settings["base_raw"])
    started_ray = start_ray(config, num_cpus=max(settings["cpus"], trial_cpus(config, settings["backend"])))
    started = time.perf_counter()
    try:
        results = build_tuner(settings, resume).fit()
    finally:
        if started_ray:
            ray.shutdown()
    seconds = time.perf_counter() - started
    rows, best_id = summarize(results, settings)
    write_csv(directory / TRIALS_FILE, rows)
    print(format_table(rows, f"last {settings['metric']}"))
    peak = directory / PEAK_FILE
    summary = {"trials": len(rows), "wall_seconds": seconds, "most_concurrent": int(peak.read_text()) if peak.is_file() else 0,
               "best_trial": best_id, "metric": settings["metric"]}
    (directory / SUMMARY_FILE).write_text(json.dumps(summary, indent=2))
    print(f"{len(rows)} trials in {seconds:.0f} s wall time, at most {summary['most_concurrent']} at once; "
          f"table: {directory / TRIALS_FILE}")
    if best_id is None:
        print("no trial completed; nothing to export", file=sys.stderr)
        return 1
    try:
        best = export_best(directory, best_id)
    except ValueError as error:
        print(f"best trial {best_id}: {error}", file=sys.stderr)
        return 1
    print(f"best trial {best_id}: replay its curriculum with  python jobs/online.py --config {best}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
