# unigate — Envoy + unigate.wasm + sidecar.
#   make run    install what is missing, build, start the gateway in the foreground
#   make test   install what is missing, build, run every test layer
.DEFAULT_GOAL := help
SHELL := /bin/bash

VENV      := .venv
PY        := $(VENV)/bin/python
ENVOY_BIN ?= $(abspath $(VENV)/bin/envoy)
WASM      := build/unigate.wasm
UNIGATE   := target/release/unigate
export ENVOY_BIN

.PHONY: help setup build wasm wasm-trap sidecar run test test-core test-wasm test-system lint fmt fuzz clean

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 14

setup: ## install toolchains and Python packages (idempotent)
	@scripts/setup.sh

wasm: ## build build/unigate.wasm
	@scripts/build-wasm.sh

wasm-trap: ## build the test-only build/unigate-trap.wasm (proves FAIL_RELOAD recovery)
	@scripts/build-wasm.sh trap

sidecar: ## build target/release/unigate
	cargo build --release -p unigate-sidecar

build: wasm sidecar ## build everything

run: setup build ## start Envoy + filter + sidecar (Ctrl-C stops it)
	$(UNIGATE) serve

test: setup build lint test-core test-wasm test-system ## all test layers
	@echo "make test: all layers passed"

test-core: ## Rust unit, golden and stream tests (core, sidecar)
	cargo test --workspace --exclude unigate-filter

test-wasm: wasm-trap ## the built .wasm in real Envoy with fake upstreams
	$(PY) -m pytest wasm-tests -q -ra

test-system: ## the full stack as `make run` starts it, driven by the official SDKs
	$(PY) -m pytest tests -q -ra

lint: ## rustfmt and clippy for host and wasm targets
	cargo fmt --all -- --check
	cargo clippy --workspace --exclude unigate-filter --all-targets -- -D warnings
	scripts/build-wasm.sh clippy

fuzz: ## fuzz every core and sidecar (extraction) target for FUZZ_SECONDS each (default 60; needs rustup nightly)
	scripts/fuzz.sh

fmt: ## format the Rust code
	cargo fmt --all

clean: ## remove build outputs
	cargo clean
	rm -rf build .run
