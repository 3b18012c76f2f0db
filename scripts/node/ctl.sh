#!/usr/bin/env bash
# What the scenarios do to the node's host beyond kubectl (tests/node/ calls it).
# usage: ctl.sh containerd-stop | containerd-start | eni-link-down | eni-link-up
set -euo pipefail
. "$(dirname "$0")/common.sh"
[ -e "$NODE_RUN/up" ] || { echo "ctl.sh: no node is up ($NODE_RUN/up absent)" >&2; exit 1; }
case ${1:-} in
  # SIGTERM: containerd stops, its shims and the containers keep running, as in a package upgrade.
  containerd-stop)
    pid=$(cat "$NODE_RUN/pids/containerd.pid")
    kill -TERM "$pid"
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || exit 0; sleep 0.1; done
    echo "ctl.sh: containerd ($pid) still runs 10 s after SIGTERM" >&2
    exit 1 ;;
  containerd-start)
    start_containerd
    for _ in $(seq 120); do crictl info >/dev/null 2>&1 && exit 0; sleep 0.5; done
    echo "ctl.sh: containerd not answering 60 s after its start; see $NODE_LOGS/containerd.log" >&2
    exit 1 ;;
  eni-link-down) ip link set "$ENI_LINK" down ;;
  eni-link-up) ip link set "$ENI_LINK" up ;;
  *) echo "usage: ctl.sh containerd-stop | containerd-start | eni-link-down | eni-link-up" >&2; exit 2 ;;
esac
