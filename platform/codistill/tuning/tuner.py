"""The Ray Tune ``Tuner`` of a sweep: its trainable, resources, scheduler and run configuration."""

from __future__ import annotations

import math

from ray import tune
from ray.tune.search.basic_variant import BasicVariantGenerator

from codistill.config import RunConfig
from codistill.tuning.layout import PEAK_FILE
from codistill.tuning.schedulers import build_scheduler
from codistill.tuning.settings import POPULATION_SCHEDULERS, SweepSettings
from codistill.tuning.trainable import RunningTrials, train_cohort, trial_resources


def build_tuner(settings: SweepSettings, resume: bool) -> tune.Tuner:
    """A new Tuner for ``settings``, or (``resume``) the one restored from its directory, which
    continues unfinished and errored trials. The trials' values, and PBT's and PB2's choices, are
    drawn with the config's seed, so a sweep's trials are the same on every run of it."""
    config, directory, options = settings.config, settings.directory, settings.options
    trainable = tune.with_resources(
        tune.with_parameters(train_cohort, base_raw=settings.base_raw, backend=options.backend,
                             experiment_dir=str(directory)),
        trial_resources(config, options.backend))
    if resume:
        return tune.Tuner.restore(str(directory), trainable=trainable, resume_unfinished=True, resume_errored=True)
    scheduler = build_scheduler(options.scheduler, list(settings.dimensions), epochs=config.epochs,
                                interval=options.perturbation_interval, grace_epochs=options.grace_epochs,
                                seed=config.seed)
    return tune.Tuner(
        trainable, param_space={d.key: d.to_tune() for d in settings.dimensions},
        tune_config=tune.TuneConfig(metric=options.metric, mode="max", scheduler=scheduler,
                                    num_samples=options.num_samples, reuse_actors=True,
                                    search_alg=BasicVariantGenerator(max_concurrent=options.max_concurrent,
                                                                     random_state=config.seed)),
        run_config=tune.RunConfig(name=directory.name, storage_path=str(directory.parent),
                                  callbacks=[RunningTrials(directory / PEAK_FILE)],
                                  failure_config=tune.FailureConfig(max_failures=options.max_failures),
                                  # PBT may clone any trial's latest checkpoint while that trial moves on
                                  checkpoint_config=tune.CheckpointConfig(
                                      num_to_keep=None if options.scheduler in POPULATION_SCHEDULERS else 2)))


def trial_cpus(config: RunConfig, backend: str) -> int:
    """Logical CPUs one trial reserves: its peers' and, on the Ray backend, its driver's."""
    peers = sum(p.resources.cpus for p in config.peers)
    return math.ceil(peers + (1 if backend == "ray" else 0))
