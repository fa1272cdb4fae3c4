#!/bin/sh
# Test agent: calls back into the hub as itself (A2A_HUB_URL/A2A_HUB_TOKEN) to invoke the agent
# named in its input ("target"), and reports the HTTP status it got.
read -r request
target=$(printf '%s' "$request" | sed -n 's/.*"target":"\([a-z0-9._-]*\)".*/\1/p')
status=$(curl -s -o /dev/null -w '%{http_code}' -X POST \
  -H "Authorization: Bearer $A2A_HUB_TOKEN" -H 'content-type: application/json' \
  -d '{"input":{"messages":[{"role":"user","content":"from a callback"}]}}' \
  "$A2A_HUB_URL/api/v1/agents/$target/invoke")
printf '{"type":"final","result":{"status":%s}}\n' "$status"
