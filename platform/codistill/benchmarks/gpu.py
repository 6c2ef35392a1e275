"""The GPU benchmark of a cohort, without Ray, on CIFAR-shaped synthetic batches (``jobs/benchmark_gpu.py``).

Data: random 3×32×32 images in CIFAR-10's format, read by the real ``cifar10`` dataset
(:mod:`codistill.data.synthetic_cifar`), so each step builds, augments and normalizes its batch
on the CPU and copies it to the device, as a CIFAR run does. Peers: ResNet-32, VGG-8 and
WRN-16-2 at batch 128 (then with ResNet-56 as a fourth peer while the time budget allows),
fractional GPUs on one card, 4 CPU threads per peer; the self-check: an MLP and a CNN at batch 8
on the CPU, one thread each.

For each set of peers and each AMP mode (off, bf16; the CPU runs AMP off) it times one epoch
after a warm-up epoch of:

1. ``alone``: each peer by itself in this process, no distillation;
2. ``sequential``: every peer in this process, one after another (:class:`SequentialCohort`) —
   what the ``objectref`` exchange computes, without Ray's object store (Ray is absent there);
3. ``collective``: one process per peer, payloads all-gathered every step in a
   ``torch.distributed`` group (:class:`~codistill.cohort.process_cohort.ProcessCohort`: gloo when the
   peers share a card, NCCL when each has its own), and once more with NCCL forced (a build that
   refuses two ranks on one GPU is recorded as such). The collective cohort also all-gathers
   payloads of different shapes and dtypes and checks they arrive exactly.

Per variant: ms per step (the epoch's wall time over its steps, the GPU synchronized), the mean
``time/exchange_wait`` (between a peer's forward and its update), the overhead per step over
the peers alone (the slowest one for the collective cohort, whose peers run side by side; the
sum for the sequential one) as a share of the slowest peer's step, peak GPU memory per peer
(``torch.cuda.max_memory_allocated`` of its process; the sequential cohort's is one process for
all), whether every loss was finite, and the collective cohort's start-up time.
"""

from __future__ import annotations

import math
import statistics
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import torch

from codistill import metrics as m
from codistill.cohort.handles import threads_for
from codistill.cohort.process_cohort import ProcessCohort
from codistill.cohort.sample_payloads import sample_mismatches
from codistill.cohort.sequential import SequentialCohort
from codistill.config import RunConfig
from codistill.data.synthetic_cifar import VAL_FRACTION
from codistill.peer import PeerTrainer
from codistill.validation import parse_config

MIB = 1 << 20
KD = [{"name": "kd", "params": {"temperature": 4.0}}]
NCCL_TIMEOUT_S = 60.0  # forced NCCL on a shared card may hang rather than refuse
StepMetrics = list[list[dict[str, float]]]  # [step][peer]


@dataclass(frozen=True)
class Plan:
    """What one benchmark run times."""

    device: str
    cpus: int  # per peer: its torch threads (alone and in its process; the sequential cohort gets them all)
    models: tuple[str, ...]
    batch_size: int
    steps: int  # per epoch: one warm-up epoch, then one timed epoch
    amp_modes: tuple[str, ...]
    extra_model: str | None  # joins the peers for a second round, while the budget allows
    force_nccl: bool  # also time the collective cohort over NCCL


GPU_PLAN = Plan("cuda", 4, ("resnet32", "vgg8", "wrn_16_2"), 128, 20, ("off", "bf16"), "resnet56", True)
SELF_CHECK_PLAN = Plan("cpu", 1, ("mlp", "cnn"), 8, 2, ("off",), None, False)


