"""How a cohort's peers run (``--backend``): the backend registry, named without loading a backend.

Each backend registers its cohort class where it is defined: ``sequential``
(:mod:`codistill.cohort.sequential`), ``local`` (offline distillation,
:mod:`codistill.cohort.offline`) and ``ray`` (:mod:`codistill.cohort.ray_cohort`); the registry
imports them on the first lookup, so naming one here loads neither Ray nor a peer.
:data:`ONLINE_BACKENDS` are those an online run or a sweep may choose, the default first.
"""

from __future__ import annotations

from codistill.registry import Registry

BACKENDS: Registry = Registry("backend", ("codistill.cohort.sequential", "codistill.cohort.offline",
                                          "codistill.cohort.ray_cohort"))
ONLINE_BACKENDS = ("ray", "sequential")
OFFLINE_BACKENDS = ("local",)
