#!/usr/bin/env bash
# make e2e-node: up.sh, then the scenarios of tests/node/ and the README's cnitool walkthrough,
# then down.sh, which runs whatever happened (a failed up.sh included).
# usage: e2e.sh AWS_ENI_IP_STATIC_BINARY EC2_SIM_BINARY   (CARGO, AEI_CNITOOL from the Makefile)
set -euo pipefail
. "$(dirname "$0")/common.sh"
CARGO=${CARGO:-cargo}
start=$SECONDS
trap 'bash "$node_here/down.sh"; say "e2e-node: $((SECONDS - start))s in all"' EXIT
bash "$node_here/up.sh" "$1" "$2"
say "up in $((SECONDS - start))s; scenarios"
# One scenario at a time, each timed: the README's table quotes these lines.
scenarios=$(AEI_NODE_ENV=$NODE_RUN/env "$CARGO" test --locked --features node-e2e --test node -- --list 2>/dev/null |
  sed -n 's/: test$//p')
[ -n "$scenarios" ] || { echo "e2e.sh: no scenario listed by tests/node" >&2; exit 1; }
for t in $scenarios; do
  t0=$SECONDS
  AEI_NODE_ENV=$NODE_RUN/env "$CARGO" test --locked --features node-e2e --test node -- --exact "$t"
  say "scenario $t: $((SECONDS - t0))s"
done
# The walkthrough on this host, beside the node: its own namespaces, simulator and state dir.
t0=$SECONDS
"$CARGO" test --locked --test cnitool
say "scenario (h) the README's cnitool walkthrough: $((SECONDS - t0))s"
