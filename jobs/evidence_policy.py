"""Teacher selection: uniform weights, CA-MKD, fixed weightings, the learned policy and the label
oracle, offline with a pool of frozen teachers and online; usage: ``python jobs/evidence_policy.py
--help`` (:mod:`codistill.commands.evidence_policy`)."""

import sys

import _bootstrap  # noqa: F401  (puts platform/ on sys.path when codistill is not installed)

from codistill.commands.evidence_policy import main

if __name__ == "__main__":
    sys.exit(main())
