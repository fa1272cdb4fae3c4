#!/bin/sh
# Test agent: leaves a background child behind and exits at once.
read -r request
sleep 1000 &
printf '{"type":"final","result":"left a child behind"}\n'
