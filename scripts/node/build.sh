#!/usr/bin/env bash
# Builds the node in a box's components from pinned Go modules into a cache outside the clone:
#   /root/.cache/aws-eni-ip/node/<component>-<version>/   (a component already there is skipped)
# usage: scripts/node/build.sh [k8s etcd containerd runc crictl cni-plugins cnitool multus ...]
# Prints one line per component with its build time; logs go to $NODE_CACHE/logs/.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=scripts/node/versions.env
. "$here/versions.env"

# The machine's Go, never Debian's golang-go 1.19.
export PATH=/usr/local/go/bin:$PATH
export GOTOOLCHAIN=local GOFLAGS=-buildvcs=false
export GOPROXY=${GOPROXY:-https://proxy.golang.org}
NODE_CACHE=${NODE_CACHE:-/root/.cache/aws-eni-ip/node}
mkdir -p "$NODE_CACHE/logs"

have=$(go env GOVERSION)
if [ "$(printf '%s\n' "go$GO_MIN" "$have" | sort -V | head -1)" != "go$GO_MIN" ]; then
  echo "build.sh: $have at $(command -v go) is older than go$GO_MIN; install Go $GO_MIN+ in /usr/local/go" >&2
  exit 1
fi

# The wrapper modules pin their own versions: they must say what versions.env says.
for pin in "k8s k8s.io/kubernetes $K8S_VERSION" "k8s k8s.io/api => k8s.io/api $K8S_STAGING_VERSION" \
  "etcd go.etcd.io/etcd/server/v3 $ETCD_VERSION" "multus gopkg.in/k8snetworkplumbingwg/multus-cni.v4 $MULTUS_VERSION"; do
  dir=${pin%% *}
  grep -qF "${pin#* }" "$here/$dir/go.mod" || {
    echo "build.sh: $here/$dir/go.mod does not pin '${pin#* }' (versions.env); update both together" >&2
    exit 1
  }
done

all=(k8s etcd containerd runc crictl cni-plugins cnitool multus)

version_of() {
  case $1 in
    k8s) echo "$K8S_VERSION" ;;
    etcd) echo "$ETCD_VERSION" ;;
    containerd) echo "$CONTAINERD_VERSION" ;;
    runc) echo "$RUNC_VERSION" ;;
    crictl) echo "$CRI_TOOLS_VERSION" ;;
    cni-plugins) echo "$CNI_PLUGINS_VERSION" ;;
    cnitool) echo "$CNITOOL_VERSION" ;;
    multus) echo "$MULTUS_VERSION" ;;
    *) echo "build.sh: unknown component '$1' (known: ${all[*]})" >&2; return 1 ;;
  esac
}

# Go's own builds, low priority: the machine is shared.
gob() { nice -n 10 go "$@"; }

build_k8s() {
  local out=$1 minor=${K8S_VERSION#v1.}
  minor=${minor%%.*}
  local ldf="-s -w"
  for pkg in k8s.io/client-go/pkg/version k8s.io/component-base/version; do
    ldf+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    ldf+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
  done
  (cd "$here/k8s" && CGO_ENABLED=0 gob build -trimpath -ldflags "$ldf" -o "$out/" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kubectl)
}

build_etcd() {
  (cd "$here/etcd" && CGO_ENABLED=0 gob build -trimpath -ldflags "-s -w" -o "$1/etcd" go.etcd.io/etcd/server/v3)
}

build_containerd() {
  local m=github.com/containerd/containerd/v2/cmd
  GOBIN=$1 CGO_ENABLED=0 gob install -trimpath -ldflags "-s -w" -tags "no_btrfs no_devmapper no_zfs" \
    "$m/containerd@$CONTAINERD_VERSION" "$m/ctr@$CONTAINERD_VERSION" \
    "$m/containerd-shim-runc-v2@$CONTAINERD_VERSION"
}

# runc's nsenter is C, so cgo is required; the seccomp tag (libseccomp-dev) because the DaemonSet
# asks for the RuntimeDefault profile, which a runc without seccomp refuses.
build_runc() {
  GOBIN=$1 CGO_ENABLED=1 gob install -trimpath -tags seccomp -ldflags "-s -w -X main.version=${RUNC_VERSION#v}" \
    "github.com/opencontainers/runc@$RUNC_VERSION"
}

build_crictl() {
  GOBIN=$1 CGO_ENABLED=0 gob install -trimpath -ldflags "-s -w -X sigs.k8s.io/cri-tools/pkg/version.Version=$CRI_TOOLS_VERSION" \
    "sigs.k8s.io/cri-tools/cmd/crictl@$CRI_TOOLS_VERSION"
}

build_cni-plugins() {
  local m=github.com/containernetworking/plugins/plugins v=$CNI_PLUGINS_VERSION
  GOBIN=$1 CGO_ENABLED=0 gob install -trimpath -ldflags "-s -w" \
    "$m/main/bridge@$v" "$m/main/ptp@$v" "$m/main/macvlan@$v" "$m/main/ipvlan@$v" \
    "$m/main/loopback@$v" "$m/ipam/host-local@$v" "$m/ipam/static@$v" "$m/meta/portmap@$v"
}

build_cnitool() {
  GOBIN=$1 CGO_ENABLED=0 gob install -trimpath "github.com/containernetworking/cni/cnitool@$CNITOOL_VERSION"
}

# From a wrapper module (scripts/node/multus): `go install` of it is refused, see its go.mod.
build_multus() {
  local m=gopkg.in/k8snetworkplumbingwg/multus-cni.v4/cmd
  (cd "$here/multus" && CGO_ENABLED=0 gob build -trimpath -ldflags "-s -w" -o "$1/" \
    "$m/multus-daemon" "$m/multus-shim" "$m/install_multus" "$m/passthru-cni")
  # The image's installer copies it under the name its Makefile gives it.
  mv "$1/passthru-cni" "$1/passthru"
}

[ $# -gt 0 ] || set -- "${all[@]}"
for c in "$@"; do
  v=$(version_of "$c")
  dir=$NODE_CACHE/$c-$v
  if [ -f "$dir/.done" ]; then
    echo "$c $v: cached in $dir"
    continue
  fi
  rm -rf "$dir.tmp"
  mkdir -p "$dir.tmp"
  log=$NODE_CACHE/logs/build-$c-$v.log
  start=$(date +%s)
  if ! "build_$c" "$dir.tmp" >"$log" 2>&1; then
    echo "build.sh: building $c $v failed; last lines of $log:" >&2
    tail -20 "$log" >&2
    exit 1
  fi
  secs=$(($(date +%s) - start))
  echo "$secs" >"$dir.tmp/.build-seconds"
  touch "$dir.tmp/.done"
  rm -rf "$dir"
  mv "$dir.tmp" "$dir"
  echo "$c $v: built in ${secs}s into $dir"
done
