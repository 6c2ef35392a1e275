"""The GPU check's tests (``bash jobs/gpu_check.sh`` runs the ``gpu`` ones; see docs/gpu.md).

Marked ``gpu`` and skipped without CUDA: a cohort of CUDA peers sharing one card trains and
resumes with each exchange and AMP mode; an NCCL group all-gathers payloads of different shapes;
a CUDA-trained network teaches offline on the CPU. Unmarked, on the CPU: the Ray-free collective
cohort those tests rely on trains exactly like one process, a gloo group all-gathers the same
payloads, and the check's CPU branch runs its self-check and reports that the GPU paths did not run.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from functools import partial
from pathlib import Path

import pytest
import torch
from conftest import ROOT, tiny_config

from codistill.benchmarks.gpu import cohort_raw
from codistill.cohort.offline import OfflineCohort, load_network
from codistill.cohort.process_cohort import ProcessCohort
from codistill.cohort.sample_payloads import gather_sample_payloads, sample_mismatches
from codistill.cohort.sequential import SequentialCohort
from codistill.data.synthetic_cifar import write_synthetic_cifar10
from codistill.runner import prepare_run_dir, run_cohort
from codistill.validation import parse_config

CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not CUDA, reason="needs a CUDA device")


def nccl_sharing_cards(ranks: int) -> pytest.MarkDecorator:
    """Expected to fail where ``ranks`` NCCL ranks must share GPUs (not strictly: an NCCL that allows it passes)."""
    return pytest.mark.xfail(CUDA and torch.cuda.device_count() < ranks, strict=False,
                             reason="NCCL (since 2.5) refuses two ranks on one GPU; NCCL_MULTI_RANK_GPU_ENABLE=1 "
                                    "lifts that from NCCL 2.30 (experimental)")


#: Three CUDA peers on one card (fractional GPUs) whose stage features differ in shape.
CUDA_MODELS = ("resnet8", "wrn_16_1", "mobilenetv2_x0_5")
FEATURE_METHODS = [{"name": "kd", "params": {"temperature": 4.0}}, {"name": "feature_decoupled"}]
BATCH = 128
#: How the cohort runs; the forced-NCCL one gives up after a minute (NCCL may hang rather than refuse).
COHORTS = {"sequential": SequentialCohort, "collective": ProcessCohort,
           "collective-nccl": partial(ProcessCohort, backend="nccl", timeout_s=60)}
COHORT_CASES = [(exchange, amp) for exchange in ("sequential", "collective") for amp in ("off", "bf16", "fp16")] \
    + [pytest.param("collective-nccl", "off", marks=nccl_sharing_cards(len(CUDA_MODELS)))]


@pytest.fixture(scope="module")
def cifar_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """CIFAR-shaped synthetic data: 4 training steps of 128, one validation image per class, one test batch."""
    return write_synthetic_cifar10(tmp_path_factory.mktemp("cifar"), train_images=4 * BATCH, test_images=BATCH)


@pytest.fixture
def multi_rank_nccl(monkeypatch: pytest.MonkeyPatch) -> None:
    """Let an NCCL that can put several ranks on one GPU do so (spawned ranks inherit it)."""
    monkeypatch.setenv("NCCL_MULTI_RANK_GPU_ENABLE", "1")


def finite_losses(results: dict) -> bool:
    return all(math.isfinite(peer["train_loss"]) for epoch in results["history"] for peer in epoch["peers"])


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("exchange, amp", COHORT_CASES)
def test_cuda_cohort_trains_two_epochs_and_resumes(cifar_root: Path, tmp_path: Path, exchange: str, amp: str,
                                                   multi_rank_nccl: None) -> None:
    """Epoch 1, a checkpoint, a resume from it, epoch 2: finite losses and every peer's network saved."""
    config = parse_config(cohort_raw(cifar_root, CUDA_MODELS, device="cuda", amp=amp, batch_size=BATCH,
                                     methods=FEATURE_METHODS, steps_per_call=2))
    run_dir = tmp_path / "run"
    prepare_run_dir(run_dir, config)
    make_cohort = COHORTS[exchange]
    assert run_cohort(config, run_dir, make_cohort, stop_after_epochs=1) == {"complete": False, "epochs_done": 1}
    results = run_cohort(config, run_dir, make_cohort, resume=True)
    assert results["complete"] and [epoch["epoch"] for epoch in results["history"]] == [1, 2]
    assert finite_losses(results)
    assert sorted(path.stem for path in (run_dir / "models").iterdir()) == sorted(CUDA_MODELS)


