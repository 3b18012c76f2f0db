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
AEI_NODE_ENV=$NODE_RUN/env "$CARGO" test --locked --features node-e2e --test node -- --test-threads 1
# The walkthrough on this host, beside the node: its own namespaces, simulator and state dir.
"$CARGO" test --locked --test cnitool
