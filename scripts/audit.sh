#!/usr/bin/env bash
# `make audit`: `cargo deny check advisories` — every crate in Cargo.lock against the RustSec
# advisory database (vulnerabilities, unmaintained and unsound crates, yanked versions; policy
# in deny.toml). cargo-deny fetches the database from GitHub; where that is not reachable the
# audit fails with a message saying so, rather than passing without having checked anything.
set -uo pipefail
cd "$(dirname "$0")/.."
TOOLS="${A2A_TOOLS_DIR:-$PWD/.tools}"
DENY="$TOOLS/cargo-deny/bin/cargo-deny"
if [ ! -x "$DENY" ]; then
  echo "audit: $DENY is missing: run 'make test-tools' (scripts/test-tools.sh) first" >&2
  exit 2
fi
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
"$DENY" --color never check advisories 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
if [ "$status" -ne 0 ] && grep -q "failed to fetch advisory database" "$log"; then
  cat >&2 <<'MSG'

audit: FAILED — the RustSec advisory database (https://github.com/RustSec/advisory-db) could not
be fetched from this machine, so no advisory was checked. Run `make audit` where GitHub is
reachable, or bring a copy of the database to ~/.cargo/advisory-dbs/ and run
`cargo deny check --disable-fetch advisories` (docs/DEPLOYMENT.md, "Supply chain").
MSG
fi
exit "$status"
