"""The collective exchange without Ray: one ``torch.multiprocessing`` process per peer.

Each process holds one :class:`~codistill.peer.PeerTrainer` and joins a
:class:`~codistill.collective.PayloadGroup` the way a Ray ``PeerActor`` does for
``runtime.exchange: collective``: peer 0 opens the store's socket with
:func:`~codistill.collective.store_socket`, the others connect to its port, and every peer then
trains chunks of steps itself with :func:`~codistill.collective.run_steps`. The driver talks to
each process over a pipe, one request and one reply at a time, so :class:`ProcessCohort` trains,
evaluates, checkpoints and resumes like any :class:`~codistill.cohort_base.Cohort` under
:func:`~codistill.runner.run_cohort`. Every process runs on this machine and listens on loopback.

It serves where Ray is absent (the GPU machine): the computation of the Ray collective exchange,
so on the CPU it gives exactly :class:`~codistill.sequential.SequentialCohort`'s numbers. A CUDA
peer ``k`` runs on GPU ``k mod count``. The group's backend is NCCL when every peer has a GPU of
its own and gloo otherwise: NCCL (since 2.5) refuses two ranks on one GPU, so peers sharing a card
(fractional GPUs) exchange over gloo; ``backend="nccl"`` forces NCCL (for an NCCL that allows
several ranks per GPU). A learning teacher policy (a learner shared by the peers) is not supported.

:func:`probe_payload_group` forms a bare group of processes and all-gathers payloads of
different shapes, sizes and dtypes: the check that a backend works on this machine.
"""

from __future__ import annotations

import math
import os
import pickle
import socket
import sys
import time
import traceback
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from typing import Any, Callable

import torch
import torch.multiprocessing as mp
from torch import Tensor

from codistill.cohort_base import Cohort, StepCallback
from codistill.collective import PayloadGroup, run_steps, store_socket
from codistill.config import RunConfig
from codistill.methods.base import TeacherView
from codistill.peer import PeerTrainer
from codistill.peer.optimization import select_device
from codistill.peer.replicas import uses_replicas

LOOPBACK = "127.0.0.1"
BACKENDS = ("auto", "nccl", "gloo")


def peer_threads(config: RunConfig, index: int) -> int:
    """Torch threads for peer ``index``: the whole CPUs it was given, at least one (as a Ray peer actor's)."""
    return max(1, math.floor(config.peers[index].resources.cpus))


class RemoteTraceback(RuntimeError):
    """The traceback of an error raised inside a worker process (the cause of the error re-raised here)."""


class GroupMember:
    """One process's membership in a :class:`PayloadGroup` on loopback (``device``: where NCCL stages)."""

    def __init__(self, rank: int, device: torch.device) -> None:
        self.rank, self.device = rank, device
        self.group: PayloadGroup | None = None
        self._listener: socket.socket | None = None

    def open_collective(self) -> int:
        """Rank 0: open the group's store socket on loopback; return its port."""
        self._listener = store_socket(LOOPBACK)
        return self._listener.getsockname()[1]

    def join_collective(self, port: int, world_size: int, backend: str, timeout_s: float) -> str:
        """Join the group over ``backend`` (returns once every rank has joined; its collectives
        time out after ``timeout_s``); the backend in use."""
        device = self.device if backend == "nccl" else torch.device("cpu")
        self.group = PayloadGroup(LOOPBACK, port, self.rank, world_size, bind_host=LOOPBACK, device=device,
                                  timeout_s=timeout_s, listener=self._listener)
        self._listener = None
        return self.group.backend

    def all_gather_probe(self, rounds: int) -> list[list[TeacherView]]:
        """All-gather this rank's :func:`probe_payload` (built on its device) ``rounds`` times."""
        payload = probe_payload(self.rank, self.device)
        return [self.joined.all_gather(payload) for _ in range(rounds)]

    @property
    def joined(self) -> PayloadGroup:
        if self.group is None:
            raise RuntimeError("join_collective() first")
        return self.group

    def close(self) -> None:
        if self.group is not None:
            self.group.close()
            self.group = None


