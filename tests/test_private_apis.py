"""The private Ray and torch APIs of codistill.private_apis still work in the installed versions,
and no other module of platform/ or policies/ uses one.

Each failure names the API; the fix goes into codistill/private_apis.py (or a version cap in
pyproject.toml), nowhere else.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import json
import re
import subprocess
import sys
import tempfile
from datetime import timedelta
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from codistill import private_apis as p
from codistill.cohort.tensor_group import PayloadGroup, store_socket

ROOT = Path(__file__).resolve().parent.parent
FOREIGN = ("ray", "torch")


# --- each private use, exercised ---------------------------------------------------------------

def test_gloo_options_form_a_one_process_group_bound_to_the_host():
    options = p.gloo_options("127.0.0.1", timedelta(seconds=42))
    assert options._timeout == timedelta(seconds=42), f"{p.GLOO_OPTIONS}: _timeout did not keep its value"
    assert len(options._devices) == 1, f"{p.GLOO_OPTIONS}: _devices did not keep the transport device"
    store = dist.TCPStore("127.0.0.1", 0, 1, is_master=True, timeout=timedelta(seconds=30))
    group = dist.ProcessGroupGloo(store, 0, 1, options)
    try:
        received = [torch.zeros(3)]
        group.allgather([received], [torch.arange(3.0)]).wait()
        gathered = torch.equal(received[0], torch.arange(3.0))
        assert gathered, f"{p.GLOO_OPTIONS}: a gloo group built with them does not gather"
    finally:
        group.shutdown()


def test_a_one_peer_payload_group_gathers_through_the_adapter():
    listener = store_socket("127.0.0.1")
    group = PayloadGroup("127.0.0.1", listener.getsockname()[1], 0, 1, bind_host="127.0.0.1", timeout_s=30,
                         listener=listener)
    try:
        (payload,) = group.all_gather({"x": torch.arange(100)})
        sizes = range(100_000, 100_008)  # each outgrows the buffer; some leave rows of a length not divisible by 8
        grown = [group.all_gather({"x": torch.ones(size, dtype=torch.uint8)})[0]["x"].numel() for size in sizes]
    finally:
        group.close()
    assert torch.equal(payload["x"], torch.arange(100)), p.GLOO_OPTIONS
    assert grown == list(sizes)


@pytest.mark.skipif(not dist.is_nccl_available(), reason="this torch is built without NCCL")
def test_nccl_options_keep_their_timeout():
    assert p.nccl_options(timedelta(seconds=42))._timeout == timedelta(seconds=42), p.NCCL_TIMEOUT


def test_a_changed_torch_option_is_reported_by_name(monkeypatch):
    class Frozen:  # like a pybind object that lost the attribute
        __slots__ = ()

    monkeypatch.setattr(dist.ProcessGroupGloo, "_Options", Frozen)
    with pytest.raises(p.PrivateAPIChanged, match=re.escape(p.GLOO_OPTIONS)):
        p.gloo_options("127.0.0.1", timedelta(seconds=1))


def ray_cluster_flag(env_value: str) -> bool:
    """The adapter's answer in a fresh process whose Ray reads ``env_value`` at import."""
    code = "from codistill.private_apis import local_ray_listens_on_every_interface as f; print(f())"
    env = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": env_value, "PYTHONPATH": str(ROOT / "platform"),
           "RAY_USAGE_STATS_ENABLED": "0", "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"{p.RAY_CLUSTER_FLAG}: {done.stderr.strip().splitlines()[-1:]}"
    return done.stdout.strip() == "True"


def test_the_ray_cluster_flag_exists_is_a_bool_and_follows_its_variable():
    from ray._private import ray_constants

    assert hasattr(ray_constants, "ENABLE_RAY_CLUSTER"), f"{p.RAY_CLUSTER_FLAG} is gone"
    assert isinstance(ray_constants.ENABLE_RAY_CLUSTER, bool), f"{p.RAY_CLUSTER_FLAG} is no longer a bool"
    assert ray_constants.ENABLE_RAY_CLUSTERS_ENV_VAR == "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", \
        f"{p.RAY_CLUSTER_FLAG} is read from another variable now"
    assert (ray_cluster_flag("0"), ray_cluster_flag("1")) == (False, True), \
        f"{p.RAY_CLUSTER_FLAG} no longer follows RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


@pytest.mark.ray
def test_the_node_ip_option_puts_the_node_on_loopback(ray_runtime):
    """The session's runtime was started with :func:`ray_node_ip_option` (conftest.py)."""
    assert [node["NodeManagerAddress"] for node in ray_runtime.nodes()] == ["127.0.0.1"], p.RAY_NODE_IP


