"""Codistillation in one process (``distillation.teacher_source: replicas``): the refresh schedule,
what a replica predicts (the teacher's weights, eval-mode BatchNorm), every method and teacher
mode, the learned policy, own batch orders, bytes and staleness, checkpoints and resume."""

from __future__ import annotations

import copy
import json

import pytest
import torch
import yaml
from conftest import tiny_config, tiny_raw
from recording_actor import RecordingActor

from codistill import metrics as m
from codistill import safe_io
from codistill.checkpoint import find_checkpoint
from codistill.cohort.base import others
from codistill.cohort.sequential import SequentialCohort
from codistill.commands import online
from codistill.peer.replicas import RefreshSchedule, ReplicaTeachers
from codistill.validation import parse_config

PLAIN = [{"name": "a", "model": "plain_network:PlainMLP"}, {"name": "b", "model": "plain_network:PlainMLP"},
         {"name": "c", "model": "plain_network:PlainMLP"}]


@pytest.fixture(autouse=True)
def one_thread():
    torch.set_num_threads(1)


def replicas(every: int = 1, at_epoch_start: bool = False, burn_in: int = 0, **distillation) -> dict:
    return {"distillation": {"teacher_source": "replicas", "refresh_every_steps": every,
                             "refresh_at_epoch_start": at_epoch_start, "burn_in_epochs": burn_in,
                             "methods": [{"name": "kd"}], **distillation}}


def capture_payloads(peer) -> list:
    """Record the teacher payloads ``peer.update`` receives."""
    received, update = [], peer.update
    peer.update = lambda payloads: received.append(payloads) or update(payloads)
    return received


def test_refresh_steps_follow_burn_in_the_interval_and_epoch_starts():
    plain = RefreshSchedule(every=4, at_epoch_start=False, burn_in_epochs=1, steps_per_epoch=6)
    assert [plain.steps(epoch) for epoch in range(3)] == [[], [0, 4], [2]]
    assert RefreshSchedule(4, True, 1, 6).steps(2) == [0, 2]
    assert RefreshSchedule(1, False, 0, 3).steps(5) == [0, 1, 2]


@pytest.mark.parametrize("teacher", ["ensemble", "mean_of_others"])
def test_with_refresh_every_step_replicas_train_exactly_like_live_peers_without_batchnorm(teacher):
    """Networks whose train and eval modes compute the same: with N = 1 a replica holds the weights
    the teacher starts the step with, so every step's numbers are those of live distillation."""
    distillation = {"teacher": teacher, "methods": [{"name": "kd"}, {"name": "feature_decoupled"}]}
    live = SequentialCohort(tiny_config(peers=PLAIN, distillation=distillation))
    coda = SequentialCohort(tiny_config(peers=PLAIN, **replicas(1, **distillation)))
    for epoch in range(2):
        for expected, got in zip(live.train_epoch(epoch), coda.train_epoch(epoch)):
            for peer_expected, peer_got in zip(expected, got):
                assert peer_got[m.REPLICA_STALENESS] == 0.0
                for key, value in peer_expected.items():
                    if not key.startswith(("time/", "exchange/")):
                        assert peer_got[key] == value, key
    assert all(torch.equal(a, b) for a, b in zip(live.evaluate()[0], coda.evaluate()[0]))


def test_with_refresh_every_step_a_replica_predicts_as_the_teachers_network_in_eval_mode():
    """BatchNorm networks: the replica's payload (logits, stage features, InDistill's extras) is
    the teacher's network, with the weights it starts the step with, run in eval mode on the
    student's batch; the live payload is the train-mode one (batch statistics), which differs."""
    methods = [{"name": "kd"}, {"name": "indistill", "params": {"curriculum_epochs": [2]}}]
    config = tiny_config(**replicas(1, methods=methods))
    cohort = SequentialCohort(config)
    student, teacher = cohort.peers
    for step in range(3):
        cohort.step(0, step)
    at_step = copy.deepcopy(teacher.model)
    received = capture_payloads(student)
    cohort.step(0, 3)
    replica = received[-1][0]
    images = student.batches.batch(0, 3).images
    with torch.no_grad():
        eval_view = student.objective.teacher_payload(at_step, at_step.eval()(images))
        train_view = student.objective.teacher_payload(at_step, at_step.train()(images))
    assert torch.equal(replica.logits, eval_view.logits) and not torch.equal(replica.logits, train_view.logits)
    assert all(torch.equal(a, b) for a, b in zip(replica.features, eval_view.features))
    assert all(torch.equal(a, b) for a, b in zip(replica.extras["channel_importance"],
                                                 eval_view.extras["channel_importance"]))
    assert not student.replicas.networks[0].training
    assert not any(p.requires_grad for p in student.replicas.networks[0].parameters())


