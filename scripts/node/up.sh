#!/usr/bin/env bash
# Starts the node in a box on this machine: etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler, containerd + runc, kubelet, all on loopback; the cluster network (bridge +
# host-local) under Multus thick as its project deploys it; ec2-sim as EC2 and IMDS; then the
# project's DaemonSet and a NetworkAttachmentDefinition from conf/, applied with kubectl.
# usage: up.sh AWS_ENI_IP_STATIC_BINARY EC2_SIM_BINARY
# Writes $NODE_RUN/env (KUBECONFIG, endpoints, names) for the tests; down.sh undoes everything.
set -euo pipefail
. "$(dirname "$0")/common.sh"
aei=${1:?usage: up.sh AWS_ENI_IP_STATIC_BINARY EC2_SIM_BINARY}
ec2sim=${2:?usage: up.sh AWS_ENI_IP_STATIC_BINARY EC2_SIM_BINARY}

[ "$(id -u)" = 0 ] || { echo "up.sh: run as root" >&2; exit 1; }
if [ -e "$NODE_RUN/up" ]; then
  echo "up.sh: a node is already up ($NODE_RUN/up); run scripts/node/down.sh first" >&2
  exit 1
fi
for b in "$BIN_K8S/kubelet" "$BIN_ETCD/etcd" "$BIN_CONTAINERD/containerd" "$BIN_RUNC/runc" \
  "$BIN_CRICTL/crictl" "$BIN_CNI/bridge" "$BIN_MULTUS/multus-daemon" "$aei" "$ec2sim"; do
  [ -x "$b" ] || { echo "up.sh: $b is missing: run scripts/node/build.sh (make e2e-node does)" >&2; exit 1; }
done
for tool in openssl jq ip iptables; do
  command -v "$tool" >/dev/null || { echo "up.sh: $tool is missing (apt-get install it)" >&2; exit 1; }
done

mkdir -p "$NODE_RUN"/{pids,logs,pki,backup}
touch "$NODE_RUN/up"
# What this run created, one line each, for down.sh: created PATH | backup PATH | sysctl K=V.
undo=$NODE_RUN/undo
: >"$undo"

# Polls CMD until it succeeds or SECONDS pass; then shows the log that explains why.
wait_for() {
  local what=$1 secs=$2 log=$3
  shift 3
  local end=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    if [ $SECONDS -ge $end ]; then
      echo "up.sh: $what not ready after ${secs}s; last lines of $log:" >&2
      tail -n 40 "$log" >&2
      exit 1
    fi
    sleep 0.5
  done
  say "$what ready"
}

# Paths other software may own: back up what exists, remember what we create.
claim_dir() {
  local d=$1
  if [ -e "$d" ]; then
    local b
    b=$NODE_RUN/backup/$(echo "$d" | tr / _)
    cp -a "$d" "$b"
    echo "backup $d $b" >>"$undo"
  else
    # The outermost directory that did not exist, so that down.sh leaves no empty parent.
    local top=$d
    while [ ! -e "$(dirname "$top")" ]; do top=$(dirname "$top"); done
    mkdir -p "$d"
    echo "created $top" >>"$undo"
  fi
}

# containerd names pod netns cni-<uuid>; down.sh removes those that were not there before.
ip netns list | awk '{print $1}' | grep '^cni-' >"$NODE_RUN/netns-before" || true

say "network: $API_IP on lo, $ENI_LINK ($ENI_MAC) with its peer in netns $VPC_NETNS"
ip addr add "$API_IP/32" dev lo
echo "lo-addr $API_IP/32" >>"$undo"
ip netns add "$VPC_NETNS"
echo "netns $VPC_NETNS" >>"$undo"
ip link add "$ENI_LINK" address "$ENI_MAC" type veth peer name vpc0 netns "$VPC_NETNS"
echo "link $ENI_LINK" >>"$undo"
ip link set "$ENI_LINK" up
ip -n "$VPC_NETNS" addr add "$VPC_ADDR/24" dev vpc0
ip -n "$VPC_NETNS" link set vpc0 up
ip -n "$VPC_NETNS" link set lo up

