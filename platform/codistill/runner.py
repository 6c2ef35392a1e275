"""The epoch loop shared by every job: train, evaluate, log, checkpoint, report.

:func:`run_cohort` drives any :class:`~codistill.cohort_base.Cohort` (Ray actors or one process).
After each epoch it evaluates every peer and the ensemble (mean of softmax), writes TensorBoard
scalars, prints a summary line and writes an atomic checkpoint. At the end it writes
``results.json`` (config, seed, package versions, per-peer and ensemble accuracy at the best and
the last epoch, per-epoch history) and each peer's trained network under ``models/``.
"""

from __future__ import annotations

import json
import platform
import sys
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Callable

import torch
import yaml

from codistill import metrics as m
from codistill.checkpoint import load_latest_checkpoint, load_latest_learner_state, save_checkpoint
from codistill.cohort_base import Cohort
from codistill.config import RunConfig
from codistill.evaluation import cohort_metrics
from codistill.monitoring import ConsoleProgress, TensorBoardLog

CONFIG_FILE = "config.yaml"
RESULTS_FILE = "results.json"


@dataclass
class _Position:
    """The cohort's place in training, saved with every checkpoint."""

    epochs_done: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    wall_seconds: float = 0.0


def prepare_run_dir(run_dir: Path, config: RunConfig) -> None:
    """Create a fresh run directory (refusing to overwrite one that holds a run)."""
    if (run_dir / CONFIG_FILE).exists():
        raise FileExistsError(f"{run_dir} already holds a run; resume it with --resume {run_dir} "
                              "or choose another --run-dir")
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / CONFIG_FILE).write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))


def run_cohort(config: RunConfig, run_dir: Path, make_cohort: Callable[[RunConfig], Cohort], *,
               resume: bool = False, stop_after_epochs: int | None = None,
               progress: ConsoleProgress | None = None) -> dict[str, Any]:
    """Train ``config`` in ``run_dir``; return the results (also written to ``results.json``).

    ``resume`` continues from the newest complete checkpoint. ``stop_after_epochs`` ends this
    invocation after that many epochs (a checkpoint is written; resume later to finish).
    """
    progress = progress or ConsoleProgress(config.epochs, config.runtime.progress_every_seconds)
    cohort = make_cohort(config)
    position = _Position()
    try:
        if resume:
            saved, states = load_latest_checkpoint(run_dir, len(config.peers))
            cohort.load_state_bytes(states)
            learner_state = load_latest_learner_state(run_dir)
            if learner_state is not None:
                cohort.load_learner_state_bytes(learner_state)
            position = _Position(**saved)
            progress.print(f"resuming {run_dir} after epoch {position.epochs_done}/{config.epochs}")
        log = TensorBoardLog(run_dir / "tensorboard", cohort.peer_names, config.runtime.log_every_steps)
        steps_per_epoch = cohort.steps_per_epoch()
        end = config.epochs if stop_after_epochs is None else min(config.epochs, position.epochs_done + stop_after_epochs)
        for epoch in range(position.epochs_done, end):
            started = time.perf_counter()
            progress.start_epoch(epoch)
            step_metrics = cohort.train_epoch(epoch, progress.step)
            train_seconds = time.perf_counter() - started
            peer_logits, labels = cohort.evaluate()
            record = _epoch_record(epoch, cohort.peer_names, step_metrics, cohort_metrics(peer_logits, labels),
                                   train_seconds)
            log.steps(step_metrics, epoch * steps_per_epoch)
            log.epoch(epoch, _peer_scalars(record), {m.ENSEMBLE_ACCURACY: record["ensemble_val"],
                                                     m.AGREEMENT: record["agreement"],
                                                     m.EPOCH_SECONDS: train_seconds})
            position.history.append(record)
            position.epochs_done = epoch + 1
            position.wall_seconds += time.perf_counter() - started
            save_checkpoint(run_dir, position.epochs_done, position.__dict__, cohort.state_bytes(),
                            learner_state=cohort.learner_state_bytes())
            progress.print(_summary_line(config, record))
        log.close()
        if position.epochs_done < config.epochs:
            progress.print(f"stopped after epoch {position.epochs_done}/{config.epochs}; "
                           f"continue with --resume {run_dir}")
            return {"complete": False, "epochs_done": position.epochs_done}
        results = _results(config, cohort, position)
        _save_models(run_dir, cohort)
        (run_dir / RESULTS_FILE).write_text(json.dumps(results, indent=2))
        progress.print(results_table(results))
        return results
    finally:
        cohort.shutdown()


