#!/usr/bin/env bash
# Installs cargo-deny from crates.io, pinned and --locked, into
# /root/.cache/aws-eni-ip/tools/cargo-deny-VERSION (outside the clone, so CI on this machine finds
# it built), and prints the binary's path. CARGO_DENY_VERSION overrides the pin.
set -euo pipefail
CARGO_DENY_VERSION=${CARGO_DENY_VERSION:-0.20.2}
TOOLS_DIR=${AEI_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/aws-eni-ip/tools}
root=$TOOLS_DIR/cargo-deny-$CARGO_DENY_VERSION
bin=$root/bin/cargo-deny

if [[ ! -x $bin ]]; then
  echo "cargo-deny.sh: installing cargo-deny $CARGO_DENY_VERSION into $root (first run: several minutes)" >&2
  # Its own target dir, removed after: the workspace's build must not be invalidated.
  build=$(mktemp -d)
  trap 'rm -rf "$build"' EXIT
  CARGO_TARGET_DIR=$build nice -n 10 cargo install --locked --quiet --root "$root" \
    "cargo-deny@$CARGO_DENY_VERSION" >&2
fi
"$bin" --version >/dev/null || { echo "cargo-deny.sh: $bin does not run; delete $root and retry" >&2; exit 1; }
echo "$bin"
