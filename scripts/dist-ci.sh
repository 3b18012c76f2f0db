#!/usr/bin/env bash
# make dist-ci: what CI can build of the release within its time limit. The host's architecture in
# full (static musl binary, tarball, SHA256SUMS, verified and run), the other one type-checked for
# its musl target with the same zig toolchain (build scripts included: aws-lc-sys compiles its C).
# `make dist` stays the full release build of both.
# Usage: scripts/dist-ci.sh OUT_DIR PROFILE   (cargo-zigbuild on PATH; CARGO_TARGET_DIR honoured)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:?usage: dist-ci.sh OUT_DIR PROFILE}
PROFILE=${2:?usage: dist-ci.sh OUT_DIR PROFILE}
VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)

case $(uname -m) in
  x86_64) host=x86_64 docker_arch=amd64 other=aarch64 ;;
  aarch64) host=aarch64 docker_arch=arm64 other=x86_64 ;;
  *) echo "dist-ci: host $(uname -m) is neither x86_64 nor aarch64" >&2; exit 1 ;;
esac

bash scripts/dist.sh "$OUT" "$PROFILE" "$host"

echo "dist-ci: checking $OUT/SHA256SUMS"
(cd "$OUT" && sha256sum --check --strict SHA256SUMS)
bin=$OUT/linux/$docker_arch/aws-eni-ip
out=$("$bin" version)
[[ $(head -n 1 <<<"$out") == "aws-eni-ip $VERSION" ]] || {
  echo "dist-ci: $bin version printed '$out', expected 'aws-eni-ip $VERSION' (Cargo.toml)" >&2
  exit 1
}
# The whole listing first: grep -q would close the pipe early and pipefail would blame tar.
listing=$(tar -tzf "$OUT/aws-eni-ip-$VERSION-linux-$docker_arch.tar.gz")
grep -qx "aws-eni-ip-$VERSION-linux-$docker_arch/aws-eni-ip" <<<"$listing" || {
  echo "dist-ci: the tarball lacks the binary" >&2
  exit 1
}

triple=$other-unknown-linux-musl
rustup target list --installed | grep -qx "$triple" || rustup target add "$triple"
echo "dist-ci: type-checking $triple (the full build: make dist)"
cargo-zigbuild check --locked --target "$triple" -p aws-eni-ip --bin aws-eni-ip
echo "dist-ci: $host built in $OUT, $other type-checked"
