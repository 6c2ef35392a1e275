"""Time per epoch of Ray cohorts against their peers alone, for each exchange, in one run; usage:
``python jobs/benchmark_cohort.py --help`` (:mod:`codistill.commands.benchmark_cohort`)."""

import sys

import _bootstrap  # noqa: F401  (puts platform/ on sys.path when codistill is not installed)

from codistill.commands.benchmark_cohort import main

if __name__ == "__main__":
    sys.exit(main())
