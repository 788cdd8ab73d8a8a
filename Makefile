# tfserverless: `make serve` (sample model on :8080) and `make test` work on a fresh machine.
SHELL := /bin/bash
PY ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
EAS_VENV := .venv-eas
KSERVE_VENV := .venv-kserve
TRITON_VENV := .venv-triton
SERVE_VENV := .venv-serve
BIN := $(VENV)/bin
PORT ?= 8080
MODEL_PATH ?= samples/mnist
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: help venv serve-venv eas-venv kserve-venv triton-venv sample serve client rie test lint typecheck pytest bench bench-stores clean compat images-e2e

help:  ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/^([a-z0-9-]+):.*## (.*)$$/\1|\2/' | awk -F'|' '{printf "  make %-12s %s\n", $$1, $$2}'

venv: $(VENV)/.installed  ## the dev virtualenv (.venv): engine, TensorFlow, test and lint tools
$(VENV)/.installed: pyproject.toml requirements-dev.txt
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements-dev.txt
	# TF Serving's own Python client (the gRPC tests drive it); --no-deps: it pins `tensorflow`,
	# which would pull a second TensorFlow beside tensorflow-cpu (its modules are the same)
	$(BIN)/pip install -q --no-deps tensorflow-serving-api==2.21.0
	$(BIN)/pip install -q --no-deps -e .
	touch $@

serve-venv: $(SERVE_VENV)/.installed  ## what `make serve` needs only (.venv-serve): engine, server, TensorFlow
$(SERVE_VENV)/.installed: pyproject.toml requirements-serve.txt
	$(PY) -m venv $(SERVE_VENV)
	$(SERVE_VENV)/bin/pip install -q --upgrade pip
	$(SERVE_VENV)/bin/pip install -q -r requirements-serve.txt
	$(SERVE_VENV)/bin/pip install -q --no-deps -e .
	touch $@

# venvs of their own: the EAS SDK (its protobuf pin clashes with TensorFlow's), tritonclient
# (gevent, its own numpy) and the peer
# `make bench` compares against (KServe's ModelServer, as a KServe user would have it)
eas-venv: $(EAS_VENV)/.installed  ## the official EAS SDK's own virtualenv (.venv-eas)
kserve-venv: $(KSERVE_VENV)/.installed  ## KServe's ModelServer, the peer `make bench` measures (.venv-kserve)
triton-venv: $(TRITON_VENV)/.installed  ## tritonclient, the V2 client the tests drive (.venv-triton)
.venv-%/.installed: requirements-%.txt
	$(PY) -m venv .venv-$*
	.venv-$*/bin/pip install -q --upgrade pip
	.venv-$*/bin/pip install -q -r $<
	touch $@

sample: samples/mnist/saved_model.pb  ## build the sample MNIST SavedModel (samples/mnist)
# built with the serving venv when it exists (`make serve`), else the dev one; TensorFlow's
# start-up notices (oneDNN, CPU features, absl) go to build/sample.log, shown if the build fails
samples/mnist/saved_model.pb: samples/build_mnist.py
	@mkdir -p build
	$(if $(wildcard $(SERVE_VENV)/.installed),$(SERVE_VENV),$(VENV))/bin/python samples/build_mnist.py samples/mnist \
	  2>build/sample.log || { cat build/sample.log >&2; exit 1; }

serve: serve-venv sample  ## serve MODEL_PATH (default: the sample) on PORT (8080); `make client` calls it
	@echo "serving $(MODEL_PATH) on :$(PORT); in another shell: make client PORT=$(PORT)$(if $(SERVICE_TOKEN), SERVICE_TOKEN=\"\$$SERVICE_TOKEN\")"
	MODEL_PATH=$(MODEL_PATH) $(SERVE_VENV)/bin/tfserverless serve --host 0.0.0.0 --port $(PORT)

# not echoed: the command holds the token; with nothing on PORT it says so in one line, exit 1
client: eas-venv  ## call `make serve` (on PORT) with the official EAS SDK (samples/client.py)
	@$(EAS_VENV)/bin/python samples/client.py http://127.0.0.1:$(PORT) mnist $(SERVICE_TOKEN)

lint: venv  ## ruff, cfn-lint on template.yaml and sagemaker.yaml, import-linter's layering contracts
	$(BIN)/ruff check src handler tests samples benchmarks packaging/build layers/build
	$(BIN)/cfn-lint template.yaml sagemaker.yaml
	$(BIN)/lint-imports

typecheck: venv  ## mypy (strict on src/)
	$(BIN)/mypy

# Lambda's runtime interface emulator (a static Go binary) as SAM CLI ships it: only that file
# out of the pinned, hash-checked wheel, without installing SAM (tests/platforms/test_lambda_rie.py)
RIE := build/aws-lambda-rie
SAM_CLI := aws-sam-cli==1.170.0 --hash=sha256:24ebaf5ecba38dc1758089968cb89ab61e124b84e92a344fc7a2771a47f4d0bf
rie: $(RIE)  ## Lambda's runtime interface emulator, from the aws-sam-cli wheel (build/aws-lambda-rie)
$(RIE):
	mkdir -p build/rie-wheel
	echo "$(SAM_CLI)" > build/rie-wheel/requirements.txt
	$(PY) -m pip download -q --no-deps --require-hashes -d build/rie-wheel -r build/rie-wheel/requirements.txt
	$(PY) -c 'import glob, sys, zipfile; z = zipfile.ZipFile(glob.glob("build/rie-wheel/aws_sam_cli-*.whl")[0]); \
	  open(sys.argv[1] + ".part", "wb").write(z.read("samcli/local/rapid/aws-lambda-rie-x86_64"))' $@
	chmod +x $@.part
	mv $@.part $@

