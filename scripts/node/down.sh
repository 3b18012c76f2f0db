#!/usr/bin/env bash
# Stops the node in a box and removes everything up.sh made: pods (through CNI DEL while Multus
# still runs), processes, mounts, network namespaces, links, cgroups, the files it wrote under
# /etc/cni, /opt/cni/bin and /var/lib; puts back what it had moved aside and the kernel settings
# kubelet changed. Safe to run twice, and after a failed up.sh. Logs are kept in
# $NODE_CACHE/logs/last-run/.
set -uo pipefail
. "$(dirname "$0")/common.sh"
[ "$(id -u)" = 0 ] || { echo "down.sh: run as root" >&2; exit 1; }
[ -d "$NODE_RUN" ] || { say "down: nothing to do ($NODE_RUN absent)"; exit 0; }
undo=$NODE_RUN/undo
touch "$undo"

pid_of() { cat "$NODE_RUN/pids/$1.pid" 2>/dev/null; }
alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; }
# SIGTERM, then SIGKILL after SECS.
stop() {
  local name=$1 secs=${2:-10} pid
  pid=$(pid_of "$name") || return 0
  alive "$pid" || return 0
  kill -TERM "$pid" 2>/dev/null
  for _ in $(seq $((secs * 10))); do alive "$pid" || return 0; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null
  sleep 0.2
}

if alive "$(pid_of kube-apiserver)"; then
  # What a failed run needs to be read afterwards: every pod's state, events and container logs.
  kc_() { timeout 30 "$BIN_K8S/kubectl" --kubeconfig "$KUBECONFIG_ADMIN" "$@"; }
  { kc_ get pods -A -o wide; kc_ get events -A --sort-by=.lastTimestamp; } >"$NODE_LOGS/pods.txt" 2>&1
  kc_ describe pods -A >"$NODE_LOGS/pods-describe.txt" 2>&1
  for pod in $(kc_ get pods -n kube-system -o name 2>/dev/null); do
    kc_ logs -n kube-system "$pod" --all-containers --prefix >"$NODE_LOGS/${pod#pod/}.log" 2>&1
    kc_ logs -n kube-system "$pod" --all-containers --prefix --previous >>"$NODE_LOGS/${pod#pod/}.log" 2>/dev/null
  done
fi
if alive "$(pid_of kube-apiserver)" && alive "$(pid_of kubelet)"; then
  say "deleting the test pods (CNI DEL through Multus)"
  timeout 120 "$BIN_K8S/kubectl" --kubeconfig "$KUBECONFIG_ADMIN" delete pods --all -n default \
    --wait=true --timeout=100s >/dev/null 2>&1 || say "pods not all deleted in time; removing sandboxes"
fi
if alive "$(pid_of containerd)"; then
  timeout 60 "$BIN_CRICTL/crictl" --runtime-endpoint unix:///run/containerd/containerd.sock rmp -fa >/dev/null 2>&1
fi
say "stopping kubelet, containerd and the containers"
stop kubelet 15
if alive "$(pid_of containerd)"; then
  timeout 60 "$BIN_CRICTL/crictl" --runtime-endpoint unix:///run/containerd/containerd.sock rmp -fa >/dev/null 2>&1
fi
# Whatever still runs in the node's cgroups: the containers and their processes.
for _ in 1 2 3; do
  pids=$(cat /sys/fs/cgroup/*/"$CGROUP_ROOT"/cgroup.procs /sys/fs/cgroup/*/"$CGROUP_ROOT"/*/cgroup.procs \
    $(find /sys/fs/cgroup/*/"$CGROUP_ROOT" -name cgroup.procs 2>/dev/null) 2>/dev/null | sort -u)
  [ -n "$pids" ] || break
  kill -KILL $pids 2>/dev/null
  sleep 0.5
done
stop containerd 10
# The shims of this containerd: by their binary's path, which only this node uses.
for p in /proc/[0-9]*; do
  exe=$(readlink "$p/exe" 2>/dev/null) || continue
  case $exe in "$BIN_CONTAINERD"/*) kill -KILL "${p#/proc/}" 2>/dev/null ;; esac
done
for d in kube-scheduler kube-controller-manager kube-apiserver etcd ec2-sim; do stop "$d" 10; done

say "unmounting"
# Not /run/netns: other software's namespaces live there; ours go with `ip netns del` below.
for root in /run/containerd "$NODE_RUN" /var/lib/kubelet /run/k8s.cni.cncf.io /run/multus; do
  findmnt -rn -o TARGET | grep -E "^$root(/|$)" | awk '{print length, $0}' | sort -rn | cut -d' ' -f2- |
    while read -r m; do umount -l "$m" 2>/dev/null; done
done
say "network namespaces and links"
for ns in $(ip netns list | awk '{print $1}' | grep '^cni-'); do
  grep -qx "$ns" "$NODE_RUN/netns-before" 2>/dev/null || ip netns del "$ns" 2>/dev/null
done

mkdir -p "$NODE_CACHE/logs"
rm -rf "$NODE_CACHE/logs/last-run"
cp -a "$NODE_LOGS" "$NODE_CACHE/logs/last-run" 2>/dev/null
cp /var/log/aws-eni-ip.log "$NODE_CACHE/logs/last-run/" 2>/dev/null

# The undo list, last first.
tac "$undo" | while read -r kind a b; do
  case $kind in
    link) ip link del "$a" 2>/dev/null ;;
    netns) ip netns del "$a" 2>/dev/null ;;
    lo-addr) ip addr del "$a" dev lo 2>/dev/null ;;
    propagation-private) mount --make-private "$a" ;;
    sysctl) sysctl -qw "$a" ;;
    remove) rm -rf "$a" ;;
    remove-glob) rm -rf $a ;;
    created) umount -l "$a" 2>/dev/null; rm -rf "$a" ;;
    backup) rm -rf "$a"; cp -a "$b" "$a" ;;
    cgroup)
      for h in /sys/fs/cgroup/*/; do
        [ -d "$h$a" ] || continue
        find "$h$a" -depth -type d -exec rmdir {} + 2>/dev/null
      done ;;
  esac
done
for t in mangle nat filter; do
  iptables -t "$t" -F KUBE-KUBELET-CANARY 2>/dev/null && iptables -t "$t" -X KUBE-KUBELET-CANARY 2>/dev/null
  ip6tables -t "$t" -F KUBE-KUBELET-CANARY 2>/dev/null && ip6tables -t "$t" -X KUBE-KUBELET-CANARY 2>/dev/null
done

left=$(for h in /sys/fs/cgroup/*/; do [ -d "$h$CGROUP_ROOT" ] && echo "$h$CGROUP_ROOT"; done)
[ -z "$left" ] || say "cgroups left (a process still in them?): $left"
rm -rf "$NODE_RUN"
say "down; logs in $NODE_CACHE/logs/last-run"
