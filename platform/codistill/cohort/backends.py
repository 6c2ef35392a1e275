"""How a cohort's peers run (``--backend``): the backend registry, named without loading a backend.

Each backend registers its cohort class where it is defined: ``sequential``
(:mod:`codistill.cohort.sequential`), ``local`` (offline distillation,
:mod:`codistill.cohort.offline`) and ``ray`` (:mod:`codistill.cohort.ray_cohort`); the registry
imports them on the first lookup, so naming one here loads neither Ray nor a peer.
:data:`ONLINE_BACKENDS` are those an online run or a sweep may choose, the default first;
:data:`DATA_PARALLEL_BACKENDS` those that run a peer as several data-parallel workers
(``peers[k].data_parallel`` > 1): only ``ray`` (:mod:`codistill.cohort.worker_group`).
"""

from __future__ import annotations

from codistill.config import RunConfig
from codistill.errors import ConfigError
from codistill.registry import Registry

BACKENDS: Registry = Registry("backend", ("codistill.cohort.sequential", "codistill.cohort.offline",
                                          "codistill.cohort.ray_cohort"))
ONLINE_BACKENDS = ("ray", "sequential")
OFFLINE_BACKENDS = ("local",)
DATA_PARALLEL_BACKENDS = ("ray",)


def check_data_parallel(config: RunConfig, backend: str) -> None:
    """Refuse peers of several data-parallel workers on a backend that cannot run them."""
    for index, peer in enumerate(config.peers):
        if peer.data_parallel > 1 and backend not in DATA_PARALLEL_BACKENDS:
            raise ConfigError(f"peers[{index}].data_parallel",
                              f"is {peer.data_parallel} but the backend '{backend}' runs each peer as one process "
                              f"(data-parallel workers run on: {', '.join(DATA_PARALLEL_BACKENDS)}); set 1")
