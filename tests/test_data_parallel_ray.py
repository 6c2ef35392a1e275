"""A data-parallel peer on the Ray backend: R = 2 worker actors in their own gloo group, beside a
peer of one actor, match the single-process cohort (R = 1) within the tolerance of
tests/test_data_parallel.py, a reloaded state replays an epoch bit for bit, and a killed worker
restarts its peer alone, the run ending bit-identical."""

import json
import os
import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import ray
import torch
from conftest import tiny_config, tiny_raw
from fault_injection import KillAtStep, outcome, run
from ray_head import ray_env

from codistill.cohort.ray_cohort import RayCohort
from codistill.cohort.ray_runtime import peer_bundles
from codistill.cohort.sequential import SequentialCohort
from codistill.commands import online
from codistill.tuning.layout import trial_run_dir

pytestmark = pytest.mark.ray


def parallel_config(workers: int = 2):
    peers = tiny_raw()["peers"]
    peers[1]["data_parallel"] = workers
    return tiny_config(peers=peers)


LOSSES = {"loss/total": 1e-4, "loss/ce": 1e-4}


def assert_matches_one_device(changes: dict, epochs: int = 1, tolerances: dict[str, float] = LOSSES) -> list:
    """The tiny cohort with ``changes``, its ``cnn`` on R = 2 Ray workers, against the same cohort
    on one device (sequential): per-step metrics within their relative ``tolerances`` (the total
    and cross-entropy losses within 1e-4) over ``epochs`` epochs, then the same validation
    predictions (logits within 1e-3); the data-parallel run's step metrics."""
    torch.set_num_threads(1)
    peers = changes.get("peers", tiny_raw()["peers"])
    parallel = {**changes, "peers": [peers[0], {**peers[1], "data_parallel": 2}]}
    local, remote = SequentialCohort(tiny_config(**changes)), RayCohort(tiny_config(**parallel))
    got_all = []
    try:
        for epoch in range(epochs):
            expected, got = local.train_epoch(epoch), remote.train_epoch(epoch)
            assert len(got) == len(expected)
            for step_expected, step_got in zip(expected, got):
                for peer_expected, peer_got in zip(step_expected, step_got):
                    assert set(peer_got) == set(peer_expected)
                    assert peer_got["train/examples"] == peer_expected["train/examples"]
                    for key in set(tolerances) & set(peer_expected):
                        assert peer_got[key] == pytest.approx(peer_expected[key], rel=tolerances[key]), (epoch, key)
            got_all.append(got)
        (local_logits, labels), (remote_logits, remote_labels) = local.evaluate(), remote.evaluate()
        assert torch.equal(labels, remote_labels)
        for a, b in zip(local_logits, remote_logits):
            assert torch.allclose(a, b, atol=1e-3)
            assert torch.equal(a.argmax(1), b.argmax(1))
    finally:
        remote.shutdown()
    return got_all


def test_codistillation_replicas_on_two_workers_match_one_device(ray_runtime):
    """``teacher_source: replicas``: each worker runs the replicas on its rows, refreshed (every 3
    steps and at each epoch's start) with worker 0's weights; both epochs and the final accuracy."""
    distillation = {**tiny_raw()["distillation"], "teacher_source": "replicas", "refresh_every_steps": 3}
    got = assert_matches_one_device({"distillation": distillation}, epochs=2)
    assert any(peer["exchange/bytes_received"] > 0 for step in got[0] for peer in step)


def learned_policy(**params) -> dict:
    """The tiny cohort weighting its teachers with the learned policy (its probe split carved)."""
    return {"data": {**tiny_raw()["data"], "probe_fraction": 0.2},
            "distillation": {**tiny_raw()["distillation"],
                             "policy": {"name": "policies.learned:LearnedPolicy", "params": params}}}


