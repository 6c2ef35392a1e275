"""Codistillation on Ray: the actors train exactly as one process does (every method, CA-MKD and
the learned policy, own batch orders), and a killed peer is recovered to the uninterrupted result."""

from __future__ import annotations

import io
import os
import signal

import pytest
import torch
from backend_equality import assert_ray_trains_exactly_as_sequential
from conftest import tiny_raw
from fault_injection import KillAtStep, outcome, run

from codistill.cohort.sequential import SequentialCohort
from codistill.monitoring import ConsoleProgress
from codistill.runner import prepare_run_dir, run_cohort
from codistill.validation import parse_config

pytestmark = pytest.mark.ray

REPLICAS = {"teacher_source": "replicas", "refresh_every_steps": 4, "refresh_at_epoch_start": False}
EVERY_METHOD = tiny_raw(
    peers=[{"name": "resnet", "model": "resnet8"}, {"name": "cnn", "model": "cnn"}, {"name": "mlp", "model": "mlp"}],
    distillation={**REPLICAS, "teacher": "ensemble", "policy": "policies.confidence:ConfidenceAwarePolicy", "methods": [
        {"name": "kd"}, {"name": "dkd", "params": {"warmup_epochs": 1}}, {"name": "dckd"},
        {"name": "feature_decoupled"}, {"name": "indistill", "params": {"curriculum_epochs": [1]}}, {"name": "sfr"}]},
    runtime={"max_steps_in_flight": 4})
EVERY_METHOD["data"]["shared_batches"] = False
LEARNED = tiny_raw(distillation={**REPLICAS, "refresh_every_steps": 3, "teacher": "mean_of_others",
                                 "methods": [{"name": "kd"}],
                                 "policy": {"name": "policies.learned:LearnedPolicy", "params": {"update_every": 4}}})
LEARNED["data"]["probe_fraction"] = 0.1


@pytest.mark.parametrize("raw", [EVERY_METHOD, LEARNED], ids=["every-method-own-batches", "learned-policy"])
def test_actors_on_replicas_train_exactly_like_one_process(ray_runtime, raw):
    """Per-step metrics (staleness and bytes included) and validation logits are bit-identical
    to SequentialCohort's, with chunks cut both by the window and at the refresh steps."""
    torch.set_num_threads(1)
    assert_ray_trains_exactly_as_sequential(parse_config(raw))


def test_a_killed_peer_is_recovered_and_the_run_ends_as_an_uninterrupted_one(ray_runtime, tmp_path):
    """Replicas refreshed at step 2 of the second epoch; the peer is killed right after the chunk
    before that refresh; the recovered run reloads the replicas from the last checkpoint."""
    torch.set_num_threads(1)
    config = parse_config(tiny_raw(epochs=3, distillation={**REPLICAS, "methods": [{"name": "kd"}]},
                                   runtime={"progress_every_seconds": 0.0}))
    quiet = lambda: ConsoleProgress(config.epochs, 0.0, stream=io.StringIO())  # noqa: E731
    prepare_run_dir(tmp_path / "straight", config)
    expected = outcome(run_cohort(config, tmp_path / "straight", SequentialCohort, progress=quiet()),
                       tmp_path / "straight")
    cohorts = []
    kill = lambda: os.kill(cohorts[-1].placement[1]["pid"], signal.SIGKILL)  # noqa: E731
    progress = KillAtStep(config, epoch=1, step=2, kill=kill)
    got = run(config, tmp_path / "faulty", progress, cohorts)
    assert progress.fired and got["recoveries"] == 1, progress.stream.getvalue()
    assert outcome(got, tmp_path / "faulty") == expected