say "ec2-sim (EC2 and IMDS) on 127.0.0.1"
daemon ec2-sim "$ec2sim" --world "$REPO/tests/worlds/node.json" --bind 127.0.0.1 --ready-file "$NODE_RUN/ec2-sim.json"
wait_for ec2-sim 30 "$NODE_LOGS/ec2-sim.log" test -s "$NODE_RUN/ec2-sim.json"
EC2_URL=$(jq -r .ec2 "$NODE_RUN/ec2-sim.json")
IMDS_URL=$(jq -r '.imds | to_entries[0].value' "$NODE_RUN/ec2-sim.json")

say "certificates"
pki=$NODE_RUN/pki
(
  cd "$pki"
  openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 2 -subj "/CN=aeinode-ca" 2>/dev/null
  cert() { # name CN O [SANs]
    local name=$1 cn=$2 o=$3 san=${4:-}
    openssl req -newkey rsa:2048 -nodes -keyout "$name.key" -out "$name.csr" -subj "/CN=$cn${o:+/O=$o}" 2>/dev/null
    local ext=$name.ext
    printf 'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth,clientAuth\n' >"$ext"
    [ -z "$san" ] || echo "subjectAltName=$san" >>"$ext"
    openssl x509 -req -in "$name.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -out "$name.crt" -days 2 -extfile "$ext" 2>/dev/null
  }
  cert apiserver kube-apiserver "" "IP:$API_IP,IP:127.0.0.1,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,DNS:localhost"
  cert admin aeinode-admin system:masters
  cert controller-manager system:kube-controller-manager ""
  cert scheduler system:kube-scheduler ""
  cert kubelet "system:node:$NODE_NAME" system:nodes "IP:$API_IP,IP:127.0.0.1,DNS:$NODE_NAME"
  cert apiserver-kubelet-client kube-apiserver-kubelet-client system:masters
  openssl genrsa -out sa.key 2048 2>/dev/null
  openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
  for who in admin controller-manager scheduler kubelet; do
    cat >"$who.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: aeinode
  cluster: {certificate-authority: $pki/ca.crt, server: "https://$API_IP:$API_PORT"}
users:
- name: $who
  user: {client-certificate: $pki/$who.crt, client-key: $pki/$who.key}
contexts:
- name: aeinode
  context: {cluster: aeinode, user: $who}
current-context: aeinode
EOF
  done
)

say "etcd $ETCD_VERSION on 127.0.0.1:$ETCD_PORT"
daemon etcd "$BIN_ETCD/etcd" --name aeinode --data-dir "$NODE_RUN/etcd" \
  --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
  --listen-peer-urls http://127.0.0.1:23801 --initial-advertise-peer-urls http://127.0.0.1:23801 \
  --initial-cluster aeinode=http://127.0.0.1:23801 --listen-metrics-urls http://127.0.0.1:23811 \
  --unsafe-no-fsync
wait_for etcd 60 "$NODE_LOGS/etcd.log" curl -fsS "http://127.0.0.1:$ETCD_PORT/health"

say "kube-apiserver $K8S_VERSION on $API_IP:$API_PORT"
daemon kube-apiserver "$BIN_K8S/kube-apiserver" \
  --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
  --bind-address "$API_IP" --advertise-address "$API_IP" --secure-port "$API_PORT" \
  --service-cluster-ip-range "$SERVICE_CIDR" \
  --client-ca-file "$pki/ca.crt" --tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" \
  --kubelet-client-certificate "$pki/apiserver-kubelet-client.crt" --kubelet-client-key "$pki/apiserver-kubelet-client.key" \
  --service-account-key-file "$pki/sa.pub" --service-account-signing-key-file "$pki/sa.key" \
  --service-account-issuer https://kubernetes.default.svc \
  --authorization-mode Node,RBAC --allow-privileged=true \
  --enable-admission-plugins NodeRestriction --profiling=false --kubelet-preferred-address-types InternalIP,Hostname
wait_for kube-apiserver 180 "$NODE_LOGS/kube-apiserver.log" kc get --raw /readyz

