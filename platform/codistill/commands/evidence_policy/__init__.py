"""Teacher selection evidence (``jobs/evidence_policy.py``): the pool (:mod:`.pool`), the variants
(:mod:`.variants`), their runs and timing (:mod:`.runs`), tables (:mod:`.tables`) and pictures
(:mod:`.plots`); the command line: :mod:`.cli`."""

from codistill.commands.evidence_policy.cli import main

__all__ = ["main"]
