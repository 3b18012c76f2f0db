#!/usr/bin/env bash
# Builds the node's images locally (no registry is reachable) and imports them into containerd's
# k8s.io namespace: a pause image and a busybox image for test pods (Debian's static busybox), the
# Multus thick image (the layout of its images/Dockerfile.thick), and the project's image (the
# static build of `make image-test`, laid out as install/Dockerfile lays it out).
# usage: images.sh AWS_ENI_IP_STATIC_BINARY   (containerd must be running: up.sh calls it)
set -euo pipefail
. "$(dirname "$0")/common.sh"
aei=${1:?usage: images.sh AWS_ENI_IP_STATIC_BINARY}
if grep -q 'program interpreter' <<<"$(readelf -lW "$aei")"; then
  echo "images.sh: $aei is not static; build it with scripts/dist.sh (make image-test does)" >&2
  exit 1
fi
busybox=/bin/busybox
file -L "$busybox" | grep -q 'statically linked' || {
  echo "images.sh: $busybox is not a static busybox: apt-get install busybox-static" >&2
  exit 1
}

out=$NODE_RUN/images
rm -rf "$out"
mkdir -p "$out"

# busybox: /bin/busybox and its applets as links, /tmp, and an /etc/passwd for `id`.
bb=$out/rootfs-busybox
mkdir -p "$bb/bin" "$bb/tmp" "$bb/etc" "$bb/run" "$bb/var"
# Debian's layout (Multus's image is Debian-based): the runtime's netns paths say /var/run/netns.
ln -s ../run "$bb/var/run"
cp "$busybox" "$bb/bin/busybox"
for applet in sh sleep ip ping cat ls ps kill sed grep cp mkdir rm ifconfig nc wget; do
  ln -s busybox "$bb/bin/$applet"
done
printf 'root:x:0:0:root:/:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n' >"$bb/etc/passwd"
chmod 1777 "$bb/tmp"
bash "$node_here/oci-image.sh" "$IMAGE_BUSYBOX" "$bb" "$out/busybox.tar" '["/bin/busybox","sleep","2147483647"]' 0:0
# The sandbox's process only has to sleep; the runtime SIGKILLs it when the pod stops.
bash "$node_here/oci-image.sh" "$IMAGE_PAUSE" "$bb" "$out/pause.tar" '["/bin/busybox","sleep","2147483647"]' 65534:65534

mu=$out/rootfs-multus
mkdir -p "$mu/usr/src/multus-cni/bin"
cp -a "$bb/." "$mu/"
for b in multus-daemon multus-shim install_multus passthru; do
  install -m 0755 "$BIN_MULTUS/$b" "$mu/usr/src/multus-cni/bin/$b"
done
bash "$node_here/oci-image.sh" "$IMAGE_MULTUS" "$mu" "$out/multus.tar" '["/usr/src/multus-cni/bin/multus-daemon"]' 0:0

# install/Dockerfile's layout: the binary and the CA bundle that scripts/dist.sh put beside linux/ARCH/.
ca=$(dirname "$aei")/../../ca-certificates.crt
[ -s "$ca" ] || { echo "images.sh: $ca missing: build $aei with scripts/dist.sh" >&2; exit 1; }
ae=$out/rootfs-aws-eni-ip
mkdir -p "$ae/etc/ssl/certs"
install -m 0755 "$aei" "$ae/aws-eni-ip"
install -m 0644 "$ca" "$ae/etc/ssl/certs/ca-certificates.crt"
bash "$node_here/oci-image.sh" "$IMAGE_AEI" "$ae" "$out/aws-eni-ip.tar" '["/aws-eni-ip","install","--keep"]' 65532:65532

for t in busybox pause multus aws-eni-ip; do
  ctr -n k8s.io images import --local --snapshotter native "$out/$t.tar" >/dev/null
done
ctr -n k8s.io images ls -q | grep -E '^localhost/' >&2
