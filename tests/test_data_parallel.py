"""A data-parallel peer equals the same peer on one device (CPU, gloo).

Peer 1 (``cnn``, with BatchNorm) trains as R = 2 workers in two processes forming their own gloo
group; peer 0 (``mlp``) runs whole in each process (the same numbers in both) and distils from the
workers' payloads joined into the global batch's. The run with R = 1 is the same cohort in one
process. Tolerance: float32 sums taken in another order (gradients summed over two workers,
BatchNorm statistics from two partial sums) differ in the last bits; over the first epoch the
per-step losses agree within 1e-4 (relative) and the final validation predictions are the same.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from conftest import tiny_config, tiny_raw

from codistill import metrics as m
from codistill.peer import PeerTrainer
from codistill.peer.data_parallel import GroupBatchNorm, WorkerSlot, joined_views, synchronize_batchnorm, worker_rows

WORKERS = 2


def train_first_epoch(trainers: list[PeerTrainer], exchange_student,
                      feedback: list | None = None) -> tuple[list[list[float]], torch.Tensor]:
    """Peer 0 and peer 1 for one epoch; per step, each peer's total loss (and peer 1's policy
    ``feedback``, where a list is given); then peer 1's val logits."""
    teacher, student = trainers
    losses = []
    for step in range(student.batches.steps_per_epoch):
        teacher_view = teacher.forward(0, step)
        student_view = exchange_student(student.forward(0, step))
        teacher_metrics = teacher.update([student_view])
        student_metrics = student.update([teacher_view])
        losses.append([teacher_metrics[m.LOSS_TOTAL], student_metrics[m.LOSS_TOTAL],
                       student_metrics[m.TRAIN_EXAMPLES]])
        if feedback is not None:
            feedback.append(student.last_feedback)
    return losses, student.evaluate("val")[0]


def data_parallel_worker(rank: int, port: int, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORKERS)
    try:
        config = tiny_config()
        slot = WorkerSlot(rank, WORKERS, dist.group.WORLD)
        trainers = [PeerTrainer(config, 0), PeerTrainer(config, 1, worker=slot)]
        collectives = []  # the bytes of every all_reduce (the group BatchNorm's go through it too)
        all_reduce = dist.all_reduce

        def counted(tensor, *args, **kwargs):
            collectives.append(tensor.numel() * tensor.element_size())
            return all_reduce(tensor, *args, **kwargs)

        dist.all_reduce = counted

        def joined(view):
            parts = [None] * WORKERS
            dist.all_gather_object(parts, view)
            return joined_views(parts)

        losses, logits = train_first_epoch(trainers, joined)
        dist.all_reduce = all_reduce
        norms = [module.running_mean.numel() for module in trainers[1].model.modules()
                 if isinstance(module, GroupBatchNorm)]
        parameters = sum(p.numel() for group in trainers[1].optimization.optimizer.param_groups
                         for p in group["params"])
        torch.save({"losses": losses, "logits": logits, "collectives": collectives, "norms": norms,
                    "parameters": parameters}, Path(out) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def both_runs(tmp_path_factory) -> tuple[dict, list[dict]]:
    torch.set_num_threads(1)
    config = tiny_config()
    losses, logits = train_first_epoch([PeerTrainer(config, 0), PeerTrainer(config, 1)], lambda view: view)
    out = tmp_path_factory.mktemp("workers")
    mp.start_processes(data_parallel_worker, args=(free_port(), str(out)), nprocs=WORKERS, start_method="spawn")
    return {"losses": losses, "logits": logits}, [torch.load(out / f"rank{r}.pt") for r in range(WORKERS)]


def test_rows_cover_the_batch_once():
    for batch, workers in ((64, 2), (7, 3), (5, 5), (65, 8)):
        rows = [worker_rows(batch, workers, r) for r in range(workers)]
        assert rows[0].start == 0 and rows[-1].stop == batch
        assert all(a.stop == b.start for a, b in zip(rows, rows[1:]))
        assert max(r.stop - r.start for r in rows) - min(r.stop - r.start for r in rows) <= 1


def test_two_workers_match_one_device_over_the_first_epoch(both_runs):
    one, workers = both_runs
    steps = len(one["losses"])
    assert steps >= 3
    for step in range(steps):
        teacher, student, _ = one["losses"][step]
        examples = [w["losses"][step][2] for w in workers]
        assert sum(examples) == one["losses"][step][2]
        # the peer's loss: the workers' row means weighted by their rows (the global batch's mean)
        student_workers = sum(w["losses"][step][1] * n for w, n in zip(workers, examples)) / sum(examples)
        assert student_workers == pytest.approx(student, rel=1e-4)
        for w in workers:  # peer 0, whole in each process, learnt from the joined payloads
            assert w["losses"][step][0] == pytest.approx(teacher, rel=1e-4)
    # every worker holds the same network, the one-device network's predictions
    assert torch.allclose(workers[0]["logits"], workers[1]["logits"])
    assert torch.allclose(workers[0]["logits"], one["logits"], atol=1e-4, rtol=1e-4)
    assert torch.equal(workers[0]["logits"].argmax(1), one["logits"].argmax(1))


def test_group_batchnorm_keeps_the_state_dict_keys():
    network = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4))
    keys = list(network.state_dict())
    synchronized = synchronize_batchnorm(network, group=None)
    assert isinstance(synchronized[1], GroupBatchNorm)
    assert list(synchronized.state_dict()) == keys


