"""Atomic, verified, per-epoch checkpoints of a cohort.

Layout inside the run directory::

    checkpoints/epoch_0007/cohort.json     # position: epochs completed, history, best accuracies
    checkpoints/epoch_0007/peer_00.pt      # PeerTrainer.state_dict(): model, methods (adapters),
    ...                                    # optimizer, pruning masks, policy, grad scaler, RNG
    checkpoints/epoch_0007/<extra files>   # e.g. a policy learner's state, given by the caller
    checkpoints/epoch_0007/manifest.json   # size and sha256 of every other file, written last
    checkpoints/LATEST                     # name of the newest complete checkpoint

A checkpoint is written into a hidden temporary directory that is renamed into place, and only
then is ``LATEST`` replaced (write to a temporary file, then ``os.replace``): a run killed at
any moment, or a write that fails (a full disk), leaves the previous complete checkpoint intact.
The newest ``keep`` are kept.

On resume :func:`find_checkpoint` takes the newest checkpoint that *verifies* — manifest
readable, every listed file present with its size and sha256, one state per peer, every ``.pt``
file loadable with ``weights_only=True`` — and reports each newer one it skipped and why. A
damaged ``LATEST`` costs nothing: the checkpoint directories themselves are verified.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from codistill import safe_io

LATEST = "LATEST"
MANIFEST = "manifest.json"
POSITION = "cohort.json"
KEEP = 2
CHECKPOINT_NAME = re.compile(r"epoch_(\d{4,})")


class CheckpointError(ValueError):
    """No usable checkpoint (the message says what is wrong with each one found)."""


@dataclass(frozen=True)
class Checkpoint:
    """One verified checkpoint: its position, each peer's state and the caller's extra files."""

    directory: Path
    position: dict[str, Any]
    peer_states: list[bytes]
    extra_files: dict[str, bytes] = field(default_factory=dict)


def peer_file(index: int) -> str:
    return f"peer_{index:02d}.pt"


def checkpoint_name(epochs_done: int) -> str:
    return f"epoch_{epochs_done:04d}"


LEARNER_FILE = "policy_learner.pt"


def save_checkpoint(run_dir: Path, epochs_done: int, position: dict[str, Any], peer_states: list[bytes],
                    extra_files: dict[str, bytes] | None = None, keep: int = KEEP) -> Path:
    """Write checkpoint ``epoch_{epochs_done}`` atomically and keep only the newest ``keep``.

    ``extra_files`` (name → bytes) are saved, checksummed and loaded back like the peers' states.
    """
    files = {peer_file(k): blob for k, blob in enumerate(peer_states)}
    for name, blob in (extra_files or {}).items():
        if name in files or name in (POSITION, MANIFEST) or Path(name).name != name or name.startswith("."):
            raise ValueError(f"extra checkpoint file name '{name}' is reserved or not a plain file name")
        files[name] = blob
    files[POSITION] = json.dumps({"epochs_done": epochs_done, **position}).encode()
    manifest = {"epochs_done": epochs_done, "peers": len(peer_states),
                "files": {name: {"size": len(blob), "sha256": hashlib.sha256(blob).hexdigest()}
                          for name, blob in files.items()}}

    root = run_dir / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    name = checkpoint_name(epochs_done)
    final = root / name
    safe_io.write_directory_atomic(final, {**files, MANIFEST: json.dumps(manifest, indent=1).encode()})
    safe_io.write_atomic(root / LATEST, name.encode())
    for old in checkpoint_directories(run_dir)[keep:]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def install_checkpoint(run_dir: Path, source: Path) -> Path:
    """Make a copy of checkpoint directory ``source`` (e.g. another Ray Tune trial's, cloned by
    PBT) the only checkpoint of ``run_dir``; resuming then continues from it."""
    epochs_done = json.loads((source / "cohort.json").read_text())["epochs_done"]
    root = run_dir / "checkpoints"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    name = f"epoch_{epochs_done:04d}"
    staging = root / f".{name}.tmp"
    shutil.copytree(source, staging)
    os.replace(staging, root / name)
    safe_io.write_atomic(root / LATEST, name.encode())
    return root / name


def checkpoint_directories(run_dir: Path) -> list[Path]:
    """The run's checkpoint directories, newest first."""
    root = run_dir / "checkpoints"
    if not root.is_dir():
        return []
    found = [(int(match.group(1)), path) for path in root.iterdir()
             if path.is_dir() and (match := CHECKPOINT_NAME.fullmatch(path.name))]
    return [path for _, path in sorted(found, reverse=True)]