def test_the_pbt_hook_has_the_signature_the_mixin_calls():
    from ray.tune.schedulers import PopulationBasedTraining
    from ray.tune.schedulers.pb2 import PB2

    from codistill.tuning.schedulers import ConstrainedPB2, ConstrainedPBT

    for base, ours in ((PopulationBasedTraining, ConstrainedPBT), (PB2, ConstrainedPB2)):
        assert "_get_new_config" in vars(base), f"{p.PBT_HOOK}: {base.__name__} no longer defines it"
        p.check_explore_hook(ours)
    assert "self._get_new_config(trial, trial_to_clone)" in inspect.getsource(PopulationBasedTraining._exploit), \
        f"{p.PBT_HOOK}: _exploit no longer calls it"


def test_a_changed_pbt_hook_is_refused_when_the_scheduler_is_defined():
    from ray.tune.schedulers import PopulationBasedTraining

    class Renamed(PopulationBasedTraining):
        def _get_new_config(self, trial, clone):  # what a new Ray might do
            return super()._get_new_config(trial, clone)

    with pytest.raises(p.PrivateAPIChanged, match=re.escape(p.PBT_HOOK)):
        type("Constrained", (p.ExploreHook, Renamed), {})


@pytest.mark.ray
def test_pbt_calls_the_hook_on_every_exploit_and_continues_with_its_config(ray_runtime, tmp_path):
    from ray import tune
    from ray.tune.schedulers import PopulationBasedTraining

    def step_trainable(config: dict) -> None:  # defined here: Ray's workers cannot import this test module
        """Reports ``x * step`` for 4 steps, each with a checkpoint PBT can clone."""
        start = 0
        checkpoint = tune.get_checkpoint()
        if checkpoint is not None:
            with checkpoint.as_directory() as directory:
                start = json.loads((Path(directory) / "step.json").read_text())["step"]
        for step in range(start, 4):
            with tempfile.TemporaryDirectory() as directory:
                (Path(directory) / "step.json").write_text(json.dumps({"step": step + 1}))
                tune.report({"score": config["x"] * (step + 1)}, checkpoint=tune.Checkpoint.from_directory(directory))

    explored: list[dict] = []  # the clone's config of every call

    class Recording(p.ExploreHook, PopulationBasedTraining):
        def explored(self, clone_config: dict, new_config: dict) -> dict:
            explored.append(dict(clone_config))
            return {**new_config, "x": 0.5}

    scheduler = Recording(time_attr="training_iteration", perturbation_interval=1, quantile_fraction=0.5,
                          synch=True, hyperparam_mutations={"x": tune.uniform(0.0, 1.0)})
    results = tune.Tuner(
        step_trainable, param_space={"x": tune.grid_search([0.1, 0.9])},
        tune_config=tune.TuneConfig(metric="score", mode="max", scheduler=scheduler, reuse_actors=True),
        run_config=tune.RunConfig(name="pbt", storage_path=str(tmp_path), verbose=0)).fit()
    assert not results.errors, results.errors
    assert explored, f"{p.PBT_HOOK}: PBT exploited without calling it"
    assert all(clone["x"] in (0.1, 0.9, 0.5) for clone in explored), f"{p.PBT_HOOK}: trial_to_clone.config changed"
    # a trial's own reports after an exploit are 0.5 × step (its metrics may be the clone's: not result.config)
    scores = {round(score, 6) for result in results for score in result.metrics_dataframe["score"]}
    assert scores & {1.0, 1.5, 2.0}, f"{p.PBT_HOOK}: PBT ignored the returned config ({sorted(scores)})"


# --- nobody else uses one ------------------------------------------------------------------------

def is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def root_name(node: ast.AST) -> str | None:
    """``a`` of ``a.b.c``, ``a.b().c`` or ``a[0].c``."""
    while isinstance(node, (ast.Attribute, ast.Call, ast.Subscript)):
        node = node.func if isinstance(node, ast.Call) else node.value
    return node.id if isinstance(node, ast.Name) else None


def dotted(node: ast.AST) -> str | None:
    if isinstance(node, ast.Attribute):
        head = dotted(node.value)
        return f"{head}.{node.attr}" if head else None
    return node.id if isinstance(node, ast.Name) else None


def resolve(qualified: str) -> object | None:
    """The object a dotted name of Ray or torch names, or None."""
    parts = qualified.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            found: object = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for part in parts[cut:]:
            found = getattr(found, part, None)
        return found
    return None


