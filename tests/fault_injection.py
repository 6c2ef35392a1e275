"""Helpers to inject a fault at a chosen step of a run and to compare what runs produced."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

from conftest import tiny_config

from codistill.cohort.offline import load_network
from codistill.cohort.ray_cohort import RayCohort
from codistill.config import RunConfig
from codistill.monitoring import ConsoleProgress
from codistill.runner import prepare_run_dir, run_cohort


def fault_test_config() -> RunConfig:
    """The cohort of the fault tests: two tiny peers, three epochs, spread over nodes if any."""
    return tiny_config(epochs=3, runtime={"placement": "spread", "progress_every_seconds": 0.0})


def run(config: RunConfig, run_dir: Path, progress: ConsoleProgress | None = None,
        cohorts: list[RayCohort] | None = None) -> dict[str, Any]:
    """``run_cohort`` with Ray actors in a new ``run_dir``; each cohort made is appended to ``cohorts``."""
    prepare_run_dir(run_dir, config)
    cohorts = [] if cohorts is None else cohorts

    def make(c: RunConfig) -> RayCohort:
        cohorts.append(RayCohort(c))
        return cohorts[-1]

    progress = progress or ConsoleProgress(config.epochs, 0.0, stream=io.StringIO())
    return run_cohort(config, run_dir, make, progress=progress)


class KillAtStep(ConsoleProgress):
    """Console progress (kept in ``stream``) that calls ``kill`` once, after step ``step`` of
    epoch ``epoch`` (both from 0) has returned to the driver."""

    def __init__(self, config: RunConfig, epoch: int, step: int, kill: Callable[[], None]) -> None:
        super().__init__(config.epochs, 0.0, stream=io.StringIO())
        self.at, self.kill, self.fired, self.epoch = (epoch, step), kill, False, -1

    def start_epoch(self, epoch: int) -> None:
        super().start_epoch(epoch)
        self.epoch = epoch

    def step(self, done: int, total: int) -> None:
        super().step(done, total)
        if not self.fired and (self.epoch, done) == self.at:
            self.fired = True
            self.kill()


def outcome(results: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    """What must not depend on faults: every epoch's accuracies and losses, and each saved network."""
    keep = ("val_accuracy", "train_accuracy", "train_loss", "skipped_steps")
    history = [{"peers": [{k: p[k] for k in keep} for p in h["peers"]], "ensemble": h["ensemble_val"],
                "agreement": h["agreement"]} for h in results["history"]]
    models = {}
    for path in sorted((run_dir / "models").glob("*.pt")):
        digest = hashlib.sha256()
        for name, tensor in load_network(path).state_dict().items():
            digest.update(name.encode())
            digest.update(tensor.contiguous().numpy().tobytes())
        models[path.stem] = digest.hexdigest()
    return {"history": history, "models": models}
