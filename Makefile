# zerofeed's one entry point. `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help
VENV = $(shell scripts/env.sh)
PY = $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: help env build test test-rust test-python lint fmt bench walkthrough doctor gpu-check clean

help: ## Show this help
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  make %-12s %s\n", $$1, $$2}'

env: ## Create or reuse the Python environment (requirements/test.txt), print its path
	@echo $(VENV)

build: ## Build the extension (release) into the environment
	@VIRTUAL_ENV=$(VENV) PATH=$(VENV)/bin:$$PATH maturin develop --release --quiet

test: build test-rust test-python lint ## Set up everything, run all Rust and Python tests and the linters

test-rust: ## Rust unit and integration tests
	cargo test --workspace --exclude zerofeed-py --quiet

test-python: ## Python tests, doc examples included
	$(PY) -m pytest --doctest-modules python/zerofeed tests $(PYTEST_ARGS)

lint: ## rustfmt, clippy -D warnings, ruff, mypy --strict, stubtest (needs `make build`)
	cargo fmt --all --check
	cargo clippy --workspace --all-targets --quiet -- -D warnings
	$(VENV)/bin/ruff check python tests examples
	$(VENV)/bin/ruff format --check python tests examples
	$(PY) -m mypy
	$(PY) -m mypy.stubtest zerofeed._zerofeed --mypy-config-file pyproject.toml \
	  --allowlist scripts/stubtest-allowlist.txt --allowlist scripts/stubtest-allowlist-temp.txt

fmt: ## Format Rust and Python
	cargo fmt --all
	$(VENV)/bin/ruff format python tests examples

bench: build ## Set up everything and run the main job: zerofeed bench on its built-in data
	$(VENV)/bin/zerofeed bench $(BENCH_ARGS)

walkthrough: build ## The zero-copy walkthrough: crop by view, hand to TF/PyTorch/JAX, pointers and RSS
	$(PY) examples/walkthrough.py

doctor: build ## What this machine can do (memlock, huge pages, CUDA, frameworks)
	$(VENV)/bin/zerofeed doctor

gpu-check: ## On a CUDA machine: build, GPU tests and transfer bench in one go
	bash scripts/gpu_check.sh

clean: ## Remove build outputs (not the environment)
	cargo clean
	rm -rf .pytest_cache .hypothesis python/zerofeed/*.so
