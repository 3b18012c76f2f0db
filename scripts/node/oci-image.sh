#!/usr/bin/env bash
# Writes a one-layer OCI image archive (FROM scratch) that `ctr images import` reads: no registry,
# no podman. usage: oci-image.sh NAME:TAG ROOTFS_DIR OUT.tar 'ENTRYPOINT_JSON' [USER]
#   e.g. oci-image.sh localhost/pause:aeinode /tmp/rootfs pause.tar '["/pause"]' 65535
set -euo pipefail
name=${1:?usage: oci-image.sh NAME:TAG ROOTFS_DIR OUT.tar ENTRYPOINT_JSON [USER]}
rootfs=${2:?rootfs dir}
out=${3:?output archive}
entrypoint=${4:?entrypoint as a JSON array}
user=${5:-0:0}
[ -d "$rootfs" ] || { echo "oci-image.sh: $rootfs is not a directory" >&2; exit 1; }
jq -e 'type == "array"' <<<"$entrypoint" >/dev/null || {
  echo "oci-image.sh: entrypoint $entrypoint is not a JSON array" >&2
  exit 1
}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
blobs=$work/blobs/sha256
mkdir -p "$blobs"

# Reproducible layer: fixed order, owners and times.
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -C "$rootfs" -cf "$work/layer.tar" .
layer=$(sha256sum "$work/layer.tar" | cut -d' ' -f1)
layer_size=$(stat -c %s "$work/layer.tar")
mv "$work/layer.tar" "$blobs/$layer"

jq -cn --argjson ep "$entrypoint" --arg user "$user" --arg diff "sha256:$layer" '{
  architecture: "amd64", os: "linux",
  config: {Entrypoint: $ep, User: $user, Env: ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]},
  rootfs: {type: "layers", diff_ids: [$diff]},
  history: [{created_by: "scripts/node/oci-image.sh"}]
}' >"$work/config.json"
config=$(sha256sum "$work/config.json" | cut -d' ' -f1)
config_size=$(stat -c %s "$work/config.json")
mv "$work/config.json" "$blobs/$config"

jq -cn --arg c "sha256:$config" --argjson cs "$config_size" --arg l "sha256:$layer" --argjson ls "$layer_size" '{
  schemaVersion: 2, mediaType: "application/vnd.oci.image.manifest.v1+json",
  config: {mediaType: "application/vnd.oci.image.config.v1+json", digest: $c, size: $cs},
  layers: [{mediaType: "application/vnd.oci.image.layer.v1.tar", digest: $l, size: $ls}]
}' >"$work/manifest.json"
manifest=$(sha256sum "$work/manifest.json" | cut -d' ' -f1)
manifest_size=$(stat -c %s "$work/manifest.json")
mv "$work/manifest.json" "$blobs/$manifest"

jq -cn --arg m "sha256:$manifest" --argjson ms "$manifest_size" --arg name "$name" '{
  schemaVersion: 2,
  manifests: [{mediaType: "application/vnd.oci.image.manifest.v1+json", digest: $m, size: $ms,
    platform: {architecture: "amd64", os: "linux"},
    annotations: {"io.containerd.image.name": $name, "org.opencontainers.image.ref.name": ($name | sub("^.*:"; ""))}}]
}' >"$work/index.json"
echo '{"imageLayoutVersion":"1.0.0"}' >"$work/oci-layout"

tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -C "$work" -cf "$out" oci-layout index.json blobs
echo "$name: $out (layer sha256:$layer)"
