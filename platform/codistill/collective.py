"""Peers exchanging payloads directly with a ``torch.distributed`` collective — no Ray here.

Each peer process joins one :class:`PayloadGroup` (gloo on the CPU, NCCL when every peer is on
a GPU) and then runs its own training steps with :func:`run_steps`: per step a single
all-gather gives every peer all K payloads, and each peer updates on the others' in index order,
exactly what :class:`~codistill.sequential.SequentialCohort` feeds it.

Payloads are arbitrary picklable objects (a :class:`~codistill.methods.base.TeacherView` with
logits, stage features of any shape, method extras in dicts and lists) whose sizes differ between
peers. :func:`encode` pickles them with every tensor as its raw bytes (pickle protocol 5, so no
per-tensor ``torch.save``), and :meth:`PayloadGroup.all_gather` sends one fixed-size byte buffer
per peer: an 8-byte length and the encoded payload, padded to the group's current capacity. When
some payload does not fit, every peer sees that in the gathered lengths, the capacity grows to the
largest one and the round is repeated: one collective per step once the capacity has settled.

The group's store listens on a socket bound to the address it is given (the node's IP; on a
standalone run 127.0.0.1), and gloo's transport is bound to the same host.
"""

from __future__ import annotations

import io
import pickle
import socket
from datetime import timedelta
from typing import Any, Callable

import torch
import torch.distributed as dist
from torch import Tensor

from codistill.cohort_base import others
from codistill.peer import PeerTrainer
from codistill.private_apis import gloo_options, nccl_options

_LENGTH_BYTES = 8
_INITIAL_CAPACITY = 1 << 12


class _TensorPickler(pickle.Pickler):
    """Pickles tensors as raw bytes in memory order with dtype, shape and strides: exact (layout
    included, e.g. channels-last features, so a receiver computes exactly as with the original),
    device-free, no ``torch.save``."""

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, Tensor):
            tensor = obj.detach().to("cpu")
            if not is_dense(tensor):
                tensor = tensor.contiguous()
            memory = tensor.as_strided((tensor.numel(),), (1,))
            return tensor_from_bytes, (pickle.PickleBuffer(memory.view(torch.uint8).numpy()), tensor.dtype,
                                       tuple(tensor.shape), tuple(tensor.stride()))
        return NotImplemented


def is_dense(tensor: Tensor) -> bool:
    """Whether ``tensor``'s elements fill one gap-free, non-overlapping block of memory."""
    expected = 1
    for stride, size in sorted((st, s) for s, st in zip(tensor.shape, tensor.stride()) if s > 1):
        if stride != expected:
            return False
        expected *= size
    return True


def tensor_from_bytes(data: bytes | bytearray, dtype: torch.dtype, shape: tuple[int, ...],
                      stride: tuple[int, ...]) -> Tensor:
    if not len(data):
        return torch.empty_strided(shape, stride, dtype=dtype)
    writable = data if isinstance(data, bytearray) else bytearray(data)
    return torch.frombuffer(writable, dtype=torch.uint8).view(dtype).as_strided(shape, stride)


def encode(payload: Any) -> bytes:
    """``payload`` as bytes, tensors (on any device) as their raw CPU bytes; see :func:`decode`."""
    buffer = io.BytesIO()
    _TensorPickler(buffer, protocol=5).dump(payload)
    return buffer.getvalue()


def decode(data: bytes | memoryview) -> Any:
    """The payload :func:`encode` turned into ``data``, tensors on the CPU."""
    return pickle.loads(data)


def store_socket(host: str) -> socket.socket:
    """A listening socket on ``host`` at a free port, for rank 0's store (keeps loopback runs on
    loopback; no race between choosing the port and binding it)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.bind((host, 0))
    listener.listen()
    return listener


def backend_for(device: torch.device) -> str:
    """``nccl`` for a CUDA peer, ``gloo`` otherwise (every peer of a group must agree)."""
    return "nccl" if device.type == "cuda" else "gloo"


class PayloadGroup:
    """This process's membership in a group of ``world_size`` peers exchanging payloads.

    Rank 0 passes the ``listener`` from :func:`store_socket` (its port is the group's address);
    the others connect to ``host:port``. ``host`` is also where this process's gloo transport
    listens, so every rank passes its own node's address as ``bind_host``. The NCCL path
    (``device`` on CUDA) stages the byte buffers on that device; it has not run on a GPU here.
    """

    def __init__(self, host: str, port: int, rank: int, world_size: int, *, bind_host: str,
                 device: torch.device = torch.device("cpu"), timeout_s: float = 600.0,
                 listener: socket.socket | None = None) -> None:
        timeout = timedelta(seconds=timeout_s)
        self.rank, self.world_size, self.device = rank, world_size, device
        self.backend = backend_for(device)
        self.store = dist.TCPStore(host, port, world_size, is_master=rank == 0, timeout=timeout,
                                   wait_for_workers=False,
                                   master_listen_fd=listener.fileno() if listener is not None else None)
        self._listener = listener
        if self.backend == "nccl":
            torch.cuda.set_device(device)
            self.group = dist.ProcessGroupNCCL(self.store, rank, world_size, nccl_options(timeout))
        else:
            self.group = dist.ProcessGroupGloo(self.store, rank, world_size, gloo_options(bind_host, timeout))
        self.capacity = _INITIAL_CAPACITY

    def all_gather(self, payload: Any) -> list[Any]:
        """Every rank's ``payload``, in rank order (this rank's own included, decoded like the rest)."""
        data = encode(payload)
        while True:
            gathered = self._gather_round(data)
            lengths = gathered[:, :_LENGTH_BYTES].flatten().view(torch.int64).tolist()
            if max(lengths) <= self.capacity:
                break
            self.capacity = max(lengths)
        rows = gathered.numpy()
        return [decode(memoryview(rows[r, _LENGTH_BYTES:_LENGTH_BYTES + n])) for r, n in enumerate(lengths)]

    def _gather_round(self, data: bytes) -> Tensor:
        row = _LENGTH_BYTES + self.capacity
        send = torch.zeros(row, dtype=torch.uint8)
        send[:_LENGTH_BYTES] = torch.tensor([len(data)], dtype=torch.int64).view(torch.uint8)
        fitted = data[: self.capacity]
        if fitted:
            send[_LENGTH_BYTES:_LENGTH_BYTES + len(fitted)] = torch.frombuffer(bytearray(fitted), dtype=torch.uint8)
        send = send.to(self.device)
        received = torch.empty(self.world_size * row, dtype=torch.uint8, device=self.device)
        self.group.allgather([list(received.chunk(self.world_size))], [send]).wait()
        return received.cpu().reshape(self.world_size, row)

    def close(self) -> None:
        """Leave the group (its sockets close; a peer still waiting on it gets an error)."""
        self.group.shutdown()
        if self._listener is not None:
            self._listener.close()
            self._listener = None


def run_steps(trainer: PeerTrainer, group: PayloadGroup, epoch: int, steps: range,
              after_update: Callable[[dict[str, float]], None] | None = None) -> list[dict[str, float]]:
    """Train ``steps`` of ``epoch`` on this peer, exchanging payloads through ``group`` each step;
    the step metrics in order. ``after_update`` runs after each update (a learning teacher
    policy's synchronization)."""
    metrics = []
    for step in steps:
        payloads = group.all_gather(trainer.forward(epoch, step))
        metrics.append(trainer.update(others(payloads, group.rank)))
        if after_update is not None:
            after_update(metrics[-1])
    return metrics
