# unigate — Envoy + unigate.wasm + sidecar.
#   make run           install what is missing, build, start the gateway in the foreground
#   make test          install what is missing, build, run every test layer
#   make compose-test  build the image and test the Docker Compose stack (installs Docker if needed)
#   make bench         install what is missing, build, benchmark (writes docs/benchmarks.md)
.DEFAULT_GOAL := help
SHELL := /bin/bash

VENV      := .venv
PY        := $(VENV)/bin/python
ENVOY_BIN ?= $(abspath $(VENV)/bin/envoy)
WASM      := build/unigate.wasm
UNIGATE   := target/release/unigate
export ENVOY_BIN

# Every target is phony: several share a name with a directory (bench, build, sidecar), which
# make would otherwise find up to date and skip.
.PHONY: help setup build wasm wasm-trap wasm-floor sidecar run test test-fast test-core test-wasm test-system
.PHONY: test-clients compose-test lint fmt fuzz bench clean

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 14

setup: ## install toolchains and Python packages (idempotent)
	@scripts/setup.sh

wasm: ## build build/unigate.wasm
	@scripts/build-wasm.sh

wasm-trap: ## build the test-only build/unigate-trap.wasm (proves FAIL_RELOAD recovery)
	@scripts/build-wasm.sh trap

wasm-floor: ## build the benchmark-only build/unigate-floor.wasm (the floor_filter row of make bench)
	@scripts/build-wasm.sh floor

sidecar: ## build target/release/unigate
	cargo build --release -p unigate-sidecar

build: wasm sidecar ## build everything

run: setup build ## start Envoy + filter + sidecar (Ctrl-C stops it)
	$(UNIGATE) serve

test: setup build lint test-core test-wasm test-system ## all test layers
	@echo "make test: all layers passed"

test-fast: ## the core's tests only (codecs, plans, streams, the filter's flows): the inner loop
	cargo test -p unigate-core

test-core: ## Rust unit, golden and stream tests (core, sidecar)
	cargo test --workspace --exclude unigate-filter

test-wasm: wasm wasm-trap ## the built .wasm in real Envoy with fake upstreams
	$(PY) -m pytest wasm-tests -q -ra

test-system: build ## the full stack as `make run` starts it, driven by the official SDKs and CLIs
	$(PY) -m pytest tests -q -ra

test-clients: setup ## the real Claude Code and Codex CLIs (tests/clients) against scripted fakes, no gateway
	$(PY) -m pytest tests/test_clients_direct.py tests/test_fakes_scripted.py -q -ra

compose-test: setup ## the Docker Compose stack built from our Dockerfile and tested (scripts/compose-test.sh)
	@scripts/compose-test.sh

lint: ## rustfmt and clippy for host and wasm targets
	cargo fmt --all -- --check
	cargo clippy --workspace --exclude unigate-filter --all-targets -- -D warnings
	scripts/build-wasm.sh clippy

fuzz: ## fuzz every core and sidecar (extraction) target for FUZZ_SECONDS each (default 60; needs rustup nightly)
	scripts/fuzz.sh

bench: setup build wasm-floor ## plain Envoy, unigate and LiteLLM side by side (BENCH_ARGS, e.g. --duration 5 --only unigate_messages)
	@scripts/install-bench-tools.sh
	$(PY) bench/run.py $(BENCH_ARGS)

fmt: ## format the Rust code
	cargo fmt --all

clean: ## remove build outputs
	cargo clean
	rm -rf build .run
