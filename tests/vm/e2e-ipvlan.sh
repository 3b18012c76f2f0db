#!/bin/bash
# make e2e-ipvlan: boots a VM whose kernel has ipvlan (Debian's linux-image-amd64, through virtme-ng,
# emulated with TCG: KVM guests hang at kernel entry on the CI machines) and runs tests/vm/guest.sh
# in it: the ipvlan variants of tests/e2e/, against ec2-sim, with the binaries built here.
# Needs root, scripts/install-deps.sh --vm, and vng on PATH (the make target installs it, pinned).
set -euo pipefail
cd "$(dirname "$0")/../.."
started=$SECONDS
CARGO=${CARGO:-cargo}
# Deadlines in the tests are multiplied by this much: TCG runs native code about 50x slower, and a
# shared 2-core machine slows it further: an ADD that takes 0.1 s natively took 4-17 s in the VM (five at once).
TIME_SCALE=${E2E_TIME_SCALE:-10}

kernel=$(ls /boot/vmlinuz-*-amd64 2>/dev/null | sort -V | tail -n 1 || true)
if [[ -z $kernel ]]; then
  echo "e2e-ipvlan: no /boot/vmlinuz-*-amd64: apt-get install linux-image-amd64 (scripts/install-deps.sh --vm)" >&2
  exit 1
fi
release=${kernel#/boot/vmlinuz-}
if ! find "/lib/modules/$release" -name 'ipvlan.ko*' | grep -q .; then
  echo "e2e-ipvlan: kernel $release has no ipvlan module under /lib/modules/$release" >&2
  exit 1
fi
command -v vng >/dev/null || { echo "e2e-ipvlan: vng (virtme-ng) not on PATH: run make e2e-ipvlan" >&2; exit 1; }

echo "== e2e-ipvlan: building on the host (the VM only runs what is built here)"
make --no-print-directory driver
# The plugin under test is the release build, as shipped; debug code under TCG costs minutes more.
"$CARGO" build --release --locked -p aws-eni-ip --bin aws-eni-ip
binary=$("$CARGO" test --locked -p aws-eni-ip --test e2e --no-run --message-format=json \
  | jq -r 'select(.reason == "compiler-artifact" and .target.name == "e2e" and .executable != null) | .executable')
[[ -x $binary ]] || { echo "e2e-ipvlan: could not find the e2e test binary (got '$binary')" >&2; exit 1; }

echo "== e2e-ipvlan: booting $kernel (TCG, 2 vCPUs, 2 GiB) with $(vng --version)"
vm_started=$SECONDS
# QEMU reopens /proc/self/fd/1 and 2 with O_TRUNC: behind a pipe it cannot clobber a log file.
# A hung guest must not eat CI's 90 minutes: `timeout` ends the whole process group, QEMU included.
set +e
timeout --kill-after=30 "${E2E_VM_TIMEOUT:-1800}" vng --run "$kernel" --disable-kvm --force-9p --cpus 2 --memory 2G -- \
  "$PWD/tests/vm/guest.sh" "$binary" "$PWD/tests/runtime/bin/cni-driver" "$PWD/target/release" "$TIME_SCALE" \
  </dev/null 2>&1 | cat
rc=${PIPESTATUS[0]}
set -e
[[ $rc -ne 124 ]] || echo "e2e-ipvlan: the VM did not finish in ${E2E_VM_TIMEOUT:-1800} s and was stopped" >&2
echo "== e2e-ipvlan: VM $(( SECONDS - vm_started )) s, total $(( SECONDS - started )) s wall, exit $rc"
exit $rc
