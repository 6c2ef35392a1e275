"""Ray Tune sweeps over a cohort's config; usage: ``python jobs/sweep.py --help``
(:mod:`codistill.commands.sweep`, the library in :mod:`codistill.tuning`)."""

import sys

import _bootstrap  # noqa: F401  (puts platform/ on sys.path when codistill is not installed)

from codistill.commands.sweep import main

if __name__ == "__main__":
    sys.exit(main())