def test_collectives_per_step_follow_the_formula(both_runs):
    """Per step and worker: one all_reduce of the 4P gradient bytes, and with group BatchNorm two
    of 4(2c + 1) bytes per BatchNorm layer of c channels (forward and backward)."""
    one, workers = both_runs
    steps = len(one["losses"])
    for worker in workers:
        norms = worker["norms"]
        assert len(norms) >= 3
        assert len(worker["collectives"]) == steps * (1 + 2 * len(norms))
        per_step = 4 * worker["parameters"] + sum(2 * 4 * (2 * c + 1) for c in norms)
        assert sum(worker["collectives"]) == steps * per_step


def learned_config():
    """The tiny cohort with the learned policy computing its dense credit every step (learning nothing)."""
    policy = {"name": "policies.learned:LearnedPolicy", "params": {"update_every": 1}}
    return tiny_config(data={**tiny_raw()["data"], "probe_fraction": 0.2, "batch_size": 63},
                       distillation={**tiny_raw()["distillation"], "policy": policy})


def feedback_worker(rank: int, port: int, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORKERS)
    try:
        config, feedback = learned_config(), []
        trainers = [PeerTrainer(config, 0), PeerTrainer(config, 1, worker=WorkerSlot(rank, WORKERS, dist.group.WORLD))]

        def joined(view):
            parts = [None] * WORKERS
            dist.all_gather_object(parts, view)
            return joined_views(parts)

        train_first_epoch(trainers, joined, feedback)
        torch.save(feedback, Path(out) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_a_learning_policy_gets_the_global_batch_feedback(tmp_path):
    """A worker's feedback to its learning policy is the global batch's: the dense credit of every
    row (each worker's scaled by its share: rows 31 and 32 of 63) and the losses' means, as on
    one device (float32 sums in another order: 1e-4), the same on both workers."""
    torch.set_num_threads(1)
    config, expected = learned_config(), []
    train_first_epoch([PeerTrainer(config, 0), PeerTrainer(config, 1)], lambda view: view, expected)
    mp.start_processes(feedback_worker, args=(free_port(), str(tmp_path)), nprocs=WORKERS, start_method="spawn")
    workers = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(WORKERS)]
    assert sum(one is not None and one.credit is not None for one in expected) >= 3
    for step, one in enumerate(expected):
        got = [worker[step] for worker in workers]
        if one is None:
            assert got == [None] * WORKERS
            continue
        for feedback in got:
            assert feedback.loss_total == pytest.approx(one.loss_total, rel=1e-4)
            assert feedback.loss_ce == pytest.approx(one.loss_ce, rel=1e-4)
            assert feedback.probe_loss_before == pytest.approx(one.probe_loss_before, rel=1e-4)
            assert feedback.credit.shape == one.credit.shape
            assert torch.allclose(feedback.credit, one.credit, rtol=1e-3, atol=1e-4 * float(one.credit.abs().max()))
        assert torch.equal(got[0].credit, got[1].credit)
