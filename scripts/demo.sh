#!/usr/bin/env bash
# make demo: a real CNI chain [macvlan + host-local -> aws-eni-ip], run by libcni (through the Go
# driver in tests/runtime) in network namespaces, against ec2-sim (EC2 Query API + IMDSv2).
# One node namespace (instance i-0a1b2c3d4e5f60001, eth1 = ENI eni-0b000000000000001), two pods.
# Shows the ENI's secondary addresses before, after each ADD and after each DEL.
# Needs root; cleans up on exit, failure and Ctrl-C.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD

if [[ $(id -u) -ne 0 ]]; then
  echo "make demo needs root: it creates network namespaces and links. Run: sudo make demo" >&2
  exit 1
fi

WORLD=tests/worlds/demo.json
INSTANCE=i-0a1b2c3d4e5f60001
ENI=eni-0b000000000000001
MAC=02:00:c6:12:01:01
NET=demo-net
CNI_BIN=/usr/lib/cni

missing=()
for tool in ip go curl jq; do command -v "$tool" >/dev/null || missing+=("$tool"); done
for p in macvlan host-local; do [[ -x $CNI_BIN/$p ]] || missing+=("$CNI_BIN/$p"); done
[[ -d /usr/share/gocode/src/github.com/containernetworking/cni/libcni ]] || missing+=(libcni)
if [[ ${#missing[@]} -gt 0 ]]; then
  echo "demo: missing ${missing[*]}; run scripts/install-deps.sh (make demo does it)" >&2
  exit 1
fi

TAG=aeid-$$                         # namespaces
LTAG=aed$$                          # links (15-character limit)
WORK=$(mktemp -d "/tmp/$TAG.XXXXXX")
mkdir -p target
LOG=$ROOT/target/demo-build.log
SIM_PID=""
NODE=$TAG-node
PODS=("$TAG-pod1" "$TAG-pod2")
BRIDGE=${LTAG}br
HOSTVETH=${LTAG}n1

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  [[ -n $SIM_PID ]] && kill "$SIM_PID" 2>/dev/null && wait "$SIM_PID" 2>/dev/null || true
  for ns in "${PODS[@]}" "$NODE"; do ip netns del "$ns" 2>/dev/null || true; done
  ip link del "$HOSTVETH" 2>/dev/null || true
  ip link del "$BRIDGE" 2>/dev/null || true
  if [[ $rc -eq 130 || $rc -eq 143 ]]; then
    echo "demo interrupted; namespaces, links and the simulator are cleaned up" >&2
  elif [[ $rc -ne 0 ]]; then
    echo "demo failed (exit $rc); last lines of the simulator's log:" >&2
    tail -n 20 "$WORK/sim.log" 2>/dev/null >&2 || true
  fi
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

step() { printf '%s\n' "$*"; }

# Build: debug profile, the one the tests use. Output only on failure.
step "building: cargo build --workspace, go build tests/runtime/driver (log: target/demo-build.log)"
if ! cargo build --workspace >"$LOG" 2>&1; then
  tail -n 40 "$LOG" >&2
  exit 1
fi
mkdir -p tests/runtime/bin "$ROOT/target/go-build"
if ! CGO_ENABLED=0 GOPATH=/usr/share/gocode GO111MODULE=off GOFLAGS= GOCACHE=${GOCACHE:-$ROOT/target/go-build} \
  go build -o tests/runtime/bin/cni-driver ./tests/runtime/driver >>"$LOG" 2>&1; then
  tail -n 40 "$LOG" >&2
  exit 1
fi
DRIVER=$ROOT/tests/runtime/bin/cni-driver
# AEI_PLUGIN_DIR: another aws-eni-ip to run (make dist-check puts the aarch64 one there, under qemu).
PLUGIN_DIR=${AEI_PLUGIN_DIR:-$ROOT/target/debug}

# A free 198.19.X.0/24 (benchmark range) for the bridge that links the node to the simulator.
used=$(ip -o addr show)
X=""
for i in $(seq 254 -1 1); do
  if ! grep -q "198\.19\.$i\." <<<"$used"; then X=$i; break; fi
done
[[ -n $X ]] || { echo "demo: no free 198.19.X.0/24" >&2; exit 1; }

# Root netns: bridge with the simulator's address. Node netns: eth0 on the bridge, eth1 = the ENI.
ip link add "$BRIDGE" type bridge
ip addr add "198.19.$X.1/24" dev "$BRIDGE"
ip link set "$BRIDGE" up
ip netns add "$NODE"
ip link add "$HOSTVETH" type veth peer name eth0 netns "$NODE"
ip link set "$HOSTVETH" master "$BRIDGE" up
ip -n "$NODE" addr add "198.19.$X.10/24" dev eth0
ip -n "$NODE" link set eth0 up
ip -n "$NODE" link set lo up
ip -n "$NODE" link add eth1 address "$MAC" type veth peer name eth1p
ip -n "$NODE" link set eth1 up
ip -n "$NODE" link set eth1p up
for p in "${PODS[@]}"; do ip netns add "$p"; done

target/debug/ec2-sim --world "$WORLD" --bind "198.19.$X.1" --ready-file "$WORK/ready.json" \
  >/dev/null 2>"$WORK/sim.log" &
SIM_PID=$!
for _ in $(seq 100); do [[ -s $WORK/ready.json ]] && break; sleep 0.05; done
[[ -s $WORK/ready.json ]] || { echo "demo: ec2-sim did not start" >&2; exit 1; }
EC2=$(jq -r .ec2 "$WORK/ready.json")
IMDS=$(jq -r --arg i "$INSTANCE" '.imds[$i]' "$WORK/ready.json")

cat >"$WORK/$NET.conflist" <<EOF
{ "cniVersion": "1.0.0", "name": "$NET", "plugins": [
  { "type": "macvlan", "master": "eth1", "mode": "bridge",
    "ipam": { "type": "host-local", "dataDir": "$WORK/ipam",
              "ranges": [[{ "subnet": "198.18.1.0/24", "rangeStart": "198.18.1.100", "rangeEnd": "198.18.1.150" }]] } },
  { "type": "aws-eni-ip", "imdsEndpoint": "$IMDS",
    "stateDir": "$WORK/state", "logFile": "$WORK/aws-eni-ip.log" }
]}
EOF

cni() { # cni add|del POD-INDEX
  local ns=${PODS[$2]}
  env -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY -u AWS_SESSION_TOKEN -u AWS_PROFILE HOME="$WORK" \
    AWS_ENI_IP_NODE_DIR="$WORK/state" AWS_ENDPOINT_URL_EC2="$EC2" \
    ip netns exec "$NODE" "$DRIVER" "$1" --conflist "$WORK/$NET.conflist" --container "demo-ctr-$(($2 + 1))" \
    --args "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=pod$(($2 + 1))" \
    --netns "/var/run/netns/$ns" --ifname net1 --cache-dir "$WORK/cni-cache" --cni-path "$CNI_BIN:$PLUGIN_DIR" \
    >"$WORK/out.json" || { echo "demo: $1 pod$(($2 + 1)) failed: $(cat "$WORK/out.json")" >&2; exit 1; }
}
eni_addrs() {
  local a
  a=$(curl -fsS "$EC2/_sim/state" | jq -r --arg e "$ENI" '.enis[] | select(.id == $e) | (.privateIps + .ipv6s) | join(", ")')
  echo "${a:-(none)}"
}
pod_addr() {
  local a
  a=$(ip -n "${PODS[$1]}" -o -4 addr show dev net1 2>/dev/null | awk '{print $4}')
  echo "${a:--}"
}
row() { printf '  %-10s  %-17s  %-17s  %s\n' "$@"; }
show() { row "$1" "$(pod_addr 0)" "$(pod_addr 1)" "$(eni_addrs)"; }

echo
echo "node $NODE = instance $INSTANCE; its eth1 carries $MAC = $ENI"
echo "chain $NET (CNI 1.0.0): macvlan on eth1 + host-local 198.18.1.100-150  ->  aws-eni-ip"
echo "libcni runs it in the node namespace, as a container runtime would; ec2-sim answers on 198.19.$X.1"
echo
row "step" "pod1 net1" "pod2 net1" "$ENI secondary IPs (from EC2)"
row "----------" "-----------------" "-----------------" "---------------------------------------"
show "before"
cni add 0; show "ADD pod1"
cni add 1; show "ADD pod2"
cni del 0; show "DEL pod1"
cni del 1; show "DEL pod2"
echo
echo "aws-eni-ip log (one line per operation):"
sed -E 's/^[0-9T:.-]+Z +//; s/^/  /' "$WORK/aws-eni-ip.log"
echo
calls=$(curl -fsS "$EC2/_sim/calls" | jq -r '.ec2 | to_entries | map("\(.key)=\(.value)") | join("  ")')
echo "EC2 calls seen by ec2-sim: $calls"
