#!/usr/bin/env bash
# The release bundle for offline and edge installs (`make dist`; docs/DEPLOYMENT.md, "Offline
# install and upgrade"): one archive an operator carries to the box and installs from.
#
#   scripts/dist.sh [--bin FILE] [--label VERSION] [--out DIR]
#
#   --bin FILE       the binary to ship (default target/dist/a2a-mcp, the fat-LTO `dist`
#                    profile that `make dist` builds first)
#   --label VERSION  the bundle's version (default: the binary's own, `a2a-mcp version --json`)
#   --out DIR        where the archive goes (default target/bundle)
#
# Writes DIR/a2a-mcp-VERSION-x86_64-linux.tar.gz (and its .sha256) holding one directory:
#   bin/a2a-mcp                      the binary
#   install.sh                       install / upgrade / --rollback (scripts/install.sh)
#   systemd/                         the unit, sysusers.d entry and environment file example
#   catalog/                         the shipped catalog (data/catalog/*.toml)
#   doc/                             README.md, SECURITY.md, docs/*.md
#   BUILD.json                       `a2a-mcp version --json` of the shipped binary
#   VERSION                          the bundle's version (the install's release name)
#   sbom.cdx.json                    CycloneDX 1.5 SBOM of the crates in the binary (cargo-cyclonedx,
#                                    pinned in scripts/test-tools.sh; the binary's target and features)
#   SHA256SUMS                       sha256sum of every other file, checked by install.sh
# The tests (tests/it/offline.rs) package the debug binary they already built the same way
# (--bin), so CI does not pay for a second, fat-LTO build.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
bin="$repo/target/dist/a2a-mcp"
label=
out="$repo/target/bundle"
while [ $# -gt 0 ]; do
  case "$1" in
    --bin) bin="$2"; shift 2 ;;
    --label) label="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
    *) echo "dist: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
# Paths given relative to the caller's directory, before moving to the source tree.
bin="$(realpath -m "$bin")"
out="$(realpath -m "$out")"
cd "$repo"
TOOLS="${A2A_TOOLS_DIR:-$PWD/.tools}"
CYCLONEDX="${CARGO_CYCLONEDX:-$TOOLS/cargo-cyclonedx/bin/cargo-cyclonedx}"
[ -x "$bin" ] || { echo "dist: $bin is not an executable: build it first (make dist) or pass --bin" >&2; exit 1; }
[ -x "$CYCLONEDX" ] || { echo "dist: $CYCLONEDX is missing: run scripts/test-tools.sh (or set CARGO_CYCLONEDX)" >&2; exit 1; }
command -v sha256sum >/dev/null || { echo "dist: sha256sum is missing (coreutils)" >&2; exit 1; }

build_json="$("$bin" version --json)"
field() { printf '%s' "$build_json" | sed -n "s/^  \"$1\": \"\(.*\)\",\{0,1\}$/\1/p"; }
version="$(field version)"
target="$(field target)"
[ -n "$version" ] && [ -n "$target" ] || { echo "dist: cannot read the version of $bin: $build_json" >&2; exit 1; }
label="${label:-$version}"
case "$label" in
  *[!A-Za-z0-9.+_-]*|'') echo "dist: --label $label: letters, digits and . + _ - only" >&2; exit 2 ;;
esac
arch="${target%%-*}"
name="a2a-mcp-$label-$arch-linux"
# Features of the shipped binary, comma-separated, for the SBOM.
features="$(printf '%s' "$build_json" | tr -d '\n ' | sed -n 's/.*"features":\[\([^]]*\)\].*/\1/p' | tr -d '"')"

mkdir -p "$out"
stage="$(mktemp -d)"
sbom_name="sbom-dist-$$-$RANDOM"
trap 'rm -rf "$stage" "$repo/$sbom_name.json"' EXIT
dir="$stage/$name"
install -d "$dir/bin" "$dir/systemd" "$dir/catalog" "$dir/doc"
install -m 0755 "$bin" "$dir/bin/a2a-mcp"
install -m 0755 scripts/install.sh "$dir/install.sh"
install -m 0644 systemd/a2a-mcp.service systemd/a2a-mcp.sysusers systemd/a2a-mcp.env "$dir/systemd/"
install -m 0644 data/catalog/*.toml "$dir/catalog/"
install -m 0644 README.md SECURITY.md docs/*.md "$dir/doc/"
printf '%s\n' "$build_json" > "$dir/BUILD.json"
printf '%s\n' "$label" > "$dir/VERSION"

# The SBOM (the crate, its library and binary targets, every crate they link for this target
# and these features; no dev-dependencies). cargo-cyclonedx writes beside Cargo.toml: a name
# of our own per run, so parallel runs (the tests) do not meet.
mtime="$(git log -1 --format=%ct 2>/dev/null || echo 0)"
SOURCE_DATE_EPOCH="$mtime" "$CYCLONEDX" cyclonedx --format json --spec-version 1.5 \
  --target "$target" --no-default-features ${features:+--features "$features"} \
  --override-filename "$sbom_name" -q
[ -f "$sbom_name.json" ] || { echo "dist: cargo-cyclonedx wrote no $sbom_name.json" >&2; exit 1; }
mv "$sbom_name.json" "$dir/sbom.cdx.json"

(cd "$dir" && find . -type f ! -name SHA256SUMS -printf '%P\n' | LC_ALL=C sort | xargs -d '\n' sha256sum > SHA256SUMS)
# Reproducible metadata: owner root, files in name order, the commit's time as mtime.
tar -C "$stage" --owner=0 --group=0 --numeric-owner --sort=name --mtime="@$mtime" \
  -czf "$out/$name.tar.gz" "$name"
(cd "$out" && sha256sum "$name.tar.gz" > "$name.tar.gz.sha256")
echo "$out/$name.tar.gz"
