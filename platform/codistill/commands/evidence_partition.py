"""Codistillation over shards and the teacher policy where peers know different things.

    python jobs/evidence_partition.py --config jobs/configs/fashion_partition.yaml --seeds 0 1 2
    python jobs/evidence_partition.py --config jobs/configs/digits_dirichlet.yaml --set data.probe_fraction=0.1 \
        --settings "α = 0.1" --seeds 0 --out runs/evidence-partition-digits

Every run trains the config's cohort on the sequential backend (Ray gives the same numbers,
tested; ``--jobs`` runs at a time, each in its own process), each peer on its own shard
(``data.partition``), distilling from replicas of the others on its own batch. Settings
(``--settings`` picks some by name, ``--only`` rows by name):

- ``iid`` shards: independent training on one shard (CE only), codistillation with uniform
  weights, and the centralized reference: each network trained alone on the union of the shards
  (``partition: shared``, as many examples per epoch as the union holds; with
  ``data.shared_fraction`` the union also holds the shared slice, with its labels);
- ``dirichlet`` α = 0.1 and α = 1.0 with the config's labels, and α = 0.1 with 40% symmetric label
  noise within each shard: independent, codistillation with uniform weights, CA-MKD
  (``policies.confidence``), the learned policy at its defaults (``policies.learned``) and the label
  oracle (``policies.oracle``: each example's weight on the teachers that predict its true label;
  the job writes each peer's true labels to ``OUT/true-labels/``).

The rows of a setting and seed train on identical data: the same shards, the same probe slice
(the config's ``data.probe_fraction``, held out in every row so that the learned policy's rows
see no other examples), the same batches; they differ only in the distillation. Prints mean ± std
over seeds of the mean peer and the ensemble top-1 on the test split where the data have one
(Fashion-MNIST: the official 10,000; else last-epoch validation), each row's difference to uniform
(the learned policy's share of the oracle's headroom, (learned − uniform) / (oracle − uniform),
per seed), and writes per-seed numbers to ``summary.json``. With matplotlib (the ``evidence``
extra) it draws ``teacher_weights.png``: for the first dirichlet setting, each teacher's mean
weight (tapped from the policies as they train, every step, normalized per example) against the
true class of the example, learned policy and oracle, over each teacher's share of
the class's training examples.
"""

from __future__ import annotations

import argparse
import io
import multiprocessing
import statistics
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import torch

from codistill.cohort.sequential import SequentialCohort
from codistill.commands.evidence_policy.pool import true_labels, write_true_labels
from codistill.commands.evidence_replicas import record
from codistill.config import RunConfig
from codistill.data import data_shape, has_test_split, split_description
from codistill.evidence import (
    add_common_arguments,
    fresh_output,
    mean_std,
    plotting_available,
    run_dir_for,
    selected,
    table,
    write_summary,
)
from codistill.monitoring import ConsoleProgress
from codistill.peer import PeerTrainer
from codistill.peer.teachers import normalized_weights
from codistill.runner import prepare_run_dir, run_cohort
from codistill.validation import load_config

INDEPENDENT = "independent (own shard, CE only)"
UNIFORM = "codistillation, uniform weights"
CENTRALIZED = "each network alone on the union (centralized)"
CA_MKD = "codistillation, CA-MKD"
LEARNED = "codistillation, learned policy"
ORACLE = "codistillation, label oracle (ceiling)"
#: The policies whose weights are tapped for the picture.
PICTURED = (LEARNED, ORACLE)

SETTINGS: dict[str, list[str]] = {
    "iid": ["data.partition={kind: iid}"],
    "dirichlet α = 0.1": ["data.partition={kind: dirichlet, alpha: 0.1}"],
    "dirichlet α = 1.0": ["data.partition={kind: dirichlet, alpha: 1.0}"],
    "dirichlet α = 0.1, 40% label noise": ["data.partition={kind: dirichlet, alpha: 0.1}", "data.label_noise=0.4"],
}


