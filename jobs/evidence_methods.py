"""Offline methods on one teacher → student pair over several seeds; usage:
``python jobs/evidence_methods.py --help`` (:mod:`codistill.commands.evidence_methods`)."""

import sys

import _bootstrap  # noqa: F401  (puts platform/ on sys.path when codistill is not installed)

from codistill.commands.evidence_methods import main

if __name__ == "__main__":
    sys.exit(main())
