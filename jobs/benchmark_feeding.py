"""Feeding the devices: images/s from a folder of JPEGs, batches prepared in the step, prefetched,
and torchvision's DataLoader side by side; usage: ``python jobs/benchmark_feeding.py --help``
(:mod:`codistill.commands.benchmark_feeding`)."""

import sys

import _bootstrap  # noqa: F401  (puts platform/ on sys.path when codistill is not installed)

from codistill.commands.benchmark_feeding import main

if __name__ == "__main__":
    sys.exit(main())