def policy(name: str, params: str = "{}") -> str:
    """The override that sets ``distillation.policy`` to ``name`` with ``params`` (YAML)."""
    return f'distillation.policy={{name: "{name}", params: {params}}}'


def rows_of(setting: str, labels: Path) -> dict[str, list[str]]:
    """The rows of a setting: name → overrides (``labels``: the oracle's file of true labels, written
    by :func:`selected_rows`)."""
    if setting == "iid":
        return {INDEPENDENT: ["independent=true"], UNIFORM: [],
                CENTRALIZED: ["independent=true", "data.partition={kind: shared}", "data.shared_fraction=0.0"]}
    return {INDEPENDENT: ["independent=true"], UNIFORM: [],
            CA_MKD: [policy("policies.confidence:ConfidenceAwarePolicy")],
            LEARNED: [policy("policies.learned:LearnedPolicy")],
            ORACLE: [policy("policies.oracle:LabelOraclePolicy", f'{{labels: "{labels}"}}')]}


def selected_rows(setting: str, only: list[str] | None, config: RunConfig, labels: Path) -> dict[str, list[str]]:
    """The rows of ``setting`` that ``only`` picks by name; writes the true labels of ``config`` (the
    setting's data) to ``labels`` when the oracle is among them."""
    rows = selected(rows_of(setting, labels), only)
    if ORACLE in rows:
        write_true_labels(config, labels)
    return rows


