"""The epoch loop shared by every job: train, evaluate, log, checkpoint, report.

:func:`run_cohort` drives any :class:`~codistill.cohort.base.Cohort` (Ray actors or one process).
After each epoch it evaluates every peer and the ensemble (mean of softmax), writes TensorBoard
scalars, prints a summary line and writes an atomic checkpoint. At the end it writes
``results.json`` (config, seed, package versions, per-peer and ensemble accuracy at the best and
the last epoch, per-epoch history) and each peer's trained network under ``models/``: the models
first, as one directory renamed into place, then ``results.json``, each atomically. Each epoch's
record keeps the curriculum in force (:mod:`codistill.curriculum`) and the mean λ·m applied. The
test split (a dataset's official one, or ``data.test_fraction`` > 0 of the held-out split) is
evaluated once, at the end (``test_accuracy``); every other accuracy is validation. With
``data.partition`` each peer's training examples per class are printed at the start, logged to
TensorBoard and kept in ``results.json`` (``class_counts``, ``train_examples``). A caller may
watch every epoch through ``on_epoch(record, checkpoint_dir)`` (Ray Tune reports from there).
"""

from __future__ import annotations

import json
import math
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
import yaml

from codistill import metrics as m
from codistill.checkpoint import LEARNER_FILE, find_checkpoint, save_checkpoint
from codistill.cohort.base import Cohort, PeerLost
from codistill.config import RunConfig
from codistill.curriculum import curriculum_fields
from codistill.data import has_test_split
from codistill.errors import NonFiniteLoss
from codistill.evaluation import cohort_metrics, finite_rows
from codistill.monitoring import ConsoleProgress, TensorBoardLog
from codistill.peer import load_shards, partitioned
from codistill.records import EpochRecord, epoch_record, second_half_weights, summary_line
from codistill.safe_io import failed_writes_named, write_atomic, write_directory_atomic

CONFIG_FILE = "config.yaml"
RESULTS_FILE = "results.json"
MODELS_DIR = "models"
RESUME_LOG = "resume.log"
BACKEND_FILE = "backend.txt"  # the backend the run trains on (``--backend``), so that ``--resume`` keeps it
EpochCallback = Callable[[EpochRecord, Path], None]  # (the epoch's record, its checkpoint)


@dataclass
class _Position:
    """The cohort's place in training, saved with every checkpoint."""

    epochs_done: int = 0
    history: list[EpochRecord] = field(default_factory=list)
    wall_seconds: float = 0.0
    recoveries: int = 0  # lost peers recovered from a checkpoint (runtime.max_failures)

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "history": [record.to_dict() for record in self.history]}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> "_Position":
        return cls(**{**raw, "history": [EpochRecord.from_dict(record) for record in raw["history"]]})


def holds_a_run(run_dir: Path) -> str | None:
    """Why a new run cannot start in ``run_dir`` (it holds one already), or ``None``."""
    if (run_dir / CONFIG_FILE).exists():
        return f"{run_dir} already holds a run; resume it with --resume {run_dir} or choose another --run-dir"
    return None


def prepare_run_dir(run_dir: Path, config: RunConfig) -> None:
    """Create a fresh run directory (refusing to overwrite one that holds a run)."""
    complaint = holds_a_run(run_dir)
    if complaint:
        raise FileExistsError(complaint)
    write_config(run_dir, config)


def write_config(run_dir: Path, config: RunConfig) -> None:
    """Write ``config`` as the run's ``config.yaml`` (creating the directory); a failed write raises
    :class:`~codistill.errors.WriteFailed` naming it."""
    with failed_writes_named(run_dir / CONFIG_FILE):
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / CONFIG_FILE).write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))


def record_backend(run_dir: Path, backend: str) -> None:
    """Note the backend the run trains on (:func:`recorded_backend` reads it back)."""
    write_atomic(run_dir / BACKEND_FILE, f"{backend}\n".encode())


