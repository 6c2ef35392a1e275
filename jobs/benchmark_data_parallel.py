"""Data-parallel peers measured: R workers against one, and R = [2, 1, 1] on two nodes;
usage: ``python jobs/benchmark_data_parallel.py --help`` (:mod:`codistill.commands.benchmark_data_parallel`)."""

import sys

import _bootstrap  # noqa: F401  (puts platform/ on sys.path when codistill is not installed)

from codistill.commands.benchmark_data_parallel import main

if __name__ == "__main__":
    sys.exit(main())
