#!/bin/bash
# Runs inside the VM that tests/vm/e2e-ipvlan.sh boots (kernel with ipvlan, the host's root over 9p,
# read-only): the ipvlan variants of tests/e2e/, from the test binary built on the host.
# Usage: guest.sh E2E-TEST-BINARY CNI-DRIVER PLUGIN-DIR TIME-SCALE
# No Python here: under emulation (TCG) it is about 20x slower, and nothing in the test path needs it.
set -uo pipefail
binary=$1 driver=$2 plugin_dir=$3 scale=$4

# 9p refuses sockets and fifos, and the root is read-only: state dirs, caches and logs go on a tmpfs.
mount -t tmpfs -o mode=1777 tmpfs /tmp || { echo "guest: cannot mount a tmpfs on /tmp" >&2; exit 1; }
modprobe ipvlan || { echo "guest: this kernel has no ipvlan module: $(uname -r)" >&2; exit 1; }
echo "guest: kernel $(uname -r), $(nproc) vCPUs, ipvlan module loaded"

export TMPDIR=/tmp E2E_CNI_DRIVER=$driver E2E_PLUGIN_DIR=$plugin_dir E2E_TIME_SCALE=$scale E2E_PODS=5
failed=0

# run LINK TEST...: one test process for the link kind; every named test must have run and passed.
run() {
  local link=$1
  shift
  local log=/tmp/e2e-$link.log started=$SECONDS
  echo "guest: E2E_LINK=$link: $*"
  E2E_LINK=$link "$binary" --exact --test-threads 1 "$@" 2>&1 | tee "$log"
  local rc=${PIPESTATUS[0]}
  # A renamed test would match no filter and pass by its absence: count them.
  if [[ $rc -ne 0 ]] || ! grep -q "^test result: ok\. $# passed; 0 failed" "$log"; then
    echo "guest: E2E_LINK=$link: not all of the $# tests ran and passed" >&2
    failed=1
  fi
  echo "guest: E2E_LINK=$link: $(( SECONDS - started )) s, exit $rc"
}

run ipvlan \
  e2e_host_local_v1_0_0_add_check_del \
  e2e_master_omitted_plugin_finds_parent_link_of_pod_interface \
  e2e_host_local_dual_stack_add_check_del \
  e2e_pods_in_parallel_leave_the_eni_as_it_started \
  e2e_two_nodes_floating_address_stays_with_new_owner
run ipvlan-l3 e2e_host_local_v1_0_0_add_check_del

exit $failed
