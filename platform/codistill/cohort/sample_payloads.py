"""Sample payloads: the check that a group's backend exchanges payloads exactly on this machine.

:func:`gather_sample_payloads` forms a bare group of worker processes and all-gathers
:func:`sample_payload` — payloads of different shapes, sizes, dtypes and layouts — through it;
:func:`sample_mismatches` says where what each rank received differs from what was sent.
"""

from __future__ import annotations

import torch
from torch import Tensor

from codistill.cohort.tensor_group import PayloadGroup, flatten, unflatten
from codistill.cohort.workers import LoopbackMember, Workers
from codistill.methods.base import TeacherView


def all_gather_samples(group: PayloadGroup, rank: int, device: torch.device, rounds: int) -> list[list[TeacherView]]:
    """All-gather rank ``rank``'s :func:`sample_payload` (built on ``device``) ``rounds`` times
    through ``group``; what was received, on the CPU."""
    payload = sample_payload(rank, device)
    return [[on_host(received) for received in group.all_gather(payload)] for _ in range(rounds)]


def on_host(payload: TeacherView) -> TeacherView:
    """``payload`` with every tensor copied to the CPU (layouts kept)."""
    nesting, tensors = flatten(payload)
    return unflatten(nesting, [tensor.cpu() for tensor in tensors])


class SampleMember(LoopbackMember):
    """A worker that only exchanges sample payloads (``device``: where they are built)."""

    def __init__(self, rank: int, device: torch.device) -> None:
        self.rank, self.device = rank, device
        self.group: PayloadGroup | None = None

    def joined(self, group: PayloadGroup) -> None:
        self.group = group

    def all_gather_samples(self, rounds: int) -> list[list[TeacherView]]:
        """All-gather this rank's :func:`sample_payload` (built on its device) ``rounds`` times."""
        return all_gather_samples(self.group, self.rank, self.device, rounds)

    def close(self) -> None:
        if self.group is not None:
            self.group.close()
            self.group = None


def sample_payload(rank: int, device: torch.device | str = "cpu") -> TeacherView:
    """Rank ``rank``'s sample payload, the same wherever it is built: logits, stage features whose
    shapes differ between ranks (a channels-last one), bfloat16 and empty extras, and a vector
    far longer on every rank but 0 (rows of different sizes)."""
    generator = torch.Generator().manual_seed(rank)

    def noise(*shape: int) -> Tensor:
        return torch.randn(*shape, generator=generator).to(device)

    return TeacherView(logits=noise(8, 10),
                       features=[noise(8, 16 * (rank + 1), 4, 4).to(memory_format=torch.channels_last),
                                 noise(8, 32 + rank)],
                       extras={"norms": [noise(16 + rank).bfloat16()], "empty": noise(0, 3),
                               "grown": noise(10 + 3000 * rank)})


def gather_sample_payloads(world_size: int, backend: str, rounds: int = 2,
                        timeout_s: float = 300.0) -> list[list[list[TeacherView]]]:
    """Form a ``backend`` group of ``world_size`` processes (NCCL: rank r on GPU ``r mod count``)
    and all-gather every rank's :func:`sample_payload` ``rounds`` times; what each rank received,
    indexed ``[rank][round][sender]`` (tensors on the CPU)."""
    devices = [torch.device("cuda", rank % torch.cuda.device_count()) if backend == "nccl" else torch.device("cpu")
               for rank in range(world_size)]
    workers = Workers(SampleMember, [(rank, device) for rank, device in enumerate(devices)],
                      [f"rank {rank}" for rank in range(world_size)], timeout_s)
    try:
        workers.form_group(backend, timeout_s)
        return workers.call_all("all_gather_samples", [(rounds,)] * world_size, timeout_s)
    finally:
        workers.close()


def sample_mismatches(received: list[list[list[TeacherView]]]) -> list[str]:
    """Where :func:`gather_sample_payloads`'s result differs from the payloads sent, in dtype,
    shape, strides or values (empty: every rank received every payload exactly)."""
    problems = []
    for rank, rounds in enumerate(received):
        for round_index, payloads in enumerate(rounds):
            for sender, got in enumerate(payloads):
                got_tensors, sent_tensors = named_tensors(got), named_tensors(sample_payload(sender))
                for name, sent in sent_tensors.items():
                    other = got_tensors.get(name)
                    if (other is None
                            or (other.dtype, other.shape, other.stride()) != (sent.dtype, sent.shape, sent.stride())
                            or not torch.equal(other, sent)):
                        problems.append(f"rank {rank}, round {round_index}: {name} from rank {sender} differs")
    return problems


def named_tensors(view: TeacherView) -> dict[str, Tensor]:
    """Every tensor of ``view`` by its place: ``logits``, ``features[i]``, ``extras[key]``, ``extras[key][i]``."""
    named = {"logits": view.logits} | {f"features[{i}]": f for i, f in enumerate(view.features)}
    for key, value in view.extras.items():
        values = value if isinstance(value, list) else [value]
        named |= {f"extras[{key}]" + (f"[{i}]" if isinstance(value, list) else ""): v for i, v in enumerate(values)}
    return named
