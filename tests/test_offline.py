"""jobs/offline.py end to end: a teacher trained alone, then students distilled from it."""

import json

import pytest
import torch
import yaml

from codistill.cohort.offline import load_network
from codistill.commands import offline
from codistill.pruning import prunable_layers

DATA = {"dataset": "digits", "train_fraction": 0.25, "label_noise": 0.2, "batch_size": 64}
RUNTIME = {"progress_every_seconds": 0.0}


@pytest.fixture(scope="module")
def teacher_checkpoint(tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("teacher")
    config = root / "teacher.yaml"
    config.write_text(yaml.safe_dump({"name": "teacher", "epochs": 3, "data": DATA, "runtime": RUNTIME,
                                      "peers": [{"name": "teacher", "model": "resnet8x4"}]}))
    assert offline.main(["--config", str(config), "--independent", "--run-dir", str(root / "run")]) == 0
    return root / "run" / "models" / "teacher.pt"


def student_config(tmp_path, checkpoint, methods, **peer):
    path = tmp_path / "student.yaml"
    path.write_text(yaml.safe_dump({
        "name": "student", "epochs": 2, "data": DATA, "runtime": RUNTIME,
        "peers": [{"name": "student", "model": "resnet8", **peer}],
        "teachers": [{"name": "teacher", "model": "resnet8x4", "checkpoint": str(checkpoint)}],
        "distillation": {"methods": methods}}))
    return path


def test_saved_teacher_loads_frozen(teacher_checkpoint):
    network = load_network(teacher_checkpoint)
    assert not network.training and not any(p.requires_grad for p in network.parameters())


@pytest.mark.parametrize("methods", [
    [{"name": "kd"}], [{"name": "dkd"}], [{"name": "dckd"}],
    [{"name": "indistill", "params": {"curriculum_epochs": [1, 2, 3]}}],
    [{"name": "sfr"}], [{"name": "kd", "weight": 0.5}, {"name": "feature_decoupled"}],
])
def test_student_distils_from_the_saved_teacher(tmp_path, teacher_checkpoint, methods):
    run_dir = tmp_path / "run"
    assert offline.main(["--config", str(student_config(tmp_path, teacher_checkpoint, methods)),
                         "--run-dir", str(run_dir)]) == 0
    results = json.loads((run_dir / "results.json").read_text())
    assert [p["name"] for p in results["peers"]] == ["student"]
    history = results["history"]
    assert len(history) == 2 and all(0.0 <= h["peers"][0]["val_accuracy"] <= 1.0 for h in history)


def test_pruned_student_reports_the_sparsity_reached(tmp_path, teacher_checkpoint):
    run_dir = tmp_path / "run"
    config = student_config(tmp_path, teacher_checkpoint, [{"name": "feature_decoupled"}],
                            sparsity={"target": 0.5, "end_epoch": 1, "every_steps": 1})
    assert offline.main(["--config", str(config), "--run-dir", str(run_dir)]) == 0
    results = json.loads((run_dir / "results.json").read_text())
    assert results["peers"][0]["sparsity"] == pytest.approx(0.5, abs=0.01)
    student = load_network(run_dir / "models" / "student.pt")  # pruning folded into plain weights
    layers = prunable_layers(student)
    assert not any(hasattr(layer, "weight_mask") for layer in layers)
    weights = [layer.weight for layer in layers]
    zeros = sum(int((w == 0).sum()) for w in weights) / sum(w.numel() for w in weights)
    assert zeros == pytest.approx(results["peers"][0]["sparsity"], abs=1e-6)


def test_missing_teacher_checkpoint_is_a_config_error(tmp_path, capsys):
    config = student_config(tmp_path, tmp_path / "missing.pt", [{"name": "kd"}])
    assert offline.main(["--config", str(config), "--run-dir", str(tmp_path / "run")]) == 2
    assert "'teachers[0].checkpoint'" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
