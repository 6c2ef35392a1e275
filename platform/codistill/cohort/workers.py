"""Worker processes on this machine, each serving one object whose methods the driver calls by name.

:class:`Workers` spawns them (``torch.multiprocessing``, so CUDA works in them) and talks to each
over a pipe, one request and one reply at a time; :class:`LoopbackMember` is what a worker needs
to join a :class:`~codistill.cohort.tensor_group.PayloadGroup` with the others on loopback.
"""

from __future__ import annotations

import os
import pickle
import socket
import sys
import time
import traceback
from collections.abc import Callable
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from typing import Any

import torch
import torch.multiprocessing as mp

from codistill.cohort.tensor_group import PayloadGroup, store_socket

LOOPBACK = "127.0.0.1"


class RemoteTraceback(RuntimeError):
    """The traceback of an error raised inside a worker process (the cause of the error re-raised here)."""


class LoopbackMember:
    """A worker's membership in a :class:`PayloadGroup` on loopback (``device``: where NCCL gathers);
    :meth:`joined` receives the group."""

    rank: int
    device: torch.device
    _listener: socket.socket | None = None

    def open_collective(self) -> int:
        """Rank 0: open the group's store socket on loopback; return its port."""
        self._listener = store_socket(LOOPBACK)
        return self._listener.getsockname()[1]

    def join_collective(self, port: int, world_size: int, backend: str, timeout_s: float) -> str:
        """Join the group over ``backend`` (returns once every rank has joined; its collectives
        time out after ``timeout_s``); the backend in use."""
        device = self.device if backend == "nccl" else torch.device("cpu")
        group = PayloadGroup(LOOPBACK, port, self.rank, world_size, bind_host=LOOPBACK, device=device,
                             timeout_s=timeout_s, listener=self._listener)
        self._listener = None
        self.joined(group)
        return group.backend

    def joined(self, group: PayloadGroup) -> None:
        raise NotImplementedError


def serve(factory: Callable[..., Any], args: tuple, connection: Connection) -> None:
    """A worker process: build ``factory(*args)`` and answer ``(method, args)`` requests with
    ``("ok", result)`` or ``("error", (exception, traceback))`` until ``close``."""
    try:
        member = None
        try:
            member = factory(*args)
            connection.send(("ok", None))
        except Exception as error:
            connection.send(("error", _picklable(error)))
        while member is not None:
            name, call_args = connection.recv()
            try:
                connection.send(("ok", getattr(member, name)(*call_args)))
            except Exception as error:
                connection.send(("error", _picklable(error)))
            if name == "close":
                break
    except (EOFError, BrokenPipeError, KeyboardInterrupt):  # the driver went away
        pass
    # Skip the interpreter's teardown, seconds with torch loaded: the group is closed, nothing is left to write.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _picklable(error: Exception) -> tuple[Exception, str]:
    """``error`` (or a RuntimeError naming it, if it does not pickle) and its formatted traceback."""
    text = traceback.format_exc()
    try:
        pickle.loads(pickle.dumps(error))
        return error, text
    except Exception:
        return RuntimeError(f"{type(error).__name__}: {error}"), text


class Workers:
    """Spawned processes on this machine, each serving one object (``factory(*args[k])``);
    the driver calls their methods by name. A worker's error re-raises here at once, and a worker
    that dies raises :class:`RuntimeError`, without waiting for the others (which may be blocked
    in a collective with it)."""

    def __init__(self, factory: Callable[..., Any], args: list[tuple], names: list[str],
                 start_timeout_s: float = 300.0) -> None:
        context = mp.get_context("spawn")  # CUDA cannot be used in a forked child
        self.names = names
        self._connections: list[Connection] = []
        self._processes: list[BaseProcess] = []
        self._failed = False
        for member_args, name in zip(args, names):
            driver_end, worker_end = context.Pipe()
            process = context.Process(target=serve, args=(factory, member_args, worker_end), daemon=True,
                                      name=f"codistill-{name}")
            process.start()
            worker_end.close()
            self._connections.append(driver_end)
            self._processes.append(process)
        try:
            self._replies(range(len(names)), start_timeout_s)
        except BaseException:
            self.close()
            raise

    def __len__(self) -> int:
        return len(self._connections)

    def call(self, index: int, name: str, *args: Any) -> Any:
        self._connections[index].send((name, args))
        return self._replies([index])[0]

    def call_all(self, name: str, args: list[tuple] | None = None, timeout_s: float | None = None) -> list[Any]:
        """``name(*args[k])`` on every worker at once (no arguments by default); results in order."""
        for index, connection in enumerate(self._connections):
            connection.send((name, args[index] if args is not None else ()))
        return self._replies(range(len(self)), timeout_s)

    def form_group(self, backend: str, timeout_s: float) -> str:
        """Rank 0 opens the store, every worker joins over ``backend`` (``timeout_s``: to join, and
        for each collective); the backend in use."""
        port = self.call(0, "open_collective")
        return self.call_all("join_collective", [(port, len(self), backend, timeout_s)] * len(self), timeout_s)[0]

    def _replies(self, indices: range | list[int], timeout_s: float | None = None) -> list[Any]:
        waiting = {self._connections[k]: k for k in indices}
        results: dict[int, Any] = {}
        while waiting:
            ready = wait(list(waiting), timeout_s)
            if not ready:
                self._failed = True
                raise TimeoutError(f"{', '.join(self.names[k] for k in sorted(waiting.values()))} did not answer "
                                   f"within {timeout_s:.0f} s")
            for connection in ready:
                index = waiting.pop(connection)
                try:
                    status, value = connection.recv()
                except EOFError:
                    self._failed = True
                    raise RuntimeError(f"the process of {self.names[index]} exited "
                                       f"(code {self._processes[index].exitcode})") from None
                if status == "error":
                    self._failed = True
                    error, text = value
                    raise error from RemoteTraceback(f"in {self.names[index]}:\n{text}")
                results[index] = value
        return [results[k] for k in indices]

    def close(self, grace_s: float = 10.0) -> None:
        """Close every worker's group and end the processes: those still running ``grace_s`` after
        being asked (3 s after a failure, when a worker may be blocked in a collective) are terminated."""
        deadline = time.monotonic() + (3.0 if self._failed else grace_s)
        for connection, process in zip(self._connections, self._processes):
            if process.is_alive():
                try:
                    connection.send(("close", ()))
                except OSError:
                    pass
        for process in self._processes:
            process.join(max(0.0, deadline - time.monotonic()))
        for process in self._processes:
            if process.is_alive():
                process.terminate()
                process.join()
        for connection in self._connections:
            connection.close()
        self._connections, self._processes = [], []
