"""Saving and loading a learned teacher policy: its scorer's tensors and the features it observes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from policies.scorer import TeacherScorer

SAVED_FORMAT = "codistill-learned-teacher-policy/1"


def save_policy(path: str | Path, scorer: TeacherScorer) -> None:
    """Write a policy in the safe format (tensors and plain containers: ``torch.load(weights_only=True)``)."""
    torch.save({"format": SAVED_FORMAT, "features": list(scorer.features), "hidden": scorer.hidden,
                "scorer": {k: v.detach().cpu() for k, v in scorer.state_dict().items()}}, Path(path))


def load_policy(path: str | Path, features: tuple[str, ...]) -> dict[str, Any]:
    """A saved policy; ``ValueError`` when the file is not one or was trained on other ``features``
    than the policy observes (:func:`~policies.features.observed_features`)."""
    try:
        saved = torch.load(Path(path).expanduser(), map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any unreadable file is reported the same way
        raise ValueError(f"cannot read a saved policy from {path}: {error}") from None
    if not isinstance(saved, dict) or saved.get("format") != SAVED_FORMAT:
        raise ValueError(f"{path} is not a saved teacher policy ({SAVED_FORMAT})")
    if tuple(saved.get("features", ())) != features:
        raise ValueError(f"{path} was trained on features {saved.get('features')}, this policy observes "
                         f"{list(features)}")
    return saved
