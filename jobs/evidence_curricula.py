"""Searched and evolved curricula vs simple ones, chosen on validation, reported on a test split;
usage: ``python jobs/evidence_curricula.py --help`` (:mod:`codistill.commands.evidence_curricula`)."""

import sys
from pathlib import Path

import _bootstrap  # noqa: F401  (puts platform/ on sys.path when codistill is not installed)

from codistill.commands.evidence_curricula import main

if __name__ == "__main__":
    sys.exit(main(jobs_dir=Path(__file__).resolve().parent))
