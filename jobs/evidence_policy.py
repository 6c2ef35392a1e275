"""Teacher selection: uniform weights, CA-MKD, fixed weightings, the learned policy and the label
oracle, offline with a pool of frozen teachers, online in the default cohort and in a cohort with
one poor teacher. The README's "Learned teacher policy" tables and docs/policies.md's.

    python jobs/evidence_policy.py --seeds 0 1 2                            # the memorizer pool
    python jobs/evidence_policy.py --seeds 0 1 2 --pool-kind specialist --settings offline
    python jobs/evidence_policy.py --seeds 0 1 2 --pretrained POLICY_FILE   # adds the pretrained rows
    python jobs/evidence_policy.py --seeds 0 1 2 --settings online-poor-peer

Two pools (``--pool-kind``): ``memorizer`` (``jobs/configs/pool_{clean,memorizer,weak}.yaml``: a
teacher trained on the true labels, one that fitted the noisy labels, one trained 3 epochs) and
``specialist`` (``jobs/configs/pool_specialist_{low,high}.yaml``: each trained on the true labels
of half of the classes only, and confidently wrong on the other half). For every seed, first the
pool is trained on that seed's data — the memorizer has to have fitted the very noisy labels the
student sees — and kept in ``--pool`` (reused when present). Then, on identical data and batches,
the ResNet-8 student of ``jobs/configs/digits_pool_offline.yaml`` (50% of digits, 40% symmetric
label noise) is distilled from the pool with each policy, and (``--settings``) the cohort of
``jobs/configs/digits_cohort.yaml`` (sequential backend, same results as Ray) trains with uniform
weights and with the learned policy. Torch uses ``--threads`` threads (default 1, which avoids
oversubscribing a shared machine).

Offline rows besides uniform and CA-MKD: fixed weightings (``policies.constant:ConstantPolicy``:
*clean teacher only* on the memorizer pool, a small grid of mixtures on the specialist pool, the
best of which is marked), and the **label oracle** (``policies.oracle:LabelOraclePolicy``), which
weights, per example, the teachers whose prediction is the example's *true* label (the job knows
it: it injected the noise; it writes the training split's true labels to
``OUT/true-labels/seed<N>.pt`` for the oracle to read by example index). The headroom of a seed
is oracle − uniform; a policy is judged by the share of it that it closes, (policy − uniform) /
(oracle − uniform), per seed.

The learned policy (``--policy``, default ``policies.learned:LearnedPolicy``) runs once per
``--learned LABEL=KEY:VALUE,...`` (default: PPO with cross-entropy, head credit with cross-entropy
and with MAE, and network credit with MAE) with ``{learn: true}`` while it learns during the run,
``{checkpoint: FILE, learn: false}`` when it starts frozen from ``--pretrained FILE``,
``{checkpoint: FILE, learn: true}`` when it starts from it and keeps learning, plus any
``--policy-param KEY=VALUE``. Its variants run only when the class can be imported; otherwise
they are skipped with a message. When they run, every variant, uniform and CA-MKD included, holds
out the same probe slice (``data.probe_fraction``, from ``--probe-source``: the noisy training
split or the clean validation split), so all of them train and are validated on the same examples.

Prints Markdown tables: the pool (validation top-1; on the training split as the student sees
it, augmented: accuracy against the noisy and the true labels, and the mean CA-MKD weight of each
teacher over all examples and over those with a flipped label); the student's top-1 at the last
and at the best epoch and the mean weight each teacher got over the second half of training
(``teacher_weights`` of ``results.json``; "n/a" where a run does not record it); the headroom and
the share of it each policy closes, per seed; the cohort's mean peer and ensemble top-1; the
median seconds per training epoch of every variant and its ratio to uniform weights, timed on the
first seed with the variants taking turns epoch by epoch.

``--settings online-poor-peer`` trains the cohort of ``--poor-peer-config`` (default
``jobs/configs/digits_cohort_poor_peer.yaml``), where one peer (``--poor-peer``, default ``poor``)
is a poor teacher for the others, with uniform weights, the learned policy at its default
parameters, and the ceiling that leaves the poor peer out as a teacher (``ConstantPolicy``, weight
0 for it, 1 for every other candidate). It is judged by the mean top-1 of the *other* peers, with
the headroom leave-out − uniform and the share of it closed, per seed. The pool is trained only
for the offline setting.

Every setting that ran is drawn in ``OUT/policy_<setting>.png``: per teacher, the mean weight it
got per epoch (over the seeds and the peers judged), and their top-1 per epoch, one line per
policy. It needs matplotlib (``pip install -e '.[evidence]'``); without it the plot is skipped
with one line, and the tables are written all the same.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import _bootstrap  # noqa: F401
import torch
import yaml
from codistill.evidence import (add_common_arguments, fresh_output, mean_std, plot_curves, plotting_available,
                                 run_dir_for, selected, table, write_summary)

from codistill.cohort.base import Cohort
from codistill.config import PROBE_SOURCES, RunConfig, apply_override, load_config, parse_config
from codistill.errors import ConfigError
from codistill.cohort.offline import OfflineCohort, load_network
from codistill.checkpoint import load_latest_checkpoint
from codistill.peer import PeerTrainer, load_dataset
from codistill.peer.teachers import normalized_weights
from codistill.progress import Progress
from codistill.runner import CONFIG_FILE, RESULTS_FILE, prepare_run_dir, run_cohort
from codistill.cohort.sequential import SequentialCohort
from codistill.policy import TeacherBatch
from codistill.registry import POLICIES

POOL_CONFIGS = ["jobs/configs/pool_clean.yaml", "jobs/configs/pool_memorizer.yaml", "jobs/configs/pool_weak.yaml"]
SPECIALIST_CONFIGS = ["jobs/configs/pool_specialist_low.yaml", "jobs/configs/pool_specialist_high.yaml"]
CA_MKD = "policies.confidence:ConfidenceAwarePolicy"
CONSTANT = "policies.constant:ConstantPolicy"
ORACLE = "policies.oracle:LabelOraclePolicy"
UNIFORM = "uniform"
ORACLE_ROW = "label oracle (ceiling)"
POOR_PEER_CONFIG, POOR_PEER_NAME = "jobs/configs/digits_cohort_poor_peer.yaml", "poor"
LABELS = "<true labels of the seed>"  # stands for OUT/true-labels/seed<N>.pt in the oracle's overrides
#: Per pool kind: its teachers' configs, where it is kept, and its fixed weightings (row → weights).
POOL_KINDS: dict[str, dict[str, Any]] = {
    "memorizer": {"configs": POOL_CONFIGS, "pool": "runs/policy-pool",
                  "constants": {"clean teacher only": {"clean": 1.0}}},
    "specialist": {"configs": SPECIALIST_CONFIGS, "pool": "runs/policy-pool-specialist",
                   "constants": {f"constant low {a:.2f} / high {1 - a:.2f}": {"low": a, "high": 1.0 - a}
                                 for a in (1.0, 0.75, 0.25, 0.0)}},
}
LEARNED_VARIANTS = ["ppo, ce=estimator:ppo,probe_loss:ce,update_epochs:4,probe_batch_size:128",
                    "credit, ce=estimator:credit,probe_loss:ce",
                    "credit, mae=estimator:credit,probe_loss:mae",
                    "credit, mae, network=estimator:credit,probe_loss:mae,credit_scope:network,update_epochs:4,"
                    "probe_batch_size:128"]
OFFLINE, ONLINE, POOR_PEER = "offline", "online cohort", "online cohort, poor peer"
#: ``--settings`` name → the setting's key in the tables (its runs go to ``OUT/<name>/``, its plot to
#: ``OUT/policy_<name>.png``, dashes as underscores).
SETTINGS = {"offline": OFFLINE, "online": ONLINE, "online-poor-peer": POOR_PEER}
SETTING_NAMES = {key: name for name, key in SETTINGS.items()}
LEARNED_DEFAULTS = "learned, default params"
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


def parse_learned(spec: str) -> tuple[str, dict[str, Any]]:
    """``LABEL=KEY:VALUE,KEY:VALUE`` → the row's label and the policy's parameters (YAML values)."""
    label, _, pairs = spec.partition("=")
    params = {}
    for pair in filter(None, pairs.split(",")):
        key, _, value = pair.partition(":")
        params[key.strip()] = yaml.safe_load(value)
    return label.strip(), params


def variants(args: argparse.Namespace, learned: bool) -> dict[str, dict[str, list[str]]]:
    """Per setting (offline, online cohort): policy variant name → config overrides."""
    offline = {UNIFORM: [policy_override(UNIFORM)], "CA-MKD": [policy_override(CA_MKD)]}
    offline.update({name: [policy_override(CONSTANT, {"weights": weights})]
                    for name, weights in POOL_KINDS[args.pool_kind]["constants"].items()})
    online = {UNIFORM: [policy_override(UNIFORM)]}
    extra = dict(args.policy_params)
    poor_peer = {UNIFORM: [policy_override(UNIFORM)]}
    if learned:
        poor_peer[LEARNED_DEFAULTS] = [policy_override(args.policy, {**extra, "learn": True})]
        for label, params in map(parse_learned, args.learned or LEARNED_VARIANTS):
            during = [policy_override(args.policy, {**params, **extra, "learn": True})]
            offline[f"learned, {label}"] = during
            online[f"learned, {label}"] = during
        if args.pretrained is not None:
            start = {**extra, "checkpoint": str(args.pretrained)}
            offline["learned, pretrained, frozen"] = [policy_override(args.policy, {**start, "learn": False})]
            offline["learned, pretrained, still learning"] = [policy_override(args.policy, {**start, "learn": True})]
        else:
            print("pretrained-policy variants SKIPPED: pass --pretrained FILE (a policy saved by "
                  "jobs/train_policy.py)", flush=True)
    offline[ORACLE_ROW] = [policy_override(ORACLE, {"labels": LABELS})]
    poor_peer[left_out_row(args.poor_peer)] = [policy_override(CONSTANT, {"weights": {args.poor_peer: 0.0},
                                                                          "default": 1.0})]
    every = {OFFLINE: offline, ONLINE: online, POOR_PEER: poor_peer}
    return {key: selected(every[key], args.only) if name in args.settings else {} for name, key in SETTINGS.items()}


def left_out_row(poor_peer: str) -> str:
    """The poor-peer cohort's ceiling: a fixed weighting that gives ``poor_peer`` weight 0."""
    return f"{poor_peer} left out as a teacher (ceiling)"


