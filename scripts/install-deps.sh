#!/usr/bin/env bash
# Installs the Debian packages that the end-to-end tests and the demo use, only those missing.
# Usage: scripts/install-deps.sh [EXTRA-PACKAGE...]   (one `apt-get update`, and only when something is missing)
set -euo pipefail

PACKAGES=(
  golang-go                    # builds the libcni driver (tests/runtime/driver)
  golang-github-appc-cni-dev   # libcni source, GOPATH mode: no module downloads
  containernetworking-plugins  # /usr/lib/cni: macvlan, ipvlan, host-local, static
  iproute2                     # ip netns / ip link
  curl jq                      # the demo reads the simulator's admin API
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