@pytest.mark.parametrize("estimator", ["credit", "ppo"])
def test_a_learned_policy_on_two_workers_matches_one_device(ray_runtime, estimator):
    """The learned policy (credit at its defaults, or PPO) sees the global batch: its inputs and
    every worker's feedback (losses, credit rows) gathered; worker 0 sends the transitions to the
    learner. The losses (probe losses included) agree within 1e-4; the credit's signal-to-noise and
    the learner's loss, which divide small differences of credits (centred on each example's
    mixture), within 5e-3 and 2e-3 (measured in the second epoch: 1.7e-3 and 2.3e-4; 4e-6 in the
    first); PPO's reward within 1e-3 (measured: 1e-16)."""
    tolerances = {**LOSSES, "policy/probe_loss_before": 1e-4, "policy/probe_loss_after": 1e-4,
                  "policy/reward": 1e-3, "policy/credit_snr": 5e-3, "policy/learner_loss": 2e-3}
    got = assert_matches_one_device(learned_policy(update_every=2, estimator=estimator), epochs=2,
                                    tolerances=tolerances)
    assert any("policy/learner_loss" in peer for step in got[0] for peer in step)


def test_a_learned_policy_on_two_workers_replays_an_epoch_bit_for_bit(ray_runtime):
    """The peers' states (every worker's random stream, the policy's) and the learner's, reloaded
    after an epoch: the next epoch again, bit for bit (what ``--resume`` reloads)."""
    torch.set_num_threads(1)
    peers = tiny_raw()["peers"]
    peers[1]["data_parallel"] = 2
    remote = RayCohort(tiny_config(peers=peers, **learned_policy(update_every=2)))
    try:
        remote.train_epoch(0)
        state, learner = remote.state_bytes(), remote.learner_state_bytes()
        first = remote.train_epoch(1)
        remote.load_state_bytes(state)
        remote.load_learner_state_bytes(learner)
        again = remote.train_epoch(1)
        for step_first, step_again in zip(first, again):
            for peer_first, peer_again in zip(step_first, step_again):
                for key in ("loss/total", "loss/ce", "train/correct", "policy/credit_snr", "policy/learner_loss"):
                    assert peer_again.get(key) == peer_first.get(key), key
        assert any("policy/learner_loss" in peer for step in first for peer in step)
    finally:
        remote.shutdown()


def test_the_collective_exchange_serves_data_parallel_workers_as_objectref_does(ray_runtime):
    """R = [3, 1]: the ``mlp``'s workers hold 21, 21 and 22 rows of each batch of 64 (unequal),
    every worker of both peers is a rank of one gloo group and all-gathers once per step; each
    worker joins the other peer's rows and keeps its own: the numbers of the ``objectref``
    exchange, bit for bit."""
    torch.set_num_threads(1)
    peers = tiny_raw()["peers"]
    peers[0]["data_parallel"] = 3
    runs = []
    for exchange in ("objectref", "collective"):
        cohort = RayCohort(tiny_config(peers=peers, runtime={**tiny_raw()["runtime"], "exchange": exchange}))
        try:
            runs.append((cohort.train_epoch(0), cohort.evaluate()))
        finally:
            cohort.shutdown()
    (objectref, (objectref_logits, _)), (collective, (collective_logits, _)) = runs
    assert len(collective) == len(objectref)
    for step_objectref, step_collective in zip(objectref, collective):
        for peer_objectref, peer_collective in zip(step_objectref, step_collective):
            for key in ("loss/total", "loss/ce", "train/correct", "train/examples", "exchange/bytes_received"):
                assert peer_collective[key] == peer_objectref[key], key
    for a, b in zip(objectref_logits, collective_logits):
        assert torch.equal(a, b)


