"""Shared fixtures: small digits cohorts, tiny Fashion-MNIST files and one Ray runtime per test
session (loopback only)."""

from __future__ import annotations

import copy
import gzip
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

import numpy as np  # noqa: E402

from codistill.config import RunConfig  # noqa: E402
from codistill.data import fashion_mnist  # noqa: E402
from codistill.validation import parse_config  # noqa: E402

#: Whether the real Fashion-MNIST files are installed (``make test`` installs them where it can).
FASHION_MNIST_INSTALLED = not fashion_mnist.missing_files(Path(fashion_mnist.DEFAULT_ROOT))
FASHION_MNIST_MISSING = (f"the Debian package {fashion_mnist.PACKAGE} is not installed ({fashion_mnist.DEFAULT_ROOT}); "
                         "`make test` installs it when run as root")
#: Marks a test that reads the real Fashion-MNIST files: skipped, naming the package, without them.
needs_fashion_mnist = pytest.mark.skipif(not FASHION_MNIST_INSTALLED, reason=FASHION_MNIST_MISSING)

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


def write_idx(path: Path, magic: int, examples: np.ndarray, gz: bool) -> None:
    """An IDX file (big-endian header: magic, then each dimension) holding uint8 ``examples``."""
    content = np.array([magic, *examples.shape], dtype=">u4").tobytes() + examples.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(content) if gz else content)


def write_fashion_mnist(root: Path, train: int = 40, test: int = 10, gz: bool = True,
                        seed: int = 0) -> dict[str, np.ndarray]:
    """Tiny Fashion-MNIST files in ``root`` (``.gz`` or raw): random 28×28 images, labels cycling
    through the 10 classes; returns what was written, by file name (without ``.gz``)."""
    rng = np.random.default_rng(seed)
    written = {}
    for prefix, count in (("train", train), ("t10k", test)):
        written[f"{prefix}-images-idx3-ubyte"] = rng.integers(0, 256, (count, 28, 28), dtype=np.uint8)
        written[f"{prefix}-labels-idx1-ubyte"] = (np.arange(count) % 10).astype(np.uint8)
    root.mkdir(parents=True, exist_ok=True)
    for name, examples in written.items():
        write_idx(root / (f"{name}.gz" if gz else name), 0x803 if "images" in name else 0x801, examples, gz)
    return written


@pytest.fixture(scope="session")
def ray_runtime():
    """One private Ray runtime for the whole session (ray.init costs seconds here)."""
    import ray

    from codistill.private_apis import ray_node_ip_option

    ray.init(address="local", num_cpus=4, include_dashboard=False, **ray_node_ip_option("127.0.0.1"),
             log_to_driver=False)
    yield ray
    ray.shutdown()
