# Every target bootstraps what it needs: `make demo` and `make test` work on a fresh clone.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
LOCAL := .local
export TF_USE_LEGACY_KERAS := 1
export TF_CPP_MIN_LOG_LEVEL := 2
export PYTHONPATH := $(CURDIR)

CONFIG ?= configs/online_retail.yaml
TRACKING_URI ?= sqlite:///$(CURDIR)/$(LOCAL)/mlflow/mlflow.db
EXPERIMENT ?= online-retail-two-tower
REPORT_DIR ?= $(LOCAL)/report
MLFLOW_PORT ?= 5000

.PHONY: help setup demo demo-one test test-unit test-integration compile lint format report \
        mlflow-local mlflow-ui bench constraints clean

help:  ## List the targets.
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

$(STAMP): setup.py constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt --config-settings editable_mode=compat -e '.[all,dev]'
	touch $(STAMP)

setup: $(STAMP)  ## Create .venv and install the package with pinned versions (idempotent).

demo: $(STAMP)  ## Run the sweep pipeline (the config's whole grid) on Online Retail with kfp.local.
	$(PY) -m pipelines run --pipeline sweep --config $(CONFIG) --tracking-uri $(TRACKING_URI) --local-root $(LOCAL)

demo-one: $(STAMP)  ## Run the training pipeline for one config pair (FEATURE_CONFIG, MODEL_CONFIG).
	$(PY) -m pipelines run --pipeline training --config $(CONFIG) --tracking-uri $(TRACKING_URI) \
	  --local-root $(LOCAL) --feature-config "$(FEATURE_CONFIG)" --model-config "$(MODEL_CONFIG)"

test: $(STAMP)  ## Run the whole test suite (unit + integration).
	$(PY) -m pytest

test-unit: $(STAMP)  ## Run only the fast unit tests.
	$(PY) -m pytest -m "not integration"

test-integration: $(STAMP)  ## Run only the integration tests (kfp.local, Beam, MLflow server, PostgreSQL).
	$(PY) -m pytest -m integration

compile: $(STAMP)  ## Compile the pipelines into pipeline_specs/.
	$(PY) -m pipelines compile --out pipeline_specs

lint: $(STAMP)  ## Check formatting and lint with ruff.
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)  ## Format the code with ruff.
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

report: $(STAMP)  ## Render the report from an MLflow store (TRACKING_URI, EXPERIMENT, REPORT_DIR).
	$(PY) -m reporting --tracking-uri $(TRACKING_URI) --experiment $(EXPERIMENT) --out $(REPORT_DIR)

mlflow-local: $(STAMP)  ## Start the server's entrypoint on 127.0.0.1 against a local store.
	mkdir -p $(LOCAL)/mlflow
	MLFLOW_BACKEND_STORE_URI=$${MLFLOW_BACKEND_STORE_URI:-$(TRACKING_URI)} \
	MLFLOW_ARTIFACT_ROOT=$${MLFLOW_ARTIFACT_ROOT:-$(CURDIR)/$(LOCAL)/mlflow/artifacts} \
	HOST=127.0.0.1 PORT=$(MLFLOW_PORT) PATH=$(CURDIR)/$(VENV)/bin:$$PATH \
	bash mlflow_server/entrypoint.sh

mlflow-ui: $(STAMP)  ## Open the MLflow UI on the demo's embedded store.
	$(VENV)/bin/mlflow ui --backend-store-uri $(TRACKING_URI) --host 127.0.0.1 --port $(MLFLOW_PORT)

bench: $(STAMP)  ## Run the benchmarks in bench/ (results go to bench/RESULTS.md by hand).
	$(PY) -m bench

constraints:  ## Re-resolve constraints.txt from setup.py in a scratch venv.
	rm -rf /tmp/b2b-recs-constraints && $(PYTHON) -m venv /tmp/b2b-recs-constraints
	/tmp/b2b-recs-constraints/bin/pip install --quiet '.[all,dev]'
	{ echo "# Pinned versions: every install resolves to exactly these. Regenerate with: make constraints"; \
	  /tmp/b2b-recs-constraints/bin/pip freeze --exclude b2b-recs; } > constraints.txt

clean:  ## Remove the local pipeline outputs and MLflow store (keeps .venv).
	rm -rf $(LOCAL)
