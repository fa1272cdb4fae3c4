#!/usr/bin/env bash
# The source archive for building with no registry access (`make vendor`; docs/DEPLOYMENT.md,
# "Offline install and upgrade"):
#
#   scripts/vendor.sh [--out DIR]
#
# Writes DIR (default target/bundle) /a2a-mcp-VERSION-src-vendored.tar.gz (and its .sha256):
# the source tree (every file git tracks, plus new files not ignored, as they are in the
# working tree), every dependency of Cargo.lock under vendor/ (`cargo vendor --locked`, all
# platforms), .cargo/config.toml pointing crates.io at vendor/, and GIT_COMMIT (the archive has
# no .git; build.rs reads it for `a2a-mcp version`). On the offline machine:
#
#   tar xzf a2a-mcp-VERSION-src-vendored.tar.gz && cd a2a-mcp-VERSION
#   cargo build --release --offline --locked      # or: make release CARGO='cargo --offline'
#
# Needs the crates once (from crates.io or ~/.cargo/registry); the tests
# (tests/it/offline.rs) check the unpacked archive inside `unshare -n` (no network).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
out="$repo/target/bundle"
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out="$2"; shift 2 ;;
    -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
    *) echo "vendor: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
out="$(realpath -m "$out")"
cd "$repo"
version="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)"
name="a2a-mcp-$version"
mkdir -p "$out"
stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
dir="$stage/$name"
mkdir -p "$dir"

if git rev-parse --git-dir >/dev/null 2>&1; then
  git ls-files -z --cached --others --exclude-standard |
    while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done |
    tar --null -T - -cf - | tar -C "$dir" -xf -
  git rev-parse HEAD > "$dir/GIT_COMMIT"
  mtime="$(git log -1 --format=%ct)"
else
  # Already an unpacked archive: the same tree again, without what builds leave behind.
  tar --exclude=./target --exclude=./.tools --exclude=./vendor --exclude=./.cargo -cf - . | tar -C "$dir" -xf -
  mtime="$(stat -c %Y Cargo.lock)"
fi

# Every crate of Cargo.lock, for every platform (cargo vendor does not filter by target).
cargo vendor --quiet --locked --manifest-path "$dir/Cargo.toml" "$dir/vendor" >/dev/null
mkdir -p "$dir/.cargo"
cat > "$dir/.cargo/config.toml" <<'CONFIG'
# Written by scripts/vendor.sh: crates come from vendor/ (every dependency of Cargo.lock),
# never from a registry. Build with `cargo build --release --offline --locked`.
[source.crates-io]
replace-with = "vendored-sources"

[source.vendored-sources]
directory = "vendor"
CONFIG

# Reproducible metadata: owner root, files in name order, the commit's time as mtime (which
# also keeps cargo from taking the unpacked files for newer than a build made from them).
tar -C "$stage" --owner=0 --group=0 --numeric-owner --sort=name --mtime="@$mtime" \
  -czf "$out/$name-src-vendored.tar.gz" "$name"
(cd "$out" && sha256sum "$name-src-vendored.tar.gz" > "$name-src-vendored.tar.gz.sha256")
echo "$out/$name-src-vendored.tar.gz"
