"""The cohort layer: a peer's numbers are the same on every backend whatever threads the process
has (nothing here pins torch's threads), ``--resume`` keeps the run's backend, and the tensor
exchange neither pickles nor copies to the host once the payloads' layout is agreed."""

import json
import pickle
import threading

import pytest
import torch
import yaml
from conftest import tiny_config, tiny_raw
from recording_actor import RecordingActor

from codistill.cohort import tensor_group
from codistill.cohort.process_cohort import ProcessCohort
from codistill.cohort.sequential import SequentialCohort
from codistill.cohort.tensor_group import PayloadGroup, store_socket
from codistill.commands import online
from codistill.methods.base import TeacherView

REPLICAS = {"teacher": "ensemble", "teacher_source": "replicas", "refresh_every_steps": 2,
            "methods": [{"name": "kd", "params": {"temperature": 3.0}}]}


def numbers(metrics: list[list[dict[str, float]]]) -> list[list[dict[str, float]]]:
    return [[{k: v for k, v in peer.items() if not k.startswith("time/")} for peer in step] for step in metrics]


def sequential_epoch(config, process_threads: int) -> list:
    previous = torch.get_num_threads()
    torch.set_num_threads(process_threads)  # what a machine with this many cores gives the process
    try:
        return numbers(SequentialCohort(config).train_epoch(0))
    finally:
        torch.set_num_threads(previous)


def test_a_sequential_peer_computes_with_its_own_threads_whatever_the_process_has():
    raw = tiny_raw(distillation=REPLICAS)
    raw["peers"][1]["resources"] = {"cpus": 2}
    config = tiny_config(peers=raw["peers"], distillation=REPLICAS)
    assert sequential_epoch(config, 1) == sequential_epoch(config, 3)
    cohort, seen = SequentialCohort(config), []
    for trainer in cohort.peers:
        step = trainer.replica_step
        trainer.replica_step = lambda *a, _step=step, **k: seen.append(torch.get_num_threads()) or _step(*a, **k)
    cohort.step(0, 0)
    assert seen == [1, 2]


def test_the_process_cohort_gives_the_sequential_numbers_without_pinned_threads():
    config = tiny_config(runtime={"max_steps_in_flight": 2})
    expected = sequential_epoch(config, 2)
    cohort = ProcessCohort(config)
    try:
        assert numbers(cohort.train_epoch(0)) == expected
    finally:
        cohort.shutdown()


def test_resume_continues_on_the_backend_the_run_started_with(tmp_path, monkeypatch):
    config_file = tmp_path / "cohort.yaml"
    config_file.write_text(yaml.safe_dump(tiny_raw(epochs=2)))
    split, whole = tmp_path / "split", tmp_path / "whole"
    assert online.main(["--config", str(config_file), "--run-dir", str(split), "--backend", "sequential",
                        "--stop-after-epochs", "1"]) == 0
    assert (split / "backend.txt").read_text().strip() == "sequential"
    monkeypatch.setattr(online, "start_ray", lambda config: pytest.fail("--resume started Ray"))
    assert online.main(["--resume", str(split)]) == 0
    assert online.main(["--config", str(config_file), "--run-dir", str(whole), "--backend", "sequential"]) == 0
    a, b = (json.loads((run / "results.json").read_text()) for run in (split, whole))
    assert [[p["val_accuracy"] for p in h["peers"]] for h in a["history"]] == \
           [[p["val_accuracy"] for p in h["peers"]] for h in b["history"]]


def payload(rank: int, rows: int) -> TeacherView:
    generator = torch.Generator().manual_seed(rank)
    return TeacherView(logits=torch.randn(rows, 10, generator=generator),
                       features=[torch.randn(rows, 4 + rank, 3, 3, generator=generator)
                                 .to(memory_format=torch.channels_last)],
                       extras={"norms": [torch.rand(7, generator=generator).bfloat16()], "empty": torch.empty(0, 2)})


def same(a: TeacherView, b: TeacherView) -> bool:
    pairs = [(a.logits, b.logits), (a.features[0], b.features[0]), (a.extras["norms"][0], b.extras["norms"][0]),
             (a.extras["empty"], b.extras["empty"])]
    return all(x.dtype == y.dtype and x.shape == y.shape and x.stride() == y.stride() and torch.equal(x, y)
               for x, y in pairs)


