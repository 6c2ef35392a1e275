"""The learned policy's cost benchmark (jobs/benchmark_policy.py): rounds of interleaved epochs,
paired learned/uniform ratios in wall and CPU time."""

import json

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
