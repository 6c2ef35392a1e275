"""``imagefolder``: an ImageNet-style tree, ``root/train/<class>/<image>`` and ``root/val/<class>/<image>``.

Classes are the train folder names (sorted); val must hold the same class folders. Images are
decoded lazily for each batch and brought to ``image_size`` (default 32). Training:
Inception-style random resized crop (scale 0.08–1, aspect 3/4–4/3) and horizontal flip, drawn
from the batch's generator so that the crops are a pure function of ``(seed, epoch, step,
stream)``; validation (and training without augmentation): resize the shorter side to 8/7 of
the size, then centre crop. ImageNet normalization.

The draws of a batch are made row by row from the image sizes alone (read from the files'
headers, then remembered), so a data-parallel worker decodes only its rows
(:meth:`ImageFolderDataset.train_rows`) and gets exactly their views in the whole batch. Each
image is read, cropped and resized in a pool of threads (:mod:`.background`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from PIL import Image
from torch import Tensor
from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset
from torchvision.transforms.v2 import functional as TF

from codistill.data.augment import normalize
from codistill.data.background import single_threaded_pool
from codistill.data.base import PROBE_SEED, DatasetFactory, DatasetInfo, DataShape, PeerDataset, mix_seed
from codistill.data.noise import probe_choice, probe_split, reduce_training_set
from codistill.data.roots import required_root
from codistill.errors import ConfigError, UnreadableFile
from codistill.registry import DATASETS

if TYPE_CHECKING:
    from codistill.config import DataConfig

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
DEFAULT_IMAGE_SIZE = 32
CROP_SCALE = (0.08, 1.0)
CROP_RATIO = (3 / 4, 4 / 3)
DECODE_THREADS = 4


def random_resized_box(height: int, width: int, generator: torch.Generator) -> tuple[int, int, int, int]:
    """``(top, left, h, w)`` of a crop covering CROP_SCALE of the area at an aspect in CROP_RATIO
    (the sampling of torchvision's ``RandomResizedCrop``, drawn from ``generator``)."""
    area, log_low, log_high = height * width, math.log(CROP_RATIO[0]), math.log(CROP_RATIO[1])
    for _ in range(10):
        scale_draw, ratio_draw = torch.rand(2, generator=generator).tolist()
        target_area = area * (CROP_SCALE[0] + (CROP_SCALE[1] - CROP_SCALE[0]) * scale_draw)
        aspect = math.exp(log_low + (log_high - log_low) * ratio_draw)
        crop_w, crop_h = round(math.sqrt(target_area * aspect)), round(math.sqrt(target_area / aspect))
        if 0 < crop_w <= width and 0 < crop_h <= height:
            top = int(torch.randint(0, height - crop_h + 1, (1,), generator=generator))
            left = int(torch.randint(0, width - crop_w + 1, (1,), generator=generator))
            return top, left, crop_h, crop_w
    # Fallback: the whole image, trimmed to the nearest allowed aspect, centred.
    crop_w = min(width, round(height * CROP_RATIO[1]))
    crop_h = min(height, round(crop_w / CROP_RATIO[0]))
    return (height - crop_h) // 2, (width - crop_w) // 2, crop_h, crop_w


#: What reading a broken image file raises (PIL: OSError for unknown or truncated data).
DECODE_ERRORS = (OSError, ValueError, Image.DecompressionBombError)


def _read_rgb(path: str) -> Tensor:
    try:
        with Image.open(path) as image:
            return TF.pil_to_tensor(image.convert("RGB"))
    except DECODE_ERRORS as error:
        raise UnreadableFile(path, str(error) or type(error).__name__) from error


def _header_size(path: str) -> tuple[int, int]:
    """``(height, width)`` of an image file, from its header (nothing decoded)."""
    try:
        with Image.open(path) as image:
            width, height = image.size
    except DECODE_ERRORS as error:
        raise UnreadableFile(path, str(error) or type(error).__name__) from error
    return height, width


@dataclass(frozen=True)
class RandomView:
    """One training image's draws: the crop ``(top, left, h, w)`` and whether it is flipped."""

    box: tuple[int, int, int, int]
    flip: bool


def _list_split(folder: Path, class_to_index: dict[str, int]) -> tuple[list[str], Tensor]:
    try:
        samples = make_dataset(str(folder), class_to_index, extensions=IMG_EXTENSIONS)
    except FileNotFoundError as error:
        raise ConfigError("data.root", f"imagefolder: {error}") from None
    return [path for path, _ in samples], torch.tensor([label for _, label in samples], dtype=torch.long)


def _holds_an_image(folder: Path) -> bool:
    for _, _, files in os.walk(folder, followlinks=True):
        if any(name.lower().endswith(IMG_EXTENSIONS) for name in files):
            return True
    return False


def class_index(root: Path) -> dict[str, int]:
    """Class name → index of the tree under ``root``; a ``data.root`` error unless ``train`` and
    ``val`` hold the same class folders and every class folder holds at least one image."""
    for split in ("train", "val"):
        if not (root / split).is_dir():
            raise ConfigError("data.root", f"imagefolder expects {root / split}/<class>/<image files>")
    try:
        classes, class_to_index = find_classes(str(root / "train"))
        val_classes, _ = find_classes(str(root / "val"))
    except FileNotFoundError as error:
        raise ConfigError("data.root", f"imagefolder expects class folders: {error}") from None
    if val_classes != classes:
        raise ConfigError("data.root", f"{root / 'val'} must hold the same class folders as {root / 'train'}")
    for split in ("train", "val"):
        empty = next((name for name in classes if not _holds_an_image(root / split / name)), None)
        if empty is not None:
            raise ConfigError("data.root", f"{root / split / empty} holds no image files ({', '.join(IMG_EXTENSIONS)})")
    return class_to_index


class ImageFolderDataset(PeerDataset):
    """Files of ``root/train`` (reduced by ``train_fraction``, labels with ``label_noise``) and ``root/val``."""

    probe_labels: Tensor | None = None  # set by hold_out_probe

    def __init__(self, root: Path, image_size: int, *, train_fraction: float, label_noise: float, seed: int) -> None:
        class_to_index = class_index(root)
        classes = sorted(class_to_index, key=class_to_index.get)
        train_files, train_labels = _list_split(root / "train", class_to_index)
        subset, self.noisy_train_labels = reduce_training_set(train_labels, len(classes), train_fraction=train_fraction,
                                                              label_noise=label_noise, seed=seed)
        self.train_files = [train_files[index] for index in subset.tolist()]
        self.val_files, self.val_labels = _list_split(root / "val", class_to_index)
        self.image_size = image_size
        self.sizes: dict[str, tuple[int, int]] = {}  # (height, width) of the files seen, from their headers
        self.decoder = single_threaded_pool(DECODE_THREADS, "codistill-decode")
        self.info = DatasetInfo(name="imagefolder", num_classes=len(classes), in_channels=3, image_size=image_size,
                                train_size=len(self.train_files), val_size=len(self.val_files))

    def _random_view(self, path: str, generator: torch.Generator) -> RandomView:
        """The next draws of ``generator`` for the image at ``path``: its crop, then its flip."""
        size = self.sizes.get(path)
        if size is None:
            size = self.sizes[path] = _header_size(path)
        box = random_resized_box(*size, generator)
        return RandomView(box, bool(torch.rand(1, generator=generator) < 0.5))

    def _view(self, path: str, draws: RandomView | None) -> Tensor:
        """The image at ``path`` as its random view, or (``draws`` None) its centre view."""
        image = _read_rgb(path)
        if draws is None:
            resized = TF.resize(image, [self.image_size * 8 // 7], antialias=True)
            return TF.center_crop(resized, [self.image_size, self.image_size])
        view = TF.resized_crop(image, *draws.box, size=[self.image_size, self.image_size], antialias=True)
        return TF.horizontal_flip(view) if draws.flip else view

    def _views(self, files: list[str], draws: list[RandomView | None] | None = None) -> Tensor:
        """The normalized views of ``files`` (centre views without ``draws``), made in the decoding threads."""
        views = list(self.decoder.map(self._view, files, draws or [None] * len(files)))
        return normalize(torch.stack(views).float() / 255.0, MEAN, STD)

    def train_batch(self, indices: Tensor, generator: torch.Generator, augment: bool) -> tuple[Tensor, Tensor]:
        return self.train_rows(indices, generator, augment, slice(None))

    def train_rows(self, indices: Tensor, generator: torch.Generator, augment: bool,
                   rows: slice) -> tuple[Tensor, Tensor]:
        """Only ``rows`` are decoded; every row's draws are made, in order, from the sizes."""
        files = [self.train_files[index] for index in indices.tolist()]
        draws = [self._random_view(path, generator) for path in files] if augment else None
        return self._views(files[rows], draws and draws[rows]), self.noisy_train_labels[indices[rows]]

    def val_batches(self, batch_size: int) -> Iterator[tuple[Tensor, Tensor]]:
        for start in range(0, self.info.val_size, batch_size):
            yield self._views(self.val_files[start:start + batch_size]), self.val_labels[start:start + batch_size]

    def hold_out_probe(self, fraction: float, seed: int) -> None:
        probe, keep = probe_split(self.noisy_train_labels, fraction, mix_seed(seed, PROBE_SEED))
        self.probe_files = [self.train_files[index] for index in probe.tolist()]
        self.probe_labels = self.noisy_train_labels[probe]
        self.train_files = [path for path, kept in zip(self.train_files, keep.tolist()) if kept]
        self.noisy_train_labels = self.noisy_train_labels[keep]
        self.info = replace(self.info, train_size=len(self.train_files))

    def probe_batch(self, seed: int, epoch: int, step: int, batch_size: int) -> tuple[Tensor, Tensor]:
        if self.probe_labels is None:
            return super().probe_batch(seed, epoch, step, batch_size)
        chosen = probe_choice(len(self.probe_files), batch_size, self.probe_generator(seed, epoch, step)).tolist()
        return self._views([self.probe_files[index] for index in chosen]), self.probe_labels[chosen]

    def train_labels(self) -> Tensor:
        return self.noisy_train_labels


LAYOUT = "train/<class>/<images> and val/<class>/<images>"


def _image_size(image_size: int | None) -> int:
    if image_size is not None and image_size < 1:
        raise ConfigError("data.image_size", f"must be a positive number of pixels, got {image_size}")
    return image_size or DEFAULT_IMAGE_SIZE


@DATASETS.register("imagefolder")
class ImageFolder(DatasetFactory):
    selects_classes = False
    partitions = False

    @classmethod
    def check(cls, data: DataConfig) -> DataShape:
        """The tree (class folders, at least one image each) and the size."""
        classes = class_index(required_root("imagefolder", data.root, LAYOUT))
        return DataShape(num_classes=len(classes), in_channels=3, image_size=_image_size(data.image_size))

    @classmethod
    def build(cls, *, root: str | None, train_fraction: float, label_noise: float, seed: int,
              image_size: int | None = None) -> ImageFolderDataset:
        directory = required_root("imagefolder", root, LAYOUT)
        return ImageFolderDataset(directory, _image_size(image_size), train_fraction=train_fraction,
                                  label_noise=label_noise, seed=seed)
