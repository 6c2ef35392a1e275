"""The per-step cost of the collective payload exchange: K processes all-gathering a payload.

Each of ``K`` spawned processes joins one payload group on loopback (the class named
``module:Class``, so two versions of the exchange can be timed with the same code) and
all-gathers a :class:`~codistill.methods.base.TeacherView` every step — logits ``[B, C]`` and one
stage feature ``[B, F]`` — after ``warmup`` steps; rank 0 reports the median milliseconds per step.
"""

from __future__ import annotations

import importlib
import statistics
import time

import torch
import torch.multiprocessing as mp

from codistill.methods.base import TeacherView


def payload(rank: int, batch: int, classes: int, features: int) -> TeacherView:
    generator = torch.Generator().manual_seed(rank)
    return TeacherView(logits=torch.randn(batch, classes, generator=generator),
                       features=[torch.randn(batch, features, generator=generator)])


def _rank(rank: int, world_size: int, port: int, group_class: str, shape: tuple[int, int, int],
          steps: int, warmup: int, results: "mp.SimpleQueue") -> None:
    torch.set_num_threads(1)
    module_name, _, name = group_class.partition(":")
    group = getattr(importlib.import_module(module_name), name)("127.0.0.1", port, rank, world_size,
                                                                   bind_host="127.0.0.1", timeout_s=300)
    sent = payload(rank, *shape)
    seconds = []
    for step in range(warmup + steps):
        started = time.perf_counter()
        group.all_gather(sent)
        if step >= warmup:
            seconds.append(time.perf_counter() - started)
    group.close()
    if rank == 0:
        results.put(statistics.median(seconds) * 1000)


def exchange_ms_per_step(world_size: int, group_class: str, shape: tuple[int, int, int] = (256, 10, 64),
                         steps: int = 200, warmup: int = 20) -> float:
    """Median milliseconds of one all-gather step among ``world_size`` processes (``shape``:
    batch, classes, feature width)."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    context = mp.get_context("spawn")
    results = context.SimpleQueue()
    processes = [context.Process(target=_rank, args=(rank, world_size, port, group_class, shape, steps, warmup,
                                                     results)) for rank in range(world_size)]
    for process in processes:
        process.start()
    for process in processes:
        process.join()
    return results.get()
