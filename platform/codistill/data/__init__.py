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
#: Datasets with an official test split (their validation split comes from training, see
#: :mod:`.splits`) → their default ``data.val_fraction``.
OFFICIAL_TEST_SPLITS: dict[str, float] = {}
#: Datasets whose files ``data.download: true`` may fetch (in their check, before anything else runs).
DOWNLOADABLE: set[str] = set()


def build_dataset(name: str, *, root: str | None, train_fraction: float, label_noise: float, seed: int,
                  image_size: int | None = None, test_fraction: float = 0.0,
                  val_fraction: float | None = None) -> PeerDataset:
    """Build a registered dataset; invalid settings raise :class:`ConfigError` naming the ``data.*`` field.

    ``test_fraction`` > 0 keeps that share of the held-out split as a test split (:mod:`.held_out`);
    ``val_fraction`` is the share of an official training split held out for validation (None: the
    dataset's default), for the datasets of :data:`OFFICIAL_TEST_SPLITS` only.
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
                                 image_size=image_size, **split_options(name, val_fraction, test_fraction))
    if test_fraction > 0:
        from codistill.data.held_out import HeldOutSplit

        dataset = HeldOutSplit(dataset, test_fraction)
    return dataset


def check_dataset_files(data: DataConfig) -> DataShape | None:
    """Check the split settings and ``data.download``, then run the dataset's own check (its files
    under ``data.root``, fetched first with ``data.download``), if it registered one; the data's shape."""
    split_options(data.dataset, data.val_fraction, data.test_fraction)
    if data.download and data.dataset not in DOWNLOADABLE:
        raise ConfigError("data.download", f"dataset '{data.dataset}' cannot be downloaded by codistill (only "
                                           f"{', '.join(sorted(DOWNLOADABLE))}); put its files under data.root")
    return DATASET_CHECKS.get(data.dataset)(data) if data.dataset in DATASET_CHECKS else None


def split_options(name: str, val_fraction: float | None, test_fraction: float) -> dict[str, float]:
    """The factory's ``val_fraction`` (its default when None) for a dataset with an official test
    split, else nothing; a setting that does not fit the dataset raises :class:`ConfigError`."""
    if val_fraction is not None and not 0.0 < val_fraction <= 0.5:
        raise ConfigError("data.val_fraction", f"must lie in (0, 0.5], got {val_fraction}")
    without = [other for other in dataset_names() if other not in OFFICIAL_TEST_SPLITS]
    if name not in OFFICIAL_TEST_SPLITS:
        if val_fraction is not None:
            raise ConfigError("data.val_fraction", f"dataset '{name}' has no official test split, so its validation "
                                                   "split is its own; leave data.val_fraction unset (data.test_fraction "
                                                   "carves a test split from it)")
        return {}
    if test_fraction > 0:
        raise ConfigError("data.test_fraction", f"dataset '{name}' has an official test split, evaluated after the last "
                                                f"epoch; data.test_fraction is for datasets without one ({', '.join(without)})")
    return {"val_fraction": OFFICIAL_TEST_SPLITS[name] if val_fraction is None else val_fraction}


def has_test_split(data: DataConfig) -> bool:
    """Whether a run of ``data`` evaluates a test split after its last epoch (official or carved)."""
    dataset_names()
    return data.dataset in OFFICIAL_TEST_SPLITS or data.test_fraction > 0


def dataset_names() -> list[str]:
    # Importing the modules runs their @DATASETS.register decorators (imported lazily: torchvision, PIL).
    from codistill.data import cifar, digits, fashion_mnist, imagefolder  # noqa: F401

    return DATASETS.names()


def required_root(dataset: str, root: str | None, expected: str) -> Path:
    """The dataset's root directory, or a ``data.root`` error saying what it must hold."""
    if root is None:
        raise ConfigError("data.root", f"dataset '{dataset}' needs data.root, a directory holding {expected}")
    return Path(root).expanduser()


__all__ = ["DATASETS", "DATASET_CHECKS", "DOWNLOADABLE", "OFFICIAL_TEST_SPLITS", "DataShape", "DatasetInfo", "PeerDataset",
           "build_dataset", "check_dataset_files", "dataset_names", "has_test_split", "required_root", "split_options"]