def recorded_backend(run_dir: Path) -> str | None:
    """The backend the run in ``run_dir`` trained on last (``None``: a run from before it was noted)."""
    path = run_dir / BACKEND_FILE
    return path.read_text().strip() if path.is_file() else None


def record_resume(run_dir: Path, config: RunConfig, overrides: list[str]) -> None:
    """Note a resume in ``resume.log``; overrides (only those that cannot change the result pass
    the front door) also update ``config.yaml``, so it always holds the config in use."""
    if overrides:
        write_atomic(run_dir / CONFIG_FILE, yaml.safe_dump(config.to_dict(), sort_keys=False).encode())
    with failed_writes_named(run_dir / RESUME_LOG), (run_dir / RESUME_LOG).open("a") as log:
        log.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S%z')} resumed{' with --set ' if overrides else ''}"
                  f"{' --set '.join(overrides)}\n")


def run_cohort(config: RunConfig, run_dir: Path, make_cohort: Callable[[RunConfig], Cohort], *,
               resume: bool = False, stop_after_epochs: int | None = None,
               progress: ConsoleProgress | None = None, on_epoch: EpochCallback | None = None) -> dict[str, Any]:
    """Train ``config`` in ``run_dir``; return the results (also written to ``results.json``).

    ``resume`` continues from the newest complete checkpoint. ``stop_after_epochs`` ends this
    invocation after that many epochs (a checkpoint is written; resume later to finish).
    When the cohort loses a peer (:class:`~codistill.cohort.base.PeerLost`: its actor or node
    died), the peers are restarted and reloaded from the last checkpoint kept in memory, and the
    epoch in progress is redone, up to ``runtime.max_failures`` times: the result is the same as
    without the failure. A peer lost while the final results and models are fetched is recovered
    the same way. A write that fails (a full disk) raises :class:`~codistill.errors.WriteFailed`.
    A peer that diverges raises :class:`~codistill.errors.NonFiniteLoss` (``runtime.on_nonfinite:
    stop``) before the epoch's checkpoint is written. ``on_epoch`` is called after each epoch's
    checkpoint is written. With ``resume`` the config may change schedule values (a Tune trial
    cloned by PBT): position and history continue.
    """
    progress = progress or ConsoleProgress(config.epochs, config.runtime.progress_every_seconds)
    cohort = make_cohort(config)
    position = _Position()
    try:
        if resume:
            checkpoint, _ = find_checkpoint(run_dir, len(config.peers))
            replay = checkpoint.peer_states, checkpoint.extra_files.get(LEARNER_FILE)
            _load(cohort, *replay)
            position = _Position.from_dict(checkpoint.position)
            progress.print(f"resuming {run_dir} after epoch {position.epochs_done}/{config.epochs}")
        else:
            replay = cohort.state_bytes(), cohort.learner_state_bytes()
        log = TensorBoardLog(run_dir / "tensorboard", cohort.peer_names, config.runtime.log_every_steps)
        shards = _report_shards(config, progress, log, resume)
        end = (config.epochs if stop_after_epochs is None
               else min(config.epochs, position.epochs_done + stop_after_epochs))
        failures = 0
        while True:
            try:
                if failures:
                    cohort.restart()
                    _load(cohort, *replay)
                for epoch in range(position.epochs_done, end):
                    replay = _train_epoch(config, run_dir, cohort, log, progress, position, epoch, on_epoch)
                final = _final_outputs(config, cohort, position) if position.epochs_done == config.epochs else None
                break
            except PeerLost as lost:
                failures += 1
                if failures > config.runtime.max_failures:
                    raise PeerLost(f"{lost}; giving up after {config.runtime.max_failures} recoveries "
                                   "(runtime.max_failures)") from lost
                position.recoveries += 1
                progress.print(f"{lost}; recovery {failures}/{config.runtime.max_failures}: restarting the peers "
                               f"from the checkpoint after epoch {position.epochs_done}")
                log.recovery(position.epochs_done, position.recoveries)
        log.close()
        if final is None:
            progress.print(f"stopped after epoch {position.epochs_done}/{config.epochs}; "
                           f"continue with --resume {run_dir}")
            return {"complete": False, "epochs_done": position.epochs_done}
        results, models = final
        for entry, counts in zip(results["peers"], shards or []):
            entry.update(class_counts=counts, train_examples=sum(counts))
        _write_outputs(run_dir, dict(zip(cohort.peer_names, models)), results)
        progress.print(results_table(results))
        return results
    finally:
        cohort.shutdown()