def refuse(*args, **kwargs):
    raise AssertionError("pickled or copied to the host on the per-step path")


def test_steady_state_steps_exchange_tensors_without_pickling_or_host_copies(monkeypatch):
    """Two ranks (threads); the layout is agreed on the first step and again when the batch
    shrinks; every other step runs with pickling and host copies made to fail."""
    listener = store_socket("127.0.0.1")
    port, gathered, groups, barrier = listener.getsockname()[1], {}, {}, threading.Barrier(2)
    steady = threading.Event()

    def member(rank: int) -> None:
        group = PayloadGroup("127.0.0.1", port, rank, 2, bind_host="127.0.0.1", timeout_s=60,
                             listener=listener if rank == 0 else None)
        groups[rank], gathered[rank] = group, []
        gathered[rank].append(group.all_gather(payload(rank, 8)))
        barrier.wait()
        if rank == 0:
            for name in ("dumps", "loads"):
                monkeypatch.setattr(pickle, name, refuse)
            monkeypatch.setattr(tensor_group, "encode", refuse)
            monkeypatch.setattr(torch.Tensor, "cpu", refuse)
            monkeypatch.setattr(torch.Tensor, "numpy", refuse)
            steady.set()
        barrier.wait()
        for _ in range(3):
            gathered[rank].append(group.all_gather(payload(rank, 8)))
        barrier.wait()
        if rank == 0:
            monkeypatch.undo()
        barrier.wait()
        gathered[rank].append(group.all_gather(payload(rank, 5)))  # the last, shorter batch: agreed again
        group.close()

    threads = [threading.Thread(target=member, args=(rank,)) for rank in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert steady.is_set()
    for rank in range(2):
        assert len(gathered[rank]) == 5 and groups[rank].agreements == 2
        for step, payloads in enumerate(gathered[rank]):
            rows = 5 if step == 4 else 8
            assert all(same(got, payload(sender, rows)) for sender, got in enumerate(payloads))


@pytest.mark.ray
def test_ray_actors_give_the_sequential_numbers_without_pinned_threads(ray_runtime):
    """Codistillation with refreshes (the case that differed between backends on a 2-core
    machine), peers of 1 and 2 CPUs, the test process's threads left as they are."""
    from codistill.cohort.ray_cohort import RayCohort

    raw = tiny_raw(distillation=REPLICAS, seed=2)
    raw["peers"][1]["resources"] = {"cpus": 2}
    config = tiny_config(peers=raw["peers"], distillation=REPLICAS, seed=2)
    local, remote = SequentialCohort(config), RayCohort(config)
    try:
        for epoch in range(2):
            assert numbers(remote.train_epoch(epoch)) == numbers(local.train_epoch(epoch))
        assert all(torch.equal(a, b) for a, b in zip(local.evaluate()[0], remote.evaluate()[0]))
    finally:
        remote.shutdown()


def method_and_index(method: str, index: int, args: tuple) -> tuple:
    return (method, index)


def test_the_objectref_exchange_hands_each_peer_the_others_forward_refs_in_order():
    """Ray-free: the step driver on remote handles; every forward first, then each update with
    the other peers' forward references, step after step."""
    from codistill.cohort.exchanges import ObjectRefExchange
    from codistill.cohort.handles import RemotePeer

    log: list = []
    handles = [RemotePeer(RecordingActor(k, log, method_and_index)) for k in range(3)]
    rows = ObjectRefExchange().submit(handles, 4, range(2, 4))
    assert rows == [[("update", k) for k in range(3)]] * 2
    first_step = log[:6]
    assert [(k, method) for k, method, _ in first_step[:3]] == [(0, "forward"), (1, "forward"), (2, "forward")]
    assert all(args == (4, 2) for _, _, args in first_step[:3])
    assert {k: args for k, method, args in first_step[3:]} == {
        0: (("forward", 1), ("forward", 2)), 1: (("forward", 0), ("forward", 2)), 2: (("forward", 0), ("forward", 1))}
