#!/usr/bin/env bash
# make dist: static musl binaries of aws-eni-ip, one tar.gz per architecture, and SHA256SUMS.
# Usage: scripts/dist.sh OUT_DIR PROFILE ARCH...   (ARCH: x86_64 | aarch64; PROFILE: a cargo profile)
# Builds in $CARGO_TARGET_DIR when set (make dist: outside the clone, so a fresh clone's build is warm).
#
# Cross-compiles with cargo-zigbuild (zig as the C compiler and linker for aws-lc-sys and the
# final link): one toolchain for both architectures, from PyPI, no emulated compiler.
# Layout of OUT_DIR (the build context of install/Dockerfile):
#   linux/amd64/aws-eni-ip  linux/arm64/aws-eni-ip                 the binaries, by Docker arch name
#   aws-eni-ip-VERSION-linux-amd64.tar.gz  …-linux-arm64.tar.gz    binary, README, install/, conf/
#   SHA256SUMS                                                     of the tarballs and the binaries
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=${1:?usage: dist.sh OUT_DIR PROFILE ARCH...}
PROFILE=${2:?usage: dist.sh OUT_DIR PROFILE ARCH...}
shift 2
[[ $# -gt 0 ]] || { echo "dist: name at least one ARCH (x86_64, aarch64)" >&2; exit 2; }
VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
# Reproducible archives: file times, owners and order fixed; gzip without a name or time stamp.
EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}

command -v cargo-zigbuild >/dev/null || {
  echo "dist: cargo-zigbuild not on PATH; 'make dist' installs it (pinned, from PyPI) into target/dist-tools" >&2
  exit 1
}

mkdir -p "$OUT"
# The image's agent calls EC2 and IMDS over the SDK's rustls client, which reads the system's
# CA bundle: a FROM scratch image has none, so the build context carries Debian's.
CA_BUNDLE=${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
[[ -s $CA_BUNDLE ]] || { echo "dist: $CA_BUNDLE missing: apt-get install ca-certificates" >&2; exit 1; }
install -m 0644 "$CA_BUNDLE" "$OUT/ca-certificates.crt"
tarballs=()
# Each run writes only the architectures it names: stale builds of others must not linger.
rm -rf "$OUT/linux" "$OUT"/aws-eni-ip-*-linux-*.tar.gz "$OUT/SHA256SUMS"
for arch in "$@"; do
  case $arch in
    x86_64) docker_arch=amd64 ;;
    aarch64) docker_arch=arm64 ;;
    *) echo "dist: unknown ARCH $arch (x86_64 or aarch64)" >&2; exit 2 ;;
  esac
  triple=$arch-unknown-linux-musl
  rustup target list --installed | grep -qx "$triple" || rustup target add "$triple"
  echo "dist: building $triple ($PROFILE)"
  cargo zigbuild --locked --profile "$PROFILE" --target "$triple" -p aws-eni-ip --bin aws-eni-ip
  built=${CARGO_TARGET_DIR:-target}/$triple/$PROFILE/aws-eni-ip
  [[ $PROFILE == dev ]] && built=${CARGO_TARGET_DIR:-target}/$triple/debug/aws-eni-ip

  # Static means no program interpreter and no shared libraries: the host's libc is never used.
  # Read whole: grep -q closing the pipe early would make pipefail fail the check open.
  headers=$(readelf -lW "$built")$'\n'$(readelf -dW "$built")
  if grep -q 'Requesting program interpreter' <<<"$headers" || grep -q '(NEEDED)' <<<"$headers"; then
    echo "dist: $built is not static:" >&2
    readelf -lW "$built" | grep -i interpreter >&2 || true
    readelf -dW "$built" | grep NEEDED >&2 || true
    exit 1
  fi

  mkdir -p "$OUT/linux/$docker_arch"
  install -m 0755 "$built" "$OUT/linux/$docker_arch/aws-eni-ip"

  # DIST_TARBALLS=0 (the image test's build): the binary is all that is needed.
  [[ ${DIST_TARBALLS:-1} == 1 ]] || continue
  name=aws-eni-ip-$VERSION-linux-$docker_arch
  stage=$(mktemp -d)
  mkdir -p "$stage/$name/install" "$stage/$name/conf"
  install -m 0755 "$built" "$stage/$name/aws-eni-ip"
  install -m 0644 README.md "$stage/$name/README.md"
  install -m 0644 install/* "$stage/$name/install/"
  install -m 0644 conf/* "$stage/$name/conf/"
  tar --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$EPOCH" \
    -C "$stage" -cf - "$name" | gzip -n -9 >"$OUT/$name.tar.gz"
  rm -rf "$stage"
  tarballs+=("$name.tar.gz")
done

(
  cd "$OUT"
  binaries=()
  for a in amd64 arm64; do [[ -f linux/$a/aws-eni-ip ]] && binaries+=("linux/$a/aws-eni-ip"); done
  all=()
  for t in aws-eni-ip-"$VERSION"-linux-*.tar.gz; do [[ -f $t ]] && all+=("$t"); done
  sha256sum ${all[@]+"${all[@]}"} "${binaries[@]}" >SHA256SUMS
)
echo "dist: $OUT"
(cd "$OUT" && ls -l ${tarballs[@]+"${tarballs[@]}"} linux/*/aws-eni-ip && cat SHA256SUMS)
