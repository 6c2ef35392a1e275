"""Both exchanges of the Ray cohort: payload encoding, the window of steps in flight, and the same
numbers as the single-process cohort for every method, a non-uniform teacher policy, a
checkpoint and a resume."""

import json

import pytest
import torch
import yaml
from conftest import tiny_config, tiny_raw

from codistill.cohort.ray_cohort import RayCohort
from codistill.cohort.sequential import SequentialCohort
from codistill.cohort.tensor_group import PayloadGroup, decode, encode, store_socket
from codistill.cohort.window import run_in_window
from codistill.commands import online
from codistill.methods.base import TeacherView

EVERY_METHOD = {
    "peers": [{"name": "resnet", "model": "resnet8"}, {"name": "cnn", "model": "cnn"},
              {"name": "mlp", "model": "mlp"}],
    "distillation": {"teacher": "ensemble", "policy": "policies.confidence:ConfidenceAwarePolicy", "methods": [
        {"name": "kd"}, {"name": "dkd", "params": {"warmup_epochs": 1}}, {"name": "dckd"},
        {"name": "feature_decoupled"}, {"name": "indistill", "params": {"curriculum_epochs": [1]}},
        {"name": "sfr"}]},
}


def test_payloads_of_any_shape_and_dtype_travel_exactly():
    view = TeacherView(logits=torch.randn(5, 10), features=[torch.randn(5, 8, 4, 4), torch.randn(5, 32)],
                       extras={"norms": [torch.rand(8).bfloat16(), torch.rand(16)], "empty": torch.empty(0, 3),
                               "nested": {"k": (torch.arange(4), 2.5)}})
    back = decode(encode(view))
    assert torch.equal(back.logits, view.logits) and len(back.features) == 2
    assert all(torch.equal(a, b) for a, b in zip(back.features, view.features))
    assert back.extras["norms"][0].dtype == torch.bfloat16
    assert torch.equal(back.extras["norms"][0], view.extras["norms"][0])
    assert back.extras["empty"].shape == (0, 3) and back.extras["nested"]["k"][1] == 2.5
    assert torch.equal(back.extras["nested"]["k"][0], torch.arange(4))