class PeerProcess(GroupMember):
    """What runs in peer ``index``'s process: its trainer, and its place in the group."""

    def __init__(self, config: RunConfig, index: int) -> None:
        peer = config.peers[index]
        torch.set_num_threads(peer_threads(config, index))
        device = select_device(config, peer)
        if device.type == "cuda":
            device = torch.device("cuda", index % torch.cuda.device_count())
        self.trainer = PeerTrainer(config, index, device=device)
        super().__init__(index, device)

    def describe(self) -> dict[str, Any]:
        trainer = self.trainer
        on_gpu = trainer.device.type == "cuda"
        return {"pid": os.getpid(), "device": str(trainer.device), "threads": torch.get_num_threads(),
                "gpu_uuid": str(torch.cuda.get_device_properties(trainer.device).uuid) if on_gpu else None,
                "steps_per_epoch": trainer.dataset.steps_per_epoch(trainer.config.data.batch_size),
                "learns_policy": trainer.policy.make_learner() is not None}

    def run_steps(self, epoch: int, start: int, stop: int) -> list[dict[str, float]]:
        metrics = run_steps(self.trainer, self.joined, epoch, range(start, stop))
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)  # the reply comes once the steps' GPU work is done
        return metrics

    def evaluate(self, split: str) -> tuple[Tensor, Tensor]:
        return self.trainer.evaluate(split)

    def sparsity(self) -> float | None:
        return self.trainer.sparsity()

    def state_bytes(self) -> bytes:
        return self.trainer.state_bytes()

    def load_state_bytes(self, blob: bytes) -> None:
        self.trainer.load_state_bytes(blob)

    def model_bytes(self) -> bytes:
        return self.trainer.model_bytes()

    def peak_gpu_memory_bytes(self) -> int | None:
        """The most GPU memory this process's tensors held so far (``None`` on the CPU)."""
        return torch.cuda.max_memory_allocated(self.device) if self.device.type == "cuda" else None


