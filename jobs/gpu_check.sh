#!/usr/bin/env bash
# The GPU check, in one command:  bash jobs/gpu_check.sh [OUT_DIR]   (default: $OUT, else runs/gpu-check)
#
# With CUDA: the GPU tests (pytest -m gpu tests/test_gpu.py) and the GPU benchmark
# (jobs/benchmark_gpu.py), each under a timeout, about 8 minutes at most in all. Without CUDA: says so
# and runs the CPU self-check (the benchmark at a tiny size on the CPU over gloo, with an all-gather of
# payloads of different shapes), under a minute. Either way it writes OUT_DIR/report.md and
# report.json (jobs/gpu_report.py) and exits 0 when every step passed. No Ray is needed: see docs/gpu.md.
# PYTHON picks the interpreter (default: /opt/torch/.venv/bin/python, else .venv/bin/python, else python3).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${1:-${OUT:-runs/gpu-check}}"
mkdir -p "$out"
OUT_DIR="$(cd "$out" && pwd)"
TESTS_TIMEOUT_S=260
TEST_TIMEOUT_S=100  # each test (pytest-timeout), so a hung one leaves the others reported
BENCHMARK_TIMEOUT_S=200
SELF_CHECK_TIMEOUT_S=180  # under a minute on a quiet 2-core machine; a guard for a loaded one
cd "$ROOT"

if [[ -z "${PYTHON:-}" ]]; then
  for candidate in /opt/torch/.venv/bin/python "$ROOT/.venv/bin/python" python3; do
    if command -v "$candidate" >/dev/null 2>&1; then PYTHON="$candidate"; break; fi
  done
fi
export PYTHONPATH="$ROOT/platform:$ROOT${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
export CUBLAS_WORKSPACE_CONFIG="${CUBLAS_WORKSPACE_CONFIG:-:4096:8}"  # deterministic cuBLAS (runtime.deterministic)

# Install what is missing: from wheels carried in .whl/ (the GPU machine reaches no index), else from the index.
missing="$("$PYTHON" - <<'EOF'
import importlib.util
needed = {"torch": "torch", "torchvision": "torchvision", "yaml": "pyyaml", "sklearn": "scikit-learn",
          "tensorboard": "tensorboard", "numpy": "numpy", "pytest": "pytest", "pytest_timeout": "pytest-timeout"}
print(" ".join(package for module, package in needed.items() if importlib.util.find_spec(module) is None))
EOF
)"
if [[ -n "$missing" ]]; then
  echo "gpu_check: installing $missing"
  site=/tmp/codistill-gpu-check-site
  if compgen -G "$ROOT/.whl/*.whl" >/dev/null; then
    "$PYTHON" -m pip install -q --no-index --find-links "$ROOT/.whl" --target "$site" $missing \
      || echo "gpu_check: could not install $missing from .whl/; the steps that need them will fail"
  else
    "$PYTHON" -m pip install -q --target "$site" $missing \
      || echo "gpu_check: could not install $missing; the steps that need them will fail"
  fi
  export PYTHONPATH="$PYTHONPATH:$site"
fi

steps=()
run_step() {  # run_step NAME TIMEOUT_S COMMAND...: runs it, logs to OUT_DIR/NAME.log, records status and time
  local name="$1" limit="$2" started=$SECONDS code
  shift 2
  set +e
  timeout --kill-after=10 "$limit" "$@" 2>&1 | tee "$OUT_DIR/$name.log"
  code=${PIPESTATUS[0]}
  set -e
  if [[ $code -eq 124 || $code -eq 137 ]]; then echo "gpu_check: $name ran past its ${limit} s"; fi
  steps+=(--step "$name" "$code" "$((SECONDS - started))")
}

if "$PYTHON" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
  mode=gpu
  run_step tests "$TESTS_TIMEOUT_S" "$PYTHON" -m pytest -m gpu tests/test_gpu.py -q -rA -p no:cacheprovider \
    --timeout "$TEST_TIMEOUT_S" --junitxml "$OUT_DIR/tests.xml"
  run_step benchmark "$BENCHMARK_TIMEOUT_S" "$PYTHON" jobs/benchmark_gpu.py --budget-s "$((BENCHMARK_TIMEOUT_S - 30))" \
    --out "$OUT_DIR/benchmark.json"
else
  mode=cpu
  echo "no CUDA device: GPU paths not run; running the CPU self-check"
  run_step self-check "$SELF_CHECK_TIMEOUT_S" "$PYTHON" jobs/benchmark_gpu.py --self-check --out "$OUT_DIR/benchmark.json"
fi

status=0
"$PYTHON" jobs/gpu_report.py "$OUT_DIR" --mode "$mode" "${steps[@]}" || status=$?
echo "gpu_check: report in $OUT_DIR/report.md"
exit "$status"