def test_a_peer_of_two_workers_matches_one_device_and_resumes_exactly(ray_runtime):
    torch.set_num_threads(1)
    config = parallel_config()
    assert peer_bundles(config) == [{"CPU": 1.0}] * 3
    local, remote = SequentialCohort(tiny_config()), RayCohort(config)
    try:
        assert len(remote.actors[1]) == 2
        expected, got = local.train_epoch(0), remote.train_epoch(0)
        assert len(got) == len(expected)
        for step_expected, step_got in zip(expected, got):
            for peer_expected, peer_got in zip(step_expected, step_got):
                assert set(peer_got) == set(peer_expected)
                assert peer_got["train/examples"] == peer_expected["train/examples"]
                for key in ("loss/total", "loss/ce"):
                    assert peer_got[key] == pytest.approx(peer_expected[key], rel=1e-4), key
        for step_expected, step_got in zip(expected, got):  # each worker receives the other peer's whole payload
            assert step_got[0]["exchange/bytes_received"] == step_expected[0]["exchange/bytes_received"]
            assert step_got[1]["exchange/bytes_received"] == 2 * step_expected[1]["exchange/bytes_received"]
        (local_logits, labels), (remote_logits, remote_labels) = local.evaluate(), remote.evaluate()
        assert torch.equal(labels, remote_labels)
        for a, b in zip(local_logits, remote_logits):
            assert torch.allclose(a, b, atol=1e-3)
            assert torch.equal(a.argmax(1), b.argmax(1))

        state = remote.state_bytes()
        first = remote.train_epoch(1)
        remote.load_state_bytes(state)
        again = remote.train_epoch(1)
        for step_first, step_again in zip(first, again):
            for peer_first, peer_again in zip(step_first, step_again):
                for key in ("loss/total", "loss/ce", "train/correct"):
                    assert peer_again[key] == peer_first[key], key
    finally:
        remote.shutdown()


FAULT_CONFIG = replace(parallel_config(), epochs=3, runtime=replace(parallel_config().runtime,
                                                                       progress_every_seconds=0.0))


@pytest.fixture(scope="module")
def uninterrupted(ray_runtime, tmp_path_factory):
    """The outcome of the fault-free run of ``FAULT_CONFIG``."""
    run_dir = tmp_path_factory.mktemp("uninterrupted") / "run"
    return outcome(run(FAULT_CONFIG, run_dir), run_dir)


@pytest.mark.parametrize("rank", [0, 1])
def test_a_killed_worker_restarts_its_peer_and_the_run_ends_as_an_uninterrupted_one(uninterrupted, tmp_path, rank):
    """SIGKILL of one worker of the data-parallel peer mid-epoch: that peer restarts from the last
    checkpoint (both its workers, their group re-formed), the other peer keeps its actor and is
    rolled back in place, and the run ends bit-identical."""
    config = FAULT_CONFIG
    cohorts: list[RayCohort] = []
    before = {}

    def kill():
        before.update(pids(cohorts[-1]))
        os.kill(cohorts[-1].placement[1]["workers"][rank]["pid"], signal.SIGKILL)

    progress = KillAtStep(config, epoch=1, step=2, kill=kill)
    got = run(config, tmp_path / "faulty", progress, cohorts)
    assert progress.fired and got["recoveries"] == 1
    assert "lost peer 'cnn'" in progress.stream.getvalue()
    assert len(cohorts) == 1 and cohorts[0].restarted == [1]
    after = pids(cohorts[0])
    assert after["mlp"] == before["mlp"] and set(after["cnn"]).isdisjoint(before["cnn"]) and len(after["cnn"]) == 2
    assert outcome(got, tmp_path / "faulty") == uninterrupted


def pids(cohort):
    """Each peer's actor processes (every worker's of a data-parallel peer)."""
    return {name: [worker["pid"] for worker in where.get("workers", [where])]
            for name, where in zip(cohort.peer_names, cohort.placement)}


