"""Teacher selection under label noise: uniform weights, CA-MKD and the learned policy, offline
with a pool of frozen teachers that holds a memorizer, and online in the default cohort.
The README's "Learned teacher policy" tables.

    python jobs/evidence_policy.py --seeds 0 1 2
    python jobs/evidence_policy.py --seeds 0 1 2 --pretrained POLICY_FILE   # adds the pretrained rows

For every seed, first the pool of ``jobs/configs/pool_*.yaml`` is trained on that seed's data —
the memorizer has to have fitted the very noisy labels the student sees — and kept in ``--pool``
(reused when present). Then, on identical data and batches, the ResNet-8 student of
``jobs/configs/digits_pool_offline.yaml`` is distilled from the pool with each policy, and the
cohort of ``jobs/configs/digits_cohort.yaml`` (sequential backend, same results as Ray) trains
with uniform weights and with the learned policy. Torch uses ``--threads`` threads (default 1,
which avoids oversubscribing a shared machine).

The learned policy (``--policy``, default ``policies.learned:LearnedPolicy``) gets
``{learn: true}`` while it learns during the run, ``{checkpoint: FILE, learn: false}`` when it
starts frozen from ``--pretrained FILE``, ``{checkpoint: FILE, learn: true}`` when it starts from
it and keeps learning, plus any ``--policy-param KEY=VALUE``. Its variants run only when the
class can be imported; otherwise they are skipped with a message. When they run, every variant,
uniform and CA-MKD included, holds out the same probe slice (``data.probe_fraction``), so all of
them train on the same examples.

Prints Markdown tables: the pool (validation top-1; on the training split as the student sees
it, augmented: accuracy against the noisy and the true labels, and the mean CA-MKD weight of each
teacher over all examples and over those with a flipped label); the student's top-1 at the last
and at the best epoch and the mean weight each teacher got over the second half of training
(``teacher_weights`` of ``results.json``; "n/a" where a run does not record it); the cohort's mean
peer and ensemble top-1; the median seconds per training epoch of every variant and its ratio to
uniform weights, timed on the first seed with the variants taking turns epoch by epoch.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

import _bootstrap  # noqa: F401
import torch
import yaml
from codistill.evidence import add_common_arguments, fresh_output, mean_std, run_dir_for, selected, table, write_summary

from codistill.cohort_base import Cohort
from codistill.config import RunConfig, apply_override, load_config
from codistill.errors import ConfigError
from codistill.local import OfflineCohort
from codistill.offline import load_network
from codistill.peer import PeerTrainer
from codistill.progress import Progress
from codistill.runner import CONFIG_FILE, RESULTS_FILE, prepare_run_dir, run_cohort
from codistill.local import SequentialCohort
from codistill.policy import TeacherBatch
from codistill.registry import POLICIES

POOL_CONFIGS = ["jobs/configs/pool_clean.yaml", "jobs/configs/pool_memorizer.yaml", "jobs/configs/pool_weak.yaml"]
CA_MKD = "policies.confidence:ConfidenceAwarePolicy"
UNIFORM = "uniform"
OFFLINE, ONLINE = "offline", "online cohort"
AUGMENTED_VIEWS = 8


def policy_override(name: str, params: dict[str, Any] | None = None) -> str:
    """``distillation.policy={name: ..., params: {...}}`` (JSON, which is YAML)."""
    return "distillation.policy=" + json.dumps({"name": name, "params": params or {}})


def learned_policy_available(policy: str) -> bool:
    """Whether ``policy`` can be imported; says why not when it cannot."""
    try:
        POLICIES.get(policy)
    except (ImportError, AttributeError, KeyError) as error:
        print(f"learned-policy variants SKIPPED: cannot load '{policy}' ({error})", flush=True)
        return False
    return True


def variants(args: argparse.Namespace, learned: bool) -> dict[str, dict[str, list[str]]]:
    """Per setting (offline, online cohort): policy variant name → config overrides."""
    offline = {UNIFORM: [policy_override(UNIFORM)], "CA-MKD": [policy_override(CA_MKD)]}
    online = {UNIFORM: [policy_override(UNIFORM)]}
    if learned:
        extra = dict(args.policy_params)
        during = [policy_override(args.policy, {**extra, "learn": True})]
        offline["learned, learning during the run"] = during
        online["learned, learning during the run"] = during
        if args.pretrained is not None:
            start = {**extra, "checkpoint": str(args.pretrained)}
            offline["learned, pretrained, frozen"] = [policy_override(args.policy, {**start, "learn": False})]
            offline["learned, pretrained, still learning"] = [policy_override(args.policy, {**start, "learn": True})]
        else:
            print("pretrained-policy variants SKIPPED: pass --pretrained FILE (a policy saved by "
                  "jobs/train_policy.py)", flush=True)
    return {OFFLINE: selected(offline, args.only), ONLINE: selected(online, args.only)}


# ---------------------------------------------------------------------------------------------
# The pool


def pool_run_dir(pool_dir: Path, seed: int, name: str) -> Path:
    return pool_dir / f"seed{seed}" / name


def pool_configs(paths: list[str], seed: int) -> list[RunConfig]:
    return [load_config(path, ["independent=true", f"seed={seed}"], mode="offline") for path in paths]


def train_pool(pool_dir: Path, configs: list[RunConfig]) -> list[dict[str, str]]:
    """Train each pool teacher alone (or reuse a finished run of the same config); the
    ``teachers`` entries of a student config that point at them."""
    teachers = []
    for config in configs:
        name = config.peers[0].name
        run_dir = pool_run_dir(pool_dir, config.seed, name)
        saved = run_dir / CONFIG_FILE
        if saved.exists() and yaml.safe_load(saved.read_text()) != yaml.safe_load(yaml.safe_dump(config.to_dict())):
            raise SystemExit(f"{run_dir} holds a teacher trained with another config: remove it or pass another --pool")
        if not (run_dir / RESULTS_FILE).exists():
            resume = (run_dir / "checkpoints").is_dir()
            if not resume:
                prepare_run_dir(run_dir, config)
            run_cohort(config, run_dir, OfflineCohort, resume=resume)
        teachers.append({"name": name, "model": config.peers[0].model,
                         "checkpoint": str(run_dir / "models" / f"{name}.pt")})
    return teachers


@torch.no_grad()
def pool_statistics(camkd: PeerTrainer, teachers: list[dict[str, str]],
                    student: Path | None) -> dict[str, dict[str, float]]:
    """Per teacher, on the training split of the CA-MKD student ``camkd`` as the student sees it
    (``AUGMENTED_VIEWS`` seeded augmentations of every example when the student trains with
    augmentation): top-1 against the noisy and the true labels and, with that run's final network
    ``student``, the mean weight its CA-MKD policy gives each teacher over all examples and over
    those whose label was flipped."""
    dataset, config = camkd.dataset, camkd.config
    everything = torch.arange(dataset.info.train_size)
    views = AUGMENTED_VIEWS if config.data.augment else 1
    batches = [dataset.train_batch(everything, torch.Generator().manual_seed(view), augment=config.data.augment)
               for view in range(views)]
    images, noisy = torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches])
    clean = dataset.clean_train_labels.repeat(views)
    logits = torch.stack([load_network(t["checkpoint"])(images).logits.float() for t in teachers])  # [K, N, C]
    predicted = logits.argmax(-1)
    flipped = noisy != clean
    stats = {t["name"]: {"train_noisy": float((predicted[k] == noisy).float().mean()),
                         "train_true": float((predicted[k] == clean).float().mean())}
             for k, t in enumerate(teachers)}
    if student is not None:
        steps = dataset.steps_per_epoch(config.data.batch_size)
        batch = TeacherBatch(student_index=0, student_logits=load_network(student)(images).logits.float(),
                             teacher_logits=logits, teacher_indices=list(range(len(teachers))), targets=noisy,
                             progress=Progress(epoch=config.epochs, step=0, steps_per_epoch=steps,
                                               total_epochs=config.epochs))
        weights = camkd.policy.weights(batch)  # [N, K]
        for k, t in enumerate(teachers):
            stats[t["name"]].update(camkd_all=float(weights[:, k].mean()),
                                    camkd_flipped=float(weights[flipped, k].mean()))
    return stats


# ---------------------------------------------------------------------------------------------
# Students and cohorts


def record_run(row: dict[str, Any], results: dict[str, Any]) -> None:
    """Accumulate one run's accuracies and per-peer teacher weights into ``row``."""
    peers = results["peers"]
    row.setdefault("peer_last", []).append(statistics.mean(p["last_val_accuracy"] for p in peers))
    row.setdefault("peer_best", []).append(statistics.mean(p["best_val_accuracy"] for p in peers))
    row.setdefault("ens_last", []).append(results["ensemble"]["last_val_accuracy"])
    row.setdefault("ens_best", []).append(results["ensemble"]["best_val_accuracy"])
    for p in peers:
        for teacher, weight in (p.get("teacher_weights") or {}).items():
            row.setdefault("weights", {}).setdefault(p["name"], {}).setdefault(teacher, []).append(weight)


