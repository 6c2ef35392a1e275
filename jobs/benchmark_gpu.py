"""The GPU benchmark of a cohort, without Ray, on CIFAR-shaped synthetic batches; usage: ``python
jobs/benchmark_gpu.py --help`` (:mod:`codistill.commands.benchmark_gpu`)."""

import sys

import _bootstrap  # noqa: F401  (puts platform/ on sys.path when codistill is not installed)

from codistill.commands.benchmark_gpu import main

if __name__ == "__main__":
    sys.exit(main())
