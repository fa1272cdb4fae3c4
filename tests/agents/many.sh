#!/bin/sh
# Test agent: streams $1 (default 1500) numbered chunks, then a final result {"chunks": N}.
read -r request
n=${1:-1500}
seq 1 "$n" | sed 's/.*/{"type":"chunk","content":"&"}/'
printf '{"type":"final","result":{"chunks":%s}}\n' "$n"
