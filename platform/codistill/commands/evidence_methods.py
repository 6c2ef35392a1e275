"""Offline methods on one teacher → student pair over several seeds: the README's methods table.

    python jobs/evidence_methods.py --seeds 0 1 2
    python jobs/evidence_methods.py --only DKD --teacher-run runs/evidence-methods/teacher --out runs/dkd

First trains the teacher of ``jobs/configs/digits_teacher.yaml`` alone (seed 0), then, for every
seed, the student of ``jobs/configs/digits_offline.yaml`` alone and distilled from that same
teacher with each method; the feature-decoupled method runs on students pruned to 50% and 90%
sparsity, next to pruned students trained without distillation. Prints mean ± std of the
student's validation top-1 at the last and at the best epoch; raw runs stay in ``--out``.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import yaml

from codistill.config import RunConfig, load_config
from codistill.evidence import add_common_arguments, fresh_output, mean_std, run_dir_for, selected, table, write_summary
from codistill.local import OfflineCohort
from codistill.runner import prepare_run_dir, run_cohort

# Warm-ups and curricula scaled from the papers' 240-epoch CIFAR schedules to 30 epochs.
KD = "{name: kd, params: {temperature: 4.0}}"
VARIANTS: dict[str, list[str]] = {
    "student alone": ["independent=true"],
    "KD (Hinton et al. 2015)": [f"distillation.methods=[{KD}]"],
    "DKD (Zhao et al. 2022)": ["distillation.methods=[{name: dkd, params: {warmup_epochs: 3}}]"],
    "DCKD (Wang et al. 2025)": ["distillation.methods=[{name: dckd, params: {warmup_epochs: 3}}]"],
    "InDistill + KD after the curriculum": ["distillation.methods=[{name: indistill}]"],
    "SFR (teacher-free)": ["distillation.methods=[{name: sfr}]"],
}
for _sparsity in (50, 90):
    _pruned = f"peers.0.sparsity={{target: {_sparsity / 100}, end_epoch: 20}}"
    VARIANTS.update({
        f"student alone, {_sparsity}% sparse": ["independent=true", _pruned],
        f"feature-decoupled (SF-KD), {_sparsity}% sparse": ["distillation.methods=[{name: feature_decoupled}]", _pruned],
        f"KD, {_sparsity}% sparse": [f"distillation.methods=[{KD}]", _pruned],
        f"KD + feature-decoupled, {_sparsity}% sparse": [f"distillation.methods=[{KD}, {{name: feature_decoupled}}]", _pruned],
    })


def reused_teacher(parser: argparse.ArgumentParser, run_dir: Path, config: RunConfig) -> tuple[dict, Path]:
    """The results and checkpoint of a teacher trained earlier from the same config (else exit 2)."""
    checkpoint = run_dir / "models" / f"{config.peers[0].name}.pt"
    if not (run_dir / "results.json").is_file() or not checkpoint.is_file():
        parser.error(f"--teacher-run {run_dir}: no finished teacher there (results.json and {checkpoint.name})")
    if yaml.safe_load((run_dir / "config.yaml").read_text()) != yaml.safe_load(yaml.safe_dump(config.to_dict())):
        parser.error(f"--teacher-run {run_dir}: trained from another config than --teacher-config")
    return json.loads((run_dir / "results.json").read_text()), checkpoint


def main(argv: list[str] | None = None) -> int:
    """Train the teacher (or reuse ``--teacher-run``), then every variant over the seeds; print the table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teacher-config", default="jobs/configs/digits_teacher.yaml")
    parser.add_argument("--student-config", default="jobs/configs/digits_offline.yaml")
    parser.add_argument("--teacher-run", type=Path,
                        help="reuse the teacher of an earlier run of this script (its OUT/teacher directory)")
    add_common_arguments(parser, "runs/evidence-methods")
    args = parser.parse_args(argv)
    teacher_config = load_config(args.teacher_config, args.overrides + ["independent=true"], mode="offline")
    if args.teacher_run is not None:
        teacher, checkpoint = reused_teacher(parser, args.teacher_run, teacher_config)
    fresh_output(args.out)
    if args.teacher_run is None:
        teacher_dir = args.out / "teacher"
        prepare_run_dir(teacher_dir, teacher_config)
        teacher = run_cohort(teacher_config, teacher_dir, OfflineCohort)
        checkpoint = teacher_dir / "models" / f"{teacher_config.peers[0].name}.pt"

    rows: dict[str, dict[str, list[float]]] = {}
    for name, overrides in selected(VARIANTS, args.only).items():
        for seed in args.seeds:
            config = load_config(args.student_config, args.overrides + overrides +
                                 [f"seed={seed}", f"teachers.0.checkpoint={checkpoint}"], mode="offline")
            run_dir = run_dir_for(args.out, name, seed)
            prepare_run_dir(run_dir, config)
            result = run_cohort(config, run_dir, OfflineCohort)
            student = result["peers"][0]
            row = rows.setdefault(name, {"last": [], "best": [], "sparsity": []})
            row["last"].append(student["last_val_accuracy"])
            row["best"].append(student["best_val_accuracy"])
            row["sparsity"].append(student.get("sparsity", 0.0))

    t = teacher["peers"][0]
    students = table(["student", "top-1, last", "top-1, best", "sparsity reached"],
                     [[name, mean_std(row["last"]), mean_std(row["best"]), f"{100 * statistics.mean(row['sparsity']):.1f}%"]
                      for name, row in rows.items()])
    write_summary(args.out, args.seeds, f"; teacher {t['model']} (seed 0): {100 * t['last_val_accuracy']:.2f} last, "
                  f"{100 * t['best_val_accuracy']:.2f} best", students, {"teacher": t, "rows": rows})
    return 0
