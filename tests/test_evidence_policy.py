"""jobs/evidence_policy.py: its plot from a small synthetic record, the job without matplotlib (the
tables still written), and bad inputs of the poor-peer flags stopping before anything is written."""

import importlib.util
import json
import sys

import pytest
from conftest import ROOT

from codistill.evidence import plot_curves, plotting_available


def evidence_policy(monkeypatch):
    """The job's module, imported from jobs/ (it is a script, not a package)."""
    monkeypatch.syspath_prepend(str(ROOT / "jobs"))
    spec = importlib.util.spec_from_file_location("evidence_policy", ROOT / "jobs" / "evidence_policy.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(not plotting_available(), reason="matplotlib (the evidence extra) is not installed")
def test_the_plot_of_a_synthetic_record_is_a_png(tmp_path):
    run = {"accuracy": [0.5, 0.7, 0.8], "weights": {"good": [None, 0.6, 0.9], "poor": [None, 0.4, 0.1]}}
    path = tmp_path / "policy_synthetic.png"
    plot_curves(path, "synthetic", {"uniform": [run, run], "learned": [run]}, "student")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_without_matplotlib_the_job_skips_the_plot_and_writes_the_tables(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` raises ImportError
    out = tmp_path / "out"
    job = evidence_policy(monkeypatch)
    assert job.main(["--settings", "online-poor-peer", "--seeds", "0", "--only", "uniform", "left out",
                     "--timing-epochs", "0", "--set", "epochs=1", "--set", "data.train_fraction=0.1",
                     "--out", str(out)]) == 0
    assert "plots SKIPPED: matplotlib is not installed" in capsys.readouterr().out
    assert "poor left out as a teacher (ceiling)" in (out / "summary.md").read_text()
    rows = json.loads((out / "summary.json").read_text())["rows"]["online cohort, poor peer"]
    assert set(rows) == {"uniform", "poor left out as a teacher (ceiling)"}
    # online, in ensemble mode (the student is a candidate): the others give `poor` weight 0
    left_out = rows["poor left out as a teacher (ceiling)"]
    assert all(left_out["weights"][peer]["poor"] == [0.0] for peer in ("mlp", "cnn", "resnet8"))
    assert left_out["curves"][0]["weights"]["poor"][-1] == 0.0
    assert not list(out.glob("*.png"))


@pytest.mark.parametrize("flags, message", [
    (["--poor-peer", "nobody"], "'--poor-peer': no peer 'nobody'"),
    (["--poor-peer-config", "missing.yaml"], "'--poor-peer-config': no such file"),
])
def test_bad_poor_peer_flags_stop_before_anything_is_written(tmp_path, monkeypatch, capsys, flags, message):
    out = tmp_path / "out"
    assert evidence_policy(monkeypatch).main(["--settings", "online-poor-peer", "--out", str(out), *flags]) == 2
    error = capsys.readouterr().err.strip()
    assert message in error and "\n" not in error
    assert not out.exists()