def cohort_raw(data_root: Path, models: Sequence[str], *, device: str, amp: str, batch_size: int, epochs: int = 2,
               methods: list[dict[str, Any]] | None = None, steps_per_call: int = 16, cpus: int = 1) -> dict[str, Any]:
    """A cohort of ``models`` (each peer named after its model) on the synthetic CIFAR under
    ``data_root``; on ``cuda`` the peers share one card in equal fractions."""
    gpus = math.floor(100 / len(models)) / 100 if device == "cuda" else 0.0
    return {"name": "gpu-check", "seed": 0, "epochs": epochs,
            "data": {"dataset": "cifar10", "root": str(data_root), "batch_size": batch_size,
                     "train_fraction": 1.0, "label_noise": 0.0, "val_fraction": VAL_FRACTION},
            "peers": [{"name": model, "model": model, "optimizer": {"lr": 0.05},
                       "resources": {"cpus": cpus, "gpus": gpus}} for model in models],
            "distillation": {"teacher": "ensemble", "weight": 1.0, "methods": methods or KD},
            "runtime": {"device": device, "amp": amp, "max_steps_in_flight": steps_per_call,
                        "progress_every_seconds": 0.0}}


def synchronize() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timed_epoch(train_epoch: Callable[[int], StepMetrics]) -> tuple[float, StepMetrics]:
    """Seconds of epoch 1 after a warm-up epoch 0 (the GPU synchronized), and its step metrics."""
    train_epoch(0)
    synchronize()
    started = time.perf_counter()
    metrics = train_epoch(1)
    synchronize()
    return time.perf_counter() - started, metrics


def measured(seconds: float, metrics: StepMetrics) -> dict[str, Any]:
    """The row fields every variant shares."""
    rows = [peer for step in metrics for peer in step]
    return {"ms_per_step": 1e3 * seconds / len(metrics),
            "exchange_wait_ms": 1e3 * statistics.fmean(row[m.EXCHANGE_WAIT_SECONDS] for row in rows),
            "losses_finite": all(math.isfinite(row[m.LOSS_TOTAL]) for row in rows)}


def reset_gpu_peak() -> None:
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def gpu_peak_mib() -> float | None:
    return torch.cuda.max_memory_allocated() / MIB if torch.cuda.is_available() else None