def _train_epoch(config: RunConfig, run_dir: Path, cohort: Cohort, log: TensorBoardLog, progress: ConsoleProgress,
                 position: _Position, epoch: int,
                 on_epoch: EpochCallback | None = None) -> tuple[list[bytes], bytes | None]:
    """Train, evaluate, log and checkpoint one epoch; returns the peers' and the policy learner's
    states just saved.

    ``position`` changes only once the epoch is complete, so a lost peer (``PeerLost``) leaves
    it at the last checkpoint, from which the epoch is redone.
    """
    started = time.perf_counter()
    progress.start_epoch(epoch)
    step_metrics = cohort.train_epoch(epoch, progress.step)
    train_seconds = time.perf_counter() - started
    peer_logits, labels = cohort.evaluate()
    if config.runtime.on_nonfinite == "stop":
        for name, logits in zip(cohort.peer_names, peer_logits):
            if not bool(finite_rows(logits).all()):
                raise NonFiniteLoss(name, epoch + 1, None, "its validation outputs are NaN or infinite")
    record = epoch_record(epoch, cohort.peer_names, step_metrics, cohort_metrics(peer_logits, labels),
                          train_seconds, curriculum_fields(config))
    states, learner_state = cohort.state_bytes(), cohort.learner_state_bytes()
    log.steps(step_metrics, epoch * cohort.steps_per_epoch())
    log.epoch(epoch, [p.scalars() for p in record.peers],
              {m.ENSEMBLE_ACCURACY: record.ensemble_val, m.AGREEMENT: record.agreement,
               m.EPOCH_SECONDS: train_seconds, m.EXCHANGE_BYTES_EPOCH: sum(p.bytes_received for p in record.peers)})
    position.history.append(record)
    position.epochs_done = epoch + 1
    position.wall_seconds += time.perf_counter() - started
    checkpoint_dir = save_checkpoint(run_dir, position.epochs_done, strict_json(position.to_dict()), states,
                                     extra_files=None if learner_state is None else {LEARNER_FILE: learner_state})
    progress.print(summary_line(record, config.epochs, show_weights=config.distillation.policy.name != "uniform"))
    if on_epoch is not None:
        on_epoch(record, checkpoint_dir)
    return states, learner_state


def _report_shards(config: RunConfig, progress: ConsoleProgress, log: TensorBoardLog,
                   resume: bool) -> list[list[int]] | None:
    """Each peer's training examples per class with ``data.partition`` (None without): printed, and
    logged to TensorBoard once, at the start of a new run."""
    if not partitioned(config):
        return None
    counts = [shard.class_counts for shard in load_shards(config)]
    for peer, row in zip(config.peers, counts):
        progress.print(f"peer {peer.name}: {sum(row)} training examples, per class {row}")
    if not resume:
        log.class_counts(counts)
    return counts


def _load(cohort: Cohort, peer_states: list[bytes], learner_state: bytes | None) -> None:
    cohort.load_state_bytes(peer_states)
    if learner_state is not None:
        cohort.load_learner_state_bytes(learner_state)


def strict_json(value: Any) -> Any:
    """``value`` with every NaN or infinite float replaced by None, so that it is strict JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: strict_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(item) for item in value]
    return value


def _add_test_accuracy(results: dict[str, Any], peer_logits: list[torch.Tensor], labels: torch.Tensor) -> None:
    """Top-1 of the final networks on the test split, which no epoch's selection has seen."""
    test = cohort_metrics(peer_logits, labels)
    for entry, accuracy in zip(results["peers"], test["peers"]):
        entry["test_accuracy"] = accuracy
    results["ensemble"]["test_accuracy"] = test["ensemble"]