def with_labels(overrides: list[str], labels: Path) -> list[str]:
    """``overrides`` with the oracle's stand-in for the true labels replaced by ``labels``."""
    return [override.replace(LABELS, str(labels)) for override in overrides]


def write_true_labels(config: RunConfig, path: Path) -> Path:
    """The true labels of ``config``'s training split (as the batches index it), saved for the oracle."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(load_dataset(config).clean_train_labels.clone(), path)
    return path


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
        # read back through the parser, so that a field added since (at its default) is no difference
        if saved.exists() and parse_config(yaml.safe_load(saved.read_text()), mode="offline") != config:
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


@torch.no_grad()
def right_teacher_weight(config: RunConfig, run_dir: Path, teachers: list[dict[str, str]]) -> float:
    """Over the training split (no augmentation), with the run's final student and policy: the mean
    weight the policy puts on the teachers that predict an example's *true* label, over the
    examples that one of them does (on the specialist pool: the weight on the right specialist)."""
    trainer = PeerTrainer(config, 0)
    _, states = load_latest_checkpoint(run_dir, 1)
    trainer.load_state_bytes(states[0])
    dataset = trainer.dataset
    everything = torch.arange(dataset.info.train_size)
    images, noisy = dataset.train_batch(everything, torch.Generator().manual_seed(0), augment=False)
    trainer.model.eval()
    logits = torch.stack([load_network(t["checkpoint"])(images).logits.float() for t in teachers])  # [K, N, C]
    right = (logits.argmax(-1) == dataset.clean_train_labels.unsqueeze(0)).float().t()  # [N, K]
    batch = TeacherBatch(student_index=0, student_logits=trainer.model(images).logits.float(), teacher_logits=logits,
                         teacher_indices=list(range(len(teachers))), targets=noisy,
                         progress=trainer.batches.progress(config.epochs - 1, trainer.batches.steps_per_epoch - 1),
                         example_indices=everything)
    weights = normalized_weights(trainer.policy.weights(batch), len(teachers), everything.numel())
    some = right.sum(1) > 0
    return float((weights * right).sum(1)[some].mean())


# ---------------------------------------------------------------------------------------------
# Students and cohorts


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


def share(gain: float, headroom: float) -> str:
    """``gain / headroom`` in percent; "n/a" without headroom."""
    return f"{100 * gain / headroom:.0f}%" if headroom > 0 else "n/a"


def weight_mean_std(values: list[float] | None) -> str:
    """``mean ± sample std`` of teacher weights in [0, 1]; "n/a" when none were recorded."""
    if not values:
        return "n/a"
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.3f} ± {spread:.3f}"


def weight_cell(row: dict[str, Any], peer: str, teacher: str) -> str:
    return weight_mean_std(row.get("weights", {}).get(peer, {}).get(teacher))


def headroom_table(title: str, seeds: list[int], gains: dict[str, list[float]], ceilings: dict[str, list[float]],
                   labels: dict[str, str]) -> str:
    """Per seed, each ceiling's headroom over uniform (``gains`` of the ceiling rows, points of last
    top-1) and the share of the first one each row of ``labels`` (row → label) closes, (row −
    uniform) / (ceiling − uniform); then the same from the means, of every ceiling."""
    first = next(iter(ceilings.values()))
    lines = [[f"headroom: {label} − uniform (points)"] + [f"{100 * h:+.2f}" for h in headroom] + [""] * len(ceilings)
             for label, headroom in ceilings.items()]
    lines += [[label] + [share(gain, ceiling) for gain, ceiling in zip(gains[name], first)]
              + [share(statistics.mean(gains[name]), statistics.mean(h)) for h in ceilings.values()]
              for name, label in labels.items()]
    return table([title] + [f"seed {s}" for s in seeds] + [f"of {label} − uniform, means" for label in ceilings], lines)


def gains_over_uniform(rows: dict[str, dict[str, Any]], key: str) -> dict[str, list[float]]:
    """Per row, per seed: its ``key`` (a last top-1) minus uniform's."""
    uniform = rows[UNIFORM][key]
    return {name: [value - u for value, u in zip(row[key], uniform)] for name, row in rows.items()}


