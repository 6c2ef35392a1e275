# Two entry points for a fresh machine: `make run` and `make test`.
# Both create .venv (with pip, which finds the torch wheels this machine carries) when it is missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CONFIG ?= jobs/configs/digits_cohort.yaml
ARGS ?=

.PHONY: run test bench evidence clean-venv

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/python jobs/online.py --config $(CONFIG) $(ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest -q $(ARGS)

# The README's measurements (docs/measurements.md); each writes under runs/.
evidence: $(STAMP)
	$(BIN)/python jobs/evidence_online.py --seeds 0 1 2
	$(BIN)/python jobs/evidence_methods.py --seeds 0 1 2
	$(BIN)/python jobs/train_policy.py --episodes 20 --out runs/teacher-policy.pt
	$(BIN)/python jobs/evidence_policy.py --seeds 0 1 2 --pretrained runs/teacher-policy.pt
	$(BIN)/python jobs/evidence_curricula.py --seeds 1 2 3

bench: $(STAMP)
	$(BIN)/python jobs/benchmark_cohort.py --out runs/bench.json
	$(BIN)/python jobs/benchmark_policy.py --config jobs/configs/digits_cohort.yaml --epochs 5 --threads 1

clean-venv:
	rm -rf $(VENV)
