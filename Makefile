# a2a-mcp — developer and operator entry points. `make test` is the one test command
# (README, .ci/run); it installs the pinned test clients first (scripts/test-tools.sh).

CARGO ?= cargo
PREFIX ?= /usr/local
BIN := target/release/a2a-mcp

.PHONY: all build release dist run test test-tools lint fmt clippy bench docs clean \
	lint-ops audit install uninstall docker vendor

all: build

build:
	$(CARGO) build

release:
	$(CARGO) build --release

# The release bundle for offline and edge installs (docs/DEPLOYMENT.md, "Offline install and
# upgrade"): target/bundle/a2a-mcp-VERSION-x86_64-linux.tar.gz with the fat-LTO binary (the
# `dist` profile), unit, sysusers and env files, catalog, docs, install.sh, a CycloneDX SBOM
# (cargo-cyclonedx, installed by scripts/sbom-tool.sh) and SHA256SUMS. CARGO (a make variable,
# exported) is not passed on: cargo-cyclonedx would take it for the path of cargo.
dist:
	$(CARGO) build --profile dist
	scripts/sbom-tool.sh
	env -u CARGO scripts/dist.sh --bin target/dist/a2a-mcp --out target/bundle

# The source archive with every dependency vendored, for `cargo build --release --offline
# --locked` on a machine with no registry access: target/bundle/a2a-mcp-VERSION-src-vendored.tar.gz.
vendor:
	scripts/vendor.sh --out target/bundle

run:
	$(CARGO) run --release -- serve

test-tools:
	scripts/test-tools.sh

# Unit tests, the store conformance suite, integration tests against the real hub and binary,
# the official MCP conformance suite, the Python MCP SDK interop tests and the supply-chain
# checks (`cargo deny check licenses bans sources`, tests/it/artifacts.rs).
test: test-tools
	$(CARGO) nextest run --profile ci

fmt:
	$(CARGO) fmt --all -- --check

clippy:
	$(CARGO) clippy --all-targets -- -D warnings

lint: fmt clippy lint-ops

# The operations artifacts through their validators (systemd-analyze, kubectl kustomize,
# kubernetes-validate, checkov, promtool, hadolint) and the project's semantic checks: the
# same tests CI runs (tests/it/artifacts.rs), with the validators installed first.
lint-ops: test-tools
	$(CARGO) nextest run --profile ci -E 'test(/^it::artifacts::/)'

# Known vulnerabilities: `cargo deny check advisories` against the RustSec database, which
# cargo-deny fetches from GitHub; fails with a clear message where it cannot be fetched
# (docs/DEPLOYMENT.md, "Supply chain").
audit: test-tools
	scripts/audit.sh

# Load test against a server started with `make run` (see docs/PERFORMANCE.md).
bench:
	$(CARGO) run --release -- bench -c 100 -d 10s

# Install on a systemd host (docs/DEPLOYMENT.md): `make release && sudo make install`, then
# `sudo systemctl enable --now a2a-mcp`. Existing config and catalog files are kept.
# DESTDIR stages the files only (no user, no daemon-reload); BIN picks another build.
UNITDIR ?= /etc/systemd/system
SYSUSERSDIR ?= /usr/lib/sysusers.d
CONFDIR ?= /etc/a2a-mcp
DOCDIR ?= $(PREFIX)/share/doc/a2a-mcp
install:
	@test -x "$(BIN)" || { echo "$(BIN) not built: run 'make release' first (or pass BIN=...)" >&2; exit 1; }
	install -D -m 0755 "$(BIN)" "$(DESTDIR)$(PREFIX)/bin/a2a-mcp"
	install -d -m 0755 "$(DESTDIR)$(UNITDIR)" "$(DESTDIR)$(SYSUSERSDIR)" "$(DESTDIR)$(DOCDIR)" "$(DESTDIR)$(CONFDIR)/catalog"
	sed 's|/usr/local/bin/a2a-mcp|$(PREFIX)/bin/a2a-mcp|; s|/usr/local/share/doc/a2a-mcp|$(DOCDIR)|' \
		systemd/a2a-mcp.service > "$(DESTDIR)$(UNITDIR)/a2a-mcp.service"
	chmod 0644 "$(DESTDIR)$(UNITDIR)/a2a-mcp.service"
	install -m 0644 systemd/a2a-mcp.sysusers "$(DESTDIR)$(SYSUSERSDIR)/a2a-mcp.conf"
	test -e "$(DESTDIR)$(CONFDIR)/a2a-mcp.env" || install -m 0640 systemd/a2a-mcp.env "$(DESTDIR)$(CONFDIR)/a2a-mcp.env"
	for f in data/catalog/*.toml; do \
		test -e "$(DESTDIR)$(CONFDIR)/catalog/$$(basename $$f)" || install -m 0644 "$$f" "$(DESTDIR)$(CONFDIR)/catalog/"; \
	done
	install -m 0644 docs/*.md "$(DESTDIR)$(DOCDIR)/"
	@if [ -z "$(DESTDIR)" ]; then \
		systemd-sysusers "$(SYSUSERSDIR)/a2a-mcp.conf" && \
		chgrp a2a-mcp "$(CONFDIR)/a2a-mcp.env" && \
		{ systemctl daemon-reload 2>/dev/null || echo "systemd is not running: skipped daemon-reload" >&2; }; \
		echo "installed; start with: systemctl enable --now a2a-mcp"; \
	fi

# Leaves /etc/a2a-mcp and /var/lib/a2a-mcp (config, state, backups) in place.
uninstall:
	-systemctl disable --now a2a-mcp 2>/dev/null
	rm -f "$(DESTDIR)$(PREFIX)/bin/a2a-mcp" "$(DESTDIR)$(UNITDIR)/a2a-mcp.service" \
		"$(DESTDIR)$(SYSUSERSDIR)/a2a-mcp.conf"
	rm -rf "$(DESTDIR)$(DOCDIR)"

# The container image (needs a Docker engine; CI only lints the Dockerfile with hadolint).
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
IMAGE ?= a2a-mcp
docker:
	docker build -t $(IMAGE):$(VERSION) .

docs:
	$(CARGO) run -- check-config --docs > docs/CONFIGURATION.md

clean:
	$(CARGO) clean
