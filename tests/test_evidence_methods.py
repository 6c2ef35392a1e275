"""jobs/evidence_methods.py's (codistill.commands.evidence_methods) --teacher-run: bad inputs stop
before anything is written."""

import pytest
import yaml

from codistill.commands import evidence_methods


def test_a_directory_without_a_finished_teacher_is_refused(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        evidence_methods.main(["--teacher-run", str(tmp_path / "missing"), "--out", str(tmp_path / "out")])
    assert stop.value.code == 2 and "no finished teacher" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_teacher_trained_from_another_config_is_refused(tmp_path, capsys):
    teacher = tmp_path / "teacher"
    (teacher / "models").mkdir(parents=True)
    (teacher / "models" / "teacher.pt").write_bytes(b"")
    (teacher / "results.json").write_text("{}")
    (teacher / "config.yaml").write_text(yaml.safe_dump({"name": "another", "epochs": 1}))
    with pytest.raises(SystemExit) as stop:
        evidence_methods.main(["--teacher-run", str(teacher), "--out", str(tmp_path / "out")])
    assert stop.value.code == 2 and "another config" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
