"""Batches prepared in the background: thread pools whose threads compute with one torch thread
each, and :class:`Prefetch`, the values of the steps ahead computed while a step computes.

Several threads that each run a multi-threaded torch op oversubscribe the cores (on 2 busy cores
an antialiased crop of a 375×500 image to 224² took 24 ms with 2 intra-op threads and 4.5 ms with
one), so a pool's threads compute with one. torch's ``set_num_threads`` sets the calling thread's
count and also the default that threads take when they first compute, so a pool's threads first
take the default, then set one, all before the default is put back to the creating thread's count.
"""

from __future__ import annotations

import itertools
import threading
import weakref
from collections.abc import Callable, Hashable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Generic, TypeVar

import torch

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


def _compute_with_one_thread() -> None:
    torch.get_num_threads()  # the thread takes the default now, not when it first computes
    torch.set_num_threads(1)


def single_threaded_pool(threads: int, name: str) -> ThreadPoolExecutor:
    """A pool of ``threads`` started threads, each computing with one torch (intra-op) thread."""
    previous = torch.get_num_threads()
    started = threading.Barrier(threads + 1)
    pool = ThreadPoolExecutor(threads, thread_name_prefix=name, initializer=_compute_with_one_thread)
    for _ in range(threads):  # each waits at the barrier, so every submit starts a thread
        pool.submit(started.wait)
    started.wait()
    torch.set_num_threads(previous)
    return pool


class Prefetch(Generic[K, V]):
    """``load(key)``, computed ahead in one background thread for at most ``depth`` keys.

    ``load`` must be a pure function of its key: :meth:`take` returns the same value whether it
    was computed ahead or not. An exception of ``load`` is raised by the :meth:`take` of its key.
    The thread stops when the prefetch is garbage-collected (what it computes then is dropped).
    """

    def __init__(self, load: Callable[[K], V], depth: int, name: str) -> None:
        self.load, self.depth = load, depth
        self.pending: dict[K, Future[V]] = {}
        pool = single_threaded_pool(1, name)
        weakref.finalize(self, pool.shutdown, wait=False, cancel_futures=True)
        self.pool = pool

    def take(self, key: K, following: Iterable[K]) -> V:
        """``load(key)``; the next ``depth`` keys of ``following`` are then computed ahead, and any
        other key computed ahead is dropped (a jump: a resume, a step asked for twice)."""
        future = self.pending.pop(key, None)
        ahead = list(itertools.islice(following, self.depth))
        for stale in [pending for pending in self.pending if pending not in ahead]:
            self.pending.pop(stale).cancel()
        for upcoming in ahead:
            if upcoming not in self.pending:
                self.pending[upcoming] = self.pool.submit(self.load, upcoming)
        return self.load(key) if future is None else future.result()