def test_bytes_and_staleness_are_reported_per_step():
    live = SequentialCohort(tiny_config())
    step = live.step(0, 0)
    assert step[0][m.BYTES_RECEIVED] == 64 * 10 * 4  # one teacher's float32 logits for a batch of 64
    cohort = SequentialCohort(tiny_config(**replicas(4)))
    sent = [peer.replica_weights() for peer in cohort.peers]
    epoch = cohort.train_epoch(0) + cohort.train_epoch(1)
    schedule = RefreshSchedule.of(cohort.config, cohort.steps_per_epoch())
    due = [schedule.due(e, s) for e in range(2) for s in range(cohort.steps_per_epoch())]
    for k in range(len(cohort.peers)):
        weights = sum(len(blob) for blob in others(sent, k))
        assert [row[k][m.BYTES_RECEIVED] for row in epoch] == [weights if d else 0.0 for d in due]
        staleness, since = [], 0
        for d in due:
            since = 0 if d else since + 1
            staleness.append(float(since))
        assert [row[k][m.REPLICA_STALENESS] for row in epoch] == staleness
        teacher_state = cohort.peers[1 - k].model.state_dict().values()
        assert epoch[0][k][m.REPLICA_MEMORY_BYTES] == sum(t.numel() * t.element_size() for t in teacher_state)


def test_burn_in_trains_without_teachers_and_refreshes_when_it_ends():
    cohort = SequentialCohort(tiny_config(epochs=3, **replicas(100, burn_in=1)))
    received = capture_payloads(cohort.peers[0])
    burn_in = cohort.train_epoch(0)
    assert all(row[0][m.DISTILL_STRENGTH] == 0.0 and m.REPLICA_STALENESS not in row[0] for row in burn_in)
    assert all(payloads == [] for payloads in received)
    after = cohort.train_epoch(1)
    assert [row[0][m.REPLICA_STALENESS] for row in after] == [float(s) for s in range(cohort.steps_per_epoch())]
    assert any(key.startswith("loss/kd") for key in after[0][0]) and len(received[-1]) == 1


@pytest.mark.parametrize("teacher", ["ensemble", "mean_of_others"])
def test_every_method_learns_from_replicas(teacher):
    methods = [{"name": "kd"}, {"name": "dkd"}, {"name": "dckd"}, {"name": "feature_decoupled"},
               {"name": "indistill", "params": {"curriculum_epochs": [1]}}, {"name": "sfr"}]
    peers = [{"name": "wide", "model": "resnet8x4", "sparsity": {"target": 0.5, "every_steps": 2}},
             {"name": "narrow", "model": "resnet8"}]
    cohort = SequentialCohort(tiny_config(peers=peers, **replicas(3, teacher=teacher, methods=methods)))
    for epoch in range(2):
        metrics = cohort.train_epoch(epoch)
    wide, narrow = metrics[-1]
    every_method = {"loss/feature_decoupled/foreground", "loss/sfr/features", "loss/dkd/nckd", "loss/indistill/logits"}
    assert every_method <= set(narrow)
    assert all(torch.isfinite(torch.tensor(v)) for v in [*wide.values(), *narrow.values()])
    replica = cohort.peers[1].replicas.networks[0]
    assert not any(key.endswith(("_orig", "_mask")) for key in replica.state_dict())  # pruning folded in


def test_the_learned_policy_learns_from_replicas():
    raw = tiny_raw(**replicas(2))
    raw["data"]["probe_fraction"] = 0.1
    raw["distillation"]["policy"] = {"name": "policies.learned:LearnedPolicy", "params": {"update_every": 3}}
    cohort = SequentialCohort(parse_config(raw))
    rows = cohort.train_epoch(0) + cohort.train_epoch(1)
    updates = [row[0][m.LEARNER_UPDATES] for row in rows if m.LEARNER_UPDATES in row[0]]
    assert updates and updates[-1] == len(updates)


def test_own_batch_orders_draw_each_peer_a_permutation_of_its_own():
    shared = SequentialCohort(tiny_config(**replicas(2)))
    own = SequentialCohort(parse_config(tiny_raw(**replicas(2), data={**tiny_raw()["data"], "shared_batches": False})))
    for cohort, same in ((shared, True), (own, False)):
        orders = [torch.cat([peer.batches.batch(0, s).targets for s in range(cohort.steps_per_epoch())])
                  for peer in cohort.peers]
        assert torch.equal(orders[0], orders[1]) == same
        assert torch.equal(orders[0].sort().values, orders[1].sort().values)  # the same examples, reordered
    again = SequentialCohort(own.config)
    assert own.train_epoch(0)[-1][0][m.LOSS_TOTAL] == again.train_epoch(0)[-1][0][m.LOSS_TOTAL]


def test_replicas_in_half_precision_take_half_the_memory():
    """What ``runtime.amp`` asks for on a GPU, run here on the CPU (no GPU on this machine)."""
    peer = SequentialCohort(tiny_config(**replicas(1))).peers[0]
    info, blob = peer.dataset.info, SequentialCohort(tiny_config()).peers[1].replica_weights()
    full, half = (ReplicaTeachers(["cnn"], info, peer.objective.teacher_payload, torch.device("cpu"), dtype)
                  for dtype in (None, torch.bfloat16))
    for replica in (full, half):
        replica.load([blob], 0, ["cnn"])
    assert half.memory_bytes() * 2 == full.memory_bytes() + sum(  # integer buffers (BN counters) keep their size
        t.numel() * t.element_size() for t in full.networks[0].buffers() if not t.is_floating_point())
    images = peer.batches.batch(0, 0).images
    low, high = half.views(images)[0].logits, full.views(images)[0].logits
    assert low.dtype == torch.float32 and torch.allclose(low, high, rtol=0.05, atol=0.05) and not torch.equal(low, high)


