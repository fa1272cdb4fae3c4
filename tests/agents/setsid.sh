#!/bin/sh
# Test agent: starts a grandchild in a session of its own (out of reach of a process-group
# kill) that records its pid in $PIDFILE_DIR/<request id>.pid, then hangs.
read -r request
setsid sh -c 'echo $$ > "$PIDFILE_DIR/$A2A_REQUEST_ID.tmp" && mv "$PIDFILE_DIR/$A2A_REQUEST_ID.tmp" "$PIDFILE_DIR/$A2A_REQUEST_ID.pid"; exec sleep 1000' &
printf '{"type":"chunk","content":"holding"}\n'
sleep 1000