def test_the_online_job_resumes_a_data_parallel_run_exactly(ray_runtime, tmp_path, capsys):
    """``jobs/online.py`` with R = 2: stopped after an epoch and resumed, the run ends as one that
    ran through; TensorBoard has one directory per peer (the workers' metrics reduced)."""
    import yaml

    raw = tiny_raw(epochs=2)
    raw["peers"][1]["data_parallel"] = 2
    config_file = tmp_path / "cohort.yaml"
    config_file.write_text(yaml.safe_dump(raw))
    through, resumed = tmp_path / "through", tmp_path / "resumed"
    assert online.main(["--config", str(config_file), "--run-dir", str(through)]) == 0
    assert online.main(["--config", str(config_file), "--run-dir", str(resumed), "--stop-after-epochs", "1"]) == 0
    assert online.main(["--resume", str(resumed)]) == 0
    assert "resuming" in capsys.readouterr().out
    expected, got = (json.loads((run / "results.json").read_text()) for run in (through, resumed))
    assert got["complete"] and len(got["history"]) == 2
    for a, b in zip(expected["history"], got["history"]):
        assert [p["val_accuracy"] for p in a["peers"]] == [p["val_accuracy"] for p in b["peers"]]
        assert [p["train_loss"] for p in a["peers"]] == [p["train_loss"] for p in b["peers"]]
    assert outcome(expected, through)["models"] == outcome(got, resumed)["models"]
    assert {path.name for path in (resumed / "tensorboard").iterdir()} >= {"mlp", "cnn"}


def test_feature_payloads_and_mean_of_others_match_one_device(ray_runtime):
    """Stage features travel joined over the workers too (``feature_decoupled``, its weights fixed:
    its dynamic rule follows each worker's batch-mean terms), with the ``mean_of_others`` teacher
    mode; a peer with BatchNorm in every stage on R = 2 workers. The first steps agree within
    1e-7 (relative); the two ResNets amplify the float32 reordering as they train, to 3e-4 by
    the epoch's end: tolerance 2e-3."""
    torch.set_num_threads(1)
    changes = {"peers": [{"name": "wide", "model": "resnet8x4"}, {"name": "narrow", "model": "resnet8"}],
               "distillation": {"teacher": "mean_of_others",
                                "methods": [{"name": "kd"},
                                            {"name": "feature_decoupled", "params": {"dynamic": False}}]}}
    parallel = {**changes, "peers": [changes["peers"][0], {**changes["peers"][1], "data_parallel": 2}]}
    local, remote = SequentialCohort(tiny_config(**changes)), RayCohort(tiny_config(**parallel))
    try:
        for step_expected, step_got in zip(local.train_epoch(0), remote.train_epoch(0)):
            for peer_expected, peer_got in zip(step_expected, step_got):
                for key in ("loss/total", "loss/ce"):
                    assert peer_got[key] == pytest.approx(peer_expected[key], rel=2e-3), key
    finally:
        remote.shutdown()


@pytest.mark.parametrize("placement", ["pack", "spread"])
def test_a_data_parallel_peer_has_a_packed_placement_group_of_its_own(ray_runtime, placement):
    """The `cnn`'s two workers in one placement group of their own (``PACK``); the one-process
    peers in the cohort's group, with ``runtime.placement``'s strategy; every actor on the node of
    its bundle; the groups removed at shutdown."""
    config = replace(parallel_config(), runtime=replace(parallel_config().runtime, placement=placement))
    cohort = RayCohort(config)
    try:
        (shared, index), = cohort.bundles[0]
        workers = cohort.bundles[1]
        assert index == 0 and [rank for _, rank in workers] == [0, 1]
        assert workers[0][0].id == workers[1][0].id != shared.id
        tables = {group.id: ray.util.placement_group_table(group) for group in (shared, workers[0][0])}
        assert tables[shared.id]["strategy"] == placement.upper()
        assert list(tables[shared.id]["bundles"].values()) == [{"CPU": 1.0}]
        assert tables[workers[0][0].id]["strategy"] == "PACK"
        assert list(tables[workers[0][0].id]["bundles"].values()) == [{"CPU": 1.0}] * 2
        for bundles, where in zip(cohort.bundles, cohort.placement):
            for (group, rank), actor in zip(bundles, where.get("workers", [where]), strict=True):
                assert tables[group.id]["bundles_to_node_id"][rank] == actor["node"]
    finally:
        cohort.shutdown()
    assert {ray.util.placement_group_table(group)["state"] for group in (shared, workers[0][0])} == {"REMOVED"}


