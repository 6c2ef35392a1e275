"""One Ray Tune trial = one cohort run through :func:`codistill.runner.run_cohort`.

The trial's config is the sweep's base config with the trial's sampled values set at their dotted
keys. After every epoch the runner's ``on_epoch`` callback reports the mean peer, the ensemble and
each peer's validation top-1 with a :class:`ray.tune.Checkpoint` of the epoch's cohort checkpoint
(every peer's model, optimizer, adapters, pruning masks, policy, RNG). When Tune hands the trial
a checkpoint — its own after a failure, or another trial's after a PBT exploit — it is installed
in the trial's run directory and the run resumes from it with the trial's (possibly mutated)
config: a hyperparameter change rebuilds the cohort from the checkpoint, and takes effect from the
next epoch, because every schedule is a pure function of progress.

Each trial reserves its driver (one CPU) and one bundle per peer; the Ray cohort places peer ``k``
in bundle ``k + 1`` (:class:`codistill.cohort.ray_cohort.RayCohort`). With ``backend="sequential"`` the
whole cohort runs in the trial's process on one bundle of all the peers' CPUs, each peer computing
with its own threads as an actor would.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ray import tune

from codistill import metrics as m
from codistill.checkpoint import install_checkpoint
from codistill.cohort.backends import check_data_parallel
from codistill.cohort.base import Cohort
from codistill.config import RunConfig
from codistill.monitoring import ConsoleProgress
from codistill.runner import run_cohort, write_config
from codistill.tuning.layout import trial_run_dir
from codistill.tuning.space import apply_values
from codistill.validation import parse_config


def epoch_metrics(record: dict[str, Any]) -> dict[str, float]:
    """What a trial reports to Tune for one epoch record of the runner."""
    peers = {m.peer_val(p.name): p.val_accuracy for p in record.peers}
    return {m.MEAN_PEER_VAL: record.mean_peer_val, m.ENSEMBLE_VAL: record.ensemble_val, **peers,
            m.EPOCH_DISTILL_STRENGTH: record.distill_strength, "epoch": record.epoch}


def make_cohort(config: RunConfig, backend: str) -> Cohort:
    """The trial's cohort: peer actors in the trial's bundles (``ray``) or in this process."""
    if backend == "sequential":
        from codistill.cohort.sequential import SequentialCohort

        return SequentialCohort(config)
    from codistill.cohort.ray_cohort import RayCohort

    return RayCohort(config)


def train_cohort(values: dict[str, Any], *, base_raw: dict[str, Any], backend: str, experiment_dir: str) -> None:
    """The function trainable (bind the keyword arguments with :func:`ray.tune.with_parameters`)."""
    config = parse_config(apply_values(base_raw, values))
    check_data_parallel(config, backend)  # a searched data_parallel, refused in the trial
    run_dir = trial_run_dir(experiment_dir, tune.get_context().get_trial_id())
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            install_checkpoint(run_dir, Path(directory))
    write_config(run_dir, config)

    def report(record: dict[str, Any], checkpoint_dir: Path) -> None:
        tune.report(epoch_metrics(record), checkpoint=tune.Checkpoint.from_directory(str(checkpoint_dir)))

    progress = ConsoleProgress(config.epochs, every_seconds=float("inf"))
    run_cohort(config, run_dir, lambda c: make_cohort(c, backend), resume=checkpoint is not None,
               progress=progress, on_epoch=report)


class RunningTrials(tune.Callback):
    """The most trials training at the same time (the sweep's concurrency), kept in ``path``.

    A file rather than an attribute: a restored sweep runs the callback Tune saved with it."""

    def __init__(self, path: Path) -> None:
        self.path, self.peak = path, 0

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        running = sum(1 for trial in trials if trial.status == "RUNNING")
        if running > self.peak:
            self.peak = running
            self.path.write_text(str(running))


def trial_resources(config: RunConfig, backend: str) -> Any:
    """The trial's placement group: driver + one bundle per peer (Ray), or one bundle (sequential)."""
    from codistill.cohort.ray_runtime import peer_bundles

    bundles = peer_bundles(config)
    if backend == "sequential":
        merged: dict[str, float] = {}
        for bundle in bundles:
            for resource, amount in bundle.items():
                merged[resource] = merged.get(resource, 0.0) + amount
        return tune.PlacementGroupFactory([merged])
    return tune.PlacementGroupFactory([{"CPU": 1}] + bundles)
