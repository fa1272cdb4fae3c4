#!/bin/sh
# Test agent whose behaviour is chosen by its first argument.
read -r request
case "$1" in
  error) printf '{"type":"error","message":"the agent says no"}\n' ;;
  nofinal) printf '{"type":"chunk","content":"x"}\n'; exit 3 ;;
  flood) yes '{"type":"chunk","content":"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}' ;;
  slow) sleep 30; printf '{"type":"final","result":1}\n' ;;
esac
