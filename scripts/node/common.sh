# Shared by up.sh, down.sh and images.sh: where the node in a box keeps things, and its names.
# shellcheck shell=bash
node_here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=scripts/node/versions.env
. "$node_here/versions.env"
REPO=$(cd "$node_here/../.." && pwd)
export PATH=/usr/local/go/bin:$PATH

NODE_CACHE=${NODE_CACHE:-/root/.cache/aws-eni-ip/node}
# Everything the cluster writes that is not at a path a component insists on.
NODE_RUN=${NODE_RUN:-/var/lib/aws-eni-ip-node}
NODE_LOGS=$NODE_RUN/logs
NODE_NAME=aeinode
# The apiserver's address: on lo, and the `kubernetes` Service's ClusterIP, so that hostNetwork
# pods reach the API at the address their in-cluster config names, with no kube-proxy.
API_IP=198.18.129.1
SERVICE_CIDR=198.18.129.0/24
API_PORT=443
CLUSTER_CIDR=198.18.128.0/24
CLUSTER_BRIDGE=aeinode0
ETCD_PORT=23791
# The Multus ENI: a veth on the host carrying the ENI's MAC; its peer is the "VPC" side in a netns.
ENI_LINK=aeinode-eni1
ENI_MAC=02:00:c6:12:01:21
ENI_ID=eni-0aed0000000000001
VPC_NETNS=aeinode-vpc
VPC_ADDR=198.18.1.5
CGROUP_ROOT=aeinode
KUBECONFIG_ADMIN=$NODE_RUN/pki/admin.kubeconfig
CNI_CONF_DIR=/etc/cni/net.d
CNI_BIN_DIR=/opt/cni/bin

BIN_K8S=$NODE_CACHE/k8s-$K8S_VERSION
BIN_ETCD=$NODE_CACHE/etcd-$ETCD_VERSION
BIN_CONTAINERD=$NODE_CACHE/containerd-$CONTAINERD_VERSION
BIN_RUNC=$NODE_CACHE/runc-$RUNC_VERSION
BIN_CRICTL=$NODE_CACHE/crictl-$CRI_TOOLS_VERSION
BIN_CNI=$NODE_CACHE/cni-plugins-$CNI_PLUGINS_VERSION
BIN_CNITOOL=$NODE_CACHE/cnitool-$CNITOOL_VERSION
BIN_MULTUS=$NODE_CACHE/multus-$MULTUS_VERSION

IMAGE_PAUSE=localhost/aeinode-pause:busybox
IMAGE_BUSYBOX=localhost/aeinode-busybox:1
IMAGE_MULTUS=localhost/aeinode-multus:$MULTUS_VERSION
# The Multus container's memory limit; what a burst of 30 ADDs peaked at is in the README.
MULTUS_MEMORY=${MULTUS_MEMORY:-300Mi}
IMAGE_AEI=localhost/aws-eni-ip:node

kc() { "$BIN_K8S/kubectl" --kubeconfig "$KUBECONFIG_ADMIN" "$@"; }
crictl() { "$BIN_CRICTL/crictl" --runtime-endpoint unix:///run/containerd/containerd.sock "$@"; }
ctr() { "$BIN_CONTAINERD/ctr" --address /run/containerd/containerd.sock "$@"; }
say() { printf '%s node: %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

# Start a daemon in its own session; its pid in pids/NAME.pid, its output in logs/NAME.log.
daemon() {
  local name=$1
  shift
  setsid "$@" >>"$NODE_LOGS/$name.log" 2>&1 </dev/null &
  echo $! >"$NODE_RUN/pids/$name.pid"
}

start_containerd() {
  PATH=$BIN_CONTAINERD:$BIN_RUNC:$PATH daemon containerd "$BIN_CONTAINERD/containerd" \
    --config "$NODE_RUN/containerd/config.toml"
}
