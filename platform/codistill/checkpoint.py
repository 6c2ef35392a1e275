"""Atomic, per-epoch checkpoints of a cohort.

Layout inside the run directory::

    checkpoints/epoch_0007/cohort.json     # position: epochs completed, history, best accuracies
    checkpoints/epoch_0007/peer_00.pt      # PeerTrainer.state_dict(): model, methods (adapters),
    ...                                    # optimizer, pruning masks, policy, grad scaler, RNG
    checkpoints/epoch_0007/policy_learner.pt  # only with a learned teacher policy: its learner
    checkpoints/LATEST                     # name of the newest complete checkpoint

A checkpoint is written into a hidden temporary directory that is renamed into place, and only
then is ``LATEST`` replaced (write to a temporary file, then ``os.replace``): a run killed at
any moment leaves the previous complete checkpoint intact.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

LATEST = "LATEST"


def _write_atomic(path: Path, data: bytes) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    with temporary.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


LEARNER_FILE = "policy_learner.pt"


def save_checkpoint(run_dir: Path, epochs_done: int, position: dict[str, Any], peer_states: list[bytes],
                    keep: int = 2, learner_state: bytes | None = None) -> Path:
    """Write checkpoint ``epoch_{epochs_done}`` atomically and keep only the newest ``keep``."""
    root = run_dir / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    name = f"epoch_{epochs_done:04d}"
    staging = root / f".{name}.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    for k, blob in enumerate(peer_states):
        _write_atomic(staging / f"peer_{k:02d}.pt", blob)
    if learner_state is not None:
        _write_atomic(staging / LEARNER_FILE, learner_state)
    _write_atomic(staging / "cohort.json", json.dumps({"epochs_done": epochs_done, **position}).encode())
    final = root / name
    shutil.rmtree(final, ignore_errors=True)
    os.replace(staging, final)
    _write_atomic(root / LATEST, name.encode())
    for old in sorted(p for p in root.glob("epoch_*") if p.is_dir())[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def load_latest_checkpoint(run_dir: Path, peers: int) -> tuple[dict[str, Any], list[bytes]]:
    """The newest complete checkpoint: its position and each peer's state bytes."""
    root = run_dir / "checkpoints"
    latest = root / LATEST
    if not latest.is_file():
        raise FileNotFoundError(f"no complete checkpoint in {run_dir} (missing {latest})")
    directory = root / latest.read_text().strip()
    position = json.loads((directory / "cohort.json").read_text())
    states = [(directory / f"peer_{k:02d}.pt").read_bytes() for k in range(peers)]
    return position, states


def load_latest_learner_state(run_dir: Path) -> bytes | None:
    """The teacher-policy learner's state in the newest complete checkpoint, if it holds one."""
    root = run_dir / "checkpoints"
    path = root / (root / LATEST).read_text().strip() / LEARNER_FILE
    return path.read_bytes() if path.is_file() else None
