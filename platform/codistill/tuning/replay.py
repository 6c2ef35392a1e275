"""Replay: the curriculum a trial actually followed, as a plain config for ``jobs/online.py``.

Every epoch record of a run keeps the curriculum fields in force (:mod:`codistill.curriculum`).
A Population Based Training trial's record is piecewise: epochs inherited from the trials it
cloned, then its own mutated values. :func:`replay_config` cuts the history into segments of
unchanged fields and writes each changed schedule field as one ``steps`` schedule whose pieces are
the segments' own schedules (of overall progress), switching at the segment boundaries; fields that
never changed keep their value. Training that config from scratch with the same seed follows the
same λ(t)·m(t) and T(t) at every step, without Tune. A changed field that is not a schedule (a
sparsity target) cannot be replayed this way and is refused, naming it. :func:`export_best` writes
a sweep's best trial so (``best.yaml``). No Ray.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from codistill.checkpoint import load_latest_checkpoint
from codistill.config import set_field
from codistill.curriculum import is_schedule_field
from codistill.runner import CONFIG_FILE
from codistill.safe_io import write_atomic
from codistill.tuning.layout import BEST_FILE, trial_run_dir
from codistill.validation import parse_config


def curriculum_segments(history: list[dict[str, Any]]) -> list[tuple[int, dict[str, Any]]]:
    """``[(first epoch index, curriculum)]`` for each run of epochs with the same curriculum."""
    segments: list[tuple[int, dict[str, Any]]] = []
    for index, record in enumerate(history):
        if not segments or record["curriculum"] != segments[-1][1]:
            segments.append((index, record["curriculum"]))
    return segments


def piecewise_curriculum(history: list[dict[str, Any]]) -> dict[str, Any]:
    """``{field: spec}`` reproducing the history's curriculum epoch by epoch."""
    segments = curriculum_segments(history)
    if not segments:
        raise ValueError("the run has no epochs to replay")
    fields: dict[str, Any] = {}
    for path in segments[0][1]:
        pieces = [(start, curriculum[path]) for start, curriculum in segments]
        kept = [pieces[0]] + [piece for previous, piece in zip(pieces, pieces[1:]) if piece[1] != previous[1]]
        if len(kept) == 1:
            fields[path] = kept[0][1]
        elif not is_schedule_field(path):
            changes = ", ".join(f"{value} from epoch {start}" for start, value in kept)
            raise ValueError(f"'{path}' changed during the run ({changes}) and is not a schedule, so a plain "
                             "config cannot replay it")
        else:
            fields[path] = {"kind": "steps", "values": [copy.deepcopy(value) for _, value in kept],
                            "epochs": [start for start, _ in kept[1:]]}
    return fields


def replay_config(trial_raw: dict[str, Any], history: list[dict[str, Any]], name: str | None = None) -> dict[str, Any]:
    """The trial's raw config with its curriculum fields replaced by the piecewise curriculum."""
    raw = copy.deepcopy(trial_raw)
    for path, spec in piecewise_curriculum(history).items():
        set_field(raw, path, spec)
    if name is not None:
        raw["name"] = name
    return raw


def export_best(directory: Path, trial_id: str) -> Path:
    """``best.yaml`` of the sweep in ``directory``: trial ``trial_id``'s curriculum as a plain config
    (its piecewise PBT schedule included). Raises ValueError when it cannot be replayed."""
    run_dir = trial_run_dir(directory, trial_id)
    trial_raw = yaml.safe_load((run_dir / CONFIG_FILE).read_text())
    # Tune may stop a trial before results.json: its newest verified checkpoint holds the history.
    history = load_latest_checkpoint(run_dir, len(trial_raw["peers"]))[0]["history"]
    raw = replay_config(trial_raw, history, name=f"{trial_raw['name']}-replay-{trial_id}")
    parse_config(raw)  # the export must itself be a valid config
    path = directory / BEST_FILE
    write_atomic(path, yaml.safe_dump(raw, sort_keys=False).encode())
    return path
