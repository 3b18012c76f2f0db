#!/usr/bin/env bash
# make dist-check: runs the binaries that `make dist` built. The native one runs `version`; the
# foreign one (aarch64 on an x86_64 host) runs under Debian's qemu-user-static: `version`, the CNI
# VERSION command, then ADD and DEL of two pods through libcni against ec2-sim (scripts/demo.sh
# with the plugin swapped for a wrapper that starts it under qemu). Needs root (network namespaces).
# Usage: scripts/dist-check.sh OUT_DIR
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:?usage: dist-check.sh OUT_DIR}
[[ -d $OUT ]] || { echo "dist-check: $OUT missing: run make dist" >&2; exit 1; }
OUT=$(cd "$OUT" && pwd)
VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)

case $(uname -m) in
  x86_64) native=amd64 foreign=arm64 machine=AArch64 qemu=qemu-aarch64-static ;;
  aarch64) native=arm64 foreign=amd64 machine=X86-64 qemu=qemu-x86_64-static ;;
  *) echo "dist-check: host $(uname -m) is neither x86_64 nor aarch64" >&2; exit 1 ;;
esac
command -v "$qemu" >/dev/null || {
  echo "dist-check: $qemu missing; install Debian's qemu-user-static (make dist-check does)" >&2
  exit 1
}

fail() { echo "dist-check: $*" >&2; exit 1; }

expect_version() { # expect_version LABEL OUTPUT
  [[ $(head -n 1 <<<"$2") == "aws-eni-ip $VERSION" ]] || fail "$1 printed: $2"
}

for arch in "$native" "$foreign"; do
  [[ -x $OUT/linux/$arch/aws-eni-ip ]] || fail "$OUT/linux/$arch/aws-eni-ip missing: run make dist"
done

bin=$OUT/linux/$native/aws-eni-ip
echo "\$ $bin version"
out=$("$bin" version)
echo "$out"
expect_version "$bin version" "$out"

bin=$OUT/linux/$foreign/aws-eni-ip
readelf -hW "$bin" | grep -q "Machine: *$machine" || fail "$bin is not an $machine binary"
echo "\$ $qemu $bin version"
out=$("$qemu" "$bin" version)
echo "$out"
expect_version "$bin version (under $qemu)" "$out"

echo "\$ echo '{\"cniVersion\":\"1.0.0\"}' | CNI_COMMAND=VERSION $qemu $bin"
out=$(echo '{"cniVersion":"1.0.0"}' | env -i CNI_COMMAND=VERSION "$qemu" "$bin")
echo "$out"
for v in 0.3.0 0.3.1 0.4.0 1.0.0 1.1.0; do
  jq -e --arg v "$v" '.supportedVersions | index($v)' <<<"$out" >/dev/null ||
    fail "VERSION reply lacks $v: $out"
done

# libcni runs whatever is called aws-eni-ip in CNI_PATH: here, the foreign binary under qemu.
wrap=$(mktemp -d)
trap 'rm -rf "$wrap"' EXIT
printf '#!/bin/sh\nexec %q %q "$@"\n' "$(command -v "$qemu")" "$bin" >"$wrap/aws-eni-ip"
chmod 0755 "$wrap/aws-eni-ip"
echo "\$ make demo, with CNI_PATH's aws-eni-ip = $qemu $bin"
AEI_PLUGIN_DIR=$wrap bash scripts/demo.sh | tee "$wrap/demo.out"
grep -Eq '^  ADD pod2 .* 198\.18\.1\.100, 198\.18\.1\.101$' "$wrap/demo.out" ||
  fail "after both ADDs the ENI does not hold both pod addresses"
grep -Eq '^  DEL pod2 .* \(none\)$' "$wrap/demo.out" ||
  fail "after both DELs the ENI still holds pod addresses"
[[ $(grep -c 'INFO ok cmd="ADD"' "$wrap/demo.out") -eq 2 ]] || fail "expected 2 ADD log lines"
[[ $(grep -c 'INFO ok cmd="DEL"' "$wrap/demo.out") -eq 2 ]] || fail "expected 2 DEL log lines"
echo "dist-check: linux/$foreign binary: version, VERSION, ADD and DEL under $qemu passed"
