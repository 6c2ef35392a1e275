"""Accuracy vs staleness: live distillation against codistillation's replicas refreshed every N
steps; usage: ``python jobs/evidence_replicas.py --help``
(:mod:`codistill.commands.evidence_replicas`)."""

import sys

import _bootstrap  # noqa: F401  (puts platform/ on sys.path when codistill is not installed)

from codistill.commands.evidence_replicas import main

if __name__ == "__main__":
    sys.exit(main())
