"""The GPU check's report (``jobs/gpu_report.py``): :func:`build_report` reads what
``jobs/gpu_check.sh`` left in its output folder (``tests.xml``, pytest's JUnit XML of the GPU tests;
``benchmark.json``, from ``jobs/benchmark_gpu.py``) and adds the machine (card, driver, torch,
CUDA, NCCL) and each step's exit status and time; :func:`markdown` renders it as ``report.md``.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import xml.etree.ElementTree as ElementTree
from collections import Counter
from pathlib import Path
from typing import Any

import torch

MIB = 1 << 20
SUBSTITUTIONS = {
    "objectref": "replaced by SequentialCohort: every peer in one process, one after another — what the objectref "
                 "exchange computes, without Ray's object store (Ray is not installed on the GPU machine); Ray's own "
                 "overhead is not measured here",
    "collective": "run without Ray as ProcessCohort: one torch.multiprocessing process per peer, each a PeerTrainer "
                  "in a PayloadGroup driving its own steps, as the Ray actors do; gloo when the "
                  "peers share a card (NCCL refuses two ranks on one GPU), NCCL when each has its own, and NCCL "
                  "forced once to record what this NCCL build does",
}


def nvidia_smi() -> dict[str, str] | None:
    """The first card's name, driver and memory as nvidia-smi reports them (``None`` without it)."""
    try:
        line = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total",
                               "--format=csv,noheader"], capture_output=True, text=True, timeout=30,
                              check=True).stdout.strip().splitlines()[0]
    except (OSError, subprocess.SubprocessError, IndexError):
        return None
    name, driver, memory = (part.strip() for part in line.split(","))
    return {"name": name, "driver": driver, "memory": memory}


def environment() -> dict[str, Any]:
    facts: dict[str, Any] = {"python": platform.python_version(), "torch": torch.__version__,
                             "torch_cuda": torch.version.cuda, "cuda_available": torch.cuda.is_available(),
                             "cpu_count": os.cpu_count(), "nvidia_smi": nvidia_smi()}
    if torch.cuda.is_available():
        properties = torch.cuda.get_device_properties(0)
        facts |= {"device_name": torch.cuda.get_device_name(0), "device_count": torch.cuda.device_count(),
                  "device_memory_mib": round(properties.total_memory / MIB),
                  "compute_capability": f"{properties.major}.{properties.minor}",
                  "nccl": ".".join(str(part) for part in torch.cuda.nccl.version())}
    return facts


def test_results(junit: Path) -> dict[str, Any] | None:
    """Each test case's outcome from pytest's JUnit XML, and the counts (``None`` without the file)."""
    if not junit.is_file():
        return None
    cases = []
    for case in ElementTree.parse(junit).getroot().iter("testcase"):
        outcome, message = "passed", ""
        for child in case:
            if child.tag in ("failure", "error"):
                outcome, message = ("failed" if child.tag == "failure" else "error"), child.get("message", "")
            elif child.tag == "skipped":
                outcome = "xfailed" if child.get("type") == "pytest.xfail" else "skipped"
                message = child.get("message", "")
        cases.append({"name": case.get("name"), "outcome": outcome, "seconds": float(case.get("time", 0.0)),
                      "message": (message.strip().splitlines() or [""])[0]})
    return {"counts": dict(Counter(case["outcome"] for case in cases)), "cases": cases}


def build_report(out: Path, mode: str, steps: list[dict[str, Any]]) -> dict[str, Any]:
    benchmark_file = out / "benchmark.json"
    passed = all(step["exit_code"] == 0 for step in steps)
    report = {"mode": mode, "gpu_paths_run": mode == "gpu", "status": "passed" if passed else "failed",
              "environment": environment(), "substitutions": SUBSTITUTIONS, "steps": steps,
              "tests": test_results(out / "tests.xml"),
              "benchmark": json.loads(benchmark_file.read_text()) if benchmark_file.is_file() else None}
    if mode == "gpu":
        card = report["environment"].get("device_name", "the GPU")
        report["summary"] = f"GPU paths run on {card}: {report['status']}"
    else:
        report["summary"] = f"no CUDA device: GPU paths not run; CPU self-check {report['status']}"
    return report


