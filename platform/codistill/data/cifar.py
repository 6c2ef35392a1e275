"""``cifar10`` / ``cifar100`` from CIFAR's own on-disk format: the python pickle batches that
the official ``cifar-*-python.tar.gz`` archives extract to ``root/cifar-10-batches-py`` or
``root/cifar-100-python``, held in memory as uint8. File names and keys are torchvision's
(:class:`~torchvision.datasets.CIFAR10` / ``CIFAR100``); the files are read here directly because
torchvision also demands the official md5 sums, which would rule out small test fixtures. The
validation split is a stratified ``data.val_fraction`` of the 50,000 training images (default
5,000), the official 10,000 test images are the test split (:mod:`.splits`). Training
augmentation: random crop with 4-pixel zero padding and horizontal flip; every split is
normalized with the usual per-channel statistics."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor
from torchvision.datasets import CIFAR10, CIFAR100

from codistill.data.augment import Augmentation
from codistill.data.base import DatasetFactory, DataShape
from codistill.data.in_memory import InMemoryDataset, check_image_size
from codistill.data.roots import required_root
from codistill.data.splits import DEFAULT_VAL_IMAGES, with_official_test
from codistill.errors import ConfigError
from codistill.registry import DATASETS

if TYPE_CHECKING:
    from codistill.config import DataConfig

IMAGE_SHAPE = (3, 32, 32)
TRAIN_IMAGES = 50_000
NUM_CLASSES = {"cifar10": 10, "cifar100": 100}
MEAN_STD = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}


class BatchUnpickler(pickle.Unpickler):
    """Unpickles CIFAR batches and nothing else: plain values and numpy arrays. Any other global a
    file names is refused before it is looked up, so a crafted "batch" cannot run code."""

    ALLOWED = {("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "_reconstruct"),
               ("numpy._core.multiarray", "_reconstruct")}

    def find_class(self, module: str, name: str) -> type:
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"a CIFAR batch names {module}.{name}, which is not allowed")
        return super().find_class(module, name)


def _unpickle(path: Path) -> dict:
    with path.open("rb") as handle:
        return BatchUnpickler(handle, encoding="latin1").load()


def _read_batches(folder: Path, files: list[list[str]]) -> tuple[Tensor, Tensor]:
    """Images ``[N, 3, 32, 32]`` (uint8) and labels of the listed batch files (``labels`` or ``fine_labels``)."""
    images, labels = [], []
    for file_name, _md5 in files:
        entry = _unpickle(folder / file_name)
        images.append(torch.from_numpy(np.asarray(entry["data"], dtype=np.uint8).reshape(-1, *IMAGE_SHAPE)))
        labels.extend(entry["labels"] if "labels" in entry else entry["fine_labels"])
    return torch.cat(images), torch.tensor(labels, dtype=torch.long)


def batches_folder(name: str, layout: type[CIFAR10], root: str | None) -> Path:
    """The folder of CIFAR's python batches under ``root``; a ``data.root`` error if any file is missing."""
    expected = [file for file, _md5 in layout.train_list + layout.test_list] + [layout.meta["filename"]]
    folder = required_root(name, root, f"{layout.base_folder}/ ({', '.join(expected)})") / layout.base_folder
    missing = [file for file in expected if not (folder / file).is_file()]
    if missing:
        raise ConfigError("data.root", f"{name} expects CIFAR's python batches {', '.join(expected)} in {folder}, "
                                       f"missing {', '.join(missing)}; extract {layout.url} into {root}")
    return folder


def check_cifar(name: str, layout: type[CIFAR10], data: DataConfig) -> DataShape:
    """The front door's check: every batch file present, images of CIFAR's size."""
    batches_folder(name, layout, data.root)
    check_image_size(name, IMAGE_SHAPE[-1], data.image_size)
    return DataShape(num_classes=NUM_CLASSES[name], in_channels=IMAGE_SHAPE[0], image_size=IMAGE_SHAPE[-1])


def load_cifar(name: str, layout: type[CIFAR10], *, root: str | None, train_fraction: float, label_noise: float,
               seed: int, val_fraction: float, image_size: int | None = None) -> InMemoryDataset:
    """Read both splits of ``layout`` (torchvision's class naming the files) from under ``root``."""
    folder = batches_folder(name, layout, root)
    try:
        train, test = _read_batches(folder, layout.train_list), _read_batches(folder, layout.test_list)
        num_classes = len(_unpickle(folder / layout.meta["filename"])[layout.meta["key"]])
    except (pickle.UnpicklingError, EOFError, KeyError, TypeError, ValueError) as error:
        raise ConfigError("data.root", f"{name} files in {folder} are not CIFAR python batches: {error!r}") from None
    labels = torch.cat([train[1], test[1]])
    if labels.min() < 0 or labels.max() >= num_classes:
        raise ConfigError("data.root", f"{name} labels in {folder} fall outside the {num_classes} classes of its meta")
    mean, std = MEAN_STD[name]
    return with_official_test(name, train, test, num_classes, Augmentation(mean=mean, std=std, padding=4, flip=True),
                              val_fraction=val_fraction, max_value=255.0, train_fraction=train_fraction,
                              label_noise=label_noise, seed=seed, image_size=image_size)


class _Cifar(DatasetFactory):
    name: str
    layout: type[CIFAR10]
    default_val_fraction = DEFAULT_VAL_IMAGES / TRAIN_IMAGES

    @classmethod
    def check(cls, data: DataConfig) -> DataShape:
        return check_cifar(cls.name, cls.layout, data)

    @classmethod
    def build(cls, *, root: str | None, train_fraction: float, label_noise: float, seed: int, val_fraction: float,
              image_size: int | None = None) -> InMemoryDataset:
        return load_cifar(cls.name, cls.layout, root=root, train_fraction=train_fraction, label_noise=label_noise,
                          seed=seed, val_fraction=val_fraction, image_size=image_size)


@DATASETS.register("cifar10")
class Cifar10(_Cifar):
    name, layout = "cifar10", CIFAR10


@DATASETS.register("cifar100")
class Cifar100(_Cifar):
    name, layout = "cifar100", CIFAR100