def test_a_sweep_with_a_data_parallel_peer_reserves_every_worker_and_reports(ray_runtime, tmp_path):
    """Two trials of one epoch on the Ray backend with R = [2, 1]: each trial reserves its driver
    and every worker's bundle in one placement group, the cohort creates none of its own (its
    actors take the trial's bundles), and each trial completes and reports its metrics."""
    from test_sweep import sweep_args, trial_table

    from codistill.commands import sweep
    from codistill.tuning.trainable import trial_resources

    peers = tiny_raw()["peers"]
    peers[0]["data_parallel"] = 2
    config = tiny_config(peers=peers)
    assert trial_resources(config, "ray").bundles == [{"CPU": 1.0}] * 4
    groups_before = set(ray.util.placement_group_table())
    assert sweep.main(sweep_args(tmp_path, "--scheduler", "fifo", "--num-samples", "2", "--set", "epochs=1",
                                 peers=peers)) == 0
    created = [table for group_id, table in ray.util.placement_group_table().items() if group_id not in groups_before]
    assert created and all(list(t["bundles"].values()) == [{"CPU": 1.0}] * 4 for t in created), created
    rows = trial_table(tmp_path / "sweeps" / "s")
    assert len(rows) == 2 and {row["state"] for row in rows} == {"complete"}, rows
    for row in rows:
        assert 0.0 <= float(row["last mean_peer_val_accuracy"]) <= 1.0
        results = json.loads((trial_run_dir(tmp_path / "sweeps" / "s", row["trial"]) / "results.json").read_text())
        assert results["complete"] and [p["name"] for p in results["peers"]] == ["mlp", "cnn"]


def test_two_nodes_with_r_2_1_1_recover_a_killed_worker_and_a_lost_node_exactly(tmp_path):
    """R = [2, 1, 1] on two Ray nodes (``ray.cluster_utils.Cluster``, in its own process): every
    actor runs on its bundle's node, the data-parallel peer's workers packed on one node; a
    SIGKILLed worker restarts its peer only and the run ends as the uninterrupted one; so does
    the loss of that peer's node (a third node added, where Ray re-places its group)."""
    root = Path(__file__).resolve().parent.parent
    env = ray_env()
    env["PYTHONPATH"] = os.pathsep.join([str(root / "platform"), str(root / "tests")])
    result = subprocess.run([sys.executable, str(root / "tests" / "data_parallel_nodes_probe.py"), str(tmp_path)],
                            env=env, capture_output=True, text=True, timeout=500, cwd=root)
    lines = [line for line in result.stdout.splitlines() if line.startswith("REPORT ")]
    assert result.returncode == 0 and lines, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads(lines[0][len("REPORT "):])
    assert len(report["nodes"]) == 2 and report["workers"] == report["bundles"], report
    assert len(set(report["workers"][0])) == 1 and report["strategies"][0] == "PACK", report
    assert {node for peer in report["workers"] for node in peer} == set(report["nodes"]), report
    assert report["recoveries"] == 1 and report["restarted"] == [0], report
    assert report["after"][1:] == report["before"][1:] and set(report["after"][0]).isdisjoint(report["before"][0])
    assert report["faulty"] == report["uninterrupted"]
    lost = report["node_loss"]  # the node of the data-parallel peer's two workers removed: that peer restarts
    assert lost["before"][0] == [lost["removed"]] * 2 and lost["removed"] not in lost["before"][1] + lost["before"][2]
    assert lost["recoveries"] == 1 and lost["restarted"] == [0] and lost["after"][1:] == lost["before"][1:], lost
    assert lost["removed"] not in lost["after"][0] and lost["outcome"] == report["uninterrupted"]