def test_group_gathers_payloads_of_different_sizes_in_rank_order():
    """Two ranks (threads here, actors in a cohort) on loopback; the second payload outgrows the
    initial buffer, so the group grows its capacity and repeats the round."""
    import threading

    listener = store_socket("127.0.0.1")
    port, gathered = listener.getsockname()[1], {}

    def member(rank: int) -> None:
        group = PayloadGroup("127.0.0.1", port, rank, 2, bind_host="127.0.0.1", timeout_s=60,
                             listener=listener if rank == 0 else None)
        gathered[rank] = [group.all_gather({"x": torch.full((10 + 5000 * rank,), float(rank))}) for _ in range(2)]
        group.close()

    threads = [threading.Thread(target=member, args=(rank,)) for rank in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    for rank in range(2):
        for payloads in gathered[rank]:
            assert [p["x"].shape[0] for p in payloads] == [10, 5010]
            assert [float(p["x"].sum()) for p in payloads] == [0.0, 5010.0]


@pytest.mark.parametrize("total, per_call, window", [(10, 1, 3), (10, 4, 8), (3, 8, 16), (7, 5, 2)])
def test_driver_keeps_a_bounded_window_of_steps_in_flight(total, per_call, window):
    in_flight, seen, progress = set(), [], []

    def submit(steps):
        in_flight.update(steps)
        seen.append(len(in_flight))
        return list(steps)

    def collect(steps):
        in_flight.difference_update(steps)
        return steps

    results = run_in_window(total, per_call, window, submit, collect, lambda done, n: progress.append((done, n)))
    assert results == list(range(total))
    assert max(seen) <= max(window, per_call)
    assert progress[-1] == (total, total) and [d for d, _ in progress] == sorted(d for d, _ in progress)


def every_method_config(exchange: str):
    return tiny_config(**EVERY_METHOD, runtime={"exchange": exchange, "max_steps_in_flight": 4})


@pytest.fixture(scope="module")
def one_process_every_method():
    """Two epochs of the every-method cohort in one process: step metrics and validation logits."""
    torch.set_num_threads(1)
    local = SequentialCohort(every_method_config("objectref"))
    return [local.train_epoch(epoch) for epoch in range(2)], local.evaluate()


@pytest.mark.ray
@pytest.mark.parametrize("exchange", ["objectref", "collective"])
def test_both_exchanges_train_exactly_like_one_process_with_every_method(ray_runtime, one_process_every_method,
                                                                        exchange):
    """Step metrics and final validation logits are bit-identical to SequentialCohort's, with
    stage features of three architectures (channels-last ones included), InDistill's filter
    norms and CA-MKD weights, over epochs split into several calls."""
    epochs, (local_logits, labels) = one_process_every_method
    remote = RayCohort(every_method_config(exchange))
    try:
        for epoch, expected in enumerate(epochs):
            got = remote.train_epoch(epoch)
            assert len(got) == len(expected) == remote.steps_per_epoch()
            for step_expected, step_got in zip(expected, got):
                for peer_expected, peer_got in zip(step_expected, step_got):
                    assert set(peer_got) == set(peer_expected)
                    for key, value in peer_expected.items():
                        if not key.startswith("time/"):
                            assert peer_got[key] == value, key
        remote_logits, remote_labels = remote.evaluate()
        assert torch.equal(labels, remote_labels)
        assert all(torch.equal(a, b) for a, b in zip(local_logits, remote_logits))
    finally:
        remote.shutdown()


@pytest.mark.ray
def test_collective_job_checkpoints_resumes_and_logs_like_one_process(ray_runtime, tmp_path, capsys):
    raw = tiny_raw(epochs=2, runtime={"exchange": "collective", "max_steps_in_flight": 2,
                                      "log_every_steps": 2, "progress_every_seconds": 0.0})
    config_file = tmp_path / "cohort.yaml"
    config_file.write_text(yaml.safe_dump(raw))
    split, whole = tmp_path / "split", tmp_path / "whole"
    assert online.main(["--config", str(config_file), "--run-dir", str(split), "--stop-after-epochs", "1"]) == 0
    assert online.main(["--resume", str(split)]) == 0
    assert online.main(["--config", str(config_file), "--run-dir", str(whole), "--backend", "sequential"]) == 0
    out = capsys.readouterr().out
    assert "resuming" in out and "step 2/" in out
    a, b = (json.loads((run / "results.json").read_text()) for run in (split, whole))
    for epoch_a, epoch_b in zip(a["history"], b["history"]):
        assert [p["val_accuracy"] for p in epoch_a["peers"]] == [p["val_accuracy"] for p in epoch_b["peers"]]
        assert [p["train_loss"] for p in epoch_a["peers"]] == [p["train_loss"] for p in epoch_b["peers"]]
    assert sorted(p.name for p in (split / "tensorboard").iterdir()) == ["cnn", "cohort", "mlp"]


def test_nccl_only_when_every_peer_has_a_card_of_its_own():
    from codistill.cohort.exchanges import nccl_applies

    own = [{"node": "a", "device": "cuda:0", "gpu_ids": ["0"]}, {"node": "a", "device": "cuda:0", "gpu_ids": ["1"]}]
    shared = [{"node": "a", "device": "cuda:0", "gpu_ids": ["0"]}, {"node": "a", "device": "cuda:0", "gpu_ids": ["0"]}]
    other_nodes = [{"node": "a", "device": "cuda:0", "gpu_ids": ["0"]},
                   {"node": "b", "device": "cuda:0", "gpu_ids": ["0"]}]
    cpu = [{"node": "a", "device": "cpu", "gpu_ids": []}, {"node": "a", "device": "cuda:0", "gpu_ids": ["1"]}]
    assert nccl_applies(own) and nccl_applies(other_nodes)
    assert not nccl_applies(shared) and not nccl_applies(cpu)