def validate_everything(args: argparse.Namespace, runs: dict[str, dict[str, list[str]]], common: list[str]) -> None:
    """Load every config before anything is trained, so a bad override fails first (the
    offline student without its teachers, which do not exist yet; the oracle with stand-in labels)."""
    if runs[OFFLINE]:
        pool_configs(args.pool_configs, args.seeds[0])
    with tempfile.TemporaryDirectory() as scratch:
        labels = Path(scratch) / "labels.pt"
        torch.save(torch.zeros(1, dtype=torch.long), labels)
        for overrides in runs[OFFLINE].values():
            load_config(args.student_config, args.overrides + common + with_labels(overrides, labels)
                        + ["independent=true", "teachers=[]"], mode="offline")
    for overrides in runs[ONLINE].values():
        load_config(args.cohort_config, args.overrides + common + overrides)
    if runs[POOR_PEER]:
        peers = [p.name for p in load_config(args.poor_peer_config, args.overrides, field="--poor-peer-config").peers]
        if args.poor_peer not in peers:
            raise ConfigError("--poor-peer", f"no peer '{args.poor_peer}' in {args.poor_peer_config} "
                                             f"(peers: {', '.join(peers)})")
        for overrides in runs[POOR_PEER].values():
            load_config(args.poor_peer_config, args.overrides + common + overrides, field="--poor-peer-config")


