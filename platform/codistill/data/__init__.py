"""Datasets, one file each, registered by name in :data:`codistill.registry.DATASETS`:
``build_dataset("digits", root=None, train_fraction=0.5, ...)``."""

from __future__ import annotations

from pathlib import Path

from codistill.checks import component
from codistill.config import DataConfig
from codistill.config.fields import check_fields
from codistill.data.base import DatasetFactory, DatasetInfo, DataShape, PeerDataset
from codistill.data.held_out import HeldOutSplit, ValidationProbe
from codistill.errors import ConfigError
from codistill.registry import DATASETS


def build_dataset(name: str, *, root: str | None, train_fraction: float, label_noise: float, seed: int,
                  image_size: int | None = None, test_fraction: float = 0.0,
                  val_fraction: float | None = None) -> PeerDataset:
    """Build a registered dataset; invalid settings raise :class:`ConfigError` naming the ``data.*`` field.

    ``test_fraction`` > 0 keeps that share of the held-out split as a test split (:mod:`.held_out`);
    ``val_fraction`` is the share of an official training split held out for validation (None: the
    dataset's ``default_val_fraction``), for datasets with an official test split only (:mod:`.splits`).
    """
    check_data_settings(name, root, train_fraction, label_noise, test_fraction, val_fraction)
    factory = _factory(name)
    official = {} if factory.default_val_fraction is None else \
        {"val_fraction": factory.default_val_fraction if val_fraction is None else val_fraction}
    dataset = factory.build(root=root, train_fraction=train_fraction, label_noise=label_noise, seed=seed,
                            image_size=image_size, **official)
    return HeldOutSplit(dataset, test_fraction) if test_fraction > 0 else dataset


def check_data_settings(dataset: str, root: str | None, train_fraction: float, label_noise: float,
                        test_fraction: float = 0.0, val_fraction: float | None = None, download: bool = False) -> None:
    """The rules every dataset shares: each field's declared range, and what the dataset offers.

    ``val_fraction`` is for datasets with an official test split (a factory's ``default_val_fraction``),
    ``test_fraction`` for those without; ``download`` for a ``downloadable`` factory.
    """
    check_fields(DataConfig(dataset=dataset, root=root, train_fraction=train_fraction, label_noise=label_noise,
                            test_fraction=test_fraction, val_fraction=val_fraction, download=download), "data")
    factory = _factory(dataset)
    if factory.default_val_fraction is None and val_fraction is not None:
        raise ConfigError("data.val_fraction", f"dataset '{dataset}' has no official test split, so its validation "
                                               "split is its own; leave data.val_fraction unset (data.test_fraction "
                                               "carves a test split from it)")
    if factory.default_val_fraction is not None and test_fraction > 0:
        without = [name for name in DATASETS.names() if DATASETS.get(name).default_val_fraction is None]
        raise ConfigError("data.test_fraction", f"dataset '{dataset}' has an official test split, evaluated after the "
                                                f"last epoch; data.test_fraction is for datasets without one "
                                                f"({', '.join(without)})")
    if download and not factory.downloadable:
        downloadable = [name for name in DATASETS.names() if DATASETS.get(name).downloadable]
        raise ConfigError("data.download", f"dataset '{dataset}' cannot be downloaded by codistill (only "
                                           f"{', '.join(downloadable)}); put its files under data.root")
    if root is not None and not Path(root).expanduser().is_dir():
        raise ConfigError("data.root", f"directory does not exist: {root}")


def with_probe(dataset: PeerDataset, fraction: float, seed: int, source: str = "train") -> PeerDataset:
    """``dataset`` with a stratified ``fraction`` probe split seeded by ``seed`` (``data.probe_fraction``),
    carved from the noisy training split (``source`` ``train``) or from the clean validation split
    (``held_out``, :class:`~codistill.data.held_out.ValidationProbe`: the clean meta set of Ren et
    al., ICML 2018, and Shu et al., NeurIPS 2019), which then no longer counts those examples."""
    if source == "held_out":
        return ValidationProbe(dataset, fraction, seed)
    dataset.hold_out_probe(fraction, seed)
    return dataset


def data_shape(data: DataConfig) -> DataShape:
    """The dataset's own check of its files under ``data.root`` and its settings; the data's shape."""
    return _factory(data.dataset).check(data)


def has_test_split(data: DataConfig) -> bool:
    """Whether a run of ``data`` evaluates a test split after its last epoch (official or carved)."""
    return _factory(data.dataset).default_val_fraction is not None or data.test_fraction > 0


def split_description(data: DataConfig) -> str:
    """Which split each accuracy of a run on ``data`` comes from, for the heading of a table."""
    probe = ("; val without the probe's examples (data.probe_source: held_out)"
             if data.probe_fraction > 0 and data.probe_source == "held_out" else "")
    if not has_test_split(data):
        return "validation top-1 (%)" + probe
    default = _factory(data.dataset).default_val_fraction
    if default is not None:
        share = default if data.val_fraction is None else data.val_fraction
        held_out = (f"val = {share:.4g} of the official training split, held out (stratified, the same for every "
                    "seed) and never trained on; test = the official test split")
    else:
        held_out = f"val and test = the held-out split, {data.test_fraction:g} of it kept as test"
    return (f"top-1 (%); {held_out}{probe}; 'best' = each run's best validation epoch, test = the final networks, "
            "evaluated once after the last epoch")


def dataset_names() -> list[str]:
    return DATASETS.names()


def _factory(name: str) -> type[DatasetFactory]:
    return component(DATASETS, name, "data.dataset")


__all__ = ["DataShape", "DatasetFactory", "DatasetInfo", "PeerDataset", "build_dataset", "check_data_settings",
           "data_shape", "dataset_names",
           "has_test_split", "split_description", "with_probe"]

# The built-in datasets register themselves (imported last: they import this package's modules).
from codistill.data import cifar, digits, fashion_mnist, imagefolder  # noqa: E402,F401
