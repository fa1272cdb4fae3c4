#!/bin/sh
# Test agent: tries to read the environment of its parent, the hub, through /proc, and
# streams whatever it could read as text lines.
read -r request
if tr '\0' '\n' < "/proc/$PPID/environ"; then
  printf '{"type":"final","result":{"read":true}}\n'
else
  printf '{"type":"final","result":{"read":false}}\n'
fi
