"""Ray at the edge: the runtime a Ray cohort runs in, and what each peer reserves in it.

Importing this module first keeps a private runtime on loopback: Ray reads the switch below once,
when it is first imported; under ``ray job submit`` (``RAY_ADDRESS`` set) the driver joins a real
cluster and keeps its addresses.
"""

from __future__ import annotations

import importlib
import math
import os
from types import ModuleType
from typing import Any

if not os.environ.get("RAY_ADDRESS"):
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

import ray  # noqa: E402
import torch  # noqa: E402

from codistill.config import PeerConfig, RunConfig, check_devices  # noqa: E402
from codistill.private_apis import local_ray_listens_on_every_interface, ray_node_ip_option  # noqa: E402


def worker_bundle(peer: PeerConfig) -> dict[str, float]:
    """What one actor of ``peer`` reserves (each worker of a data-parallel peer the same)."""
    bundle = {"CPU": peer.resources.cpus}
    if peer.resources.gpus > 0:
        bundle["GPU"] = peer.resources.gpus
    return bundle


def peer_bundles(config: RunConfig) -> list[dict[str, float]]:
    """One bundle per worker, in peer order (a peer of R data-parallel workers has R in a row)."""
    return [worker_bundle(peer) for peer in config.peers for _ in range(peer.data_parallel)]


def first_bundles(config: RunConfig) -> list[int]:
    """The index of each peer's first bundle in :func:`peer_bundles`."""
    return [sum(peer.data_parallel for peer in config.peers[:k]) for k in range(len(config.peers))]


def shipped_modules(config: RunConfig) -> list[str]:
    """The directories of ``codistill`` and of every package the config names user code from
    (``package.module:Name``), shipped to every actor's node (a cluster then needs only the
    dependencies installed)."""
    names = [config.distillation.policy.name, *(m.name for m in config.distillation.methods),
             *(p.model for p in config.peers), config.data.dataset]
    packages = ["codistill"] + sorted({name.split(":")[0].split(".")[0] for name in names if ":" in name})
    modules: list[ModuleType] = [importlib.import_module(package) for package in packages]
    return [os.path.dirname(module.__file__) for module in modules if module.__file__ is not None]


def start_ray(config: RunConfig, num_cpus: int | None = None) -> bool:
    """Attach to the cluster of ``RAY_ADDRESS`` (``ray job submit``) or start a private local one.

    A local runtime listens on 127.0.0.1 only, has no dashboard and enough logical CPUs for every
    peer's bundle (at least ``num_cpus`` when given, e.g. a Tune trial's bundles). Either way our
    packages travel to the workers as ``py_modules``. Returns whether this call started Ray (and
    so should shut it down).
    """
    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    runtime_env = {"py_modules": shipped_modules(config)}
    if os.environ.get("RAY_ADDRESS"):
        ray.init(runtime_env=runtime_env)
        return True
    if local_ray_listens_on_every_interface():
        raise RuntimeError("ray was imported before codistill.cohort.ray_runtime, so a local runtime would "
                           "listen on every network interface; import codistill.cohort.ray_runtime first or export "
                           "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0")
    cpus_needed = max(math.ceil(sum(bundle["CPU"] for bundle in peer_bundles(config))), num_cpus or 0)
    gpus_needed = sum(bundle.get("GPU", 0.0) for bundle in peer_bundles(config))
    options: dict[str, Any] = {}
    check_devices(config, torch.cuda.is_available())
    if gpus_needed > 0:
        options["num_gpus"] = torch.cuda.device_count()
    ray.init(address="local", num_cpus=max(os.cpu_count() or 1, cpus_needed), include_dashboard=False,
             runtime_env=runtime_env, **ray_node_ip_option("127.0.0.1"), **options)
    return True
