# musicrec: every task starts here.  `make help` lists them.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
export PATH := $(abspath $(BIN)):$(PATH)
PYTHON  := $(BIN)/python
STAMP   := $(VENV)/.installed
PROTOS  := $(wildcard protos/musicrec/v1/*.proto)
GEN     := gen/musicrec/v1/.stamp
SITE     = $(shell $(PYTHON) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')

.PHONY: help setup protos test lint demo bench train evaluate modelserver clean

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
	touch gen/musicrec/__init__.py gen/musicrec/v1/__init__.py
	printf '%s\n%s\n' "$(CURDIR)" "$(CURDIR)/gen" > $(SITE)/musicrec.pth
	touch $@

setup: $(GEN) ## virtualenv, packages, generated gRPC stubs

protos: $(GEN) ## generate Python stubs from protos/ (and buf lint them)
	$(BIN)/buf lint

lint: $(GEN) ## ruff + buf lint
	$(BIN)/ruff check services tests bench scripts
	$(BIN)/buf lint

test: setup ## the whole test suite (real servers on loopback)
	$(BIN)/buf lint
	$(BIN)/ruff check services tests bench scripts
	$(PYTHON) -m pytest -q

demo: setup ## everything up on loopback, the demo catalog indexed, top-5 tables printed
	$(PYTHON) -m scripts.demo

bench: setup ## benchmark: fused vs naive featurizer on the real clips
	$(PYTHON) -m bench.featurize

train: setup ## retrain the five fold models into models/ (≈15 min on 2 cores), then evaluate
	$(PYTHON) -m services.classifier.training.train
	$(PYTHON) -m services.classifier.training.evaluate

evaluate: setup ## evaluation report: reports/evaluation.json, roc.png, confusion.png
	$(PYTHON) -m services.classifier.training.evaluate

modelserver: setup ## run the local TF Serving stand-in on :8500 with models/models.config
	$(PYTHON) -m services.classifier.modelserver

clean:
	rm -rf gen var .pytest_cache
