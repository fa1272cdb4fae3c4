#!/usr/bin/env bash
# Installs cargo-cyclonedx (pinned), the maintained CycloneDX generator for Rust, into
# .tools/cargo-cyclonedx/ (git-ignored): scripts/dist.sh writes the release bundle's SBOM with
# it. Built from crates.io with its own lock file (`cargo install --locked`), once; a stamp
# records the pin. Called by scripts/test-tools.sh and `make dist`; safe to run alone.
set -euo pipefail
cd "$(dirname "$0")/.."
TOOLS="${A2A_TOOLS_DIR:-$PWD/.tools}"
CYCLONEDX_PIN="cargo-cyclonedx@0.5.9"
mkdir -p "$TOOLS"
if [ -f "$TOOLS/cargo-cyclonedx.stamp" ] && [ "$(cat "$TOOLS/cargo-cyclonedx.stamp")" = "$CYCLONEDX_PIN" ] &&
  [ -x "$TOOLS/cargo-cyclonedx/bin/cargo-cyclonedx" ]; then
  exit 0
fi
echo "sbom-tool: building $CYCLONEDX_PIN (a few minutes, once)" >&2
rm -rf "$TOOLS/cargo-cyclonedx"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
CARGO_TARGET_DIR="$tmp" cargo install --quiet --locked --root "$TOOLS/cargo-cyclonedx" "$CYCLONEDX_PIN"
rm -f "$TOOLS/cargo-cyclonedx/.crates.toml" "$TOOLS/cargo-cyclonedx/.crates2.json"
echo "$CYCLONEDX_PIN" > "$TOOLS/cargo-cyclonedx.stamp"
