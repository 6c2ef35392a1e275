"""Offline distillation of one student from frozen teachers; usage: ``python jobs/offline.py --help``
(:mod:`codistill.commands.offline`)."""

import sys

import _bootstrap  # noqa: F401  (puts platform/ on sys.path when codistill is not installed)

from codistill.commands.offline import main

if __name__ == "__main__":
    sys.exit(main())