def parse_policy_params(pairs: list[str]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for pair in pairs:
        apply_override(params, pair)
    return params


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
        return load_config(self.cohort_configs[setting], self.args.overrides + self.common + overrides + [f"seed={seed}"])

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
            row.setdefault("right_weight", []).append(right_teacher_weight(config, run_dir, teachers))

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
        labels = self.args.out / "true-labels" / f"seed{seed}.pt"
        timed = {name: overrides for name, overrides in self.runs[OFFLINE].items() if name != ORACLE_ROW}
        if timed:
            self.seconds[OFFLINE] = interleaved_epoch_seconds(
                {name: self.student(with_labels(overrides, labels), seed, teachers)
                 for name, overrides in timed.items()}, OfflineCohort, epochs)
        for setting in (ONLINE, POOR_PEER):
            if self.runs[setting]:
                self.seconds[setting] = interleaved_epoch_seconds(
                    {name: self.cohort(setting, overrides, seed) for name, overrides in self.runs[setting].items()},
                    SequentialCohort, epochs)

    def best_constant(self) -> str | None:
        """The fixed weighting (uniform included) with the best mean last top-1."""
        names = [UNIFORM, *POOL_KINDS[self.args.pool_kind]["constants"]]
        rows = {name: self.rows[OFFLINE][name] for name in names if name in self.rows[OFFLINE]}
        return max(rows, key=lambda name: statistics.mean(rows[name]["peer_last"])) if rows else None

    def offline_headroom_table(self) -> str:
        """The share of the oracle's headroom each offline policy closes; also of the best
        constant's headroom (the best fixed weighting can beat the oracle)."""
        rows = self.rows[OFFLINE]
        gains = gains_over_uniform(rows, "peer_last")
        best = self.best_constant()
        ceilings = {"oracle": gains[ORACLE_ROW], "best constant": gains[best] if best else [0.0 for _ in self.args.seeds]}
        labels = {name: f"{name} (best constant)" if name == best else name for name in rows if name != UNIFORM}
        return headroom_table("share of the headroom closed", self.args.seeds, gains, ceilings, labels)

    def online_tables(self, setting: str) -> list[str]:
        """The cohort's top-1 per policy and each peer's mean weight per candidate; for the poor-peer
        cohort the other peers' top-1 first, and the share of the leave-out headroom closed."""
        rows, poor = self.rows[setting], setting == POOR_PEER
        others = ["other peers' mean top-1, last", "other peers' mean top-1, best"] if poor else []
        sections = [table([f"{setting}: policy", *others, "mean peer top-1, last", "mean peer top-1, best",
                           "ensemble top-1, last", "ensemble top-1, best"],
                          [[name] + ([mean_std(r["learners_last"]), mean_std(r["learners_best"])] if poor else [])
                           + [mean_std(r["peer_last"]), mean_std(r["peer_best"]), mean_std(r["ens_last"]),
                              mean_std(r["ens_best"])] for name, r in rows.items()])]
        peers = [p.name for p in load_config(self.cohort_configs[setting], self.args.overrides).peers]
        sections.append(table([f"{setting}: policy", "peer"] + [f"weight {t}, 2nd half" for t in peers],
                              [[name, peer] + [weight_cell(r, peer, t) for t in peers]
                               for name, r in rows.items() for peer in peers]))
        ceiling = left_out_row(self.args.poor_peer)
        if poor and UNIFORM in rows and ceiling in rows:
            gains = gains_over_uniform(rows, "learners_last")
            sections.append(headroom_table("other peers: share of the headroom closed", self.args.seeds, gains,
                                           {f"{self.args.poor_peer} left out": gains[ceiling]},
                                           {name: name for name in rows if name != UNIFORM}))
        return sections

    def tables(self) -> str:
        sections = []
        if self.pool:
            sections.append(table(["teacher", "val top-1, last", "train top-1 vs noisy labels",
                                   "train top-1 vs true labels", "CA-MKD weight, all training examples",
                                   "CA-MKD weight, flipped labels"],
                                  [[name, mean_std(v["val"]), mean_std(v["train_noisy"]), mean_std(v["train_true"]),
                                    weight_mean_std(v.get("camkd_all")), weight_mean_std(v.get("camkd_flipped"))]
                                   for name, v in self.pool.items()]))
        if self.rows[OFFLINE]:
            names = list(self.pool)
            student = self.learners(OFFLINE)[0]
            sections.append(table(["offline: policy", "student top-1, last", "student top-1, best"]
                                  + [f"weight {t}, 2nd half" for t in names] + ["weight on right teachers, end"],
                                  [[name, mean_std(r["peer_last"]), mean_std(r["peer_best"])]
                                   + [weight_cell(r, student, t) for t in names]
                                   + [weight_mean_std(r.get("right_weight"))]
                                   for name, r in self.rows[OFFLINE].items()]))
            if ORACLE_ROW in self.rows[OFFLINE] and UNIFORM in self.rows[OFFLINE]:
                sections.append(self.offline_headroom_table())
        for setting in (ONLINE, POOR_PEER):
            if self.rows[setting]:
                sections += self.online_tables(setting)
        timing = []
        for setting, measured in self.seconds.items():
            reference = statistics.median(measured[UNIFORM]) if UNIFORM in measured else None
            for name, seconds in measured.items():
                median = statistics.median(seconds)
                timing.append([setting, name, f"{median:.3f}", f"{median / reference:.2f}×" if reference else "n/a"])
        if timing:
            sections.append(table(["setting", "policy", "s / training epoch (median)", "× uniform"], timing))
        return "\n\n".join(sections)

    def plot(self) -> None:
        """``OUT/policy_<setting>.png`` per setting that ran: the teacher weights and the learners'
        top-1 per epoch (mean over seeds); one line instead when matplotlib is missing."""
        if not plotting_available():
            print("plots SKIPPED: matplotlib is not installed (pip install -e '.[evidence]')", flush=True)
            return
        accuracy = {OFFLINE: "top-1 of the student", ONLINE: "mean top-1 of the peers",
                    POOR_PEER: f"mean top-1 of the peers but {self.args.poor_peer}"}
        for setting, rows in self.rows.items():
            if rows:
                path = self.args.out / f"policy_{SETTING_NAMES[setting].replace('-', '_')}.png"
                plot_curves(path, f"{setting}: mean weight per teacher and top-1 per epoch, "
                                  f"{len(self.args.seeds)} seed(s)",
                            {name: row["curves"] for name, row in rows.items()}, accuracy[setting])
                print(f"plot: {path}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--student-config", default="jobs/configs/digits_pool_offline.yaml")
    parser.add_argument("--cohort-config", default="jobs/configs/digits_cohort.yaml")
    parser.add_argument("--pool-kind", choices=sorted(POOL_KINDS), default="memorizer",
                        help="the pool: its teachers, where it is kept, its fixed weightings")
    parser.add_argument("--pool-configs", nargs="+", help="one teacher each, trained alone (default: the kind's)")
    parser.add_argument("--pool", type=Path, help="where the pool is kept and reused (default: the kind's)")
    parser.add_argument("--settings", nargs="+", choices=list(SETTINGS), default=["offline", "online"],
                        help="offline (the pool), online (--cohort-config), online-poor-peer (--poor-peer-config)")
    parser.add_argument("--poor-peer-config", default=POOR_PEER_CONFIG,
                        help="the cohort of the online-poor-peer setting")
    parser.add_argument("--poor-peer", default=POOR_PEER_NAME,
                        help="the peer of --poor-peer-config that is a poor teacher for the others")
    parser.add_argument("--learned", action="append", metavar="LABEL=KEY:VALUE,...",
                        help="a learned-policy row and its parameters (repeatable; default: "
                             + "; ".join(LEARNED_VARIANTS) + ")")
    parser.add_argument("--policy", default="policies.learned:LearnedPolicy", help="the learned policy class")
    parser.add_argument("--policy-param", dest="policy_params", action="append", default=[], metavar="KEY=VALUE",
                        help="extra parameter of the learned policy (repeatable)")
    parser.add_argument("--pretrained", type=Path, help="a saved policy to start from (jobs/train_policy.py)")
    parser.add_argument("--probe-fraction", type=float, default=0.1,
                        help="data.probe_fraction of every variant when the learned policy runs (0: none)")
    parser.add_argument("--probe-source", choices=PROBE_SOURCES, default="train",
                        help="data.probe_source of every variant when the learned policy runs: train (a noisy "
                             "slice of the training split) or held_out (a clean slice of validation, no longer "
                             "counted in it)")
    parser.add_argument("--timing-epochs", type=int, default=10,
                        help="epochs per variant timed side by side, first seed (0: no timing)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1 avoids oversubscribing a shared machine)")
    add_common_arguments(parser, "runs/evidence-policy")
    args = parser.parse_args(argv)
    kind = POOL_KINDS[args.pool_kind]
    args.pool_configs = args.pool_configs or kind["configs"]
    args.pool = args.pool or Path(kind["pool"])
    args.policy_params = parse_policy_params(args.policy_params)
    if args.pretrained is not None and not args.pretrained.is_file():
        raise SystemExit(f"--pretrained: no such file: {args.pretrained}")

    learned = learned_policy_available(args.policy)
    runs = variants(args, learned)
    common = [f"data.probe_fraction={args.probe_fraction}", f"data.probe_source={args.probe_source}"] \
        if learned and args.probe_fraction > 0 else []
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
    heading = ((f"; pool kept in {args.pool}" if runs[OFFLINE] else "")
               + f"; learned policy {'run' if learned else 'skipped'}"
               + "".join(f"; every variant with {override}" for override in common)
               + (f"; timing: {args.timing_epochs} epochs per variant after a warm-up, taking turns, "
                  f"seed {args.seeds[0]}, {args.threads} torch thread(s)" if args.timing_epochs > 0 else ""))
    write_summary(args.out, args.seeds, heading, evidence.tables(),
                  {"pool": evidence.pool, "rows": evidence.rows, "epoch_seconds": evidence.seconds})
    evidence.plot()
    return 0


if __name__ == "__main__":
    sys.exit(main())
