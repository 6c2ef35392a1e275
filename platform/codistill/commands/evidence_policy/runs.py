"""The runs of the teacher-selection evidence: per seed, the pool and every offline variant, the
online cohorts, and the side-by-side timing; what each run measured, accumulated per row."""

from __future__ import annotations

import argparse
import json
import statistics
from typing import Any

from codistill.benchmarks.policy import interleaved_epoch_seconds
from codistill.cohort.base import Cohort
from codistill.cohort.offline import OfflineCohort
from codistill.cohort.sequential import SequentialCohort
from codistill.commands.evidence_policy.pool import (
    pool_configs,
    pool_run_dir,
    pool_statistics,
    right_teacher_weight,
    train_pool,
    write_true_labels,
)
from codistill.commands.evidence_policy.variants import (
    CA_MKD,
    OFFLINE,
    ONLINE,
    ORACLE_ROW,
    POOR_PEER,
    SETTING_NAMES,
    SETTINGS,
    UNIFORM,
    policy_override,
    with_labels,
)
from codistill.config import RunConfig
from codistill.evidence import run_dir_for
from codistill.runner import RESULTS_FILE, prepare_run_dir, run_cohort
from codistill.validation import load_config


def record_run(row: dict[str, Any], results: dict[str, Any], learners: list[str]) -> None:
    """Accumulate one run's accuracies, per-peer teacher weights and, for the peers ``learners``
    (those whose learning a setting judges), their mean top-1 and their curves into ``row``."""
    peers = results["peers"]
    row.setdefault("peer_last", []).append(statistics.mean(p["last_val_accuracy"] for p in peers))
    row.setdefault("peer_best", []).append(statistics.mean(p["best_val_accuracy"] for p in peers))
    mine = [p for p in peers if p["name"] in learners]
    row.setdefault("learners_last", []).append(statistics.mean(p["last_val_accuracy"] for p in mine))
    row.setdefault("learners_best", []).append(statistics.mean(p["best_val_accuracy"] for p in mine))
    row.setdefault("curves", []).append(learner_curves(results["history"], learners))
    row.setdefault("ens_last", []).append(results["ensemble"]["last_val_accuracy"])
    row.setdefault("ens_best", []).append(results["ensemble"]["best_val_accuracy"])
    for p in peers:
        for teacher, weight in (p.get("teacher_weights") or {}).items():
            row.setdefault("weights", {}).setdefault(p["name"], {}).setdefault(teacher, []).append(weight)


def learner_curves(history: list[dict[str, Any]], learners: list[str]) -> dict[str, Any]:
    """Per epoch of a run's ``history``: the mean validation top-1 of ``learners`` and the mean
    weight they gave each teacher (None in an epoch where none of them weighted it, e.g. with
    distillation gated off); teachers that are peers in the cohort's order."""
    epochs = [[p for p in epoch["peers"] if p["name"] in learners] for epoch in history]
    order = [p["name"] for p in history[0]["peers"]]
    teachers = sorted(dict.fromkeys(t for peers in epochs for p in peers for t in p["teacher_weights"]),
                      key=lambda t: order.index(t) if t in order else len(order))
    weights: dict[str, list[float | None]] = {teacher: [] for teacher in teachers}
    for peers in epochs:
        for teacher in teachers:
            values = [p["teacher_weights"][teacher] for p in peers if teacher in p["teacher_weights"]]
            weights[teacher].append(statistics.mean(values) if values else None)
    return {"accuracy": [statistics.mean(p["val_accuracy"] for p in peers) for peers in epochs], "weights": weights}


def timed_side_by_side(cohorts: dict[str, Cohort], epochs: int) -> dict[str, list[float]]:
    """:func:`~codistill.benchmarks.policy.interleaved_epoch_seconds` of ``cohorts``, shut down after."""
    try:
        return interleaved_epoch_seconds(cohorts, epochs)
    finally:
        for cohort in cohorts.values():
            cohort.shutdown()


