"""Datasets, registered by name: ``build_dataset("digits", root=None, train_fraction=0.5, ...)``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Callable

from codistill.data.base import DataShape, DatasetInfo, PeerDataset
from codistill.errors import ConfigError
from codistill.registry import Registry

if TYPE_CHECKING:
    from codistill.config import DataConfig

DatasetFactory = Callable[..., PeerDataset]
DATASETS: Registry[DatasetFactory] = Registry("dataset")
#: Each dataset's own check of its files (``data.root``) and settings, run by the front door before
#: anything is written: returns the data's shape, or raises :class:`ConfigError` naming the ``data.*`` field.
DatasetCheck = Callable[["DataConfig"], DataShape]
DATASET_CHECKS: Registry[DatasetCheck] = Registry("dataset check")


def build_dataset(name: str, *, root: str | None, train_fraction: float, label_noise: float, seed: int,
                  image_size: int | None = None, test_fraction: float = 0.0) -> PeerDataset:
    """Build a registered dataset; invalid settings raise :class:`ConfigError` naming the ``data.*`` field.

    ``test_fraction`` > 0 keeps that share of the held-out split as a test split (:mod:`.held_out`).
    """
    if name not in dataset_names():
        raise ConfigError("data.dataset", f"unknown dataset '{name}' (known: {', '.join(dataset_names())})")
    if not 0.0 < train_fraction <= 1.0:
        raise ConfigError("data.train_fraction", f"must lie in (0, 1], got {train_fraction}")
    if not 0.0 <= label_noise < 1.0:
        raise ConfigError("data.label_noise", f"must lie in [0, 1), got {label_noise}")
    if root is not None and not Path(root).expanduser().is_dir():
        raise ConfigError("data.root", f"directory does not exist: {root}")
    if not 0.0 <= test_fraction < 1.0:
        raise ConfigError("data.test_fraction", f"must lie in [0, 1), got {test_fraction}")
    dataset = DATASETS.get(name)(root=root, train_fraction=train_fraction, label_noise=label_noise, seed=seed,
                                 image_size=image_size)
    if test_fraction > 0:
        from codistill.data.held_out import HeldOutSplit

        dataset = HeldOutSplit(dataset, test_fraction)
    return dataset


def check_dataset_files(data: DataConfig) -> DataShape | None:
    """Run the dataset's own check (its files under ``data.root``), if it registered one; the data's shape."""
    dataset_names()
    return DATASET_CHECKS.get(data.dataset)(data) if data.dataset in DATASET_CHECKS else None


def dataset_names() -> list[str]:
    # Importing the modules runs their @DATASETS.register decorators (imported lazily: torchvision, PIL).
    from codistill.data import cifar, digits, imagefolder  # noqa: F401

    return DATASETS.names()


def required_root(dataset: str, root: str | None, expected: str) -> Path:
    """The dataset's root directory, or a ``data.root`` error saying what it must hold."""
    if root is None:
        raise ConfigError("data.root", f"dataset '{dataset}' needs data.root, a directory holding {expected}")
    return Path(root).expanduser()


__all__ = ["DATASETS", "DATASET_CHECKS", "DataShape", "DatasetInfo", "PeerDataset", "build_dataset", "check_dataset_files",
           "dataset_names", "required_root"]
