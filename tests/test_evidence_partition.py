"""The partition evidence job (codistill.commands.evidence_partition) on tiny digits: its table and
JSON, rows that share their data, the oracle's per-peer labels, and the weights tapped per class."""

from __future__ import annotations

import json

import torch
import yaml
from conftest import tiny_raw

from codistill.commands import evidence_partition
from codistill.peer import peer_datasets
from codistill.validation import load_config


def write_config(tmp_path):
    raw = tiny_raw(epochs=1, distillation={"teacher_source": "replicas", "refresh_every_steps": 2,
                                           "methods": [{"name": "kd"}]})
    raw["data"].update(shared_batches=False, batch_size=32, train_fraction=0.5, probe_fraction=0.1,
                       partition={"kind": "iid"})
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True))
    return path


def test_two_rows_on_identical_shards_give_the_table_the_json_and_the_oracles_labels(tmp_path, capsys):
    config, out = write_config(tmp_path), tmp_path / "out"
    assert evidence_partition.main(["--config", str(config), "--seeds", "0", "--out", str(out),
                                    "--settings", "α = 1.0", "--only", "uniform", "oracle"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    rows = summary["settings"]["dirichlet α = 1.0"]
    assert list(rows) == [evidence_partition.UNIFORM, evidence_partition.ORACLE]
    for row in rows.values():
        assert len(row["peer_last"]) == len(row["ens_last"]) == 1 and 0.0 <= row["peer_last"][0] <= 1.0
    assert list(summary["headroom_shares"]) == []  # no learned row run
    assert "| codistillation, label oracle (ceiling) |" in (out / "summary.md").read_text()
    assert "dirichlet α = 1.0, codistillation, uniform weights, seed 0" in capsys.readouterr().out

    runs = sorted(p for p in out.iterdir() if p.name.startswith("dirichlet"))
    assert len(runs) == 2
    counts = [[p["class_counts"] for p in json.loads((run / "results.json").read_text())["peers"]] for run in runs]
    assert counts[0] == counts[1] and len(counts[0]) == 2  # the same shards, per peer

    labels = torch.load(next((out / "true-labels").iterdir()), weights_only=True)
    setting = load_config(config, ["data.partition={kind: dirichlet, alpha: 1.0}"])
    assert [t.tolist() for t in labels] == [d.clean_train_labels.tolist() for d in peer_datasets(setting)]

    tapped = summary["teacher_weights_by_class"]
    assert tapped["setting"] == "dirichlet α = 1.0" and set(tapped["rows"]) == {evidence_partition.ORACLE}
    assert set(tapped["rows"][evidence_partition.ORACLE]) == {"mlp", "cnn"}
