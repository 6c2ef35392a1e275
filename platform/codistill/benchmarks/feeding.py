"""Feeding the devices (``jobs/benchmark_feeding.py``): images per second delivered from a folder
of JPEGs by a peer's batches prepared in the step, by the same batches prepared ahead in a
background thread, and by torchvision's ``ImageFolder`` with a ``DataLoader`` of worker processes.

:func:`write_jpeg_tree` writes ``images`` JPEGs of ``width × height`` (smooth colour ramps under
noise, so they compress like photographs, seeded) into ``train/<class>/`` and one per class into
``val/``. :func:`delivery_rates` reads one epoch of batches of ``batch_size`` random resized crops
to ``image_size`` (with flips, normalized) per variant, the variants interleaved for ``rounds``
rounds after one untimed warm-up round, and reports images per second of every round, the mean
seconds a step waited for its batch and the CPU seconds spent per image (this process's threads
and its finished children: the DataLoader's workers are joined at the end of each epoch). On a
machine that other work keeps busy the wall-clock rates depend on how many threads each variant
runs; the CPU seconds per image do not. With ``step_seconds`` 0 nothing happens between batches,
so the rate is what the data path alone delivers; otherwise each step holds the process for
``step_seconds`` without using the CPU (``time.sleep``: a step computed on a GPU), and the wait is
what prefetching hides. The DataLoader starts its workers for every epoch (its default,
``persistent_workers=False``); a peer's batches keep their decoding threads and the image sizes
they have read.
"""

from __future__ import annotations

import resource
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torchvision
from PIL import Image
from torch.utils.data import DataLoader
from torchvision import transforms

from codistill.data import build_dataset
from codistill.data.imagefolder import MEAN, STD
from codistill.peer.batches import BatchSource
from codistill.validation import parse_config

IN_STEP, PREFETCH, DATALOADER = "in_step", "prefetch", "dataloader"


def write_jpeg_tree(root: Path, images: int, width: int, height: int, classes: int = 4, seed: int = 0) -> None:
    """``images`` training JPEGs (class ``i % classes``) and one validation JPEG per class."""
    generator = np.random.default_rng(seed)
    rows, cols = np.mgrid[0:height, 0:width]
    for split, count in (("train", images), ("val", classes)):
        for index in range(count):
            folder = root / split / f"class{index % classes}"
            folder.mkdir(parents=True, exist_ok=True)
            slopes = generator.uniform(0.1, 1.0, size=3)
            ramp = np.stack([(cols * slopes[0] + index) % 256, (rows * slopes[1]) % 256,
                             ((rows + cols) * slopes[2]) % 256], axis=-1)
            pixels = np.clip(ramp + generator.normal(0.0, 12.0, ramp.shape), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / f"{index}.jpg", quality=90)


def _batch_source(root: Path, image_size: int, batch_size: int, prefetch: int) -> Callable[[], BatchSource]:
    """A fresh peer batch source per epoch over one dataset (its decoding threads and sizes kept)."""
    raw = {"name": "feeding", "epochs": 1, "peers": [{"name": name, "model": "mlp"} for name in ("a", "b")],
           "data": {"dataset": "imagefolder", "root": str(root), "image_size": image_size, "batch_size": batch_size,
                    "prefetch_batches": prefetch}}
    config = parse_config(raw)
    dataset = build_dataset("imagefolder", root=str(root), train_fraction=1.0, label_noise=0.0, seed=config.seed,
                            image_size=image_size)
    return lambda: BatchSource(config, 0, dataset, torch.device("cpu"))


#: One epoch of a variant: images delivered and the seconds of each step's wait for its batch.
Epoch = Callable[[float], tuple[int, list[float]]]


def _epoch_of_batches(make_source: Callable[[], BatchSource]) -> Epoch:
    def epoch(step_seconds: float) -> tuple[int, list[float]]:
        source, images, waits = make_source(), 0, []
        for step in range(source.steps_per_epoch):
            batch = source.batch(0, step)
            images, waits = images + batch.targets.numel(), waits + [batch.data_wait]
            time.sleep(step_seconds)
        return images, waits
    return epoch


def _epoch_of_dataloader(root: Path, image_size: int, batch_size: int, workers: int) -> Epoch:
    augmentation = transforms.Compose([transforms.RandomResizedCrop(image_size), transforms.RandomHorizontalFlip(),
                                       transforms.ToTensor(), transforms.Normalize(MEAN, STD)])
    folder = torchvision.datasets.ImageFolder(str(root / "train"), augmentation)
    loader = DataLoader(folder, batch_size=batch_size, shuffle=True, num_workers=workers)

    def epoch(step_seconds: float) -> tuple[int, list[float]]:
        images, waits, batches = 0, [], iter(loader)
        while True:
            started = time.perf_counter()
            batch = next(batches, None)
            if batch is None:
                return images, waits
            images, waits = images + batch[1].numel(), waits + [time.perf_counter() - started]
            time.sleep(step_seconds)
    return epoch


def _cpu_seconds() -> float:
    """User and system CPU seconds of this process (every thread) and of its finished children."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def delivery_rates(root: Path, *, image_size: int, batch_size: int, prefetch: int, loader_workers: int,
                   rounds: int, step_seconds: float = 0.0) -> dict[str, Any]:
    """Images per second, the mean wait per step and CPU seconds per image of each variant in each
    round (interleaved), their medians and the medians of the per-round ratios (see the module docstring)."""
    epochs = {IN_STEP: _epoch_of_batches(_batch_source(root, image_size, batch_size, 0)),
              PREFETCH: _epoch_of_batches(_batch_source(root, image_size, batch_size, prefetch)),
              DATALOADER: _epoch_of_dataloader(root, image_size, batch_size, loader_workers)}
    rates: dict[str, list[float]] = {name: [] for name in epochs}
    waits: dict[str, list[float]] = {name: [] for name in epochs}
    cpu: dict[str, list[float]] = {name: [] for name in epochs}
    for round_index in range(rounds + 1):
        for name, epoch in epochs.items():
            started, cpu_started = time.perf_counter(), _cpu_seconds()
            images, step_waits = epoch(step_seconds)
            if round_index > 0:  # round 0 warms up
                rates[name].append(images / (time.perf_counter() - started))
                waits[name].append(statistics.fmean(step_waits))
                cpu[name].append((_cpu_seconds() - cpu_started) / images)
    pairs = ((PREFETCH, IN_STEP), (PREFETCH, DATALOADER), (IN_STEP, DATALOADER))
    median = {name: {variant: statistics.median(values) for variant, values in measured.items()}
              for name, measured in (("images_per_second", rates), ("wait_seconds", waits),
                                     ("cpu_seconds_per_image", cpu))}
    return {"step_seconds": step_seconds, "images_per_second": rates, "mean_wait_seconds": waits,
            "cpu_seconds_per_image": cpu, "median": median,
            "median_rate_ratios": {f"{a}/{b}": statistics.median(x / y for x, y in zip(rates[a], rates[b]))
                                   for a, b in pairs},
            "median_cpu_ratios": {f"{a}/{b}": statistics.median(x / y for x, y in zip(cpu[a], cpu[b]))
                                  for a, b in pairs}}
