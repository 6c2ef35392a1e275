"""Overhead of the learned teacher policy: seconds per training epoch of one cohort with the
``uniform`` policy and with ``policies.learned:LearnedPolicy``, measured side by side in one run
(``jobs/benchmark_policy.py``).

Both cohorts train in this process (the sequential backend) on identical data: the same
``data.probe_fraction`` is set for both, so they take the same steps and differ only in the
policy. Their epochs alternate (uniform, learned, uniform, ...) so that a busy machine slows
both alike; the first epoch of each is a warm-up. The learned policy's cost is its observation,
its scorer, the two probe forward passes per peer and step, and the learner's updates.
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
from codistill.validation import load_config

LEARNED = "policies.learned:LearnedPolicy"


def interleaved_epoch_seconds(cohorts: Mapping[str, Cohort], epochs: int) -> dict[str, list[float]]:
    """Seconds of ``epochs`` training epochs of every cohort, after one warm-up epoch each, the
    cohorts taking turns epoch by epoch so that they share the machine's load alike."""
    seconds: dict[str, list[float]] = {name: [] for name in cohorts}
    for epoch in range(epochs + 1):
        for name, cohort in cohorts.items():
            started = time.perf_counter()
            cohort.train_epoch(epoch)
            if epoch > 0:
                seconds[name].append(time.perf_counter() - started)
    return seconds


def time_policies(config_file: str | Path, overrides: Sequence[str], *, probe_fraction: float, epochs: int,
                  threads: int) -> dict[str, Any]:
    """``seconds`` (per policy, each timed epoch), their ``median``, the learned/uniform ``ratio``,
    the ``steps`` per epoch and the number of ``peers``."""
    torch.set_num_threads(threads)
    common = [*overrides, f"data.probe_fraction={probe_fraction}"]
    policies = {"uniform": "uniform", "learned": f"{{name: '{LEARNED}'}}"}
    cohorts = {name: SequentialCohort(load_config(config_file, common + [f"distillation.policy={policy}"]))
               for name, policy in policies.items()}
    seconds = interleaved_epoch_seconds(cohorts, epochs)
    median = {name: statistics.median(times) for name, times in seconds.items()}
    return {"seconds": seconds, "median": median, "ratio": median["learned"] / median["uniform"],
            "steps": cohorts["uniform"].steps_per_epoch(), "peers": len(cohorts["uniform"].peers)}
