# tfserverless: `make serve` (sample model on :8080) and `make test` work on a fresh machine.
SHELL := /bin/bash
PY ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
EAS_VENV := .venv-eas
BIN := $(VENV)/bin
PORT ?= 8080
MODEL_PATH ?= samples/mnist
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: venv eas-venv sample serve test lint typecheck pytest bench clean

venv: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml requirements-dev.txt
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements-dev.txt
	$(BIN)/pip install -q --no-deps -e .
	touch $@

eas-venv: $(EAS_VENV)/.installed
$(EAS_VENV)/.installed: requirements-eas.txt
	$(PY) -m venv $(EAS_VENV)
	$(EAS_VENV)/bin/pip install -q --upgrade pip
	$(EAS_VENV)/bin/pip install -q -r requirements-eas.txt
	touch $@

sample: samples/mnist/saved_model.pb
samples/mnist/saved_model.pb: samples/build_mnist.py | venv
	$(BIN)/python samples/build_mnist.py samples/mnist

serve: venv sample
	MODEL_PATH=$(MODEL_PATH) $(BIN)/functions-framework --source handler/main.py \
	  --target predict --host 0.0.0.0 --port $(PORT)

lint: venv
	$(BIN)/ruff check src handler tests samples benchmarks packaging/build
	$(BIN)/cfn-lint template.yaml

typecheck: venv
	$(BIN)/mypy

pytest: venv eas-venv
	EAS_PYTHON=$(abspath $(EAS_VENV))/bin/python $(BIN)/pytest -q tests $(PYTEST_ARGS)

test: lint typecheck pytest

bench: venv eas-venv sample
	$(BIN)/python benchmarks/codec_bench.py
	$(BIN)/python benchmarks/e2e_bench.py
	$(BIN)/python benchmarks/fetch_bench.py
	$(BIN)/python benchmarks/warmup_bench.py

clean:
	rm -rf $(VENV) $(EAS_VENV) samples/mnist .pytest_cache .mypy_cache .ruff_cache
