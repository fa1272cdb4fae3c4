#!/bin/sh
# Test agent: starts a grandchild in a session of its own (out of reach of a process-group
# kill) that records its pid in $PIDFILE_DIR/<request id>.pid and keeps stdout open. Then it
# hangs, or with the argument `exit` ends at once with a final event.
read -r request
setsid sh -c 'echo $$ > "$PIDFILE_DIR/$A2A_REQUEST_ID.tmp" && mv "$PIDFILE_DIR/$A2A_REQUEST_ID.tmp" "$PIDFILE_DIR/$A2A_REQUEST_ID.pid"; exec sleep 1000' &
if [ "$1" = exit ]; then
  while [ ! -f "$PIDFILE_DIR/$A2A_REQUEST_ID.pid" ]; do sleep 0.01; done
  printf '{"type":"final","result":"detached"}\n'
  exit 0
fi
printf '{"type":"chunk","content":"holding"}\n'
sleep 1000
