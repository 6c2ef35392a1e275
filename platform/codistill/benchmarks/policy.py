"""Overhead of the learned teacher policy: seconds per training epoch of one cohort with the
``uniform`` policy and with ``policies.learned:LearnedPolicy``, measured side by side
(``jobs/benchmark_policy.py``).

Both cohorts train in this process (the sequential backend) on identical data: the same
``data.probe_fraction`` is set for both, so they take the same steps and differ only in the
policy. Their epochs alternate (uniform, learned, uniform, ...) so that a busy machine slows
both alike; the first epoch of each is a warm-up. Each round builds both cohorts afresh and
swaps which goes first. Every timed epoch gives a paired ratio, learned over uniform, in wall
time and in this process's CPU time (which other processes on a shared machine disturb less).
The learned policy's cost is its observation, its scorer, the probe forward pass and the credit
(or, with PPO, the two probe passes) and the learner's updates.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from codistill.cohort.base import Cohort
from codistill.cohort.sequential import SequentialCohort
from codistill.config import RunConfig
from codistill.validation import load_config

LEARNED = "policies.learned:LearnedPolicy"
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def interleaved_epoch_times(cohorts: Mapping[str, Cohort], epochs: int) -> dict[str, dict[str, list[float]]]:
    """Per clock of :data:`CLOCKS`, the seconds of ``epochs`` training epochs of every cohort, after
    one warm-up epoch each, the cohorts taking turns epoch by epoch so that they share the
    machine's load alike."""
    seconds: dict[str, dict[str, list[float]]] = {clock: {name: [] for name in cohorts} for clock in CLOCKS}
    for epoch in range(epochs + 1):
        for name, cohort in cohorts.items():
            started = {clock: read() for clock, read in CLOCKS.items()}
            cohort.train_epoch(epoch)
            if epoch > 0:
                for clock, read in CLOCKS.items():
                    seconds[clock][name].append(read() - started[clock])
    return seconds


def interleaved_epoch_seconds(cohorts: Mapping[str, Cohort], epochs: int) -> dict[str, list[float]]:
    """The wall seconds of :func:`interleaved_epoch_times`."""
    return interleaved_epoch_times(cohorts, epochs)["wall"]


def policy_configs(config_file: str | Path, overrides: Sequence[str], *, probe_fraction: float,
                   learned_params: str = "{}") -> dict[str, RunConfig]:
    """The two cohorts' configs, validated: ``uniform``, and ``learned`` with ``learned_params``
    (YAML); both with ``probe_fraction`` (the same steps), otherwise identical."""
    common = [*overrides, f"data.probe_fraction={probe_fraction}"]
    policies = {"uniform": "uniform", "learned": f"{{name: '{LEARNED}', params: {learned_params}}}"}
    return {name: load_config(config_file, common + [f"distillation.policy={policy}"])
            for name, policy in policies.items()}


def time_policies(configs: Mapping[str, RunConfig], *, epochs: int, threads: int, rounds: int = 1) -> dict[str, Any]:
    """``rounds`` rounds of :func:`interleaved_epoch_times` on fresh cohorts of ``configs``
    (:func:`policy_configs`), the policy that goes first swapped each round. Returns, per clock,
    every timed epoch's ``seconds`` per policy and round, the ``median`` per policy over them, the
    paired learned/uniform ``ratios`` (per epoch, rounds in order) and their median ``ratio``;
    with the ``steps`` per epoch and the number of ``peers``."""
    torch.set_num_threads(threads)
    policies = list(configs)
    seconds: dict[str, dict[str, list[list[float]]]] = {clock: {name: [] for name in policies} for clock in CLOCKS}
    shape: dict[str, int] = {}
    for round_ in range(rounds):
        order = policies if round_ % 2 == 0 else policies[::-1]
        cohorts = {name: SequentialCohort(configs[name]) for name in order}
        shape = {"steps": cohorts["uniform"].steps_per_epoch(), "peers": len(cohorts["uniform"].peers)}
        for clock, timed in interleaved_epoch_times(cohorts, epochs).items():
            for name, values in timed.items():
                seconds[clock][name].append(values)
    result: dict[str, Any] = {**shape, "rounds": rounds}
    for clock, timed in seconds.items():
        flat = {name: [value for values in per_round for value in values] for name, per_round in timed.items()}
        ratios = [learned / uniform for learned, uniform in zip(flat["learned"], flat["uniform"])]
        result[clock] = {"seconds": timed, "median": {name: statistics.median(values) for name, values in flat.items()},
                         "ratios": ratios, "ratio": statistics.median(ratios)}
    return result
