# a2a-mcp — developer and operator entry points. `make test` is the one test command
# (README, .ci/run); it installs the pinned test clients first (scripts/test-tools.sh).

CARGO ?= cargo
PREFIX ?= /usr/local
BIN := target/release/a2a-mcp

.PHONY: all build release dist run test test-tools lint fmt clippy bench docs clean

all: build

build:
	$(CARGO) build

release:
	$(CARGO) build --release

dist:
	$(CARGO) build --profile dist

run:
	$(CARGO) run --release -- serve

test-tools:
	scripts/test-tools.sh

# Unit tests, the store conformance suite, integration tests against the real hub and binary,
# the official MCP conformance suite and the Python MCP SDK interop tests.
test: test-tools
	@if $(CARGO) nextest --version >/dev/null 2>&1; then \
		$(CARGO) nextest run --profile ci; \
	else \
		echo "cargo-nextest not found; using cargo test" >&2; \
		$(CARGO) test; \
	fi

fmt:
	$(CARGO) fmt --all -- --check

clippy:
	$(CARGO) clippy --all-targets -- -D warnings

lint: fmt clippy

# Load test against a server started with `make run` (see docs/PERFORMANCE.md).
bench:
	$(CARGO) run --release -- bench -c 100 -d 10s

docs:
	$(CARGO) run -- check-config --docs > docs/CONFIGURATION.md

clean:
	$(CARGO) clean