def _best_and_last(values: list[float]) -> dict[str, Any]:
    best = max(range(len(values)), key=lambda i: values[i])
    return {"best_val_accuracy": values[best], "best_epoch": best + 1, "last_val_accuracy": values[-1]}


def _results(config: RunConfig, cohort: Cohort, position: _Position) -> dict[str, Any]:
    history = position.history
    sparsity = cohort.sparsity()
    peers = []
    for k, peer in enumerate(config.peers):
        entry = {"name": peer.name, "model": peer.model,
                 **_best_and_last([h.peers[k].val_accuracy for h in history]),
                 "skipped_steps": sum(h.peers[k].skipped_steps for h in history),
                 "teachers_left_out": sum(h.peers[k].teachers_left_out for h in history),
                 "teacher_weights": second_half_weights(history, k, config.epochs),
                 "bytes_received": sum(h.peers[k].bytes_received for h in history)}
        if history[-1].peers[k].replica_memory_bytes:
            entry["replica_memory_bytes"] = history[-1].peers[k].replica_memory_bytes
        if sparsity[k] is not None:
            entry["sparsity"] = sparsity[k]
        peers.append(entry)
    return {"complete": True, "config": config.to_dict(), "seed": config.seed, "versions": package_versions(),
            "peers": peers, "ensemble": _best_and_last([h.ensemble_val for h in history]),
            "history": [h.to_dict() for h in history], "train_seconds": sum(h.train_seconds for h in history),
            "wall_seconds": position.wall_seconds, "recoveries": position.recoveries}


def _final_outputs(config: RunConfig, cohort: Cohort, position: _Position) -> tuple[dict[str, Any], list[bytes]]:
    """The results and each peer's network, fetched from the peers after the last epoch (a peer
    lost meanwhile raises ``PeerLost``, recovered like a loss during training)."""
    results = _results(config, cohort, position)
    if has_test_split(config.data):
        _add_test_accuracy(results, *cohort.evaluate("test"))
    return results, cohort.model_bytes()


def _write_outputs(run_dir: Path, models: dict[str, bytes], results: dict[str, Any]) -> None:
    """Write ``models/`` (peer name → network bytes) as a whole, then ``results.json`` last, each
    atomically: a ``results.json`` always sits beside the complete set of its models."""
    (run_dir / RESULTS_FILE).unlink(missing_ok=True)
    write_directory_atomic(run_dir / MODELS_DIR, {f"{name}.pt": blob for name, blob in models.items()})
    write_atomic(run_dir / RESULTS_FILE, json.dumps(strict_json(results), indent=2, allow_nan=False).encode())


def package_versions() -> dict[str, str]:
    versions = {"python": sys.version.split()[0], "platform": platform.platform(), "torch": torch.__version__,
                "cuda": str(torch.version.cuda)}
    for package in ("codistill", "torchvision", "ray", "numpy", "gymnasium", "scikit-learn"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return versions


def results_table(results: dict[str, Any]) -> str:
    """The final console table: best and last validation top-1 of each peer and the ensemble (and
    the test top-1 of the final networks when there is a test split)."""
    rows = [(p["name"], p["model"], p["best_val_accuracy"], p["best_epoch"], p["last_val_accuracy"],
             p.get("test_accuracy")) for p in results["peers"]]
    e = results["ensemble"]
    rows.append(("ensemble", "mean softmax", e["best_val_accuracy"], e["best_epoch"], e["last_val_accuracy"],
                 e.get("test_accuracy")))
    test = rows[0][5] is not None
    lines = [f"{'peer':<16}{'model':<16}{'best top-1':>11}{'@epoch':>8}{'last top-1':>12}"
             + (f"{'test top-1':>12}" if test else "")]
    lines += [f"{n:<16}{m:<16}{100 * b:>10.2f}%{be:>8}{100 * last:>11.2f}%" + (f"{100 * t:>11.2f}%" if test else "")
              for n, m, b, be, last, t in rows]
    return "\n".join(lines)