class WeightsByClass:
    """Each teacher's summed weight (normalized per example) and example count per class, over
    every step of the students whose policies are tapped (:meth:`tap`)."""

    def __init__(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.sums: dict[str, torch.Tensor] = {}
        self.counts: dict[str, torch.Tensor] = {}

    def tap(self, trainer: PeerTrainer) -> None:
        """Record the weights ``trainer``'s policy returns, by the true class of each example (the
        shared slice's too), leaving them as they are."""
        weights_of, names, truth = trainer.policy.weights, trainer.slots.names, true_labels(trainer.dataset)

        def recorded(batch: Any) -> torch.Tensor:
            raw = weights_of(batch)
            weights = normalized_weights(raw.detach(), len(batch.teacher_indices), batch.targets.numel()).cpu()
            classes = truth[batch.example_indices.cpu()]
            for column, position in enumerate(batch.teacher_indices):
                name = names[position]
                self.sums.setdefault(name, torch.zeros(self.num_classes, dtype=torch.float64))
                self.counts.setdefault(name, torch.zeros(self.num_classes, dtype=torch.float64))
                self.sums[name].index_add_(0, classes, weights[:, column].double())
                self.counts[name].index_add_(0, classes, torch.ones_like(classes, dtype=torch.float64))
            return raw

        trainer.policy.weights = recorded

    def add(self, other: WeightsByClass) -> None:
        """Fold in what ``other`` recorded (a run in another process)."""
        for name in other.sums:
            self.sums[name] = self.sums.get(name, 0) + other.sums[name]
            self.counts[name] = self.counts.get(name, 0) + other.counts[name]

    def means(self) -> dict[str, list[float]]:
        """Teacher → its mean weight on the examples of each class (NaN: no such example)."""
        return {name: (self.sums[name] / self.counts[name]).tolist() for name in sorted(self.sums)}


def train(config: RunConfig, run_dir: Path, tapped: bool) -> tuple[dict, int, WeightsByClass | None]:
    """One run (sequential backend): its results, steps per epoch and, if ``tapped``, its policies' weights."""
    weights = WeightsByClass(data_shape(config.data).num_classes) if tapped else None
    prepare_run_dir(run_dir, config)
    cohorts: list[SequentialCohort] = []

    def make(c: RunConfig) -> SequentialCohort:
        cohorts.append(SequentialCohort(c))
        if weights is not None:
            for trainer in cohorts[-1].peers:
                weights.tap(trainer)
        return cohorts[-1]

    results = run_cohort(config, run_dir, make, progress=ConsoleProgress(config.epochs, 1e9, io.StringIO()))
    return results, cohorts[0].steps_per_epoch(), weights


def trained(calls: list[tuple[RunConfig, Path, bool]], jobs: int) -> Iterator[tuple[dict, int, WeightsByClass | None]]:
    """:func:`train` of each call, in order: in this process, or ``jobs`` at a time in their own processes."""
    if jobs == 1:
        yield from (train(*call) for call in calls)
        return
    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        yield from (future.result() for future in [pool.submit(train, *call) for call in calls])


def shard_shares(results: dict) -> dict[str, list[float]]:
    """Each peer's share of every class's training examples (its ``class_counts`` over the cohort's)."""
    counts = {p["name"]: torch.tensor(p["class_counts"], dtype=torch.float64) for p in results["peers"]}
    total = sum(counts.values()).clamp_min(1)
    return {name: (count / total).tolist() for name, count in counts.items()}


def headroom_shares(rows: dict[str, dict[str, list[float]]], key: str) -> list[float | None]:
    """Per seed, the learned policy's share of the oracle's headroom over uniform (None: no headroom)."""
    shares = []
    for learned, uniform, oracle in zip(rows[LEARNED][key], rows[UNIFORM][key], rows[ORACLE][key]):
        shares.append((learned - uniform) / (oracle - uniform) if oracle != uniform else None)
    return shares


def setting_table(rows: dict[str, dict[str, list[float]]], key: str, named: str) -> str:
    """One setting's rows: mean peer and ensemble top-1, the difference to uniform, seconds per epoch."""
    uniform = statistics.mean(rows[UNIFORM][f"peer_{key}"]) if UNIFORM in rows else None
    return table(
        ["training", f"mean peer top-1, {named}", f"ensemble top-1, {named}", f"Δ mean peer vs uniform, {named}",
         "s/epoch"],
        [[name, mean_std(r[f"peer_{key}"]), mean_std(r[f"ens_{key}"]),
          "" if uniform is None else f"{100 * (statistics.mean(r[f'peer_{key}']) - uniform):+.2f}",
          f"{statistics.mean(r['seconds_per_epoch']):.2f}"] for name, r in rows.items()])


def headroom_line(rows: dict[str, dict[str, list[float]]], key: str) -> str:
    """The learned policy against uniform, the oracle and CA-MKD, per seed."""
    if not all(name in rows for name in (LEARNED, UNIFORM, ORACLE)):
        return ""
    learned = rows[LEARNED][f"peer_{key}"]
    shares = ", ".join("n/a" if s is None else f"{100 * s:.0f}%" for s in headroom_shares(rows, f"peer_{key}"))
    line = f"\n\nLearned policy, per seed: share of the oracle's headroom {shares}"
    for name, label in ((UNIFORM, "uniform"), (CA_MKD, "CA-MKD")):
        if name in rows:
            gaps = (f"{100 * (a - b):+.2f}" for a, b in zip(learned, rows[name][f"peer_{key}"]))
            line += f"; vs {label} " + ", ".join(gaps)
    return line + " (mean peer)."


def plot_weights(path: Path, title: str, weights: dict[str, dict[str, list[float]]],
                 shares: dict[str, list[float]]) -> None:
    """A PNG at ``path``: per teacher, its mean weight against the example's class for each tapped
    row (lines), over the teacher's share of that class's training examples (grey bars). Needs matplotlib."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    teachers = list(shares)
    figure, axes = pyplot.subplots(1, len(teachers), figsize=(3.4 * len(teachers), 3.4), squeeze=False)
    for axis, teacher in zip(axes[0], teachers):
        classes = range(len(shares[teacher]))
        axis.bar(classes, shares[teacher], color="0.85", label="its share of the class's training examples")
        for name, by_teacher in weights.items():
            if teacher in by_teacher:
                axis.plot(classes, by_teacher[teacher], marker="o", label=name)
        axis.set(title=f"teacher {teacher}", xlabel="class of the example", ylim=(-0.02, 1.02), xticks=list(classes))
    axes[0][0].set(ylabel="mean weight")
    handles, labels = axes[0][0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="lower center", ncol=3, fontsize="small", frameon=False)
    figure.suptitle(title)
    figure.tight_layout(rect=(0, 0.1, 1, 1))
    figure.savefig(path, dpi=110)
    pyplot.close(figure)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="jobs/configs/fashion_partition.yaml")
    parser.add_argument("--settings", nargs="*", help="run only the settings whose name contains one of these")
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time, each in its own process")
    add_common_arguments(parser, "runs/evidence-partition")
    args = parser.parse_args(argv)
    base = load_config(args.config, args.overrides)  # a config error stops the job before anything is written
    fresh_output(args.out)
    key, named = ("test", "test") if has_test_split(base.data) else ("last", "val last")
    settings = selected(SETTINGS, args.settings)
    pictured = next((setting for setting in settings if setting.startswith("dirichlet")), None)

    results: dict[str, dict[str, dict[str, list[float]]]] = {}
    weights: dict[str, WeightsByClass] = {name: WeightsByClass(data_shape(base.data).num_classes) for name in PICTURED}
    shares: list[dict[str, list[float]]] = []
    runs: list[tuple[str, int, str, RunConfig]] = []  # setting, seed, row, config: in the order of the tables
    for setting, data in settings.items():
        for seed in args.seeds:
            common = args.overrides + data + [f"seed={seed}"]
            rows = selected_rows(setting, args.only, load_config(args.config, common),
                                 args.out / "true-labels" / f"{run_dir_for(args.out, setting, seed).name}.pt")
            runs += [(setting, seed, name, load_config(args.config, common + overrides))
                     for name, overrides in rows.items()]
    calls = [(config, run_dir_for(args.out, f"{setting} {name}", seed), setting == pictured and name in PICTURED)
             for setting, seed, name, config in runs]
    for (setting, seed, name, config), (run, steps, tapped) in zip(runs, trained(calls, args.jobs)):
        record(results.setdefault(setting, {}).setdefault(name, {}), run, config, steps)
        if tapped is not None:
            weights[name].add(tapped)
        if setting == pictured and name == UNIFORM:
            shares.append(shard_shares(run))
        print(f"{setting}, {name}, seed {seed}: mean peer {100 * results[setting][name][f'peer_{key}'][-1]:.2f}"
              f", ensemble {100 * results[setting][name][f'ens_{key}'][-1]:.2f} ({named})", flush=True)

    body = "\n\n".join(f"**{setting}**\n\n{setting_table(rows, key, named)}{headroom_line(rows, key)}"
                       for setting, rows in results.items())
    tapped = {name: w.means() for name, w in weights.items() if w.sums}
    raw = {"config": args.config, "overrides": args.overrides, "settings": results,
           "headroom_shares": {s: headroom_shares(r, f"peer_{key}") for s, r in results.items() if LEARNED in r
                               and UNIFORM in r and ORACLE in r},
           "teacher_weights_by_class": {"setting": pictured, "rows": tapped}}
    write_summary(args.out, args.seeds, "; sequential backend; each peer on its own shard", body, raw,
                  measure=split_description(base.data))
    if tapped and shares:
        if plotting_available():
            mean_shares = {t: torch.tensor([s[t] for s in shares]).mean(0).tolist() for t in shares[0]}
            plot_weights(args.out / "teacher_weights.png", f"{base.name}, {pictured}: weight per teacher and class",
                         tapped, mean_shares)
        else:
            print("matplotlib is not installed (the evidence extra): teacher_weights.png skipped")
    return 0