@pytest.mark.parametrize("backend", [
    "gloo", pytest.param("nccl", marks=[pytest.mark.gpu, needs_cuda, nccl_sharing_cards(2)])])
def test_group_all_gathers_payloads_of_different_shapes(backend: str, multi_rank_nccl: None) -> None:
    """Two processes (NCCL: one per GPU where there are enough): features of different shapes,
    channels-last strides, bfloat16 and empty extras, a payload that outgrows the first buffer."""
    assert sample_mismatches(gather_sample_payloads(2, backend, timeout_s=60)) == []


@pytest.mark.gpu
@needs_cuda
def test_cuda_trained_network_teaches_offline_on_the_cpu(cifar_root: Path, tmp_path: Path) -> None:
    online = parse_config(cohort_raw(cifar_root, CUDA_MODELS[:2], device="cuda", amp="bf16", batch_size=BATCH,
                                     epochs=1))
    prepare_run_dir(tmp_path / "online", online)
    run_cohort(online, tmp_path / "online", SequentialCohort)
    teacher_file = tmp_path / "online" / "models" / f"{CUDA_MODELS[0]}.pt"
    network = load_network(teacher_file, "cpu")
    assert {parameter.device.type for parameter in network.parameters()} == {"cpu"}
    offline_raw = cohort_raw(cifar_root, CUDA_MODELS[1:2], device="cpu", amp="off", batch_size=BATCH, epochs=1)
    offline_raw["teachers"] = [{"name": "teacher", "model": CUDA_MODELS[0], "checkpoint": str(teacher_file)}]
    offline = parse_config(offline_raw, mode="offline")
    prepare_run_dir(tmp_path / "offline", offline)
    results = run_cohort(offline, tmp_path / "offline", OfflineCohort)
    assert results["complete"] and finite_losses(results)


def test_process_cohort_trains_exactly_like_one_process() -> None:
    """Two CPU peers in their own processes over gloo, in calls of 2 steps: the same step metrics
    and validation logits as SequentialCohort, and states that load into it."""
    config = tiny_config(runtime={"max_steps_in_flight": 2})
    torch.set_num_threads(1)
    local = SequentialCohort(config)
    expected, (local_logits, labels) = local.train_epoch(0), local.evaluate()
    cohort = ProcessCohort(config)
    try:
        assert cohort.group_backend == "gloo" and cohort.steps_per_epoch() == local.steps_per_epoch()
        got = cohort.train_epoch(0)
        assert len(got) == len(expected)
        for step_expected, step_got in zip(expected, got):
            for peer_expected, peer_got in zip(step_expected, step_got):
                assert set(peer_got) == set(peer_expected)
                assert {k: v for k, v in peer_got.items() if not k.startswith("time/")} == \
                       {k: v for k, v in peer_expected.items() if not k.startswith("time/")}
        logits, got_labels = cohort.evaluate()
        assert torch.equal(labels, got_labels) and all(torch.equal(a, b) for a, b in zip(local_logits, logits))
        reloaded = SequentialCohort(config)
        reloaded.load_state_bytes(cohort.state_bytes())
        assert all(torch.equal(a, b) for a, b in zip(reloaded.evaluate()[0], logits))
    finally:
        cohort.shutdown()


@pytest.mark.skipif(CUDA, reason="checks the CPU branch of the GPU check")
def test_gpu_check_on_a_machine_without_cuda_runs_the_cpu_self_check(tmp_path: Path) -> None:
    out = tmp_path / "out"
    done = subprocess.run(["bash", str(ROOT / "jobs" / "gpu_check.sh"), str(out)], capture_output=True, text=True,
                          env={**os.environ, "PYTHON": sys.executable}, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no CUDA device: GPU paths not run" in done.stdout
    report = json.loads((out / "report.json").read_text())
    assert (report["mode"], report["gpu_paths_run"], report["status"]) == ("cpu", False, "passed")
    collective = next(row for row in report["benchmark"]["cohorts"][0]["variants"] if row["variant"] == "collective")
    assert collective["backend"] == "gloo" and collective["all_gather_samples"] == "exact"
    assert "GPU paths not run" in (out / "report.md").read_text()
