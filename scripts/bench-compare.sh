#!/usr/bin/env bash
# Compares two release builds of a2a-mcp in one sitting, alternating: each run on a fresh redb
# store, `a2a-mcp bench -c C -d 8s` for C in 10 and 100, twice, with the server's CPU time
# (utime+stime from /proc/PID/stat, in clock ticks of 10 ms) across each run.
#   scripts/bench-compare.sh OLD_BINARY NEW_BINARY
# Uses the default ports (8787, 3000): nothing else may listen there. docs/PERFORMANCE.md.
set -u
OLD=${1:?old binary}
NEW=${2:?new binary}
for round in 1 2; do
  for which in old new; do
    B=$OLD; [ "$which" = new ] && B=$NEW
    for c in 10 100; do
      D=$(mktemp -d)
      "$B" --data-dir "$D/state" serve >"$D/serve.log" 2>&1 &
      P=$!
      for _ in $(seq 100); do curl -sf localhost:3000/readyz >/dev/null && break; sleep 0.1; done
      t0=$(awk '{print $14+$15}' /proc/$P/stat)
      out=$("$B" bench -c "$c" -d 8s 2>&1 | tail -25)
      t1=$(awk '{print $14+$15}' /proc/$P/stat)
      kill $P; wait $P 2>/dev/null
      rm -rf "$D"
      echo "== round $round $which C=$c server_cpu_ticks=$((t1 - t0)) load=$(cut -d' ' -f1 /proc/loadavg)"
      echo "$out" | grep -iE "invocations|p99|errors" | head -4
    done
  done
done