say "kube-controller-manager, kube-scheduler"
daemon kube-controller-manager "$BIN_K8S/kube-controller-manager" \
  --kubeconfig "$pki/controller-manager.kubeconfig" \
  --authentication-kubeconfig "$pki/controller-manager.kubeconfig" --authorization-kubeconfig "$pki/controller-manager.kubeconfig" \
  --service-account-private-key-file "$pki/sa.key" --root-ca-file "$pki/ca.crt" \
  --use-service-account-credentials --leader-elect=false --controllers '*' \
  --bind-address 127.0.0.1 --secure-port 10357
daemon kube-scheduler "$BIN_K8S/kube-scheduler" --kubeconfig "$pki/scheduler.kubeconfig" \
  --authentication-kubeconfig "$pki/scheduler.kubeconfig" --authorization-kubeconfig "$pki/scheduler.kubeconfig" \
  --leader-elect=false --bind-address 127.0.0.1 --secure-port 10359

say "CNI: plugins into $CNI_BIN_DIR, the cluster network into $CNI_CONF_DIR"
claim_dir "$CNI_BIN_DIR"
for p in bridge host-local loopback macvlan ipvlan static portmap ptp; do
  [ -x "$BIN_CNI/$p" ] && install -m 0755 "$BIN_CNI/$p" "$CNI_BIN_DIR/$p"
done
mkdir -p "$CNI_CONF_DIR"
# Sorted before any other file here, so Multus ("multusConfigFile": "auto") wraps it as the
# pods' default network; other software's files stay where they are.
for f in 10-aeinode.conflist 00-multus.conf multus.d whereabouts.d; do
  [ -e "$CNI_CONF_DIR/$f" ] && { echo "up.sh: $CNI_CONF_DIR/$f exists; is another node up?" >&2; exit 1; }
  echo "remove $CNI_CONF_DIR/$f" >>"$undo"