def serve(factory: Callable[..., GroupMember], args: tuple, connection: Connection) -> None:
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
    """Spawned processes on this machine, each serving one :class:`GroupMember` (``factory(*args[k])``);
    the driver calls their methods by name. A worker's error re-raises here at once, and a worker
    that dies raises :class:`RuntimeError`, without waiting for the others (which may be blocked
    in a collective with it)."""

    def __init__(self, factory: Callable[..., GroupMember], args: list[tuple], names: list[str],
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


def group_backend(placement: list[dict[str, Any]], requested: str) -> str:
    """``requested``, or for ``auto``: NCCL when every peer is on a GPU of its own, else gloo."""
    if requested != "auto":
        return requested
    gpus = [where["gpu_uuid"] for where in placement]
    return "nccl" if None not in gpus and len(set(gpus)) == len(gpus) else "gloo"


class ProcessCohort(Cohort):
    """The peers of ``config`` in one process each, exchanging payloads with one all-gather per
    step in a ``torch.distributed`` group (``backend``: see the module docstring); each call
    trains ``runtime.max_steps_in_flight`` steps. ``timeout_s`` bounds the start, the group's
    forming and each of its collectives."""

    def __init__(self, config: RunConfig, backend: str = "auto", timeout_s: float = 300.0) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got '{backend}'")
        if uses_replicas(config):
            raise NotImplementedError("ProcessCohort exchanges live payloads; codistillation's replicas run on "
                                      "SequentialCohort or RayCohort")
        self.config = config
        self.workers = Workers(PeerProcess, [(config, k) for k in range(len(config.peers))],
                               [f"peer '{peer.name}'" for peer in config.peers], timeout_s)
        try:
            self.placement: list[dict[str, Any]] = self.workers.call_all("describe")
            if self.placement[0]["learns_policy"]:
                raise NotImplementedError("ProcessCohort cannot train a learning teacher policy (it has no shared "
                                          "policy learner); use SequentialCohort or RayCohort")
            self.backend = self.workers.form_group(group_backend(self.placement, backend), timeout_s)
        except BaseException:
            self.workers.close()
            raise

    def steps_per_epoch(self) -> int:
        return self.placement[0]["steps_per_epoch"]

    def run_steps(self, epoch: int, steps: range) -> list[list[dict[str, float]]]:
        """Train ``steps`` of ``epoch`` on every peer; metrics indexed ``[step][peer]``."""
        per_peer = self.workers.call_all("run_steps", [(epoch, steps.start, steps.stop)] * len(self.workers))
        return [list(step) for step in zip(*per_peer)]

    def train_epoch(self, epoch: int, on_step: StepCallback | None = None) -> list[list[dict[str, float]]]:
        total, chunk = self.steps_per_epoch(), max(1, self.config.runtime.max_steps_in_flight)
        metrics: list[list[dict[str, float]]] = []
        for start in range(0, total, chunk):
            steps = range(start, min(start + chunk, total))
            metrics.extend(self.run_steps(epoch, steps))
            if on_step is not None:
                on_step(steps.stop, total)
        return metrics

    def evaluate(self, split: str = "val") -> tuple[list[Tensor], Tensor]:
        results = self.workers.call_all("evaluate", [(split,)] * len(self.workers))
        return [logits for logits, _ in results], results[0][1]

    def sparsity(self) -> list[float | None]:
        return self.workers.call_all("sparsity")

    def state_bytes(self) -> list[bytes]:
        return self.workers.call_all("state_bytes")

    def load_state_bytes(self, blobs: list[bytes]) -> None:
        self.workers.call_all("load_state_bytes", [(blob,) for blob in blobs])

    def model_bytes(self) -> list[bytes]:
        return self.workers.call_all("model_bytes")

    def peak_gpu_memory_bytes(self) -> list[int | None]:
        """Each peer process's peak GPU memory so far (``None`` for a CPU peer)."""
        return self.workers.call_all("peak_gpu_memory_bytes")

    def all_gather_probe(self, rounds: int = 2) -> list[list[list[TeacherView]]]:
        """Every peer's :func:`probe_payload` all-gathered ``rounds`` times through the cohort's own
        group, as :func:`probe_payload_group` returns it (check with :func:`probe_mismatches`)."""
        return self.workers.call_all("all_gather_probe", [(rounds,)] * len(self.workers))

    def shutdown(self) -> None:
        self.workers.close()


def probe_payload(rank: int, device: torch.device | str = "cpu") -> TeacherView:
    """Rank ``rank``'s probe payload, the same wherever it is built: logits, stage features whose
    shapes differ between ranks (a channels-last one), bfloat16 and empty extras, and a vector
    that outgrows the group's first buffer on every rank but 0 (so its capacity grows)."""
    generator = torch.Generator().manual_seed(rank)

    def noise(*shape: int) -> Tensor:
        return torch.randn(*shape, generator=generator).to(device)

    return TeacherView(logits=noise(8, 10),
                       features=[noise(8, 16 * (rank + 1), 4, 4).to(memory_format=torch.channels_last),
                                 noise(8, 32 + rank)],
                       extras={"norms": [noise(16 + rank).bfloat16()], "empty": noise(0, 3),
                               "grown": noise(10 + 3000 * rank)})


def probe_payload_group(world_size: int, backend: str, rounds: int = 2,
                        timeout_s: float = 300.0) -> list[list[list[TeacherView]]]:
    """Form a ``backend`` group of ``world_size`` processes (NCCL: rank r on GPU ``r mod count``)
    and all-gather every rank's :func:`probe_payload` ``rounds`` times; what each rank received,
    indexed ``[rank][round][sender]`` (tensors on the CPU)."""
    devices = [torch.device("cuda", rank % torch.cuda.device_count()) if backend == "nccl" else torch.device("cpu")
               for rank in range(world_size)]
    workers = Workers(GroupMember, [(rank, device) for rank, device in enumerate(devices)],
                      [f"rank {rank}" for rank in range(world_size)], timeout_s)
    try:
        workers.form_group(backend, timeout_s)
        return workers.call_all("all_gather_probe", [(rounds,)] * world_size, timeout_s)
    finally:
        workers.close()


def probe_mismatches(received: list[list[list[TeacherView]]]) -> list[str]:
    """Where :func:`probe_payload_group`'s result differs from the payloads sent, in dtype,
    shape, strides or values (empty: every rank received every payload exactly)."""
    problems = []
    for rank, rounds in enumerate(received):
        for round_index, payloads in enumerate(rounds):
            for sender, got in enumerate(payloads):
                got_tensors, sent_tensors = named_tensors(got), named_tensors(probe_payload(sender))
                for name, sent in sent_tensors.items():
                    other = got_tensors.get(name)
                    if other is None or (other.dtype, other.shape, other.stride()) != (sent.dtype, sent.shape, sent.stride()) \
                            or not torch.equal(other, sent):
                        problems.append(f"rank {rank}, round {round_index}: {name} from rank {sender} differs")
    return problems


def named_tensors(view: TeacherView) -> dict[str, Tensor]:
    """Every tensor of ``view`` by its place: ``logits``, ``features[i]``, ``extras[key]``, ``extras[key][i]``."""
    named = {"logits": view.logits} | {f"features[{i}]": f for i, f in enumerate(view.features)}
    for key, value in view.extras.items():
        values = value if isinstance(value, list) else [value]
        named |= {f"extras[{key}]" + (f"[{i}]" if isinstance(value, list) else ""): v for i, v in enumerate(values)}
    return named
