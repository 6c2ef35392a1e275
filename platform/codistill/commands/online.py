"""Collaborative online distillation: a cohort of heterogeneous peers, one Ray actor each.

    python jobs/online.py --config jobs/configs/digits_cohort.yaml
    python jobs/online.py --config FILE --set distillation.weight=0.5 --set seed=1 --run-dir runs/x
    python jobs/online.py --config FILE --independent        # same peers, no distillation
    python jobs/online.py --resume runs/x                     # continue from the last checkpoint
    ray job submit --working-dir . -- python jobs/online.py --config FILE

Standalone it starts a private Ray runtime on 127.0.0.1 (no dashboard); under ``ray job submit``
(``RAY_ADDRESS`` set) it attaches to that cluster. ``--backend sequential`` runs every peer in
this process instead (no Ray). The config is validated before Ray starts.
"""

from __future__ import annotations

from codistill import cli
from codistill.cohort.backends import ONLINE_BACKENDS
from codistill.config import RunConfig


def start_ray(config: RunConfig) -> bool:
    from codistill.cohort.ray_runtime import start_ray as start  # Ray is imported only once the inputs are valid

    return start(config)


def main(argv: list[str] | None = None) -> int:
    """Train (or resume) one cohort; the exit status (see :func:`codistill.cli.main`)."""
    return cli.main(argv, mode="online", description=__doc__, start_ray=start_ray, backends=ONLINE_BACKENDS)
