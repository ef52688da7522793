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

.PHONY: help setup demo demo-one test test-unit test-integration compile submit lint format report \
        mlflow-local mlflow-ui bench constraints clean image image-push cloudbuild

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

# Two test processes: the 2-core CI machine runs the suite in ~2/3 of the time (many tests
# wait on servers and subprocesses); a file's tests stay in one process (module fixtures).
TEST_WORKERS ?= 2

test: $(STAMP)  ## Run the whole test suite (unit + integration), TEST_WORKERS processes.
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile

test-unit: $(STAMP)  ## Run only the fast unit tests.
	$(PY) -m pytest -m "not integration"

test-integration: $(STAMP)  ## Run only the integration tests (kfp.local, Beam, MLflow server, PostgreSQL).
	$(PY) -m pytest -m integration

# The component image: components.COMPONENT_IMAGE is its one default reference; the tags
# built here are the package version and version-gitsha. IMAGE_REPO=... builds for your registry.
DEFAULT_IMAGE := $(shell sed -n 's/^COMPONENT_IMAGE = "\(.*\)"/\1/p' components/__init__.py)
IMAGE_REPO ?= $(firstword $(subst :, ,$(DEFAULT_IMAGE)))
VERSION := $(shell sed -n 's/^ *version="\(.*\)",/\1/p' setup.py)
GIT_SHA := $(shell git rev-parse --short HEAD 2>/dev/null)

compile: $(STAMP)  ## Compile the pipelines into pipeline_specs/ (IMAGE=REF and/or ENV=NAME: into .local/pipeline_specs).
ifeq ($(strip $(IMAGE)$(ENV)),)
	$(PY) -m pipelines compile --out pipeline_specs
else
	$(PY) -m pipelines compile --out $(LOCAL)/pipeline_specs $(if $(strip $(IMAGE)),--image $(IMAGE)) $(if $(strip $(ENV)),--env $(ENV))
endif

PIPELINE ?= sweep
submit: $(STAMP)  ## Submit to Vertex AI: ENV=NAME (configs/env/NAME.yaml) CONFIG=... [PIPELINE=sweep|halving|training] [WAIT=1].
	@test -n "$(strip $(ENV))" || { echo "make submit: set ENV=NAME (configs/env/NAME.yaml; start from configs/env/example.yaml)" >&2; exit 2; }
	$(PY) -m pipelines submit --env $(ENV) --config $(CONFIG) --pipeline $(PIPELINE) \
	  $(if $(FEATURE_CONFIG),--feature-config $(FEATURE_CONFIG)) $(if $(MODEL_CONFIG),--model-config $(MODEL_CONFIG)) \
	  $(if $(WAIT),--wait)

image:  ## Build the component and Dataflow worker images with docker (IMAGE_REPO, tags VERSION, VERSION-GIT_SHA).
	@command -v docker >/dev/null 2>&1 || { echo "make image: docker is not installed here; install it, or build in Google Cloud with: make cloudbuild IMAGE_REPO=$(IMAGE_REPO)" >&2; exit 1; }
	@test -n "$(GIT_SHA)" || { echo "make image: not a git checkout, no commit to tag the image with" >&2; exit 1; }
	DOCKER_BUILDKIT=1 docker build --tag $(IMAGE_REPO):$(VERSION) --tag $(IMAGE_REPO):$(VERSION)-$(GIT_SHA) \
	  --label org.opencontainers.image.version=$(VERSION) --label org.opencontainers.image.revision=$(GIT_SHA) .
	DOCKER_BUILDKIT=1 docker build --target dataflow-worker \
	  --tag $(IMAGE_REPO)-dataflow-worker:$(VERSION) --tag $(IMAGE_REPO)-dataflow-worker:$(VERSION)-$(GIT_SHA) \
	  --label org.opencontainers.image.version=$(VERSION) --label org.opencontainers.image.revision=$(GIT_SHA) .
	@echo "image=$(IMAGE_REPO):$(VERSION)-$(GIT_SHA)"

image-push: image  ## Build and push the component image (docker login to the registry first).
	docker push $(IMAGE_REPO):$(VERSION)
	docker push $(IMAGE_REPO):$(VERSION)-$(GIT_SHA)
	docker push $(IMAGE_REPO)-dataflow-worker:$(VERSION)
	docker push $(IMAGE_REPO)-dataflow-worker:$(VERSION)-$(GIT_SHA)

cloudbuild:  ## Build and push the component image with Cloud Build (cloudbuild.yaml; needs gcloud).
	@command -v gcloud >/dev/null 2>&1 || { echo "make cloudbuild: gcloud is not installed (https://cloud.google.com/sdk/docs/install)" >&2; exit 1; }
	@test -n "$(GIT_SHA)" || { echo "make cloudbuild: not a git checkout, no commit to tag the image with" >&2; exit 1; }
	gcloud builds submit --config=cloudbuild.yaml \
	  --substitutions=_IMAGE=$(IMAGE_REPO),_VERSION=$(VERSION),_GIT_SHA=$(GIT_SHA) .
	@echo "image=$(IMAGE_REPO):$(VERSION)-$(GIT_SHA)"

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

# Full size, minutes each. `python -m bench --smoke [NAME ...]` runs them at a tiny size, a check
# that they still run (tests/integration/test_bench_smoke.py runs it in CI).
bench: $(STAMP)  ## Run the benchmarks in bench/ (results to bench/RESULTS.md by hand; tiny: python -m bench --smoke).
	$(PY) -m bench

constraints:  ## Re-resolve constraints.txt from setup.py in a scratch venv.
	rm -rf /tmp/b2b-recs-constraints && $(PYTHON) -m venv /tmp/b2b-recs-constraints
	/tmp/b2b-recs-constraints/bin/pip install --quiet '.[all,gpu,dev]'
	{ echo "# Pinned versions: every install resolves to exactly these. Regenerate with: make constraints"; \
	  /tmp/b2b-recs-constraints/bin/pip freeze --exclude b2b-recs; } > constraints.txt

clean:  ## Remove the local pipeline outputs and MLflow store (keeps .venv).
	rm -rf $(LOCAL)
