#!/bin/sh
# Test agent: records its pid and a child's pid in $PIDFILE_DIR, then waits for a long time.
read -r request
sleep 300 &
echo "$$ $!" > "$PIDFILE_DIR/$A2A_REQUEST_ID.pids"
printf '{"type":"chunk","content":"holding"}\n'
wait
