"""CIFAR-shaped synthetic data: random 3×32×32 images written in CIFAR-10's own on-disk format.

Where no CIFAR can be fetched (the GPU machine reaches nothing outside), the GPU check and its
benchmark train on these files through the real ``cifar10`` dataset (``data.root`` pointing at
the folder), so batches are built, augmented and normalized exactly as for CIFAR-10. The images
are uniform noise with uniform labels: the losses are real, the accuracies are chance.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
from torchvision.datasets import CIFAR10

from codistill.data.cifar import IMAGE_SHAPE, NUM_CLASSES

PIXELS = int(np.prod(IMAGE_SHAPE))


def _batch(rng: np.random.Generator, count: int) -> dict:
    return {"batch_label": "synthetic", "data": rng.integers(0, 256, (count, PIXELS), dtype=np.uint8),
            "labels": rng.integers(0, NUM_CLASSES["cifar10"], count).tolist(),
            "filenames": [f"{i}.png" for i in range(count)]}


def write_synthetic_cifar10(root: Path, train_images: int, test_images: int, seed: int = 0) -> Path:
    """Write ``train_images`` training and ``test_images`` test images under ``root`` as CIFAR-10's
    python batches (the training images split over its five batch files); returns ``root``, the
    folder to give as ``data.root`` with ``data.dataset: cifar10``."""
    folder = root / CIFAR10.base_folder
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    files = [name for name, _md5 in CIFAR10.train_list]
    counts = [len(part) for part in np.array_split(np.arange(train_images), len(files))]
    contents = {name: _batch(rng, count) for name, count in zip(files, counts)}
    contents[CIFAR10.test_list[0][0]] = _batch(rng, test_images)
    contents[CIFAR10.meta["filename"]] = {CIFAR10.meta["key"]: [f"class{i}" for i in range(NUM_CLASSES["cifar10"])],
                                          "num_vis": PIXELS}
    for name, content in contents.items():
        with (folder / name).open("wb") as handle:
            pickle.dump(content, handle)
    return root