def _number(value: Any, digits: int = 1) -> str:
    if value is None:
        return "–"
    if isinstance(value, list):
        return ", ".join(_number(v, digits) for v in value)
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def benchmark_markdown(benchmark: dict[str, Any]) -> list[str]:
    plan = benchmark["plan"]
    lines = [f"Device {plan['device']}, CIFAR-shaped synthetic batches (3×32×32, batch {plan['batch_size']}), "
             f"{plan['steps']} timed steps after {plan['steps']} warm-up steps; overhead = (cohort − reference) "
             "where the reference is the slowest peer alone (collective) or the sum of the peers alone (sequential), "
             "share = overhead / slowest peer's step."]
    if plan["device"] == "cpu":
        lines.append(" The CPU self-check's sizes are tiny: its timings show that the paths ran, nothing more.")
    lines.append("")
    for cohort in benchmark["cohorts"]:
        lines += [f"### {', '.join(cohort['peers'])} — AMP {cohort['amp']}", "",
                  "| variant | backend | ms/step | × slowest alone | overhead ms/step | overhead share | "
                  "exchange wait ms | GPU MiB per peer | start-up s | notes |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        for row in cohort["alone"] + cohort["variants"]:
            name = row["variant"] + (f" {row['peers'][0]}" if row["variant"] == "alone" else "")
            memory = row.get("gpu_memory_mib", row.get("gpu_memory_mib_all_peers"))
            notes = [row["error"]] if "error" in row else []
            if "gpu_memory_mib_all_peers" in row:
                notes.append("memory: all peers in one process")
            if "all_gather_samples" in row:
                samples = row["all_gather_samples"]
                notes.append("all-gather of sample payloads exact" if samples == "exact"
                             else f"all-gather of sample payloads: {'; '.join(samples)}")
            if row.get("losses_finite") is False:
                notes.append("NON-FINITE LOSS")
            share = row.get("overhead_share_of_slowest_step")
            lines.append(f"| {name} | {row.get('backend', '–')} | {_number(row.get('ms_per_step'))} | "
                         f"{_number(row.get('over_slowest_alone'), 2)} | {_number(row.get('overhead_ms_per_step'))} | "
                         f"{'–' if share is None else f'{100 * share:.0f}%'} | "
                         f"{_number(row.get('exchange_wait_ms'))} | "
                         f"{_number(memory, 0)} | {_number(row.get('startup_s'))} | {'; '.join(notes)} |")
        lines.append("")
    lines += [f"- skipped: {', '.join(s['peers'])} with AMP {s['amp']} ({s['reason']})" for s in benchmark["skipped"]]
    lines += [f"- FAILED: {problem}" for problem in benchmark["failures"]]
    return lines


def markdown(report: dict[str, Any]) -> str:
    env = report["environment"]
    smi = env["nvidia_smi"] or {}
    lines = ["# codistill GPU check", "", f"**{report['summary']}**", "", "## Machine", "", "| | |", "| --- | --- |"]
    rows = [("card", env.get("device_name", "none (no CUDA device)")), ("driver", smi.get("driver", "–")),
            ("card memory", smi.get("memory", _number(env.get("device_memory_mib")))),
            ("compute capability", env.get("compute_capability", "–")), ("torch", env["torch"]),
            ("torch CUDA", env["torch_cuda"] or "–"), ("NCCL", env.get("nccl", "–")), ("Python", env["python"]),
            ("CPU cores", env["cpu_count"])]
    lines += [f"| {name} | {value} |" for name, value in rows]
    lines += ["", "## What replaced Ray", ""]
    lines += [f"- `{name}`: {text}" for name, text in report["substitutions"].items()]
    lines += ["", "## Steps", "", "| step | exit status | seconds |", "| --- | --- | --- |"]
    lines += [f"| {s['name']} | {s['exit_code']} | {s['seconds']:.0f} |" for s in report["steps"]]
    if report["tests"] is not None:
        counts = ", ".join(f"{n} {outcome}" for outcome, n in sorted(report["tests"]["counts"].items()))
        lines += ["", "## GPU tests", "", counts, "",
                  "| test | outcome | seconds | message |", "| --- | --- | --- | --- |"]
        lines += [f"| {c['name']} | {c['outcome']} | {c['seconds']:.1f} | {c['message'].replace('|', '/')} |"
                  for c in report["tests"]["cases"]]
    if report["benchmark"] is not None:
        lines += ["", "## Benchmark", ""] + benchmark_markdown(report["benchmark"])
    return "\n".join(lines) + "\n"