class Evidence:
    """The variants of one invocation, the configs they train and what they measured."""

    def __init__(self, args: argparse.Namespace, runs: dict[str, dict[str, list[str]]], common: list[str]) -> None:
        self.args, self.runs, self.common = args, runs, common
        self.rows: dict[str, dict[str, dict[str, Any]]] = {key: {} for key in SETTINGS.values()}
        self.pool: dict[str, dict[str, list[float]]] = {}
        self.seconds: dict[str, dict[str, list[float]]] = {}
        self.cohort_configs = {ONLINE: args.cohort_config, POOR_PEER: args.poor_peer_config}

    def student(self, overrides: list[str], seed: int, teachers: list[dict[str, str]], probe: bool = True) -> RunConfig:
        return load_config(self.args.student_config, self.args.overrides + (self.common if probe else []) + overrides +
                           [f"seed={seed}", "teachers=" + json.dumps(teachers)], mode="offline")

    def cohort(self, setting: str, overrides: list[str], seed: int) -> RunConfig:
        return load_config(self.cohort_configs[setting],
                           self.args.overrides + self.common + overrides + [f"seed={seed}"])

    def learners(self, setting: str) -> list[str]:
        """The peers whose top-1 a setting judges: the student; every peer; all but the poor one."""
        if setting == OFFLINE:
            # without its teachers, which need not be where the config points (--pool)
            student = load_config(self.args.student_config, self.args.overrides + ["independent=true", "teachers=[]"],
                                  mode="offline")
            return [student.peers[0].name]
        peers = [p.name for p in load_config(self.cohort_configs[setting], self.args.overrides).peers]
        return [name for name in peers if setting == ONLINE or name != self.args.poor_peer]

    def run_seed(self, seed: int) -> list[dict[str, str]]:
        """Every variant of ``seed``: offline, the pool of ``seed`` first and its statistics after;
        the pool (empty without offline variants)."""
        out = self.args.out
        teachers = self.run_offline(seed) if self.runs[OFFLINE] else []
        for setting in (ONLINE, POOR_PEER):
            learners = self.learners(setting)
            for name, overrides in self.runs[setting].items():
                run_dir = run_dir_for(out / SETTING_NAMES[setting], name, seed)
                config = self.cohort(setting, overrides, seed)
                prepare_run_dir(run_dir, config)
                record_run(self.rows[setting].setdefault(name, {}), run_cohort(config, run_dir, SequentialCohort),
                           learners)
        return teachers

    def run_offline(self, seed: int) -> list[dict[str, str]]:
        """The pool of ``seed``, every offline variant trained on it, the pool's statistics; the pool."""
        configs = pool_configs(self.args.pool_configs, seed)
        teachers = train_pool(self.args.pool, configs)
        out = self.args.out
        labels = out / "true-labels" / f"seed{seed}.pt"
        write_true_labels(self.student([policy_override(UNIFORM)], seed, teachers), labels)
        learners = self.learners(OFFLINE)
        for name, overrides in self.runs[OFFLINE].items():
            run_dir = run_dir_for(out / "offline", name, seed)
            config = self.student(with_labels(overrides, labels), seed, teachers)
            prepare_run_dir(run_dir, config)
            row = self.rows[OFFLINE].setdefault(name, {})
            record_run(row, run_cohort(config, run_dir, OfflineCohort), learners)
            row.setdefault("right_weight", []).append(right_teacher_weight(config, run_dir))

        # Without the probe slice: the statistics cover every training example of the seed.
        camkd = run_dir_for(out / "offline", "CA-MKD", seed) / "models" / "student.pt"
        stats = pool_statistics(OfflineCohort(self.student([policy_override(CA_MKD)], seed, teachers, probe=False)),
                                camkd if camkd.is_file() else None)
        for teacher in teachers:
            results = json.loads((pool_run_dir(self.args.pool, seed, teacher["name"]) / RESULTS_FILE).read_text())
            stats[teacher["name"]]["val"] = results["peers"][0]["last_val_accuracy"]
        for teacher, values in stats.items():
            for key, value in values.items():
                self.pool.setdefault(teacher, {}).setdefault(key, []).append(value)
        return teachers

    def time_epochs(self, seed: int, teachers: list[dict[str, str]], epochs: int) -> None:
        """Seconds per training epoch of every variant of ``seed``, measured side by side."""
        labels = self.args.out / "true-labels" / f"seed{seed}.pt"
        timed = {name: overrides for name, overrides in self.runs[OFFLINE].items() if name != ORACLE_ROW}
        if timed:
            self.seconds[OFFLINE] = timed_side_by_side(
                {name: OfflineCohort(self.student(with_labels(overrides, labels), seed, teachers))
                 for name, overrides in timed.items()}, epochs)
        for setting in (ONLINE, POOR_PEER):
            if self.runs[setting]:
                self.seconds[setting] = timed_side_by_side(
                    {name: SequentialCohort(self.cohort(setting, overrides, seed))
                     for name, overrides in self.runs[setting].items()}, epochs)
