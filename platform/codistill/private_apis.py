"""Every use of a private Ray or torch API, fenced: one function (or mixin) per use.

Nothing else in ``codistill`` or ``policies`` touches ``ray._private`` or a Ray/torch name that
starts with ``_`` (``tests/test_private_apis.py`` scans the sources, and exercises each entry here
against the installed versions, failing with the API's name when one changes). Each entry says
what it relies on and the versions it was checked with; ``pyproject.toml`` caps Ray and torch
below the first versions not checked. A use that finds its API changed raises
:class:`PrivateAPIChanged` naming it, rather than failing later in an unrelated place.

Ray is imported only inside the functions, so :mod:`codistill.cohort.tensor_group` stays Ray-free and
:mod:`codistill.cohort.ray_runtime` can set Ray's environment before Ray's first import.
"""

from __future__ import annotations

import inspect
from datetime import timedelta
from typing import Any

import torch.distributed as dist

CHECKED_WITH = "ray 2.60.0, torch 2.14.1"


class PrivateAPIChanged(RuntimeError):
    """A private API codistill relies on is missing or behaves differently in this version."""

    def __init__(self, api: str, detail: str) -> None:
        super().__init__(f"{api}: {detail} (codistill.private_apis was checked with {CHECKED_WITH}; "
                         "adapt that module or install a checked version)")
        self.api = api


# --- Ray -------------------------------------------------------------------------------------

RAY_CLUSTER_FLAG = "ray._private.ray_constants.ENABLE_RAY_CLUSTER"


def local_ray_listens_on_every_interface() -> bool:
    """Whether a local Ray runtime started now would listen beyond loopback.

    Relies on ``ray._private.ray_constants.ENABLE_RAY_CLUSTER``: a bool Ray computes once, at its
    first import, from ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER`` (default true on Linux); when false,
    Ray takes the loopback address as this node's IP and its local runtime listens there only.
    Checked with ray 2.60.0.
    """
    try:
        from ray._private import ray_constants

        flag = ray_constants.ENABLE_RAY_CLUSTER
    except (ImportError, AttributeError) as error:
        raise PrivateAPIChanged(RAY_CLUSTER_FLAG, f"not found ({error})") from error
    if not isinstance(flag, bool):
        raise PrivateAPIChanged(RAY_CLUSTER_FLAG, f"expected a bool, found {type(flag).__name__}")
    return flag


RAY_NODE_IP = "ray.init(_node_ip_address=...)"


def ray_node_ip_option(host: str) -> dict[str, str]:
    """The keyword arguments of ``ray.init`` that make a new local node use ``host`` as its address.

    Relies on ``ray.init``'s hidden keyword ``_node_ip_address`` (read from ``**kwargs``; an
    unknown keyword makes ``ray.init`` raise "Unknown keyword argument(s)", so a removal fails at
    start). Checked with ray 2.60.0.
    """
    return {"_node_ip_address": host}


PBT_HOOK = "ray.tune.schedulers.PopulationBasedTraining._get_new_config(trial, trial_to_clone)"


class ExploreHook:
    """Mixin for a ``PopulationBasedTraining`` (or ``PB2``) subclass: :meth:`explored` sees, and may
    change, every config the scheduler's explore step proposes, with the config it started from.

    Relies on the private hook ``_get_new_config(self, trial, trial_to_clone) -> (new_config,
    operations)``, which ``PopulationBasedTraining._exploit`` calls once per exploit and ``PB2``
    overrides; ``trial_to_clone.config`` is the clone's config. (The public ``custom_explore_fn``
    does not see the clone's config.) The signature is checked when a subclass is defined.
    Checked with ray 2.60.0.
    """

    def explored(self, clone_config: dict[str, Any], new_config: dict[str, Any]) -> dict[str, Any]:
        """The config the trial continues with; ``new_config`` as proposed by default."""
        return new_config

    def _get_new_config(self, trial: Any, trial_to_clone: Any) -> tuple[dict, dict]:
        new_config, operations = super()._get_new_config(trial, trial_to_clone)  # type: ignore[misc]
        return self.explored(trial_to_clone.config, new_config), operations

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        from ray.tune.schedulers import PopulationBasedTraining

        if issubclass(cls, PopulationBasedTraining):
            check_explore_hook(cls)


def check_explore_hook(scheduler_class: type) -> None:
    """Raise :class:`PrivateAPIChanged` unless the class :class:`ExploreHook` defers to in
    ``scheduler_class``'s MRO defines ``_get_new_config(self, trial, trial_to_clone)``."""
    mro = scheduler_class.__mro__
    below = [base for base in mro[mro.index(ExploreHook) + 1:] if "_get_new_config" in vars(base)]
    if not below:
        raise PrivateAPIChanged(PBT_HOOK, f"no base of {scheduler_class.__name__} defines it")
    parameters = list(inspect.signature(vars(below[0])["_get_new_config"]).parameters)
    if parameters != ["self", "trial", "trial_to_clone"]:
        raise PrivateAPIChanged(PBT_HOOK, f"{below[0].__name__}._get_new_config takes {parameters}")


# --- torch.distributed ---------------------------------------------------------------------------

GLOO_OPTIONS = "torch.distributed.ProcessGroupGloo._Options (._devices, ._timeout)"
NCCL_TIMEOUT = "torch.distributed.ProcessGroupNCCL.Options._timeout"


def gloo_options(bind_host: str, timeout: timedelta) -> Any:
    """Options of a ``ProcessGroupGloo`` whose transport listens on ``bind_host``, with ``timeout``.

    Relies on ``ProcessGroupGloo._Options()`` and its ``_devices`` (a list of
    ``ProcessGroupGloo.create_device(...)``) and ``_timeout`` (a ``timedelta``) attributes: torch
    exposes a gloo group's transport device only through them. Checked with torch 2.14.1.
    """
    try:
        options = dist.ProcessGroupGloo._Options()
        options._devices = [dist.ProcessGroupGloo.create_device(hostname=bind_host)]
        options._timeout = timeout
    except (AttributeError, TypeError) as error:
        raise PrivateAPIChanged(GLOO_OPTIONS, str(error)) from error
    return options


def nccl_options(timeout: timedelta) -> Any:
    """Options of a ``ProcessGroupNCCL`` with ``timeout``.

    Relies on the ``_timeout`` attribute (a ``timedelta``) of the public
    ``ProcessGroupNCCL.Options()``. Checked with torch 2.14.1 (options built; no GPU ran here).
    """
    try:
        options = dist.ProcessGroupNCCL.Options()
        options._timeout = timeout
    except (AttributeError, TypeError) as error:
        raise PrivateAPIChanged(NCCL_TIMEOUT, str(error)) from error
    return options