def _epoch_record(epoch: int, names: list[str], step_metrics: list[list[dict[str, float]]],
                  evaluation: dict[str, Any], train_seconds: float) -> dict[str, Any]:
    peers = []
    for k, name in enumerate(names):
        rows = [step[k] for step in step_metrics]
        examples = sum(r[m.TRAIN_EXAMPLES] for r in rows)
        peers.append({"name": name, "val_accuracy": evaluation["peers"][k],
                      "train_accuracy": sum(r[m.TRAIN_CORRECT] for r in rows) / max(examples, 1.0),
                      "train_loss": sum(r[m.LOSS_TOTAL] * r[m.TRAIN_EXAMPLES] for r in rows) / max(examples, 1.0),
                      "exchange_wait_seconds": sum(r[m.EXCHANGE_WAIT_SECONDS] for r in rows),
                      **_teacher_weights(rows)})
    return {"epoch": epoch + 1, "peers": peers, "ensemble_val": evaluation["ensemble"],
            "agreement": evaluation["agreement"], "train_seconds": train_seconds}


def _teacher_weights(rows: list[dict[str, float]]) -> dict[str, Any]:
    """Mean weight each teacher received over the steps where the policy was asked, and how many."""
    weighted = [r for r in rows if any(key.startswith(m.TEACHER_WEIGHT_PREFIX) for key in r)]
    names = [key[len(m.TEACHER_WEIGHT_PREFIX):] for key in (weighted[0] if weighted else {})
             if key.startswith(m.TEACHER_WEIGHT_PREFIX)]
    return {"teacher_weights": {name: sum(r[m.teacher_weight(name)] for r in weighted) / len(weighted) for name in names},
            "weighted_steps": len(weighted)}


def _second_half_weights(history: list[dict[str, Any]], peer: int, epochs: int) -> dict[str, float]:
    """Mean weight per teacher over the steps of the second half of training (epochs > epochs / 2)."""
    records = [h["peers"][peer] for h in history if h["epoch"] > epochs // 2 and h["peers"][peer]["weighted_steps"]]
    steps = sum(r["weighted_steps"] for r in records)
    names = list(records[0]["teacher_weights"]) if records else []
    return {name: sum(r["teacher_weights"][name] * r["weighted_steps"] for r in records) / steps for name in names}


def _peer_scalars(record: dict[str, Any]) -> list[dict[str, float]]:
    return [{m.VAL_ACCURACY: p["val_accuracy"], m.TRAIN_ACCURACY: p["train_accuracy"],
             m.TRAIN_LOSS_EPOCH: p["train_loss"], m.EXCHANGE_WAIT_EPOCH: p["exchange_wait_seconds"]}
            for p in record["peers"]]


def _summary_line(config: RunConfig, record: dict[str, Any]) -> str:
    peers = "  ".join(f"{p['name']} {100 * p['val_accuracy']:.2f}" for p in record["peers"])
    weights = "; ".join(f"{p['name']}: " + " ".join(f"{name} {w:.2f}" for name, w in p["teacher_weights"].items())
                        for p in record["peers"] if p["teacher_weights"])
    return (f"epoch {record['epoch']}/{config.epochs}  val top-1: {peers}  ensemble "
            f"{100 * record['ensemble_val']:.2f}  agreement {100 * record['agreement']:.1f}%  "
            f"({record['train_seconds']:.1f}s)" + (f"  teacher weights [{weights}]" if weights else ""))


def _best_and_last(values: list[float]) -> dict[str, Any]:
    best = max(range(len(values)), key=lambda i: values[i])
    return {"best_val_accuracy": values[best], "best_epoch": best + 1, "last_val_accuracy": values[-1]}


def _results(config: RunConfig, cohort: Cohort, position: _Position) -> dict[str, Any]:
    history = position.history
    sparsity = cohort.sparsity()
    peers = []
    for k, peer in enumerate(config.peers):
        entry = {"name": peer.name, "model": peer.model,
                 **_best_and_last([h["peers"][k]["val_accuracy"] for h in history]),
                 "teacher_weights": _second_half_weights(history, k, config.epochs)}
        if sparsity[k] is not None:
            entry["sparsity"] = sparsity[k]
        peers.append(entry)
    return {"complete": True, "config": config.to_dict(), "seed": config.seed, "versions": package_versions(),
            "peers": peers, "ensemble": _best_and_last([h["ensemble_val"] for h in history]),
            "history": history, "train_seconds": sum(h["train_seconds"] for h in history),
            "wall_seconds": position.wall_seconds}


def _save_models(run_dir: Path, cohort: Cohort) -> None:
    directory = run_dir / "models"
    directory.mkdir(exist_ok=True)
    for name, blob in zip(cohort.peer_names, cohort.model_bytes()):
        (directory / f"{name}.pt").write_bytes(blob)


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
    """The final console table: best and last validation top-1 of each peer and the ensemble."""
    rows = [(p["name"], p["model"], p["best_val_accuracy"], p["best_epoch"], p["last_val_accuracy"])
            for p in results["peers"]]
    e = results["ensemble"]
    rows.append(("ensemble", "mean softmax", e["best_val_accuracy"], e["best_epoch"], e["last_val_accuracy"]))
    lines = [f"{'peer':<16}{'model':<16}{'best top-1':>11}{'@epoch':>8}{'last top-1':>12}"]
    lines += [f"{n:<16}{m:<16}{100 * b:>10.2f}%{be:>8}{100 * l:>11.2f}%" for n, m, b, be, l in rows]
    return "\n".join(lines)
