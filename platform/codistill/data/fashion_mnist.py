"""``fashion_mnist``: Zalando's Fashion-MNIST (Xiao, Rasul & Vollgraf, "Fashion-MNIST: a Novel Image
Dataset for Benchmarking Machine Learning Algorithms", arXiv:1708.07747, 2017): 60,000 training and
10,000 test images, 28×28 grayscale, 10 balanced classes, in MNIST's IDX format.

Files: the four IDX files of :data:`FILES`, each gzipped (``.gz``) or raw, in ``data.root``; without
``root``, in :data:`DEFAULT_ROOT`, where the Debian package ``dataset-fashion-mnist`` installs them
(``apt-get install dataset-fashion-mnist``). ``data.download: true`` fetches the missing ones into
``data.root`` with torchvision's downloader (its mirror, checked against the published ``.gz``
MD5s), on machines with internet. The front door checks every file before Ray starts: the IDX
magic number, 28×28 images, the byte size the header declares, as many labels as images, labels
0–9 and, for the official files (60,000 and 10,000 examples), the MD5 of the decompressed content
(the Debian package re-gzips, so its ``.gz`` sums differ from the published ones).

Splits (:mod:`.splits`): validation is a stratified ``data.val_fraction`` of the training images
(default 5,000, 500 per class, fixed split seed); the test split is the official 10,000 images.

Recipe: decoded once into memory as uint8 ``[N, 1, 28, 28]``; every batch is scaled to [0, 1] and
normalized with the training images' mean 0.2860 and std 0.3530. Training augmentation
(``data.augment``): a random 28×28 crop after 4-pixel zero padding and a horizontal flip, the usual
Fashion-MNIST recipe (``RandomCrop(28, padding=4)`` + ``RandomHorizontalFlip``; the "random crops /
horizontal flips" of the benchmark table's WRN and DenseNet entries).
"""

from __future__ import annotations

import gzip
import hashlib
import shutil
import tempfile
import zlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from codistill.data.augment import Augmentation
from codistill.data.base import DatasetFactory, DataShape
from codistill.data.in_memory import InMemoryDataset, check_image_size
from codistill.data.splits import DEFAULT_VAL_IMAGES, with_official_test
from codistill.errors import ConfigError
from codistill.registry import DATASETS

if TYPE_CHECKING:
    from codistill.config import DataConfig

DEFAULT_ROOT = "/usr/share/datasets/fashion-mnist"
PACKAGE = "dataset-fashion-mnist"
IMAGE_SIZE, NUM_CLASSES = 28, 10
MEAN, STD = 0.2860, 0.3530  # of the 60,000 training images, scaled to [0, 1]
SHAPE = DataShape(num_classes=NUM_CLASSES, in_channels=1, image_size=IMAGE_SIZE)
IMAGES_MAGIC, LABELS_MAGIC = 0x803, 0x801  # IDX: unsigned bytes, 3 and 1 dimensions


@dataclass(frozen=True)
class IdxFile:
    """One of the four files: its name without ``.gz``, what it holds, and the official file's
    example count and decompressed MD5 (measured on the Debian package's files)."""

    name: str
    magic: int
    official_count: int
    md5: str

    @property
    def header_bytes(self) -> int:
        return 16 if self.magic == IMAGES_MAGIC else 8

    def data_bytes(self, count: int) -> int:
        return count * (IMAGE_SIZE * IMAGE_SIZE if self.magic == IMAGES_MAGIC else 1)


FILES = {
    "train-images": IdxFile("train-images-idx3-ubyte", IMAGES_MAGIC, 60_000, "f4a8712d7a061bf5bd6d2ca38dc4d50a"),
    "train-labels": IdxFile("train-labels-idx1-ubyte", LABELS_MAGIC, 60_000, "9018921c3c673c538a1fc5bad174d6f9"),
    "test-images": IdxFile("t10k-images-idx3-ubyte", IMAGES_MAGIC, 10_000, "8181f5470baa50b63fa0f6fddb340f0a"),
    "test-labels": IdxFile("t10k-labels-idx1-ubyte", LABELS_MAGIC, 10_000, "15d484375f8d13e6eb1aabb0c3f46965"),
}


