#!/bin/bash
# Offline install test only: runs inside the container booted by `systemd-nspawn -b`
# (tests/it/offline.rs), which has no network at all. The bundles are unpacked at
# /bundles/{first,second,broken}: two good releases and one whose binary never serves.
# Every step's output and exit status, and what the service answered, go to /probe; the test
# on the host judges them.
out=/probe
ops=127.0.0.1:3000
api=127.0.0.1:8787

step() { # name command...: output to $out/name.log, exit status to $out/name.rc
  local name="$1"; shift
  "$@" > "$out/$name.log" 2>&1
  echo $? > "$out/$name.rc"
}

# An HTTP/1.0 exchange over bash's /dev/tcp (the root has no curl): METHOD HOST:PORT PATH [BODY]
http() {
  local method="$1" addr="$2" path="$3" body="${4:-}" key=""
  [ -r /root/admin.key ] && key="$(cat /root/admin.key)"
  timeout 30 bash -c '
    exec 3<>"/dev/tcp/${1%:*}/${1##*:}" || exit 1
    {
      printf "%s %s HTTP/1.0\r\nHost: %s\r\n" "$0" "$2" "${1%:*}"
      [ -z "$4" ] || printf "Authorization: Bearer %s\r\n" "$4"
      if [ -n "$3" ]; then
        printf "Content-Type: application/json\r\nContent-Length: %s\r\n\r\n%s" "${#3}" "$3"
      else
        printf "\r\n"
      fi
    } >&3
    cat <&3' "$method" "$addr" "$path" "$body" "$key"
}

ready() {
  for _ in $(seq 300); do
    http GET "$ops" /readyz 2>/dev/null | head -1 | grep -q ' 200' && return 0
    sleep 0.2
  done
  return 1
}

request() { # id -> the request as the API returns it, or the HTTP error
  http GET "$api" "/api/v1/requests/$1"
}

# 1. First install, with the first admin key created before the first start.
step install /bundles/first/install.sh --admin-key-file /root/admin.key --ready-timeout 60
stat -c '%a %U %G' /etc/a2a-mcp/a2a-mcp.env > "$out/env-mode"
stat -c '%n %a %U' /var/lib/a2a-mcp/state /var/lib/a2a-mcp/backups /var/lib/a2a-mcp/upgrade-snapshots > "$out/dir-modes"
systemctl is-enabled a2a-mcp > "$out/enabled" 2>&1
http GET "$ops" /readyz > "$out/readyz" 2>&1
/usr/local/bin/a2a-mcp version --json > "$out/version.json" 2>&1

# 2. The same bundle again changes nothing.
step reinstall /bundles/first/install.sh

# 3. An invocation (the echo helper is off in production: switched on in the kept config).
echo "A2A_BUILTIN_ECHO=on" >> /etc/a2a-mcp/a2a-mcp.env
systemctl restart a2a-mcp
ready; echo $? > "$out/ready-after-restart.rc"
http POST "$api" /api/v1/agents/echo/invoke \
  '{"input":{"messages":[{"role":"user","content":"written before the upgrade"}]},"wait":true}' > "$out/invoke" 2>&1
id1="$(sed -n 's/.*"requestId":"\([^"]*\)".*/\1/p' "$out/invoke" | head -1)"
echo "$id1" > "$out/id1"

# 4. Upgrade to the second release: config, catalog and state kept.
step upgrade /bundles/second/install.sh --ready-timeout 60
readlink -f /usr/local/bin/a2a-mcp > "$out/link-after-upgrade"
request "$id1" > "$out/id1-after-upgrade" 2>&1
grep -c '^A2A_BUILTIN_ECHO=on$' /etc/a2a-mcp/a2a-mcp.env > "$out/config-after-upgrade"
http POST "$api" /api/v1/agents/echo/invoke \
  '{"input":{"messages":[{"role":"user","content":"written after the upgrade"}]},"wait":true}' > "$out/invoke2" 2>&1
id2="$(sed -n 's/.*"requestId":"\([^"]*\)".*/\1/p' "$out/invoke2" | head -1)"
echo "$id2" > "$out/id2"
/bundles/second/install.sh --status > "$out/status-after-upgrade" 2>&1

# 5. A broken release: rolled back by itself to the second one, nothing lost.
step broken /bundles/broken/install.sh --ready-timeout 60
readlink -f /usr/local/bin/a2a-mcp > "$out/link-after-broken"
systemctl is-active a2a-mcp > "$out/active-after-broken" 2>&1
request "$id1" > "$out/id1-after-broken" 2>&1
request "$id2" > "$out/id2-after-broken" 2>&1

# 6. Rollback on request: back to the first release and the store from before the upgrade.
step rollback /bundles/second/install.sh --rollback --ready-timeout 60
readlink -f /usr/local/bin/a2a-mcp > "$out/link-after-rollback"
request "$id1" > "$out/id1-after-rollback" 2>&1
request "$id2" > "$out/id2-after-rollback" 2>&1
step rollback-again /bundles/second/install.sh --rollback

journalctl -u a2a-mcp -o cat --no-pager > "$out/journal" 2>&1
touch "$out/done"
systemctl poweroff
