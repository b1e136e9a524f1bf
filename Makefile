# Two commands for a fresh machine: `make demo` and `make test`. Each sets up .venv on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU build of torch for dev machines and CI; on a GPU host use e.g. TORCH="torch" for the CUDA build.
TORCH ?= torch==2.13.0

.PHONY: install demo local test coverage lint typecheck check clean

$(BIN)/.installed: pyproject.toml constraints.txt Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[worker,demo,dev]"
	touch $@

install: $(BIN)/.installed

demo: install
	$(BIN)/headshot-demo

local: install
	$(BIN)/headshot-local

# Triton for the kernel tests (tests/pipeline/triton_kernels.py), unless torch brought its own (a GPU host's does).
$(BIN)/.kernels: $(BIN)/.installed
	$(BIN)/python -c "import triton" 2>/dev/null || $(BIN)/python -m pip install --quiet -c constraints.txt -e ".[kernels]"
	touch $@

# TEST_WORKERS pytest-xdist workers, a test file each at a time.
TEST_WORKERS ?= 2
test: install $(BIN)/.kernels
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile

# The same suite with the line coverage of the product packages (not tests/ or bench/): files under 100% listed, then
# the TOTAL line; subprocesses (the local chat's worker) are not measured. Apart from `test` because coverage's tracer
# slows every Python call, and the suite's many dynamo-tracing tests most (BENCHMARKS.md, "the test suite's time").
coverage: install $(BIN)/.kernels
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile --cov=bot --cov=jobs --cov=pipeline --cov-report=term:skip-covered

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: install
	$(BIN)/mypy

check: lint typecheck test

clean:
	rm -rf $(VENV) demo-output demo-data .cache .pytest_cache .mypy_cache .ruff_cache .coverage
