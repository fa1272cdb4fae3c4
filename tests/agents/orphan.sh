#!/bin/sh
# Test agent: leaves a background child behind (not holding stdout) and exits at once.
read -r request
sleep 1000 >/dev/null 2>&1 &
printf '{"type":"final","result":"left a child behind"}\n'