def test_a_resumed_run_ends_bit_identical_with_replicas_carried_in_the_checkpoint(tmp_path):
    """Refreshes every 5 steps of 6-step epochs, none at epoch starts: epoch 3 starts on the
    replicas refreshed before step 10, which only the checkpoint holds."""
    raw = tiny_raw(epochs=3, **replicas(5))
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(raw))
    config = parse_config(raw)
    split, straight = tmp_path / "split", tmp_path / "straight"
    run = lambda *argv: online.main([*argv, "--backend", "sequential"])  # noqa: E731
    assert run("--config", str(tmp_path / "c.yaml"), "--run-dir", str(straight)) == 0
    assert run("--config", str(tmp_path / "c.yaml"), "--run-dir", str(split), "--stop-after-epochs", "2") == 0
    checkpoint, _ = find_checkpoint(split, 2)
    states = [safe_io.loads(blob) for blob in checkpoint.peer_states]
    steps = SequentialCohort(config).steps_per_epoch()
    schedule = RefreshSchedule.of(config, steps)
    last_refresh = max(epoch * steps + step for epoch in range(2) for step in schedule.steps(epoch))
    assert not schedule.due(2, 0) and [s["replicas"]["refreshed_at"] for s in states] == [last_refresh] * 2
    assert run("--resume", str(split)) == 0
    a, b = (json.loads((r / "results.json").read_text()) for r in (split, straight))
    assert a["peers"] == b["peers"] and a["ensemble"] == b["ensemble"]
    for epoch_a, epoch_b in zip(a["history"], b["history"]):
        assert [(p["val_accuracy"], p["train_loss"]) for p in epoch_a["peers"]] == \
               [(p["val_accuracy"], p["train_loss"]) for p in epoch_b["peers"]]
    assert a["peers"][0]["replica_memory_bytes"] > 0 and a["peers"][0]["bytes_received"] > 0


def test_tensorboard_shows_staleness_and_bytes_per_epoch(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    (tmp_path / "c.yaml").write_text(yaml.safe_dump(tiny_raw(**replicas(3))))
    assert online.main(["--config", str(tmp_path / "c.yaml"), "--run-dir", str(tmp_path / "run"),
                        "--backend", "sequential"]) == 0
    peer = EventAccumulator(str(tmp_path / "run" / "tensorboard" / "mlp")).Reload()
    assert {m.REPLICA_STALENESS, m.EXCHANGE_BYTES_EPOCH, m.REPLICA_FORWARD_SECONDS,
            m.REPLICA_MEMORY_BYTES} <= set(peer.Tags()["scalars"])
    cohort = EventAccumulator(str(tmp_path / "run" / "tensorboard" / "cohort")).Reload()
    assert [event.value > 0 for event in cohort.Scalars(m.EXCHANGE_BYTES_EPOCH)] == [True, True]


class FakeCalls:
    def __init__(self) -> None:
        self.fetched: list = []

    def get_failing_fast(self, refs: list) -> list:
        self.fetched += refs
        return [[{"step": s} for s in range(*ref[2][1:])] if ref[0] == "run_steps" else None for ref in refs]


def test_the_replica_exchange_passes_weights_as_references_and_cuts_chunks_at_refreshes():
    """Ray-free: at a refresh each actor is asked for its weights once and each other actor gets
    those references (never fetched by the driver); a chunk starts at every refresh step."""
    from codistill.cohort.handles import RemotePeer
    from codistill.cohort.replica_exchange import ReplicaExchange, exchange_for
    from codistill.cohort.window import run_in_window

    config = tiny_config(**replicas(4))
    exchange, log, calls = exchange_for(config), [], FakeCalls()
    assert isinstance(exchange, ReplicaExchange)
    actors = [RemotePeer(RecordingActor(k, log)) for k in range(3)]
    exchange.connect(actors, [{"steps_per_epoch": 6}] * 3, calls)
    rows = run_in_window(6, exchange.steps_per_call(16), 16, lambda steps: exchange.submit(actors, 1, steps),
                         lambda refs: exchange.collect(refs, calls), breaks=exchange.breaks(1))
    assert len(rows) == 6 and all(len(row) == 3 for row in rows)
    assert [args for k, method, args in log if method == "run_steps" and k == 0] == [(1, 0, 2), (1, 2, 6)]
    assert sorted(k for k, method, _ in log if method == "replica_weights") == [0, 1, 2]
    loads = {k: args for k, method, args in log if method == "load_replicas"}
    assert {k: [ref[1] for ref in args[2:]] for k, args in loads.items()} == {0: [1, 2], 1: [0, 2], 2: [0, 1]}
    assert all(args[:2] == (1, 2) for args in loads.values())
    assert not [ref for ref in calls.fetched if ref[0] == "replica_weights"]
