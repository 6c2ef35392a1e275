"""Recovery time when one peer of K is lost, only that peer restarted against every peer, in one
run; usage: ``python jobs/benchmark_recovery.py --help``
(:mod:`codistill.commands.benchmark_recovery`)."""

import sys

import _bootstrap  # noqa: F401  (puts platform/ on sys.path when codistill is not installed)

from codistill.commands.benchmark_recovery import main

if __name__ == "__main__":
    sys.exit(main())
