"""Collaborative online distillation of a cohort; usage: ``python jobs/online.py --help``
(:mod:`codistill.commands.online`)."""

import sys

import _bootstrap  # noqa: F401  (puts platform/ on sys.path when codistill is not installed)

from codistill.commands.online import main

if __name__ == "__main__":
    sys.exit(main())
