"""Offline methods on one teacher → student pair over several seeds: the README's methods table.

    python jobs/evidence_methods.py --seeds 0 1 2
    python jobs/evidence_methods.py --only DKD --teacher-run runs/evidence-methods/teacher --out runs/dkd
    python jobs/offline.py --config jobs/configs/fashion_teacher.yaml --independent --run-dir runs/fashion-teacher
    python jobs/evidence_methods.py --teacher-config jobs/configs/fashion_teacher.yaml \
        --student-config jobs/configs/fashion_offline.yaml --teacher-run runs/fashion-teacher --seeds 0 1 2 \
        --out runs/evidence-methods-fashion

First trains the teacher of ``--teacher-config`` alone (seed 0), then, for every seed, the student
of ``--student-config`` alone and distilled from that same teacher with each method; the
feature-decoupled method runs on students pruned to 50% and 90% sparsity, next to pruned students
trained without distillation. Warm-ups, InDistill's curriculum and the pruning schedule are the
papers' scaled to the student's epochs (30 epochs: warm-up 3, curriculum 3/7/12, pruned by epoch
20). Prints mean ± std of the student's validation top-1 at the last and at the best epoch and,
for a dataset with a test split, of the final student on it; raw runs stay in ``--out``.

Fashion-MNIST: the WRN-16-2 teacher of ``fashion_teacher.yaml`` (5,500 training images, 6
epochs; train it once with ``jobs/offline.py`` and pass its run as ``--teacher-run``), then 14
students × seeds 0–2 of ``fashion_offline.yaml`` (ResNet-8 on 880 training images, 6 epochs,
1,000 validation images); test: the official 10,000; its time: docs/datasets.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import yaml

from codistill.cohort.offline import OfflineCohort
from codistill.config import RunConfig
from codistill.data import split_description
from codistill.evidence import add_common_arguments, fresh_output, mean_std, run_dir_for, selected, table, write_summary
from codistill.runner import prepare_run_dir, run_cohort
from codistill.validation import load_config

KD = "{name: kd, params: {temperature: 4.0}}"


def variants(epochs: int) -> dict[str, list[str]]:
    """The methods, with warm-ups and curricula scaled from the papers' 240-epoch CIFAR schedules to
    30 epochs, and from there to the student's ``epochs``."""
    def scaled(epoch: int) -> int:
        return max(1, round(epoch * epochs / 30))

    warmup = f"warmup_epochs: {scaled(3)}"
    curriculum = [scaled(epoch) for epoch in (3, 7, 12)]
    methods = {
        "student alone": ["independent=true"],
        "KD (Hinton et al. 2015)": [f"distillation.methods=[{KD}]"],
        "DKD (Zhao et al. 2022)": [f"distillation.methods=[{{name: dkd, params: {{{warmup}}}}}]"],
        "DCKD (Wang et al. 2025)": [f"distillation.methods=[{{name: dckd, params: {{{warmup}}}}}]"],
        "InDistill + KD after the curriculum":
            [f"distillation.methods=[{{name: indistill, params: {{curriculum_epochs: {curriculum}}}}}]"],
        "SFR (teacher-free)": ["distillation.methods=[{name: sfr}]"],
    }
    for sparsity in (50, 90):
        pruned = f"peers.0.sparsity={{target: {sparsity / 100}, end_epoch: {scaled(20)}}}"
        methods.update({
            f"student alone, {sparsity}% sparse": ["independent=true", pruned],
            f"feature-decoupled (SF-KD), {sparsity}% sparse": ["distillation.methods=[{name: feature_decoupled}]",
                                                              pruned],
            f"KD, {sparsity}% sparse": [f"distillation.methods=[{KD}]", pruned],
            f"KD + feature-decoupled, {sparsity}% sparse": [f"distillation.methods=[{KD}, {{name: feature_decoupled}}]",
                                                            pruned],
        })
    return methods


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

    student_config = load_config(args.student_config, args.overrides + [f"teachers.0.checkpoint={checkpoint}"],
                                 mode="offline")
    rows: dict[str, dict[str, list[float]]] = {}
    for name, overrides in selected(variants(student_config.epochs), args.only).items():
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
            if "test_accuracy" in student:
                row.setdefault("test", []).append(student["test_accuracy"])

    t = teacher["peers"][0]
    tested = all("test" in row for row in rows.values())
    students = table(["student", "top-1, val last", "top-1, val best"] + (["top-1, test"] if tested else [])
                     + ["sparsity reached"],
                     [[name, mean_std(row["last"]), mean_std(row["best"])] + ([mean_std(row["test"])] if tested else [])
                      + [f"{100 * statistics.mean(row['sparsity']):.1f}%"] for name, row in rows.items()])
    teacher_test = f", {100 * t['test_accuracy']:.2f} test" if "test_accuracy" in t else ""
    teacher = (f"; teacher {t['model']} (seed 0): {100 * t['last_val_accuracy']:.2f} val last, "
               f"{100 * t['best_val_accuracy']:.2f} val best{teacher_test}")
    write_summary(args.out, args.seeds, teacher, students, {"teacher": t, "rows": rows},
                  measure=split_description(student_config.data))
    return 0
