"""Monotone mutation for population-based curricula: a constraint may only tighten.

When a Population Based Training trial clones a better trial, Ray perturbs the clone's
hyperparameters (× 0.8 / 1.2, a neighbour in a choice, or a resample; Jaderberg et al. 2017).
:func:`constrain` then clamps each perturbed value into its domain and, for an entry marked
``tightens``, to no looser than the clone's value: ``up`` (λ, the gate's on share, a sparsity
target) never falls, ``down`` (a temperature T) never rises. Since the trial continues the
clone's cohort, every trial's curriculum is then progressive: a constraint, once applied, stays at
least as strong. Pure: no Ray.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from codistill.tuning.space import Dimension


def constrain(previous: Mapping[str, Any], proposed: Mapping[str, Any],
              dimensions: Sequence[Dimension]) -> dict[str, Any]:
    """``proposed`` with each searched value inside its bounds and, if it tightens, no looser than ``previous``."""
    result = dict(proposed)
    for dimension in dimensions:
        key = dimension.key
        if key not in result:
            continue
        value, bounds = result[key], dimension.bounds
        if bounds is not None:
            value = min(max(value, bounds[0]), bounds[1])
        if dimension.tightens == "up":
            value = max(value, previous[key])
        elif dimension.tightens == "down":
            value = min(value, previous[key])
        if dimension.domain == "randint":
            value = int(round(value))
        result[key] = value
    return result


def loosened(previous: Mapping[str, Any], current: Mapping[str, Any], dimensions: Sequence[Dimension]) -> list[str]:
    """The keys whose constraint ``current`` loosens relative to ``previous`` (empty when monotone)."""
    return [d.key for d in dimensions
            if (d.tightens == "up" and current[d.key] < previous[d.key])
            or (d.tightens == "down" and current[d.key] > previous[d.key])]