def interleaved_epoch_seconds(configs: dict[str, RunConfig], make_cohort: Callable[[RunConfig], Cohort],
                              epochs: int) -> dict[str, list[float]]:
    """Seconds of ``epochs`` training epochs of every config, after one warm-up epoch each, the
    variants taking turns epoch by epoch so that they share the machine's load alike."""
    cohorts = {name: make_cohort(config) for name, config in configs.items()}
    seconds: dict[str, list[float]] = {name: [] for name in cohorts}
    try:
        for epoch in range(epochs + 1):
            for name, cohort in cohorts.items():
                started = time.perf_counter()
                cohort.train_epoch(epoch)
                if epoch > 0:
                    seconds[name].append(time.perf_counter() - started)
    finally:
        for cohort in cohorts.values():
            cohort.shutdown()
    return seconds


def weight_mean_std(values: list[float] | None) -> str:
    """``mean ± sample std`` of teacher weights in [0, 1]; "n/a" when none were recorded."""
    if not values:
        return "n/a"
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.3f} ± {spread:.3f}"


def weight_cell(row: dict[str, Any], peer: str, teacher: str) -> str:
    return weight_mean_std(row.get("weights", {}).get(peer, {}).get(teacher))


def validate_everything(args: argparse.Namespace, runs: dict[str, dict[str, list[str]]], common: list[str]) -> None:
    """Load every config before anything is trained, so a bad override fails first (the
    offline student without its teachers, which do not exist yet)."""
    pool_configs(args.pool_configs, args.seeds[0])
    for overrides in runs[OFFLINE].values():
        load_config(args.student_config, args.overrides + common + overrides + ["independent=true", "teachers=[]"],
                    mode="offline")
    for overrides in runs[ONLINE].values():
        load_config(args.cohort_config, args.overrides + common + overrides)