def how_to_get(root: str | None) -> str:
    """The remedy that ends every file error."""
    if root is None:
        return (f"install the Debian package {PACKAGE} (apt-get install {PACKAGE}), which puts them in {DEFAULT_ROOT}, "
                "or set data.root to a folder holding them (data.download: true fetches them there)")
    return (f"copy them there (apt-get install {PACKAGE} puts them in {DEFAULT_ROOT}; leave data.root unset to use "
            "that), or set data.download: true to fetch them there")


def folder_of(root: str | None) -> Path:
    return Path(root).expanduser() if root is not None else Path(DEFAULT_ROOT)


def find_file(folder: Path, file: IdxFile) -> Path | None:
    """``name.gz`` or ``name`` in ``folder`` (the gzipped one first), or None."""
    return next((path for path in (folder / f"{file.name}.gz", folder / file.name) if path.is_file()), None)


def missing_files(folder: Path) -> list[IdxFile]:
    return [file for file in FILES.values() if find_file(folder, file) is None]


def read_idx(path: Path, file: IdxFile, root: str | None) -> np.ndarray:
    """The examples of one IDX file (uint8: ``[N, 28, 28]`` images or ``[N]`` labels), verified;
    a damaged file raises a ``data.root`` error naming it."""
    def damaged(problem: str) -> ConfigError:
        return ConfigError("data.root", f"Fashion-MNIST file {path} {problem}; {how_to_get(root)}")

    try:
        content = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, zlib.error) as error:
        raise damaged(f"cannot be read ({error})") from None
    if len(content) < file.header_bytes:
        raise damaged(f"is {len(content)} bytes, shorter than an IDX header")
    header = np.frombuffer(content, dtype=">u4", count=file.header_bytes // 4)
    if int(header[0]) != file.magic:
        raise damaged(f"has the magic number {int(header[0]):#010x}, not {file.magic:#010x} ({file.name})")
    count = int(header[1])
    if file.magic == IMAGES_MAGIC and tuple(int(size) for size in header[2:]) != (IMAGE_SIZE, IMAGE_SIZE):
        raise damaged(f"holds {int(header[2])}×{int(header[3])} images, not {IMAGE_SIZE}×{IMAGE_SIZE}")
    expected = file.header_bytes + file.data_bytes(count)
    if len(content) != expected:
        raise damaged(f"is {len(content):,} bytes decompressed; its header declares {count:,} examples, "
                      f"{expected:,} bytes (truncated or damaged)")
    if count == file.official_count and hashlib.md5(content).hexdigest() != file.md5:
        raise damaged(f"has the MD5 {hashlib.md5(content).hexdigest()} decompressed, not Fashion-MNIST's {file.md5}")
    examples = np.frombuffer(content, dtype=np.uint8, offset=file.header_bytes)
    return examples.reshape(count, IMAGE_SIZE, IMAGE_SIZE) if file.magic == IMAGES_MAGIC else examples


def read_split(folder: Path, split: str, root: str | None) -> tuple[Tensor, Tensor]:
    """Images ``[N, 1, 28, 28]`` (uint8) and labels of the ``train`` or ``test`` split, verified."""
    images_file, labels_file = FILES[f"{split}-images"], FILES[f"{split}-labels"]
    images = read_idx(_found(folder, images_file, root), images_file, root)
    labels = read_idx(_found(folder, labels_file, root), labels_file, root)
    if len(images) != len(labels):
        raise ConfigError("data.root", f"Fashion-MNIST's {split} files in {folder} hold {len(images):,} images but "
                                       f"{len(labels):,} labels; {how_to_get(root)}")
    if len(labels) and int(labels.max()) >= NUM_CLASSES:
        raise ConfigError("data.root", f"Fashion-MNIST's {split} labels in {folder} go up to {int(labels.max())}, "
                                       f"beyond its {NUM_CLASSES} classes; {how_to_get(root)}")
    return torch.from_numpy(images.copy()).unsqueeze(1), torch.from_numpy(labels.astype(np.int64))


def _found(folder: Path, file: IdxFile, root: str | None) -> Path:
    path = find_file(folder, file)
    if path is None:
        missing = ", ".join(f"{f.name}[.gz]" for f in missing_files(folder))
        where = f"data.root {folder}" if root is not None else f"{folder} (data.root is not set)"
        raise ConfigError("data.root", f"Fashion-MNIST needs {missing} in {where}; {how_to_get(root)}")
    return path


@lru_cache(maxsize=8)
def _verified(folder: str, root: str | None, stamps: tuple[tuple[int, int], ...]) -> None:
    """Read and verify both splits once per state of the files (``stamps``: their sizes and times)."""
    for split in ("train", "test"):
        read_split(Path(folder), split, root)


def fetch(folder: Path, files: list[IdxFile]) -> None:
    """Download ``files`` (gzipped) into ``folder`` with torchvision's downloader, through a
    temporary folder inside it, so that a failed download leaves nothing behind."""
    from torchvision.datasets import FashionMNIST
    from torchvision.datasets.utils import download_url

    published = dict(FashionMNIST.resources)
    try:
        with tempfile.TemporaryDirectory(dir=folder, prefix=".fashion-mnist-") as staging:
            for file in files:
                name = f"{file.name}.gz"
                download_url(FashionMNIST.mirrors[0] + name, staging, filename=name, md5=published[name])
            for file in files:
                shutil.move(str(Path(staging) / f"{file.name}.gz"), folder / f"{file.name}.gz")
    except (OSError, RuntimeError) as error:
        message = " ".join(str(error).split()) or type(error).__name__
        raise ConfigError("data.download", f"could not fetch Fashion-MNIST into {folder} from "
                                           f"{FashionMNIST.mirrors[0]} ({message}); without internet, install the "
                                           f"Debian package {PACKAGE} (apt-get install {PACKAGE}) and leave data.root "
                                           "unset") from None


@DATASETS.register("fashion_mnist")
class FashionMnist(DatasetFactory):
    default_val_fraction = DEFAULT_VAL_IMAGES / FILES["train-labels"].official_count
    downloadable = True

    @classmethod
    def check(cls, data: DataConfig) -> DataShape:
        """The four files present (fetched first with ``data.download``) and verified."""
        check_image_size("fashion_mnist", IMAGE_SIZE, data.image_size)
        folder = folder_of(data.root)
        missing = missing_files(folder)
        if missing and data.download:
            if data.root is None:
                raise ConfigError("data.root", "data.download fetches Fashion-MNIST into data.root: set it to a "
                                               f"writable folder (or install the Debian package {PACKAGE} and drop "
                                               "data.download)")
            fetch(folder, missing)
        paths = [_found(folder, file, data.root) for file in FILES.values()]
        _verified(str(folder), data.root, tuple((p.stat().st_size, p.stat().st_mtime_ns) for p in paths))
        return SHAPE

    @classmethod
    def build(cls, *, root: str | None, train_fraction: float, label_noise: float, seed: int, val_fraction: float,
              image_size: int | None = None) -> InMemoryDataset:
        """Both splits read from ``root`` (default :data:`DEFAULT_ROOT`); never downloads."""
        folder = folder_of(root)
        return with_official_test("fashion_mnist", read_split(folder, "train", root), read_split(folder, "test", root),
                                  NUM_CLASSES, Augmentation(mean=(MEAN,), std=(STD,), padding=4, flip=True),
                                  val_fraction=val_fraction, max_value=255.0, train_fraction=train_fraction,
                                  label_noise=label_noise, seed=seed, image_size=image_size)