def verify_checkpoint(directory: Path, peers: int) -> Checkpoint:
    """Read and verify one checkpoint directory; raise :class:`CheckpointError` saying what is wrong."""
    try:
        manifest = json.loads((directory / MANIFEST).read_bytes())
        listed, saved_peers, epochs_done = manifest["files"], manifest["peers"], manifest["epochs_done"]
    except FileNotFoundError:
        raise CheckpointError(f"{MANIFEST} is missing") from None
    except (ValueError, KeyError, TypeError) as error:
        raise CheckpointError(f"{MANIFEST} is unreadable ({type(error).__name__})") from None
    if not isinstance(listed, dict):
        raise CheckpointError(f"{MANIFEST} lists no files")
    if saved_peers != peers:
        raise CheckpointError(f"it holds {saved_peers} peer states, the run has {peers} peers")
    required = [peer_file(k) for k in range(peers)] + [POSITION]
    missing = [name for name in required if name not in listed]
    if missing:
        raise CheckpointError(f"its manifest lists no {missing[0]}")
    contents = {}
    for name, expected in listed.items():
        path = directory / name
        if Path(name).name != name or not isinstance(expected, dict) or not path.is_file():
            raise CheckpointError(f"{name} is missing")
        blob = path.read_bytes()
        if len(blob) != expected.get("size") or hashlib.sha256(blob).hexdigest() != expected.get("sha256"):
            raise CheckpointError(f"{name} fails its checksum "
                                  f"({len(blob)} bytes, the manifest says {expected.get('size')})")
        if name.endswith(".pt"):
            try:
                safe_io.loads(blob, map_location="cpu", source=name)
            except safe_io.UnreadableFileError as error:
                raise CheckpointError(str(error)) from None
        contents[name] = blob
    position = json.loads(contents.pop(POSITION))
    if position.get("epochs_done") != epochs_done or directory.name != checkpoint_name(epochs_done):
        raise CheckpointError(f"{POSITION} and the directory name disagree on the epoch")
    states = [contents.pop(peer_file(k)) for k in range(peers)]
    return Checkpoint(directory=directory, position=position, peer_states=states, extra_files=contents)


def find_checkpoint(run_dir: Path, peers: int) -> tuple[Checkpoint, list[str]]:
    """The newest checkpoint that verifies, and one warning per newer checkpoint skipped (or a bad LATEST).

    Raises :class:`CheckpointError` when none verifies.
    """
    directories = checkpoint_directories(run_dir)
    if not directories:
        raise CheckpointError(f"no checkpoint in {run_dir / 'checkpoints'}")
    warnings = []
    for directory in directories:
        try:
            checkpoint = verify_checkpoint(directory, peers)
        except CheckpointError as error:
            warnings.append(f"checkpoint {directory.name} skipped: {error}")
            continue
        latest = run_dir / "checkpoints" / LATEST
        pointer = latest.read_bytes().decode(errors="replace").strip() if latest.is_file() else None
        if pointer != directory.name and not warnings:
            warnings.append(f"{LATEST} is {'missing' if pointer is None else 'stale or damaged'}; "
                            f"using the newest verified checkpoint {directory.name}")
        return checkpoint, warnings
    raise CheckpointError(f"no checkpoint in {run_dir / 'checkpoints'} verifies: " + "; ".join(warnings))


def load_latest_checkpoint(run_dir: Path, peers: int) -> tuple[dict[str, Any], list[bytes]]:
    """The newest verified checkpoint: its position and each peer's state bytes."""
    checkpoint, _ = find_checkpoint(run_dir, peers)
    return checkpoint.position, checkpoint.peer_states