def foreign_name(name: str | None, imported: dict[str, str]) -> str | None:
    """``dist.ProcessGroupGloo`` as ``torch.distributed.ProcessGroupGloo`` (None if not Ray/torch)."""
    head, _, rest = (name or "").partition(".")
    if head not in imported:
        return None
    return f"{imported[head]}.{rest}" if rest else imported[head]


def private_uses(source: str) -> list[str]:
    """``line: what`` for every use of a private Ray/torch API in ``source``: a private module or
    name imported from Ray/torch; an ``_attribute`` of, or an ``_keyword`` passed to, a Ray/torch
    name; a class overriding or calling (``super()._x``) a private member of a Ray/torch class it
    derives from or (as a mixin) may precede: one the module imports."""
    tree = ast.parse(source)
    found = [f"{n + 1}: ray._private" for n, line in enumerate(source.splitlines()) if "ray._private" in line]
    imported: dict[str, str] = {}  # local name -> qualified Ray/torch name
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                top = alias.name.split(".")[0]
                if top in FOREIGN:
                    imported[alias.asname or top] = alias.name if alias.asname else top
                    found += [f"{node.lineno}: import {alias.name}"
                              for part in alias.name.split(".") if is_private(part)]
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in FOREIGN:
            found += [f"{node.lineno}: from {node.module}" for part in node.module.split(".") if is_private(part)]
            for alias in node.names:
                imported[alias.asname or alias.name] = f"{node.module}.{alias.name}"
                if is_private(alias.name):
                    found.append(f"{node.lineno}: from {node.module} import {alias.name}")
    imported_classes = [obj for obj in map(resolve, imported.values()) if isinstance(obj, type)]
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and is_private(node.attr) and root_name(node.value) in imported:
            found.append(f"{node.lineno}: .{node.attr} of {root_name(node.value)}")
        elif isinstance(node, ast.Call) and root_name(node.func) in imported:
            found += [f"{node.lineno}: {k.arg}= to {dotted(node.func)}"
                      for k in node.keywords if k.arg and is_private(k.arg)]
        elif isinstance(node, ast.ClassDef):  # its Ray/torch bases, or those a mixin of it may precede
            bases = [resolve(qualified) for qualified in (foreign_name(dotted(base), imported) for base in node.bases)
                     if qualified] + imported_classes
            for inner in ast.walk(node):
                name = inner.name if isinstance(inner, ast.FunctionDef) else (
                    inner.attr if isinstance(inner, ast.Attribute) and isinstance(inner.value, ast.Call)
                    and root_name(inner.value) == "super" else None)
                if name and is_private(name) and any(hasattr(base, name) for base in bases):
                    found.append(f"{inner.lineno}: {name} of a Ray/torch base of {node.name}")
    return found


def test_the_scan_finds_each_kind_of_private_use():
    source = """
import torch.distributed as dist
from ray._private import ray_constants
from ray.tune.schedulers import PopulationBasedTraining
import ray

x = dist.ProcessGroupGloo._Options()
ray.init(_node_ip_address="127.0.0.1")

class Hook(PopulationBasedTraining):
    def _get_new_config(self, trial, clone):
        return super()._get_new_config(trial, clone)

class Mixin:
    def _get_new_config(self, trial, clone):
        return super()._get_new_config(trial, clone)

class Mine(PopulationBasedTraining):
    def _own_helper(self):
        return self.__class__.__name__
"""
    kinds = [use.split(": ", 1)[1] for use in private_uses(source)]
    assert kinds.count("ray._private") == 1 and "from ray._private" in kinds
    assert "._Options of dist" in kinds and "_node_ip_address= to ray.init" in kinds
    assert kinds.count("_get_new_config of a Ray/torch base of Hook") == 2
    assert kinds.count("_get_new_config of a Ray/torch base of Mixin") == 2
    assert not [kind for kind in kinds if "Mine" in kind]


def test_no_module_but_the_adapter_uses_a_private_ray_or_torch_api():
    sources = sorted((ROOT / "platform").rglob("*.py")) + sorted((ROOT / "policies").rglob("*.py"))
    adapter = ROOT / "platform" / "codistill" / "private_apis.py"
    assert adapter in sources
    offenders = [f"{path.relative_to(ROOT)}:{use}" for path in sources if path != adapter
                 for use in private_uses(path.read_text())]
    assert not offenders, ("private Ray/torch APIs outside codistill/private_apis.py (move each into it, with a "
                           "test here):\n" + "\n".join(offenders))
