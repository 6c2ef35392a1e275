"""CIFAR-shaped synthetic data: random 3×32×32 images written in CIFAR-10's own on-disk format.

Where no CIFAR can be fetched (the GPU machine reaches nothing outside), the GPU check and its
benchmark train on these files through the real ``cifar10`` dataset (``data.root`` pointing at
the folder), so batches are built, augmented and normalized exactly as for CIFAR-10. The images
are uniform noise with balanced labels: the losses are real, the accuracies are chance. With
``data.val_fraction:`` :data:`VAL_FRACTION` the validation split carved from the training files
(:mod:`.splits`) is one image of every class, so exactly ``train_images`` images are trained on.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
from torchvision.datasets import CIFAR10

from codistill.data.cifar import IMAGE_SHAPE, NUM_CLASSES

PIXELS = int(np.prod(IMAGE_SHAPE))
CLASSES = NUM_CLASSES["cifar10"]
VAL_FRACTION = 0.001  # one validation image per class for classes of fewer than 1,500 images


def _batch(rng: np.random.Generator, labels: np.ndarray) -> dict:
    return {"batch_label": "synthetic", "data": rng.integers(0, 256, (len(labels), PIXELS), dtype=np.uint8),
            "labels": labels.tolist(), "filenames": [f"{i}.png" for i in range(len(labels))]}


def _balanced(rng: np.random.Generator, count: int) -> np.ndarray:
    return rng.permutation(np.arange(count) % CLASSES)


def write_synthetic_cifar10(root: Path, train_images: int, test_images: int, seed: int = 0) -> Path:
    """Write ``train_images`` images to train on (at least one per class) plus one validation image
    per class, and ``test_images`` test images, under ``root`` as CIFAR-10's python batches (the
    training images split over its five batch files); returns ``root``, the folder to give as
    ``data.root`` with ``data.dataset: cifar10`` and ``data.val_fraction:`` :data:`VAL_FRACTION`."""
    folder = root / CIFAR10.base_folder
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    files = [name for name, _md5 in CIFAR10.train_list]
    labels = np.array_split(_balanced(rng, train_images + CLASSES), len(files))
    contents = {name: _batch(rng, part) for name, part in zip(files, labels)}
    contents[CIFAR10.test_list[0][0]] = _batch(rng, _balanced(rng, test_images))
    contents[CIFAR10.meta["filename"]] = {CIFAR10.meta["key"]: [f"class{i}" for i in range(NUM_CLASSES["cifar10"])],
                                          "num_vis": PIXELS}
    for name, content in contents.items():
        with (folder / name).open("wb") as handle:
            pickle.dump(content, handle)
    return root
