"""The names of the ways Ray peers exchange payloads (``runtime.exchange``).

They live here, below the exchanges themselves (which register under these names), so that a
config is checked without loading the peer layer the exchanges are built on.
"""

from __future__ import annotations

OBJECTREF, COLLECTIVE = "objectref", "collective"
#: The built-in exchanges; ``package.module:Name`` names an exchange of your own.
EXCHANGE_NAMES = (OBJECTREF, COLLECTIVE)
#: The one exchange codistillation's replicas (``distillation.teacher_source: replicas``) run with:
#: peers exchange parameters through the object store, not predictions.
REPLICAS_EXCHANGE = OBJECTREF


def exchange_name(value: str) -> str | None:
    """A built-in exchange or ``package.module:Name``; a complaint otherwise."""
    if value in EXCHANGE_NAMES or ":" in value:
        return None
    return f"unknown exchange '{value}' (known: {', '.join(EXCHANGE_NAMES)}; or package.module:Name of your own)"
