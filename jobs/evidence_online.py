"""Independent vs online training of one cohort over several seeds: the README's table; usage:
``python jobs/evidence_online.py --help`` (:mod:`codistill.commands.evidence_online`)."""

import sys

import _bootstrap  # noqa: F401  (puts platform/ on sys.path when codistill is not installed)

from codistill.commands.evidence_online import main

if __name__ == "__main__":
    sys.exit(main())
