"""Offline distillation: one student from one or more trained, frozen teachers.

    python jobs/offline.py --config jobs/configs/digits_offline.yaml
    python jobs/offline.py --config FILE --independent      # the student alone (or a teacher)

The YAML has the shape of an online config with exactly one entry under ``peers`` (the student)
and a ``teachers`` list of ``{name, model, checkpoint}``; checkpoints are the
``RUN_DIR/models/<peer>.pt`` files any codistill run writes, online peers included.
"""

from __future__ import annotations

from codistill import cli
from codistill.cohort.backends import OFFLINE_BACKENDS


def main(argv: list[str] | None = None) -> int:
    """Train (or resume) one student; the exit status (see :func:`codistill.cli.main`)."""
    return cli.main(argv, mode="offline", description=__doc__, backends=OFFLINE_BACKENDS)
