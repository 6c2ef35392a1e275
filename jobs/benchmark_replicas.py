"""Speed and traffic of codistillation's replicas against live distillation, on one node and two;
usage: ``python jobs/benchmark_replicas.py --help`` (:mod:`codistill.commands.benchmark_replicas`)."""

import sys

import _bootstrap  # noqa: F401  (puts platform/ on sys.path when codistill is not installed)

from codistill.commands.benchmark_replicas import main

if __name__ == "__main__":
    sys.exit(main())
