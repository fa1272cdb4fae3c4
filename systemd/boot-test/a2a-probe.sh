#!/bin/bash
# Boot test only: runs inside the container booted by `systemd-nspawn -b`. Waits for
# /healthz, records the answer, the service's user and state, its live security exposure and
# the result of a graceful stop into /probe, then powers the container off.
out=/probe
for _ in $(seq 200); do
  if { exec 3<>/dev/tcp/127.0.0.1/3000; } 2>/dev/null; then
    printf 'GET /healthz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&3
    cat <&3 > "$out/healthz"
    exec 3>&-
    break
  fi
  sleep 0.1
done
pid="$(systemctl show -p MainPID --value a2a-mcp)"
stat -c '%U' "/proc/$pid" > "$out/user"
systemctl show a2a-mcp -p ActiveState -p SubState > "$out/state"
systemd-analyze security a2a-mcp --no-pager > "$out/security" 2>&1
systemctl stop a2a-mcp
systemctl show a2a-mcp -p Result -p ExecMainCode -p ExecMainStatus > "$out/stop"
journalctl -u a2a-mcp -o cat --no-pager > "$out/journal"
systemctl poweroff