# the fast lane first (no TensorFlow, server, subprocess or socket: seconds), then the rest
pytest: venv eas-venv triton-venv rie  ## the fast lane, then the real-model, real-server tests
	$(BIN)/pytest -q -p no:cacheprovider -m "not slow" tests
	EAS_PYTHON=$(abspath $(EAS_VENV))/bin/python TRITON_PYTHON=$(abspath $(TRITON_VENV))/bin/python \
	  $(BIN)/pytest -q -m slow tests $(PYTEST_ARGS)

test: lint typecheck pytest  ## lint, typecheck and every test (what CI runs first)

# the stores coldstart_bench reads from: nginx (Debian's) and s3rver (npm; it serves real ranges)
bench-stores:  ## nginx and s3rver for benchmarks/coldstart_bench.py
	command -v nginx >/dev/null || test -x /usr/sbin/nginx || \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q nginx-light
	test -x build/bench-node/node_modules/.bin/s3rver || \
	  npm install --silent --prefix build/bench-node s3rver@3.7.1

bench: venv eas-venv kserve-venv triton-venv sample bench-stores rie  ## the benchmarks; reports under benchmarks/results/
	$(BIN)/python benchmarks/serve_bench.py
	$(BIN)/python benchmarks/protocols_bench.py
	$(BIN)/python benchmarks/grpc_bench.py
	$(BIN)/python benchmarks/litert_bench.py
	$(BIN)/python benchmarks/padding_bench.py
	$(BIN)/python benchmarks/codec_bench.py
	$(BIN)/python benchmarks/decode_worst_bench.py
	$(BIN)/python benchmarks/hostile_bench.py
	$(BIN)/python benchmarks/e2e_bench.py
	$(BIN)/python benchmarks/overload_bench.py
	$(BIN)/python benchmarks/fetch_bench.py
	$(BIN)/python benchmarks/coldstart_bench.py --sizes 1024 --plot 100,512,2048 --sweep
	$(BIN)/python benchmarks/warmup_bench.py
	$(BIN)/python benchmarks/lambda_rie_bench.py

# --- compatibility matrix: the engine's tests on other processors' Python and TensorFlow ---
COMPAT := .compat
COMPAT_TESTS := tests/protocol tests/test_imports.py tests/serving/test_service_http.py \
	tests/backends/test_tensorflow.py tests/batching/test_threaded.py tests/batching/test_aio.py \
	tests/serving/test_admission.py tests/serving/test_warmup.py tests/platforms tests/test_cross_version.py
pyenv_python = $(shell PYENV_VERSION=$(1) pyenv which python 2>/dev/null || command -v python$(basename $(1)))

$(COMPAT)/%/.installed: packaging/compat/%.txt pyproject.toml
	rm -rf $(COMPAT)/$*
	$(call pyenv_python,$(COMPAT_PY_$*)) -m venv $(COMPAT)/$*
	$(COMPAT)/$*/bin/pip install -q --upgrade pip
	$(COMPAT)/$*/bin/pip install -q -r packaging/compat/$*.txt
	$(COMPAT)/$*/bin/pip install -q --no-deps -e .
	touch $@
COMPAT_PY_tensorflow_cpu_1.15 := 3.7.16
COMPAT_PY_tensorflow_cpu_2.7 := 3.9.18

compat: venv eas-venv $(COMPAT)/tensorflow_cpu_1.15/.installed $(COMPAT)/tensorflow_cpu_2.7/.installed  ## the engine's tests on TF 1.15/Python 3.7 and TF 2.7/Python 3.9
	rm -rf $(COMPAT)/models-1.15 $(COMPAT)/models-current
	$(COMPAT)/tensorflow_cpu_1.15/bin/python tests/models.py $(COMPAT)/models-1.15 > /dev/null
	$(BIN)/python tests/models.py $(COMPAT)/models-current > /dev/null
	set -e; foreign='{"tf1_15_mnist": "$(abspath $(COMPAT))/models-1.15/tf1_mnist", "tf2_native": "$(abspath $(COMPAT))/models-current/tf2_native"}'; \
	for p in tensorflow_cpu_1.15 tensorflow_cpu_2.7; do \
	  echo "== compat: $$p"; \
	  TFS_COMPAT=1 TFS_FOREIGN_MODELS="$$foreign" EAS_PYTHON=$(abspath $(EAS_VENV))/bin/python \
	    $(COMPAT)/$$p/bin/pytest -q -p no:cacheprovider $(COMPAT_TESTS) -rsf | tail -n 25; \
	  test $${PIPESTATUS[0]} -eq 0; \
	done; \
	echo "== compat: current TensorFlow serving the TF 1.15 export"; \
	TFS_FOREIGN_MODELS="$$foreign" EAS_PYTHON=$(abspath $(EAS_VENV))/bin/python \
	  $(BIN)/pytest -q -p no:cacheprovider tests/test_cross_version.py

# --- real images: debootstrap bases, a local Docker daemon, containers driven with the SDK ---
images-e2e: venv eas-venv  ## build the Cloud Run images and an FC one, drive them with the SDK (Docker)
	bash packaging/images-e2e.sh

clean:  ## remove the virtualenvs, the sample model and caches
	rm -rf $(VENV) $(SERVE_VENV) $(EAS_VENV) $(KSERVE_VENV) $(TRITON_VENV) $(COMPAT) samples/mnist .pytest_cache .mypy_cache .ruff_cache
