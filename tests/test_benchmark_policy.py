"""The learned policy's cost benchmark (jobs/benchmark_policy.py): rounds of interleaved epochs,
paired learned/uniform ratios in wall and CPU time."""

import json

import pytest
import yaml
from conftest import tiny_raw

from codistill.commands.benchmark_policy import main


def test_the_benchmark_pairs_every_timed_epoch_of_every_round(tmp_path, capsys):
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(tiny_raw()))
    out = tmp_path / "timed.json"
    assert main(["--config", str(config), "--epochs", "2", "--rounds", "2", "--threads", "1",
                 "--params", "{update_every: 2}", "--out", str(out)]) == 0
    timed = json.loads(out.read_text())
    assert timed["rounds"] == 2 and timed["peers"] == 2 and timed["steps"] > 0
    for clock in ("wall", "cpu"):
        assert [len(values) for values in timed[clock]["seconds"]["learned"]] == [2, 2]
        assert len(timed[clock]["ratios"]) == 4 and all(ratio > 0 for ratio in timed[clock]["ratios"])
        assert timed[clock]["ratio"] > 0
    printed = capsys.readouterr().out
    assert "learned / uniform per epoch" in printed and "{update_every: 2}" in printed


@pytest.mark.parametrize("arguments, field", [
    (["--rounds", "0"], "--rounds"), (["--epochs", "two"], "--epochs"), (["--threads", "0"], "--threads"),
    (["--params", "{bogus: 1}"], "distillation.policy.params.bogus"),
    (["--params", "{update_every:"], "distillation.policy"),
])
def test_a_bad_option_is_one_line_naming_it_with_status_2_before_anything_runs(tmp_path, capsys, arguments, field):
    out = tmp_path / "timed.json"
    assert main([*arguments, "--out", str(out)]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and len(captured.err.splitlines()) == 1 and field in captured.err
    assert not out.exists()
