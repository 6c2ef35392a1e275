"""Codistillation over shards (iid, dirichlet) and the teacher policies where peers know different
things; usage: ``python jobs/evidence_partition.py --help`` (:mod:`codistill.commands.evidence_partition`)."""

import sys

import _bootstrap  # noqa: F401  (puts platform/ on sys.path when codistill is not installed)

from codistill.commands.evidence_partition import main

if __name__ == "__main__":
    sys.exit(main())
