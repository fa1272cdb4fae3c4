#!/bin/sh
# Test agent: reads the request line, streams two chunks, reports its environment, ends.
read -r request
printf '{"type":"chunk","content":"hello "}\n'
printf 'plain text line\n'
printf '{"type":"chunk","content":{"n":2}}\n'
echo "log line on stderr" >&2
printf '{"type":"final","result":{"ok":true,"secret":"%s","allowed":"%s","request":%s}}\n' "${SECRET_VAR:-unset}" "${ALLOWED_VAR:-unset}" "$request"
