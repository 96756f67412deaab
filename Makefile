# zerofeed's one entry point. `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help
VENV = $(shell scripts/env.sh)
PY = $(VENV)/bin/python
# The bench's environment: the one above plus bench/requirements.txt (DALI, Grain, ...).
BENCH_VENV = $(shell scripts/env.sh bench/requirements.txt)
PYTEST_ARGS ?=

.PHONY: help env build test test-rust test-python test-bench test-valgrind check-wheel lint fmt bench bench-install walkthrough doctor gpu-check clean

help: ## Show this help
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  make %-12s %s\n", $$1, $$2}'

env: ## Create or reuse the Python environments (requirements/test.txt; bench/requirements.txt on top), print their paths
	@echo $(VENV)
	@echo $(BENCH_VENV)

build: ## Build the extension (release) into the environment
	@VIRTUAL_ENV=$(VENV) PATH=$(VENV)/bin:$$PATH maturin develop --release --quiet

test: build test-rust test-python test-bench check-wheel lint ## Set up everything, run all Rust and Python tests (the bench's too) and the linters

test-rust: ## Rust unit and integration tests
	cargo test --workspace --exclude zerofeed-py --quiet

test-python: ## Python tests, doc examples included
	$(PY) -m pytest --doctest-modules python/zerofeed tests $(PYTEST_ARGS)

test-bench: bench-install ## zerofeed-bench's tests (bench/tests), in the bench environment
	cd bench && $(BENCH_VENV)/bin/python -m pytest --doctest-modules zerofeed_bench tests $(PYTEST_ARGS)

check-wheel: ## Build the wheel and sdist and check that they hold zerofeed and no benchmark
	@rm -rf target/check-wheel
	@VIRTUAL_ENV=$(VENV) PATH=$(VENV)/bin:$$PATH maturin build --release --quiet -o target/check-wheel
	@VIRTUAL_ENV=$(VENV) PATH=$(VENV)/bin:$$PATH maturin sdist -o target/check-wheel
	$(PY) scripts/check_wheel.py target/check-wheel

lint: ## rustfmt, clippy -D warnings, ruff, mypy --strict, stubtest (needs `make build`)
	cargo fmt --all --check
	cargo clippy --workspace --all-targets --quiet -- -D warnings
	$(VENV)/bin/ruff check python tests examples bench scripts
	$(VENV)/bin/ruff format --check python tests examples bench scripts
	$(PY) -m mypy
	$(PY) -m mypy.stubtest zerofeed._zerofeed --mypy-config-file pyproject.toml \
	  --allowlist scripts/stubtest-allowlist.txt

test-valgrind: ## The core's Rust tests under valgrind memcheck (0 errors expected)
	bash scripts/valgrind_tests.sh

fmt: ## Format Rust and Python
	cargo fmt --all
	$(VENV)/bin/ruff format python tests examples bench scripts

bench-install: build ## Install zerofeed-bench (bench/, editable) into the bench environment
	@$(BENCH_VENV)/bin/python -m pip install --quiet --no-deps --no-build-isolation --editable ./bench

bench: bench-install ## Set up everything and run the main job: zerofeed bench on its built-in data
	$(BENCH_VENV)/bin/python -m zerofeed bench $(BENCH_ARGS)

walkthrough: build ## The zero-copy walkthrough: crop by view, hand to TF/PyTorch/JAX, pointers and RSS
	$(PY) examples/walkthrough.py

doctor: build ## What this machine can do (memlock, huge pages, CUDA, frameworks)
	$(VENV)/bin/zerofeed doctor

gpu-check: ## On a CUDA machine: build, GPU tests and transfer bench in one go
	bash scripts/gpu_check.sh

clean: ## Remove build outputs (not the environment)
	cargo clean
	rm -rf .pytest_cache .hypothesis python/zerofeed/*.so
