#!/bin/sh
# Test agent driven by the test: one chunk per line the test writes to the FIFO $CONTROL_FIFO
# (the line is the chunk's text); the line "end" finishes with {"chunks": N}.
read -r request
exec 3< "$CONTROL_FIFO"
n=0
while read -r line <&3; do
  if [ "$line" = end ]; then
    printf '{"type":"final","result":{"chunks":%s}}\n' "$n"
    exit 0
  fi
  n=$((n + 1))
  printf '{"type":"chunk","content":"%s"}\n' "$line"
done
printf '{"type":"error","message":"the control FIFO was closed before end"}\n'
