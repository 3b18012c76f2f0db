#!/usr/bin/env bash
# Installs the Debian packages that the end-to-end tests and the demo use, only those missing.
# Usage: scripts/install-deps.sh [--vm] [EXTRA-PACKAGE...]   (one `apt-get update`, and only when something is missing)
#   --vm: also what `make e2e-ipvlan` needs to boot a VM whose kernel has ipvlan.
set -euo pipefail

VM_PACKAGES=()
if [[ ${1:-} == --vm ]]; then
  shift
  VM_PACKAGES=(
    qemu-system-x86    # the VM (TCG: emulated CPU)
    linux-image-amd64  # Debian's kernel, CONFIG_IPVLAN=m, booted by virtme-ng with its modules
    busybox-static     # virtme-ng builds its initramfs with it
    python3-venv       # virtme-ng (PyPI) goes into a venv under target/
  )
fi

PACKAGES=(
  golang-go                    # builds the libcni driver (tests/runtime/driver)
  golang-github-appc-cni-dev   # libcni source, GOPATH mode: no module downloads
  containernetworking-plugins  # /usr/lib/cni: macvlan, ipvlan, host-local, static
  iproute2                     # ip netns / ip link
  curl jq                      # the demo reads the simulator's admin API
  podman runc                  # make image / make image-test build and run the DaemonSet image
  "${VM_PACKAGES[@]}"
  "$@"
)

installed() {
  dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

if ! command -v dpkg-query >/dev/null; then
  echo "install-deps: not a Debian system; install by hand: ${PACKAGES[*]}" >&2
  exit 1
fi

missing=()
for p in "${PACKAGES[@]}"; do
  installed "$p" || missing+=("$p")
done

if [[ ${#missing[@]} -eq 0 ]]; then
  exit 0
fi
if [[ $(id -u) -ne 0 ]]; then
  echo "install-deps: missing Debian packages: ${missing[*]}; run as root, or: sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
echo "install-deps: installing ${missing[*]}"
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
