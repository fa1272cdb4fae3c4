#!/bin/sh
# Test agent: streams its /proc/self/limits and /proc/self/status as text lines.
read -r request
cat /proc/self/limits
grep -E '^(Cap|NoNewPrivs)' /proc/self/status
printf '{"type":"final","result":{"uid":%s,"gid":%s,"cwd":"%s"}}\n' "$(id -u)" "$(id -g)" "$(pwd)"
