#!/usr/bin/env bash
# Measures the backup and restore durations quoted in docs/BACKUP_AND_RESTORE.md.
#
#   cargo build --release
#   scripts/backup-figures.sh                 # stores of 10,000 and 100,000 requests
#   scripts/backup-figures.sh 20000           # other sizes
#
# For each size: a release server on a fresh redb store is filled with `a2a-mcp bench`
# (echo, 3 chunks: per request 1 request record, 5 events and 1 audit entry), then it times
# `backup create` through the running server and offline, `backup verify`, `backup list --verify`,
# `backup restore` into a fresh redb, over the existing redb (the real restore), into SQLite and
# into Postgres (a scratch schema, dropped at the end), `backup create` from SQLite and
# Postgres, and the whole recovery drill (stop, restore, start, /readyz, counts equal the
# snapshot's). Last, on the restored store, a backup taken while `bench` runs, against a bench
# run without one. Every figure is wall-clock time and peak RSS from /usr/bin/time.
#
# Settings (environment): B (binary, default target/release/a2a-mcp), WORK (scratch
# directory, default /tmp/a2a-backup-figures, deleted per size), PORT and OPS_PORT (listeners,
# default 28787 and 23000), PG_URL (default postgres://postgres@127.0.0.1:5432/postgres; empty:
# skip Postgres). Needs curl, python3, bc, psql (for Postgres) and GNU time (/usr/bin/time).
# Run one benchmark at a time: the figures depend on the machine being quiet.
set -euo pipefail
cd "$(dirname "$0")/.."
B="${B:-$PWD/target/release/a2a-mcp}"
WORK="${WORK:-/tmp/a2a-backup-figures}"
PORT="${PORT:-28787}"
OPS_PORT="${OPS_PORT:-23000}"
PG_URL="${PG_URL-postgres://postgres@127.0.0.1:5432/postgres}"
SIZES=("$@")
[ ${#SIZES[@]} -gt 0 ] || SIZES=(10000 100000)
[ -x "$B" ] || { echo "$B not built: cargo build --release" >&2; exit 1; }

exec 3>&1
NET=(--catalog-dir data/catalog --stream-port "$PORT" --metrics-port "$OPS_PORT")
SERVER=""
trap '[ -n "$SERVER" ] && kill -TERM "$SERVER" 2>/dev/null; true' EXIT

load() { cut -d' ' -f1 /proc/loadavg; }
mib() { awk -v b="$1" 'BEGIN { printf "%.1f MiB", b / 1048576 }'; }
size_of() { du -sb "$@" | awk '{ s += $1 } END { print s }'; }

# timed LABEL CMD...: runs CMD (its stderr into $D/cli.log), prints (on fd 3, so the command's
# stdout can go to /dev/null) "LABEL: 1.23 s, peak RSS 45.6 MiB (load 0.80)".
timed() {
  local label=$1
  shift
  local out
  out=$(mktemp)
  if ! /usr/bin/time -o "$out" -f '%e %M' "$@" 2>>"$D/cli.log"; then
    echo "$label failed:" >&2
    tail -5 "$D/cli.log" >&2
    exit 1
  fi
  read -r secs kb < <(tail -1 "$out")
  rm -f "$out"
  printf '  %-44s %7.2f s   peak RSS %6.1f MiB   load %s\n' "$label" "$secs" \
    "$(awk -v k="$kb" 'BEGIN { print k / 1024 }')" "$(load)" >&3
}

status() { curl -sf "http://127.0.0.1:$OPS_PORT/api/agent?action=status"; }
store_count() { status | python3 -c "import json,sys; print(json.load(sys.stdin)['store']['$1'])"; }

start_server() { # DATA_DIR [ENV=VALUE...]
  local dir=$1
  shift
  env A2A_BACKUP_INTERVAL=off A2A_BACKUP_DIR="$D/online" "$@" \
    "$B" --data-dir "$dir" "${NET[@]}" serve >>"$D/serve.log" 2>&1 &
  SERVER=$!
  for _ in $(seq 1 600); do
    curl -sf -o /dev/null "http://127.0.0.1:$OPS_PORT/readyz" && return 0
    sleep 0.1
  done
  echo "the server did not become ready; see $D/serve.log" >&2
  exit 1
}

stop_server() {
  kill -TERM "$SERVER"
  wait "$SERVER" || true
  SERVER=""
}

bench() { "$B" bench --url "http://127.0.0.1:$PORT/mcp" --ops-url "http://127.0.0.1:$OPS_PORT" "$@"; }

# The counts a snapshot's manifest records, as "requests=N events=M".
snap_counts() {
  "$B" backup verify "$1" | grep -oE '\b(requests|events)=[0-9]+' | sort -r | paste -sd' '
}
live_counts() { echo "requests=$(store_count requests) events=$(store_count events)"; }

# manifest FILE KEY: a field of a snapshot's manifest (JSON before the last 12 bytes).
manifest() {
  python3 - "$1" "$2" <<'PY'
import json, struct, sys
data = open(sys.argv[1], "rb").read()
(n,) = struct.unpack("<I", data[-12:-8])
print(json.loads(data[-12 - n:-12])[sys.argv[2]])
PY
}

pg_size() { # SCHEMA
  psql "$PG_URL" -At -c "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c
    JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = '$1' AND c.relkind = 'r'"
}
pg_drop_like() { # PREFIX
  for s in $(psql "$PG_URL" -At -c "SELECT nspname FROM pg_namespace WHERE nspname LIKE '$1%'"); do
    psql "$PG_URL" -q -c "SET client_min_messages = warning; DROP SCHEMA \"$s\" CASCADE"
  done
}

echo "a2a-mcp backup figures: $("$B" --version), $(nproc) cores, $(uname -r), $(date -u +%FT%TZ)"
echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
for N in "${SIZES[@]}"; do
  D="$WORK/$N"
  rm -rf "$D"
  mkdir -p "$D"
  echo
  echo "== store of ~$N requests (redb), scratch $D"
  start_server "$D/state"
  # Short runs (about 4,000 invocations/s at 20 clients here) so the count lands near N.
  while LEFT=$((N - $(store_count requests))) && [ "$LEFT" -gt 0 ]; do
    MS=$((LEFT / 4)); [ "$MS" -ge 100 ] || MS=100; [ "$MS" -le 5000 ] || MS=5000
    bench -c 20 -d "${MS}ms" --warmup 0s >/dev/null
  done
  echo "  filled: $(status | python3 -c 'import json,sys; s=json.load(sys.stdin)["store"]; print(" ".join(f"{k}={v}" for k, v in s.items() if k != "aux"), "audit=%d" % s["aux"]["audit"])')"
  echo "  redb file: $(mib "$(size_of "$D/state/a2a-mcp.redb")")"

  timed "backup create (online, via the server)" "$B" --data-dir "$D/state" "${NET[@]}" backup create >/dev/null
  SNAPS=("$D"/online/*.a2asnap)
  SNAP=${SNAPS[-1]}
  echo "  snapshot: $(mib "$(size_of "$SNAP")"), $(mib "$(manifest "$SNAP" uncompressedBytes)") uncompressed, $(manifest "$SNAP" records) records"
  stop_server

  timed "backup create (offline)" "$B" --data-dir "$D/state" backup create --dir "$D/offline" >/dev/null
  timed "backup verify" "$B" backup verify "$SNAP" >/dev/null
  timed "backup list --verify (verifies each)" "$B" backup list --verify --dir "$D/online" >/dev/null
  EXPECT=$(snap_counts "$SNAP")

  timed "backup restore -> fresh redb" "$B" --data-dir "$D/redb" backup restore "$SNAP" >/dev/null
  echo "  restored redb file: $(mib "$(size_of "$D/redb/a2a-mcp.redb")")"
  timed "backup restore -> over the existing redb" "$B" --data-dir "$D/state" backup restore "$SNAP" >/dev/null
  rm -f "$D"/state/a2a-mcp.redb.pre-restore-*

  timed "backup restore -> fresh SQLite" env A2A_STORE=sqlite "$B" --data-dir "$D/sqlite" backup restore "$SNAP" >/dev/null
  echo "  restored SQLite file: $(mib "$(size_of "$D/sqlite/a2a-mcp.sqlite")")"
  timed "backup create (offline, from SQLite)" env A2A_STORE=sqlite "$B" --data-dir "$D/sqlite" backup create --dir "$D/from-sqlite" >/dev/null

  if [ -n "$PG_URL" ]; then
    SCHEMA="bkfig_$N"
    pg_drop_like "$SCHEMA"
    PG=(env A2A_STORE=postgres A2A_POSTGRES_URL="$PG_URL" A2A_POSTGRES_SCHEMA="$SCHEMA")
    timed "backup restore -> Postgres (new schema)" "${PG[@]}" "$B" --data-dir "$D/pg" backup restore "$SNAP" >/dev/null
    echo "  restored Postgres schema: $(mib "$(pg_size "$SCHEMA")")"
    timed "backup restore -> Postgres (replace schema)" "${PG[@]}" "$B" --data-dir "$D/pg" backup restore "$SNAP" >/dev/null
    timed "backup create (offline, from Postgres)" "${PG[@]}" "$B" --data-dir "$D/pg" backup create --dir "$D/from-pg" >/dev/null
    pg_drop_like "$SCHEMA"
  fi

  # The recovery drill: a running server is stopped, the snapshot restored over its store, the
  # server started again and checked — the "rollback in under 5 minutes" figure.
  start_server "$D/state"
  t0=$(date +%s.%N)
  stop_server
  t1=$(date +%s.%N)
  "$B" --data-dir "$D/state" backup restore "$SNAP" >/dev/null 2>>"$D/cli.log"
  t2=$(date +%s.%N)
  start_server "$D/state"
  GOT=$(live_counts)
  t3=$(date +%s.%N)
  [ "$GOT" = "$EXPECT" ] || { echo "  counts differ after the restore: $GOT vs $EXPECT" >&2; exit 1; }
  printf '  %-44s %7.2f s   (stop %.2f, restore %.2f, start+ready+counts %.2f; %s)   load %s\n' \
    "drill: stop, restore, start, ready, counts" "$(echo "$t3 - $t0" | bc)" "$(echo "$t1 - $t0" | bc)" \
    "$(echo "$t2 - $t1" | bc)" "$(echo "$t3 - $t2" | bc)" "$GOT" "$(load)"

  # Writers keep going while a snapshot is taken: bench alone, then bench with a backup.
  echo "  bench -c 10 -d 10s without a backup:"
  bench -c 10 -d 10s | sed -n '2,3p' | sed 's/^/    /'
  echo "  bench -c 10 -d 10s with an online backup 3 s into it:"
  bench -c 10 -d 10s >"$D/bench.out" &
  BENCH=$!
  sleep 5 # the 2 s warm-up plus 3 s
  timed "backup create (online, under load)" "$B" --data-dir "$D/state" "${NET[@]}" backup create >/dev/null
  wait "$BENCH"
  sed -n '2,3p' "$D/bench.out" | sed 's/^/    /'
  stop_server
  rm -rf "$D"
done
echo
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
