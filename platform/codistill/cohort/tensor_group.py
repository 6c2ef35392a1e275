"""Peers exchanging payloads directly with a ``torch.distributed`` collective — no Ray here.

Each peer process joins one :class:`PayloadGroup` (gloo on the CPU, NCCL when every peer is on
a GPU of its own) and then drives its own steps
(:meth:`~codistill.cohort.handles.HeldPeer.run_steps`): per step a single all-gather gives every
peer all K payloads, and each peer updates on the others' in index order, exactly what
:class:`~codistill.cohort.sequential.SequentialCohort` feeds it.

A payload is any nesting of dataclasses (a :class:`~codistill.methods.base.TeacherView`), lists,
tuples and dicts around tensors of any shape, dtype and layout, differing between peers. Its
*layout* — the nesting without the tensors, and each tensor's dtype, shape and strides — is
agreed once, and again only when some peer's changes (the last, shorter batch of an epoch): the
peers all-gather their layouts pickled (:func:`encode`) over the host, and every rank then knows
where each peer's tensors lie in one row of bytes. Every step after that, each peer copies its
tensors' bytes, on its own device, into its row, one all-gather of the rows runs on that device,
and every received tensor is a view of its bytes in the gathered rows (same dtype, shape and
strides: a receiver computes exactly as with the original). No tensor goes to the host, nothing
is pickled. Whether a layout changed travels with the rows: in each row's 8-byte header on a host
(gloo) group, and in a separate all-gather of the headers over a host side group when the rows
are on a GPU (NCCL), so that no step waits for the device.

The group's store listens on a socket bound to the address it is given (the node's IP; on a
standalone run 127.0.0.1), and gloo's transport is bound to the same host.
"""

from __future__ import annotations

import dataclasses
import io
import pickle
import socket
import zlib
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from codistill.private_apis import gloo_options, nccl_options

_LENGTH_BYTES = 8
_INITIAL_CAPACITY = 1 << 12
_HEADER_BYTES = 8  # a row's layout digest (int64)
_ALIGNMENT = 64  # every tensor's bytes start at a multiple of this, as a fresh allocation does


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


def flatten(payload: Any) -> tuple[Any, list[Tensor]]:
    """``payload``'s nesting with each tensor replaced by its place in the returned list."""
    tensors: list[Tensor] = []

    def walk(value: Any) -> Any:
        if isinstance(value, Tensor):
            tensors.append(value.detach() if is_dense(value) else value.detach().contiguous())
            return ("tensor", len(tensors) - 1)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return ("dataclass", type(value), tuple((f.name, walk(getattr(value, f.name)))
                                                    for f in dataclasses.fields(value)))
        if isinstance(value, dict):
            return ("dict", tuple((key, walk(item)) for key, item in value.items()))
        if isinstance(value, (list, tuple)):
            return (type(value).__name__, tuple(walk(item) for item in value))
        return ("value", value)

    return walk(payload), tensors


def unflatten(nesting: Any, tensors: list[Tensor]) -> Any:
    """The payload :func:`flatten` took apart, with ``tensors`` in their places."""
    kind, content = nesting[0], nesting[1]
    if kind == "tensor":
        return tensors[content]
    if kind == "dataclass":
        return nesting[1](**{name: unflatten(item, tensors) for name, item in nesting[2]})
    if kind == "dict":
        return {key: unflatten(item, tensors) for key, item in content}
    if kind in ("list", "tuple"):
        items = [unflatten(item, tensors) for item in content]
        return items if kind == "list" else tuple(items)
    return content


def tensor_bytes(tensor: Tensor) -> Tensor:
    """A dense tensor's memory block as a flat ``uint8`` view (no copy)."""
    return tensor.as_strided((tensor.numel(),), (1,)).view(torch.uint8)


