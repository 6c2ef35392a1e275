"""Trial schedulers of a sweep: ``fifo``, ``asha``, ``pbt`` and ``pb2``, the last two monotone-aware.

- ``asha``: asynchronous successive halving (Li et al. 2020) stops poor trials at rungs of 1, 2,
  4, … epochs (grace period ``grace_epochs``, reduction factor 2). A trial that reaches the last
  epoch ends by itself, writing its ``results.json`` and ``models/`` (ASHA's own stop at ``max_t``
  would cut it off before them).
- ``pbt``: Population Based Training (Jaderberg et al. 2017), synchronous: every ``interval``
  epochs all trials pause, and each one in the bottom quartile clones a top-quartile trial's
  checkpoint and perturbs its config (×0.8/×1.2, a neighbouring choice, or a resample with
  probability 0.25). The population should fit the cluster at once; paused trials resume from
  their checkpoints.
- ``pb2``: PBT whose explore step is a GP bandit over the continuous entries (Parker-Holder et al.
  2020); choice entries are sampled once per trial and kept.

For ``pbt`` and ``pb2`` the new config passes through :func:`codistill.tuning.monotone.constrain`:
values stay in their domain, and entries marked ``tightens`` never loosen relative to the clone,
so the curricula they produce are progressive. Neither perturbs at a trial's last epoch: an exploit
there would train nothing with the new values and only copy the clone's final results over the
trial's own (and make a trial that had written them run again).

Tune's PBT and PB2 draw their choices (the trial to clone, the perturbation, the resample, PB2's
initial values) from Python's ``random`` and numpy's global generator. Here each scheduler draws
them from its own streams, seeded with the sweep's seed, so a sweep explores the same way on
every run of it, whatever else the driver draws.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
from ray.tune.experiment import Trial
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, PopulationBasedTraining, TrialScheduler
from ray.tune.schedulers.pb2 import PB2

from codistill.private_apis import ExploreHook
from codistill.tuning.monotone import constrain
from codistill.tuning.space import Dimension, mutated


class _Constrained(ExploreHook):
    """Mixin: clamp the explored config, let a trial's last epoch end it, and draw every random
    choice from the scheduler's own streams (see the module docstring); ``epochs`` None: no last
    epoch known; ``seed`` None: Tune's global streams."""

    dimensions: Sequence[Dimension]
    epochs: int | None

    def _setup(self, dimensions: Sequence[Dimension], epochs: int | None, seed: int | None) -> None:
        self.dimensions, self.epochs = dimensions, epochs
        self.streams = None if seed is None else (random.Random(seed).getstate(),
                                                  np.random.RandomState(seed).get_state())

    @contextmanager
    def own_random_streams(self) -> Iterator[None]:
        """Within: ``random`` and ``np.random`` continue the scheduler's streams; outside, the
        driver's are as they were."""
        if self.streams is None:
            yield
            return
        saved = random.getstate(), np.random.get_state()
        random.setstate(self.streams[0])
        np.random.set_state(self.streams[1])
        try:
            yield
        finally:
            self.streams = random.getstate(), np.random.get_state()
            random.setstate(saved[0])
            np.random.set_state(saved[1])

    def explored(self, clone_config: dict[str, Any], new_config: dict[str, Any]) -> dict[str, Any]:
        return constrain(clone_config, new_config, self.dimensions)

    def on_trial_add(self, tune_controller: Any, trial: Trial) -> None:
        with self.own_random_streams():
            super().on_trial_add(tune_controller, trial)  # type: ignore[misc]

    def on_trial_result(self, tune_controller: Any, trial: Trial, result: dict[str, Any]) -> str:
        if self.epochs is not None and result.get("training_iteration", 0) >= self.epochs:
            return TrialScheduler.CONTINUE
        with self.own_random_streams():
            return super().on_trial_result(tune_controller, trial, result)  # type: ignore[misc]


class ConstrainedPBT(_Constrained, PopulationBasedTraining):
    def __init__(self, dimensions: Sequence[Dimension], epochs: int | None = None, seed: int | None = None,
                 **kwargs: Any) -> None:
        self._setup(dimensions, epochs, seed)
        super().__init__(**kwargs)


class ConstrainedPB2(_Constrained, PB2):
    def __init__(self, dimensions: Sequence[Dimension], epochs: int | None = None, seed: int | None = None,
                 **kwargs: Any) -> None:
        self._setup(dimensions, epochs, seed)
        super().__init__(**kwargs)


def build_scheduler(name: str, dimensions: Sequence[Dimension], *, epochs: int, interval: int,
                    grace_epochs: int, seed: int) -> TrialScheduler:
    """The Tune scheduler ``name`` over ``dimensions``, one time unit per epoch (the metric and mode
    come from the Tuner's ``TuneConfig``); PBT and PB2 draw their choices from ``seed``."""
    common = {"time_attr": "training_iteration"}
    if name == "fifo":
        return FIFOScheduler()
    if name == "asha":
        # max_t one past the last epoch: its only rung added is never reached, and no trial is stopped at the end
        return ASHAScheduler(max_t=epochs + 1, grace_period=min(grace_epochs, epochs), reduction_factor=2, **common)
    changing = mutated(dimensions, name)
    if name == "pbt":
        return ConstrainedPBT(changing, epochs, seed, perturbation_interval=interval, quantile_fraction=0.25,
                              synch=True, resample_probability=0.25,
                              hyperparam_mutations={d.key: d.to_tune() for d in changing},
                              **common)
    return ConstrainedPB2(changing, epochs, seed, perturbation_interval=interval, quantile_fraction=0.25, synch=True,
                          hyperparam_bounds={d.key: list(d.bounds) for d in changing}, **common)
