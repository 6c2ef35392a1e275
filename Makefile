# Two entry points for a fresh machine: `make run` and `make test`.
# Both create .venv (with pip, which finds the torch wheels this machine carries) when it is missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CONFIG ?= jobs/configs/digits_cohort.yaml
ARGS ?=

FASHION_MNIST := /usr/share/datasets/fashion-mnist
FASHION_SKIPS := Fashion-MNIST not installed (as root: apt-get install dataset-fashion-mnist): its tests skip

.PHONY: run test fashion-mnist bench evidence evidence-fashion clean-venv

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,evidence]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/python jobs/online.py --config $(CONFIG) $(ARGS)

test: $(STAMP) fashion-mnist
	$(BIN)/python -m pytest -q $(ARGS)

# Fashion-MNIST's four files (Debian package dataset-fashion-mnist), installed when root; without
# them the tests that read the real files skip.
fashion-mnist:
	@if [ -d $(FASHION_MNIST) ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist) || echo "$(FASHION_SKIPS)"; \
	else echo "$(FASHION_SKIPS)"; fi

# The README's measurements (docs/measurements.md); each writes under runs/.
evidence: $(STAMP)
	$(BIN)/python jobs/evidence_online.py --seeds 0 1 2
	$(BIN)/python jobs/evidence_methods.py --seeds 0 1 2
	$(BIN)/python jobs/train_policy.py --out runs/pretrained-policy.pt
	$(BIN)/python jobs/evidence_policy.py --seeds 0 1 2 --settings offline --out runs/evidence-policy-pretrained \
	    --pretrained runs/pretrained-policy.pt --only uniform "pretrained, frozen" "clean teacher only" --timing-epochs 0
	$(BIN)/python jobs/evidence_policy.py --seeds 0 1 2 --settings offline --out runs/evidence-policy-memorizer
	$(BIN)/python jobs/evidence_policy.py --seeds 0 1 2 --pool-kind specialist --settings offline --out runs/evidence-policy-specialist
	$(BIN)/python jobs/evidence_policy.py --seeds 0 1 2 --settings online --out runs/evidence-policy-online \
	    --learned "ppo, ce=estimator:ppo,probe_loss:ce,update_epochs:4,probe_batch_size:128" \
	    --learned "credit, mae, prior 0=estimator:credit,probe_loss:mae,uniform_prior:0.0" \
	    --learned "credit, mae, prior 0.3=estimator:credit,probe_loss:mae,uniform_prior:0.3" \
	    --learned "credit, mae, network=estimator:credit,probe_loss:mae,credit_scope:network,update_epochs:4,probe_batch_size:128"
	$(BIN)/python jobs/evidence_policy.py --seeds 0 1 2 --settings offline --probe-source held_out \
	    --out runs/evidence-policy-memorizer-held-out --only uniform learned oracle --timing-epochs 0 \
	    --learned "credit, ce=estimator:credit,probe_loss:ce" --learned "credit, mae=estimator:credit,probe_loss:mae"
	$(BIN)/python jobs/evidence_policy.py --seeds 0 1 2 --settings online-poor-peer --out runs/evidence-policy-poor-peer
	$(BIN)/python jobs/evidence_curricula.py --seeds 1 2 3

# The same tables on Fashion-MNIST (apt-get install dataset-fashion-mnist; scales and times: docs/datasets.md).
FASHION_SMALL := --set data.train_fraction=0.02 --set data.val_fraction=0.0167 --set epochs=10
evidence-fashion: $(STAMP)
	$(BIN)/python jobs/evidence_online.py --config jobs/configs/fashion_cohort.yaml --epoch-seconds --out runs/epoch-seconds-fashion
	$(BIN)/python jobs/evidence_online.py --config jobs/configs/fashion_cohort.yaml $(FASHION_SMALL) --seeds 0 1 2 --out runs/evidence-online-fashion
	$(BIN)/python jobs/offline.py --config jobs/configs/fashion_teacher.yaml --independent --run-dir runs/fashion-teacher
	$(BIN)/python jobs/evidence_methods.py --teacher-config jobs/configs/fashion_teacher.yaml --student-config jobs/configs/fashion_offline.yaml --teacher-run runs/fashion-teacher --seeds 0 1 2 --out runs/evidence-methods-fashion
	$(BIN)/python jobs/evidence_curricula.py --config jobs/configs/fashion_cohort.yaml --space jobs/configs/fashion_cohort_space.yaml --asha-samples 8 --pbt-samples 4 --pbt-interval 2 $(FASHION_SMALL) --seeds 1 2 3 --out runs/evidence-curricula-fashion
	$(BIN)/python jobs/online.py --config jobs/configs/fashion_cohort.yaml --independent --set data.train_fraction=1.0 --set epochs=3 --run-dir runs/fashion-independent-full
	$(BIN)/python jobs/evidence_partition.py --config jobs/configs/fashion_partition.yaml --seeds 0 1 2 --jobs 5 --out runs/evidence-partition-fashion
	$(BIN)/python jobs/evidence_policy.py --seeds 0 1 --settings offline --pool runs/policy-pool-fashion \
	    --pool-configs jobs/configs/fashion_pool_clean.yaml jobs/configs/fashion_pool_memorizer.yaml jobs/configs/fashion_pool_weak.yaml \
	    --student-config jobs/configs/fashion_pool_offline.yaml --out runs/evidence-policy-fashion --timing-epochs 0 \
	    --only uniform CA-MKD "clean teacher only" "credit, mae" oracle --learned "credit, mae=estimator:credit,probe_loss:mae"

bench: $(STAMP)
	$(BIN)/python jobs/benchmark_cohort.py --out runs/bench.json
	$(BIN)/python jobs/benchmark_policy.py --config jobs/configs/digits_cohort.yaml --epochs 5 --threads 1

clean-venv:
	rm -rf $(VENV)
