"""Shared fixtures: small digits cohorts and one Ray runtime per test session (loopback only)."""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import pytest

# Same behaviour on a fresh machine and on a used one: no token auth, no usage stats, loopback.
os.environ["RAY_AUTH_MODE"] = "disabled"
os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
os.environ.pop("RAY_ADDRESS", None)

ROOT = Path(__file__).resolve().parent.parent

from codistill.config import RunConfig, parse_config  # noqa: E402

TINY: dict[str, Any] = {
    "name": "tiny",
    "seed": 0,
    "epochs": 2,
    "data": {"dataset": "digits", "train_fraction": 0.25, "label_noise": 0.2, "batch_size": 64},
    "peers": [
        {"name": "mlp", "model": "mlp", "optimizer": {"lr": 0.05}},
        {"name": "cnn", "model": "cnn", "optimizer": {"lr": 0.05}},
    ],
    "distillation": {"teacher": "ensemble", "weight": 1.0, "methods": [{"name": "kd", "params": {"temperature": 3.0}}]},
    "runtime": {"log_every_steps": 2, "progress_every_seconds": 0.0},
}


def tiny_raw(**changes: Any) -> dict[str, Any]:
    """The tiny cohort as a raw mapping; keyword arguments replace top-level sections."""
    raw = copy.deepcopy(TINY)
    raw.update(copy.deepcopy(changes))
    return raw


def tiny_config(**changes: Any) -> RunConfig:
    return parse_config(tiny_raw(**changes))


@pytest.fixture(scope="session")
def ray_runtime():
    """One private Ray runtime for the whole session (ray.init costs seconds here)."""
    import ray

    from codistill.private_apis import ray_node_ip_option

    ray.init(address="local", num_cpus=4, include_dashboard=False, **ray_node_ip_option("127.0.0.1"),
             log_to_driver=False)
    yield ray
    ray.shutdown()