def recorded(variant: str, peers: list[str], measure: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """A row for ``variant`` with ``measure()``'s fields; an error is recorded in it, not raised
    (one failing variant leaves the others measured)."""
    row: dict[str, Any] = {"variant": variant, "peers": peers}
    try:
        row.update(measure())
    except Exception as error:
        traceback.print_exc()
        row["error"] = f"{type(error).__name__}: " + (str(error).strip().splitlines() or [""])[0]
    return row


def time_alone(config: RunConfig, index: int) -> dict[str, Any]:
    torch.set_num_threads(threads_for(config.peers[index]))
    reset_gpu_peak()
    trainer = PeerTrainer(replace(config, independent=True), index)
    steps = trainer.dataset.steps_per_epoch(config.data.batch_size)

    def train_epoch(epoch: int) -> StepMetrics:
        metrics = []
        for step in range(steps):
            trainer.forward(epoch, step)
            metrics.append([trainer.update([])])
        return metrics

    return {**measured(*timed_epoch(train_epoch)), "gpu_memory_mib": [gpu_peak_mib()]}


def time_sequential(config: RunConfig) -> dict[str, Any]:
    reset_gpu_peak()
    cohort = SequentialCohort(config)
    return {**measured(*timed_epoch(cohort.train_epoch)), "gpu_memory_mib_all_peers": gpu_peak_mib()}


def time_collective(config: RunConfig, backend: str, timeout_s: float = 300.0) -> dict[str, Any]:
    started = time.perf_counter()
    cohort = ProcessCohort(config, group_backend=backend, timeout_s=timeout_s)
    try:
        row = {"backend": cohort.group_backend, "startup_s": time.perf_counter() - started,
               **measured(*timed_epoch(cohort.train_epoch))}
        memory = cohort.peak_gpu_memory_bytes()
        return {**row, "gpu_memory_mib": [None if b is None else b / MIB for b in memory],
                "all_gather_samples": sample_mismatches(cohort.all_gather_samples()) or "exact"}
    finally:
        cohort.shutdown()


def with_overheads(row: dict[str, Any], alone: list[dict[str, Any]]) -> dict[str, Any]:
    """``row`` with its overhead over the peers alone: the slowest one for peers side by side,
    the sum for the sequential cohort; as ms and as a share of the slowest peer's step."""
    if "ms_per_step" not in row or any("ms_per_step" not in a for a in alone):
        return row
    slowest = max(a["ms_per_step"] for a in alone)
    reference = sum(a["ms_per_step"] for a in alone) if row["variant"] == "sequential" else slowest
    overhead = row["ms_per_step"] - reference
    return {**row, "reference_ms": reference, "overhead_ms_per_step": overhead,
            "overhead_share_of_slowest_step": overhead / slowest, "over_slowest_alone": row["ms_per_step"] / slowest}


def plan_config(plan: Plan, data_root: Path, models: Sequence[str], amp: str) -> RunConfig:
    return parse_config(cohort_raw(data_root, models, device=plan.device, amp=amp, batch_size=plan.batch_size,
                                   steps_per_call=plan.steps, cpus=plan.cpus))


def benchmark(plan: Plan, data_root: Path, budget_s: float, save: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """Every variant of ``plan`` (see the module docstring), ``save``d after each cohort. The
    extra peer's rounds run only while less than half of ``budget_s`` is spent; forced NCCL runs
    last (it may hang until its timeout rather than refuse)."""
    started = time.perf_counter()
    result: dict[str, Any] = {"plan": asdict(plan), "cohorts": [], "skipped": []}

    def record() -> None:
        result["seconds"] = time.perf_counter() - started
        result["failures"] = failures(result)
        save(result)

    alone_rows: dict[tuple[str, str], dict[str, Any]] = {}
    peer_sets = [plan.models] + ([plan.models + (plan.extra_model,)] if plan.extra_model else [])
    for models in peer_sets:
        for amp in plan.amp_modes:
            if models is not plan.models and time.perf_counter() - started > budget_s / 2:
                result["skipped"].append({"peers": list(models), "amp": amp,
                                          "reason": f"over half the {budget_s:.0f} s budget spent"})
                continue
            config = plan_config(plan, data_root, models, amp)
            names = [peer.name for peer in config.peers]
            for index, model in enumerate(models):
                if (model, amp) not in alone_rows:
                    alone_rows[model, amp] = recorded("alone", [model], partial(time_alone, config, index))
            alone = [alone_rows[model, amp] for model in models]
            variants = [recorded("sequential", names, partial(time_sequential, config)),
                        recorded("collective", names, partial(time_collective, config, "auto"))]
            result["cohorts"].append({"peers": names, "amp": amp, "alone": alone,
                                      "variants": [with_overheads(row, alone) for row in variants]})
            record()
            print(f"measured {', '.join(models)} with AMP {amp}", flush=True)
    if plan.force_nccl:
        first = result["cohorts"][0]
        config = plan_config(plan, data_root, plan.models, first["amp"])
        row = recorded("collective-nccl", first["peers"], partial(time_collective, config, "nccl", NCCL_TIMEOUT_S))
        first["variants"].append(with_overheads(row, first["alone"]))
        record()
    return result


def failures(result: dict[str, Any]) -> list[str]:
    """What went wrong: a variant that failed (forced NCCL excepted), a non-finite loss, a payload
    that did not arrive exactly."""
    problems = []
    for cohort in result["cohorts"]:
        where = f"{', '.join(cohort['peers'])} (AMP {cohort['amp']})"
        for row in cohort["alone"] + cohort["variants"]:
            if "error" in row and row["variant"] != "collective-nccl":
                problems.append(f"{row['variant']} of {where}: {row['error']}")
            if row.get("losses_finite") is False:
                problems.append(f"{row['variant']} of {where}: a loss was not finite")
            if isinstance(row.get("all_gather_samples"), list):
                problems.append(f"{row['variant']} of {where}: {'; '.join(row['all_gather_samples'])}")
    return problems
