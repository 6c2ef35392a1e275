"""Overhead of the learned teacher policy: seconds per training epoch with the ``uniform`` policy
and with ``policies.learned:LearnedPolicy``, side by side in one run
(:mod:`codistill.benchmarks.policy`); usage: ``python jobs/benchmark_policy.py --help``
(:mod:`codistill.commands.benchmark_policy`)."""

import sys

import _bootstrap  # noqa: F401  (puts platform/ on sys.path when codistill is not installed)

from codistill.commands.benchmark_policy import main

if __name__ == "__main__":
    sys.exit(main())