def parse_policy_params(pairs: list[str]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for pair in pairs:
        apply_override(params, pair)
    return params


class Evidence:
    """The variants of one invocation, the configs they train and what they measured."""

    def __init__(self, args: argparse.Namespace, runs: dict[str, dict[str, list[str]]], common: list[str]) -> None:
        self.args, self.runs, self.common = args, runs, common
        self.rows: dict[str, dict[str, dict[str, Any]]] = {OFFLINE: {}, ONLINE: {}}
        self.pool: dict[str, dict[str, list[float]]] = {}
        self.seconds: dict[str, dict[str, list[float]]] = {}

    def student(self, overrides: list[str], seed: int, teachers: list[dict[str, str]], probe: bool = True) -> RunConfig:
        return load_config(self.args.student_config, self.args.overrides + (self.common if probe else []) + overrides +
                           [f"seed={seed}", "teachers=" + json.dumps(teachers)], mode="offline")

    def cohort(self, overrides: list[str], seed: int) -> RunConfig:
        return load_config(self.args.cohort_config, self.args.overrides + self.common + overrides + [f"seed={seed}"])

    def run_seed(self, seed: int) -> list[dict[str, str]]:
        """The pool of ``seed``, every variant trained on it, the pool's statistics; the pool."""
        configs = pool_configs(self.args.pool_configs, seed)
        teachers = train_pool(self.args.pool, configs)
        out = self.args.out
        for name, overrides in self.runs[OFFLINE].items():
            run_dir = run_dir_for(out / "offline", name, seed)
            config = self.student(overrides, seed, teachers)
            prepare_run_dir(run_dir, config)
            record_run(self.rows[OFFLINE].setdefault(name, {}), run_cohort(config, run_dir, OfflineCohort))
        for name, overrides in self.runs[ONLINE].items():
            run_dir = run_dir_for(out / "online", name, seed)
            config = self.cohort(overrides, seed)
            prepare_run_dir(run_dir, config)
            record_run(self.rows[ONLINE].setdefault(name, {}), run_cohort(config, run_dir, SequentialCohort))

        # Without the probe slice: the statistics cover every training example of the seed.
        camkd = run_dir_for(out / "offline", "CA-MKD", seed) / "models" / "student.pt"
        stats = pool_statistics(PeerTrainer(self.student([policy_override(CA_MKD)], seed, teachers, probe=False), 0),
                                teachers, camkd if camkd.is_file() else None)
        for teacher in teachers:
            results = json.loads((pool_run_dir(self.args.pool, seed, teacher["name"]) / RESULTS_FILE).read_text())
            stats[teacher["name"]]["val"] = results["peers"][0]["last_val_accuracy"]
        for teacher, values in stats.items():
            for key, value in values.items():
                self.pool.setdefault(teacher, {}).setdefault(key, []).append(value)
        return teachers

    def time_epochs(self, seed: int, teachers: list[dict[str, str]], epochs: int) -> None:
        """Seconds per training epoch of every variant of ``seed``, measured side by side."""
        self.seconds[OFFLINE] = interleaved_epoch_seconds(
            {name: self.student(overrides, seed, teachers) for name, overrides in self.runs[OFFLINE].items()},
            OfflineCohort, epochs)
        self.seconds[ONLINE] = interleaved_epoch_seconds(
            {name: self.cohort(overrides, seed) for name, overrides in self.runs[ONLINE].items()},
            SequentialCohort, epochs)

    def tables(self) -> str:
        sections = [table(["teacher", "val top-1, last", "train top-1 vs noisy labels", "train top-1 vs true labels",
                           "CA-MKD weight, all training examples", "CA-MKD weight, flipped labels"],
                          [[name, mean_std(v["val"]), mean_std(v["train_noisy"]), mean_std(v["train_true"]),
                            weight_mean_std(v.get("camkd_all")), weight_mean_std(v.get("camkd_flipped"))]
                           for name, v in self.pool.items()])]
        if self.rows[OFFLINE]:
            names = list(self.pool)
            student = load_config(self.args.student_config, self.args.overrides, mode="offline").peers[0].name
            sections.append(table(["offline: policy", "student top-1, last", "student top-1, best"]
                                  + [f"weight {t}, 2nd half" for t in names],
                                  [[name, mean_std(r["peer_last"]), mean_std(r["peer_best"])]
                                   + [weight_cell(r, student, t) for t in names]
                                   for name, r in self.rows[OFFLINE].items()]))
        if self.rows[ONLINE]:
            sections.append(table(["online cohort: policy", "mean peer top-1, last", "mean peer top-1, best",
                                   "ensemble top-1, last", "ensemble top-1, best"],
                                  [[name, mean_std(r["peer_last"]), mean_std(r["peer_best"]), mean_std(r["ens_last"]),
                                    mean_std(r["ens_best"])] for name, r in self.rows[ONLINE].items()]))
            peers = [p.name for p in load_config(self.args.cohort_config, self.args.overrides).peers]
            sections.append(table(["online cohort: policy", "peer"] + [f"weight {t}, 2nd half" for t in peers],
                                  [[name, peer] + [weight_cell(r, peer, t) for t in peers]
                                   for name, r in self.rows[ONLINE].items() for peer in peers]))
        timing = []
        for setting, measured in self.seconds.items():
            reference = statistics.median(measured[UNIFORM]) if UNIFORM in measured else None
            for name, seconds in measured.items():
                median = statistics.median(seconds)
                timing.append([setting, name, f"{median:.3f}", f"{median / reference:.2f}×" if reference else "n/a"])
        if timing:
            sections.append(table(["setting", "policy", "s / training epoch (median)", "× uniform"], timing))
        return "\n\n".join(sections)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--student-config", default="jobs/configs/digits_pool_offline.yaml")
    parser.add_argument("--cohort-config", default="jobs/configs/digits_cohort.yaml")
    parser.add_argument("--pool-configs", nargs="+", default=POOL_CONFIGS, help="one teacher each, trained alone")
    parser.add_argument("--pool", type=Path, default=Path("runs/policy-pool"), help="where the pool is kept and reused")
    parser.add_argument("--policy", default="policies.learned:LearnedPolicy", help="the learned policy class")
    parser.add_argument("--policy-param", dest="policy_params", action="append", default=[], metavar="KEY=VALUE",
                        help="extra parameter of the learned policy (repeatable)")
    parser.add_argument("--pretrained", type=Path, help="a saved policy to start from (jobs/train_policy.py)")
    parser.add_argument("--probe-fraction", type=float, default=0.1,
                        help="data.probe_fraction of every variant when the learned policy runs (0: none)")
    parser.add_argument("--timing-epochs", type=int, default=10,
                        help="epochs per variant timed side by side, first seed (0: no timing)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1 avoids oversubscribing a shared machine)")
    add_common_arguments(parser, "runs/evidence-policy")
    args = parser.parse_args(argv)
    args.policy_params = parse_policy_params(args.policy_params)
    if args.pretrained is not None and not args.pretrained.is_file():
        raise SystemExit(f"--pretrained: no such file: {args.pretrained}")

    learned = learned_policy_available(args.policy)
    runs = variants(args, learned)
    common = [f"data.probe_fraction={args.probe_fraction}"] if learned and args.probe_fraction > 0 else []
    try:
        validate_everything(args, runs, common)
    except ConfigError as error:
        print(f"codistill: {error}", file=sys.stderr)
        return 2
    fresh_output(args.out)
    torch.set_num_threads(args.threads)

    evidence = Evidence(args, runs, common)
    pools = [evidence.run_seed(seed) for seed in args.seeds]
    if args.timing_epochs > 0:
        evidence.time_epochs(args.seeds[0], pools[0], args.timing_epochs)
    heading = (f"; pool kept in {args.pool}; learned policy {'run' if learned else 'skipped'}"
               + "".join(f"; every variant with {override}" for override in common)
               + (f"; timing: {args.timing_epochs} epochs per variant after a warm-up, taking turns, "
                  f"seed {args.seeds[0]}, {args.threads} torch thread(s)" if args.timing_epochs > 0 else ""))
    write_summary(args.out, args.seeds, heading, evidence.tables(),
                  {"pool": evidence.pool, "rows": evidence.rows, "epoch_seconds": evidence.seconds})
    return 0


if __name__ == "__main__":
    sys.exit(main())
