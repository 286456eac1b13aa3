# musicrec: every task starts here.  `make help` lists them.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
export PATH := $(abspath $(BIN)):$(PATH)
PYTHON  := $(BIN)/python
STAMP   := $(VENV)/.installed
PROTOS  := $(wildcard protos/musicrec/v1/*.proto protos/musicrec/tfserving/v1/*.proto)
GEN     := gen/musicrec/v1/.stamp
SITE     = $(shell $(PYTHON) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')

LINTED  := services training devtools tests bench scripts
# make train / evaluate on another taxonomy, e.g.
#   make train DATA=../shared/data/regional_mini/genres NAME=regional MODELS=models-regional REPORTS=reports/regional HOLDOUT=0.2
DATA    ?= ../shared/data/gtzan_mini/genres ../shared/data/gtzan_extra/genres
NAME    ?= linear
MODELS  ?= models
REPORTS ?= reports
HOLDOUT ?= 0.25
# every process gets a numba cache of its own (a shared one segfaulted under concurrent writers)
# The contracts as last released (a buf image): changes must stay wire- and source-compatible.
PROTO_BASELINE = protos/released/musicrec-v1.json
BUF_BREAKING = $(BIN)/buf breaking --against $(PROTO_BASELINE)
NUMBA   = NUMBA_CACHE_DIR=$(CURDIR)/var/numba/$@

.PHONY: help proto-release setup protos test test-fast lint deploy-check demo bench bench-recommend config-doc median-kernel ear train evaluate compare modelserver clean

help:
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*##/\t/'

$(STAMP): requirements.txt requirements-dev.txt
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip -q
	$(BIN)/pip install -r requirements-dev.txt
	touch $@

$(GEN): $(STAMP) $(PROTOS)
	rm -rf gen && mkdir -p gen
	$(PYTHON) -m grpc_tools.protoc -Iprotos --python_out=gen --pyi_out=gen --grpc_python_out=gen $(PROTOS)
	touch gen/musicrec/__init__.py gen/musicrec/v1/__init__.py gen/musicrec/tfserving/__init__.py gen/musicrec/tfserving/v1/__init__.py
	printf '%s\n%s\n' "$(CURDIR)" "$(CURDIR)/gen" > $(SITE)/musicrec.pth
	touch $@

setup: $(GEN) ## virtualenv, packages, generated gRPC stubs

protos: $(GEN) ## generate Python stubs from protos/ (and buf lint them)
	$(BIN)/buf lint

lint: $(GEN) ## ruff + buf lint + buf breaking against the released contracts + docs/configuration.md current
	$(BIN)/ruff check $(LINTED)
	$(PYTHON) -m devtools.config_doc --check
	$(BIN)/buf lint
	$(BUF_BREAKING)

proto-release: setup ## after a release: make the current protos the baseline buf breaking checks against
	$(BIN)/buf build --exclude-source-info -o $(PROTO_BASELINE)

test: setup ## the whole test suite: lint, deploy-check, unit tests, then real servers on loopback
	$(BIN)/buf lint
	$(BUF_BREAKING)
	$(BIN)/ruff check $(LINTED)
	@if command -v kubectl >/dev/null; then $(MAKE) --no-print-directory deploy-check; \
	  else echo "deploy-check SKIPPED: kubectl not installed (needed for kubectl kustomize)"; fi
	$(PYTHON) -m pytest -q

test-fast: setup ## ruff + the in-process unit tests (no servers; well under a minute once numba is warm)
	$(BIN)/ruff check $(LINTED)
	$(PYTHON) -m pytest -q tests/unit

deploy-check: setup ## offline: kubectl kustomize (base, jobs, secure and bf16 overlays) + kubernetes-validate --strict + hadolint
	mkdir -p var/deploy
	kubectl kustomize deploy/base > var/deploy/base.yaml
	kubectl kustomize deploy/jobs > var/deploy/jobs.yaml
	kubectl kustomize deploy/jobs-sharded/analyse > var/deploy/jobs-analyse.yaml
	kubectl kustomize deploy/jobs-sharded/publish > var/deploy/jobs-publish.yaml
	kubectl kustomize deploy/overlays/secure > var/deploy/secure.yaml
	kubectl kustomize deploy/overlays/bf16 > var/deploy/bf16.yaml
	$(BIN)/kubernetes-validate --strict --quiet var/deploy/base.yaml var/deploy/jobs.yaml var/deploy/secure.yaml \
	  var/deploy/bf16.yaml \
	  var/deploy/jobs-analyse.yaml var/deploy/jobs-publish.yaml
	$(BIN)/hadolint deploy/python-base/Dockerfile services/*/Dockerfile deploy/models/Dockerfile
	cmp models/models.config deploy/base/tfserving/models.config
	@echo "deploy-check: manifests and Dockerfiles valid"

demo: setup ## everything up on loopback, the demo catalog indexed, top-5 tables printed
	$(NUMBA) $(PYTHON) -m scripts.demo

bench: setup ## benchmarks: featurizer vs floor/naive/Essentia; recommender latency, HNSW vs exact, memory; ingestion; upload vs floor; the ear's CPU; the heaviest requests
	$(NUMBA) $(PYTHON) -m bench.featurize
	$(NUMBA) $(PYTHON) -m bench.recommend
	$(NUMBA) $(PYTHON) -m bench.ingest
	$(NUMBA) $(PYTHON) -m bench.upload
	$(NUMBA) $(PYTHON) -m bench.ear
	$(NUMBA) $(PYTHON) -m bench.heavy

bench-recommend: setup ## recommender only: p50/p99/rps by id, HNSW vs exact at 100k and 1M
	$(NUMBA) $(PYTHON) -m bench.recommend

config-doc: setup ## regenerate docs/configuration.md from the settings the code declares
	$(PYTHON) -m devtools.config_doc

median-kernel: setup ## regenerate services/featurizer/median_kernel.py (HPSS's median network) from devtools/median_network.py
	$(PYTHON) -m devtools.median_network

ear: setup ## convert musicnn's MSD checkpoint (pinned wheel, fetched by pip now) into models/musicnn_msd
	$(NUMBA) $(PYTHON) -m training.ear.convert

train: setup ## retrain the five fold heads on the ear (DATA, NAME, MODELS), then evaluate them into REPORTS
	$(NUMBA) $(PYTHON) -m training.ear.train --data $(DATA) --name $(NAME) --out $(MODELS) --holdout $(HOLDOUT)
	$(NUMBA) $(PYTHON) -m training.evaluate --models $(MODELS) --out $(REPORTS)

evaluate: setup ## the report of the models in MODELS: REPORTS/evaluation.json and its plots
	$(NUMBA) $(PYTHON) -m training.evaluate --models $(MODELS) --out $(REPORTS)

compare: setup ## heads, patches per clip and learning curve (about 10 minutes), then evaluate
	$(NUMBA) $(PYTHON) -m training.ear.compare
	$(NUMBA) $(PYTHON) -m training.evaluate --models $(MODELS) --out $(REPORTS)

modelserver: setup ## run the local TF Serving stand-in on :8500 with models/models.config
	$(PYTHON) -m services.modelserver

clean: ## remove generated stubs, var/ (caches, indexes, logs) and test caches
	rm -rf gen var .pytest_cache