def _aligned(size: int) -> int:
    return -(-size // _ALIGNMENT) * _ALIGNMENT


@dataclasses.dataclass(frozen=True)
class RowLayout:
    """Where one rank's tensors lie in its row: ``(offset, bytes, dtype, shape, strides)`` each."""

    nesting: Any
    slots: tuple[tuple[int, int, torch.dtype, tuple[int, ...], tuple[int, ...]], ...]

    @classmethod
    def of(cls, nesting: Any, tensors: list[Tensor]) -> "RowLayout":
        slots, offset = [], 0
        for tensor in tensors:
            size = tensor.numel() * tensor.element_size()
            slots.append((offset, size, tensor.dtype, tuple(tensor.shape), tuple(tensor.stride())))
            offset = _aligned(offset + size)
        return cls(nesting, tuple(slots))

    @property
    def size(self) -> int:
        return _aligned(self.slots[-1][0] + self.slots[-1][1]) if self.slots else 0

    def digest(self) -> int:
        """The same number in every process for the same layout (a CRC-32 of it pickled)."""
        return zlib.crc32(pickle.dumps((self.nesting, self.slots), protocol=4)) + 1

    def unpack(self, row: Tensor) -> Any:
        """The payload whose tensors are views of ``row`` (``uint8``)."""
        tensors = [row[offset:offset + size].view(dtype).as_strided(shape, strides) if size
                   else torch.empty_strided(shape, strides, dtype=dtype, device=row.device)
                   for offset, size, dtype, shape, strides in self.slots]
        return unflatten(self.nesting, tensors)


class PayloadGroup:
    """This process's membership in a group of ``world_size`` peers exchanging payloads.

    Rank 0 passes the ``listener`` from :func:`store_socket` (its port is the group's address);
    the others connect to ``host:port``. ``host`` is also where this process's gloo transport
    listens, so every rank passes its own node's address as ``bind_host``. With ``device`` on
    CUDA the rows are all-gathered there over NCCL (and the layout digests over a host gloo side
    group); it has not run on a GPU here. :attr:`agreements` counts the layout agreements.
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
        self.host_group = dist.ProcessGroupGloo(dist.PrefixStore("host", self.store) if self.backend == "nccl"
                                                else self.store, rank, world_size, gloo_options(bind_host, timeout))
        if self.backend == "nccl":
            torch.cuda.set_device(device)
            self.group = dist.ProcessGroupNCCL(self.store, rank, world_size, nccl_options(timeout))
        else:
            self.group = self.host_group
        self.header_in_row = self.backend != "nccl"
        self.capacity = _INITIAL_CAPACITY
        self.agreements = 0
        self._own: tuple[Any, RowLayout, int] | None = None  # this rank's last (key, layout, digest)
        self._layouts: list[RowLayout] = []  # every rank's agreed layout
        self._digests: list[int] = []
        self._row_bytes = 0

    def all_gather(self, payload: Any) -> list[Any]:
        """Every rank's ``payload``, in rank order (this rank's own included, rebuilt like the
        rest); received tensors lie on this group's device."""
        nesting, tensors = flatten(payload)
        key = (nesting, tuple((t.dtype, t.shape, t.stride()) for t in tensors))
        if self._own is None or self._own[0] != key:
            layout = RowLayout.of(nesting, tensors)
            self._own = (key, layout, layout.digest())
        while True:
            rows = self._gather_rows(tensors)
            if rows is not None:
                return [layout.unpack(row[self._header:]) for layout, row in zip(self._layouts, rows)]
            self._agree()

    @property
    def _header(self) -> int:
        return _HEADER_BYTES if self.header_in_row else 0

    def _gather_rows(self, tensors: list[Tensor]) -> Tensor | None:
        """One all-gather of every rank's row; ``None`` when some rank's layout is not the agreed one."""
        digest = self._own[2]
        agreed = bool(self._digests) and digest == self._digests[self.rank]
        if not self.header_in_row:
            digests = self._gather_host(torch.tensor([digest], dtype=torch.int64)).flatten().tolist()
            if digests != self._digests:
                return None
        send = torch.empty(self._header + self._row_bytes, dtype=torch.uint8, device=self.device)
        if self.header_in_row:
            send[:_HEADER_BYTES] = torch.tensor([digest], dtype=torch.int64).view(torch.uint8)
        if agreed:
            for (offset, size, *_), tensor in zip(self._layouts[self.rank].slots, tensors):
                send[self._header + offset:self._header + offset + size].copy_(tensor_bytes(tensor))
        received = torch.empty(self.world_size, send.numel(), dtype=torch.uint8, device=self.device)
        self.group.allgather([list(received.unbind())], [send]).wait()
        if self.header_in_row and received[:, :_HEADER_BYTES].contiguous().view(torch.int64).flatten().tolist() \
                != self._digests:
            return None
        return received

    def _gather_host(self, tensor: Tensor) -> Tensor:
        received = torch.empty(self.world_size, *tensor.shape, dtype=tensor.dtype)
        self.host_group.allgather([list(received.unbind())], [tensor]).wait()
        return received

    def _agree(self) -> None:
        """Every rank's layout from every rank, over the host (pickled; only when one changed)."""
        _, layout, _ = self._own
        self._layouts = self._gather_bytes(encode(layout))
        self._digests = [each.digest() for each in self._layouts]
        self._row_bytes = max(each.size for each in self._layouts)
        self.agreements += 1

    def _gather_bytes(self, data: bytes) -> list[Any]:
        """Every rank's ``data`` decoded, growing the byte capacity until every rank's fits."""
        while True:
            row = _LENGTH_BYTES + self.capacity
            send = torch.zeros(row, dtype=torch.uint8)
            send[:_LENGTH_BYTES] = torch.tensor([len(data)], dtype=torch.int64).view(torch.uint8)
            fitted = data[: self.capacity]
            if fitted:
                send[_LENGTH_BYTES:_LENGTH_BYTES + len(fitted)] = torch.frombuffer(bytearray(fitted), dtype=torch.uint8)
            gathered = self._gather_host(send)
            lengths = gathered[:, :_LENGTH_BYTES].contiguous().view(torch.int64).flatten().tolist()
            if max(lengths) <= self.capacity:
                rows = gathered.numpy()
                return [decode(memoryview(rows[r, _LENGTH_BYTES:_LENGTH_BYTES + n])) for r, n in enumerate(lengths)]
            self.capacity = max(lengths)

    def close(self) -> None:
        """Leave the group (its sockets close; a peer still waiting on it gets an error)."""
        self.group.shutdown()
        if self.host_group is not self.group:
            self.host_group.shutdown()
        if self._listener is not None:
            self._listener.close()
            self._listener = None
