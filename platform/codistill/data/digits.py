"""``digits``: scikit-learn's bundled 8×8 handwritten digits (1797 images, 10 classes, values
0–16), no download. A fixed stratified split keeps 25% for validation (split seed 0, the same
for every run seed); training augmentation is a random shift by up to 1 pixel (zero padding),
without flip (digits are not mirror-symmetric)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from codistill.data.augment import Augmentation
from codistill.data.base import DatasetFactory, DataShape
from codistill.data.in_memory import InMemoryDataset, check_image_size
from codistill.registry import DATASETS

if TYPE_CHECKING:
    from codistill.config import DataConfig

VALIDATION_SHARE = 0.25
SPLIT_SEED = 0
MAX_VALUE = 16.0
IMAGE_SIZE = 8
MEAN, STD = 4.884 / MAX_VALUE, 6.017 / MAX_VALUE  # pixel statistics of all 1797 images


@DATASETS.register("digits")
class Digits(DatasetFactory):
    @classmethod
    def check(cls, data: DataConfig) -> DataShape:
        check_image_size("digits", IMAGE_SIZE, data.image_size)
        return DataShape(num_classes=10, in_channels=1, image_size=IMAGE_SIZE)

    @classmethod
    def build(cls, *, root: str | None, train_fraction: float, label_noise: float, seed: int,
              image_size: int | None = None) -> InMemoryDataset:
        bunch = load_digits()
        images = torch.tensor(bunch.images, dtype=torch.uint8).unsqueeze(1)
        labels = torch.tensor(bunch.target, dtype=torch.long)
        train, val = train_test_split(range(len(labels)), test_size=VALIDATION_SHARE, stratify=bunch.target,
                                      random_state=SPLIT_SEED)
        train, val = torch.tensor(sorted(train)), torch.tensor(sorted(val))
        return InMemoryDataset("digits", (images[train], labels[train]), (images[val], labels[val]), 10,
                               Augmentation(mean=(MEAN,), std=(STD,), padding=1, flip=False), max_value=MAX_VALUE,
                               train_fraction=train_fraction, label_noise=label_noise, seed=seed, image_size=image_size)