done
cat >"$CNI_CONF_DIR/10-aeinode.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "aeinode-cluster",
  "plugins": [
    {"type": "bridge", "bridge": "$CLUSTER_BRIDGE", "isGateway": true, "ipMasq": false,
     "ipam": {"type": "host-local", "ranges": [[{"subnet": "$CLUSTER_CIDR"}]],
              "dataDir": "$NODE_RUN/cni-ipam"}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF
echo "link $CLUSTER_BRIDGE" >>"$undo"
for d in /run/multus /run/k8s.cni.cncf.io /etc/cni/multus /var/lib/kubelet /var/lib/cni/multus \
  /var/lib/cni/aws-eni-ip /var/lib/cni/networks/eni-net /var/log/pods /var/log/containers /opt/containerd; do
  claim_dir "$d"
done
# libcni's cached results of this node's networks (containerd's and Multus's).
echo "remove-glob /var/lib/cni/results/aeinode-cluster-*" >>"$undo"
echo "remove-glob /var/lib/cni/results/eni-net-*" >>"$undo"
# The plugin's default log file on the host.
if [ -e /var/log/aws-eni-ip.log ]; then
  mv /var/log/aws-eni-ip.log "$NODE_RUN/backup/aws-eni-ip.log"
  echo "backup /var/log/aws-eni-ip.log $NODE_RUN/backup/aws-eni-ip.log" >>"$undo"
else
  echo "remove-glob /var/log/aws-eni-ip.log*" >>"$undo"
fi

say "cgroups: /$CGROUP_ROOT in each v1 hierarchy"
for h in /sys/fs/cgroup/*/; do
  [ -e "$h/cgroup.procs" ] || continue
  mkdir -p "$h$CGROUP_ROOT"
  if [ -e "$h/cpuset.cpus" ]; then
    cat "$h/cpuset.cpus" >"$h$CGROUP_ROOT/cpuset.cpus"
    cat "$h/cpuset.mems" >"$h$CGROUP_ROOT/cpuset.mems"
  fi
done
echo "cgroup $CGROUP_ROOT" >>"$undo"

say "containerd $CONTAINERD_VERSION with runc $RUNC_VERSION"
mkdir -p "$NODE_RUN/containerd"
"$BIN_CONTAINERD/ctr" oci spec | jq '.process.rlimits = [
    {"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024},
    {"type": "RLIMIT_NPROC", "hard": 4096, "soft": 4096}]' >"$NODE_RUN/containerd/base-spec.json"
cat >"$NODE_RUN/containerd/config.toml" <<EOF
version = 3
root = "$NODE_RUN/containerd/root"
state = "/run/containerd"
[grpc]
  address = "/run/containerd/containerd.sock"
[plugins.'io.containerd.nri.v1.nri']
  disable = true
[plugins.'io.containerd.cri.v1.images']
  snapshotter = "native"
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = "$IMAGE_PAUSE"
[plugins.'io.containerd.cri.v1.runtime']
  restrict_oom_score_adj = true
  disable_apparmor = true
  enable_cdi = false
  [plugins.'io.containerd.cri.v1.runtime'.containerd]
    default_runtime_name = "runc"
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      snapshotter = "native"
      base_runtime_spec = "$NODE_RUN/containerd/base-spec.json"
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
        BinaryName = "$BIN_RUNC/runc"
        SystemdCgroup = false
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ["$CNI_BIN_DIR"]
    conf_dir = "$CNI_CONF_DIR"
EOF
echo "created /run/containerd" >>"$undo"
start_containerd
wait_for containerd 60 "$NODE_LOGS/containerd.log" crictl info

say "images"
bash "$node_here/images.sh" "$aei" 2>>"$NODE_LOGS/images.log"

# Multus's DaemonSet mounts /opt/cni/bin Bidirectional and / HostToContainer, which need the
# host's / to be a shared mount (systemd makes it so; this machine has it private).
if [ "$(findmnt -n -o PROPAGATION --target /)" = private ]; then
  mount --make-shared /
  echo "propagation-private /" >>"$undo"
fi

say "kubelet $K8S_VERSION"
# kubelet sets these at start; down.sh puts the machine's values back.
for k in vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops kernel.keys.root_maxkeys kernel.keys.root_maxbytes; do
  echo "sysctl $k=$(sysctl -n "$k")" >>"$undo"
done
cat >"$NODE_RUN/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupRoot: /$CGROUP_ROOT
failSwapOn: false
containerRuntimeEndpoint: unix:///run/containerd/containerd.sock
imageGCHighThresholdPercent: 100
evictionHard: {nodefs.available: "0%", imagefs.available: "0%", nodefs.inodesFree: "0%", imagefs.inodesFree: "0%"}
localStorageCapacityIsolation: false
address: $API_IP
port: 10250
healthzBindAddress: 127.0.0.1
healthzPort: 10248
readOnlyPort: 0
tlsCertFile: $pki/kubelet.crt
tlsPrivateKeyFile: $pki/kubelet.key
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $pki/ca.crt}
authorization: {mode: Webhook}
resolvConf: /etc/resolv.conf
serializeImagePulls: false
syncFrequency: 10s
EOF
daemon kubelet "$BIN_K8S/kubelet" --config "$NODE_RUN/kubelet.yaml" --kubeconfig "$pki/kubelet.kubeconfig" \
  --hostname-override "$NODE_NAME" --node-ip "$API_IP" --v 2
wait_for "node $NODE_NAME" 180 "$NODE_LOGS/kubelet.log" kc get node "$NODE_NAME"
wait_for "node $NODE_NAME Ready" 180 "$NODE_LOGS/kubelet.log" \
  kc wait --for=condition=Ready "node/$NODE_NAME" --timeout=2s

say "Multus $MULTUS_VERSION thick, from its deployments/multus-daemonset-thick.yml"
multus_src=$(go env GOMODCACHE)/gopkg.in/k8snetworkplumbingwg/multus-cni.v4@$MULTUS_VERSION/deployments/multus-daemonset-thick.yml
# Thick Multus runs every delegate (aws-eni-ip included) in its own container: the sample's 50Mi
# limit OOM-kills it on a burst of 30 ADDs (multus-cni#1346); its maintainers say to size it.
sed -e "s#ghcr.io/k8snetworkplumbingwg/multus-cni:snapshot-thick#$IMAGE_MULTUS#" \
  -e "s#memory: \"50Mi\"#memory: \"$MULTUS_MEMORY\"#" "$multus_src" >"$NODE_RUN/multus.yaml"
grep -q "memory: \"$MULTUS_MEMORY\"" "$NODE_RUN/multus.yaml" || { echo "up.sh: the Multus manifest's memory limit moved" >&2; exit 1; }
kc apply -f "$NODE_RUN/multus.yaml" >/dev/null
kc -n kube-system rollout status ds/kube-multus-ds --timeout=240s

say "aws-eni-ip: helm install of charts/aws-eni-ip (install/daemonset.yaml is its rendering) with the local image and the simulator's endpoints"
# What a user of an air-gapped VPC does too: the image, and the agent's endpoints as flags.
cat >"$NODE_RUN/aws-eni-ip-values.yaml" <<EOF
image: {repository: ${IMAGE_AEI%:*}, tag: "${IMAGE_AEI##*:}", pullPolicy: Never}
agent:
  interval: ${AGENT_INTERVAL:-5}
  grace: ${AGENT_GRACE:-10}
  extraArgs: [--ec2-endpoint, "$EC2_URL", --imds-endpoint, "$IMDS_URL"]
EOF
"$(bash "$REPO/scripts/tools/helm.sh")" install aws-eni-ip "$REPO/charts/aws-eni-ip" --kubeconfig "$KUBECONFIG_ADMIN" \
  --namespace kube-system --values "$NODE_RUN/aws-eni-ip-values.yaml" >/dev/null
kc -n kube-system rollout status ds/aws-eni-ip --timeout=240s

say "NetworkAttachmentDefinition: conf/ipvlan-host-local.yaml on $ENI_LINK, macvlan (this kernel has no ipvlan)"
wait_for "NAD CRD" 60 "$NODE_LOGS/kube-apiserver.log" kc get crd network-attachment-definitions.k8s.cni.cncf.io
kc apply --dry-run=client -o json -f "$REPO/conf/ipvlan-host-local.yaml" |
  jq --arg master "$ENI_LINK" --arg ec2 "$EC2_URL" --arg imds "$IMDS_URL" '
    .metadata.name = "eni-net" | .metadata.namespace = "default" |
    .spec.config |= (fromjson |
      .name = "eni-net" |
      .plugins[0].type = "macvlan" | .plugins[0].mode = "bridge" | .plugins[0].master = $master |
      .plugins[0].ipam.ranges = [[{"subnet": "198.18.1.0/24", "rangeStart": "198.18.1.100",
                                   "rangeEnd": "198.18.1.199", "gateway": "198.18.1.1"}]] |
      .plugins[1].ec2Endpoint = $ec2 | .plugins[1].imdsEndpoint = $imds |
      .plugins[1].logLevel = "debug" | .plugins[1].followAddresses = true | tojson)' >"$NODE_RUN/nad.json"
kc apply -f "$NODE_RUN/nad.json" >/dev/null

cat >"$NODE_RUN/env" <<EOF
AEI_NODE_RUN=$NODE_RUN
KUBECONFIG=$KUBECONFIG_ADMIN
AEI_NODE_KUBECTL=$BIN_K8S/kubectl
AEI_NODE_CRICTL=$BIN_CRICTL/crictl
AEI_NODE_EC2=$EC2_URL
AEI_NODE_IMDS=$IMDS_URL
AEI_NODE_ENI=$ENI_ID
AEI_NODE_ENI_LINK=$ENI_LINK
AEI_NODE_VPC_NETNS=$VPC_NETNS
AEI_NODE_NAD=eni-net
AEI_NODE_BUSYBOX=$IMAGE_BUSYBOX
AEI_NODE_NAME=$NODE_NAME
AEI_NODE_CTL=$node_here/ctl.sh
EOF
say "up: KUBECONFIG=$KUBECONFIG_ADMIN; environment for the tests in $NODE_RUN/env"
