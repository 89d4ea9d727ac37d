#!/usr/bin/env bash
# Takes down the test harness's real node and undoes everything it changed on
# the machine. The harness's watchdog runs it when the test binary ends, however
# it ends; run it by hand on the directory the harness printed if a machine
# ever lost power halfway:
#
#   e2e/scripts/node-teardown.sh /tmp/wasmplug-node-XXXXXX
#
# Order: workloads deleted through the API (the kubelet stops their containers
# and releases their volumes and addresses), the kubelet stopped and its Node
# deleted, kube-proxy's rules cleaned up, any container left killed, containerd
# stopped, mounts under the harness's directory and the network namespaces it
# made unmounted, its cgroups removed, the bridge and the guard table deleted,
# the sysctls the kubelet changed restored, and the paths outside the directory
# that did not exist before removed. Each step goes on when one before it fails.
# The control plane (etcd, kube-apiserver, controller manager, scheduler) is
# stopped by the watchdog afterwards.
set -uo pipefail

dir=${1:?usage: node-teardown.sh <cluster directory>}
[[ -f "$dir/node.env" ]] || { echo "node-teardown: $dir/node.env is missing; nothing to do" >&2; exit 0; }
# shellcheck source=/dev/null
source "$dir/node.env"

step() { echo "node-teardown: [$SECONDS s] $*" >&2; }

# Whether process $1 runs (a zombie, waiting for its parent to reap it, does not).
running() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  [[ "${stat##*) }" != Z* ]]
}

# Sends TERM to the process in $dir/pids/$1, waits up to $2 seconds, then KILL.
stop() {
  local name=$1 wait=${2:-10} pid
  pid=$(cat "$dir/pids/$name" 2>/dev/null) || return 0
  kill "$pid" 2>/dev/null || return 0
  for _ in $(seq $((wait * 5))); do running "$pid" || return 0; sleep 0.2; done
  step "$name did not stop within ${wait}s; killing it"
  kill -9 "$pid" 2>/dev/null
}

kubectl() { "$KUBECTL" --kubeconfig="$KUBECONFIG" --request-timeout=10s "$@"; }

if kubectl get --raw /readyz >/dev/null 2>&1; then
  step "deleting workloads through the API"
  kubectl delete deployments,replicasets,statefulsets,daemonsets,jobs --all --all-namespaces --wait=false >/dev/null 2>&1
  kubectl delete pods --all --all-namespaces --grace-period=2 --timeout=45s >/dev/null 2>&1 \
    || step "some pods were not gone within 45s; their containers are killed below"
fi

step "stopping the kubelet"
stop kubelet 15
kubectl delete node "$NODE_NAME" --wait=false >/dev/null 2>&1

step "stopping kube-proxy and removing its rules"
stop kube-proxy 10
"$KUBE_PROXY" --cleanup >/dev/null 2>&1

step "killing what is left in the node's cgroups and containerd's shims"
for pass in 1 2 3; do
  left=$(cat /sys/fs/cgroup/*/kubepods/cgroup.procs /sys/fs/cgroup/*/kubepods/*/cgroup.procs \
    /sys/fs/cgroup/*/kubepods/*/*/cgroup.procs /sys/fs/cgroup/*/kubepods/*/*/*/cgroup.procs 2>/dev/null | sort -u)
  [[ -z "$left" ]] && break
  # shellcheck disable=SC2086
  kill -9 $left 2>/dev/null
  sleep 0.5
done
pkill -9 -f "containerd-shim-runc-v2 .*-address $CONTAINERD_SOCKET" 2>/dev/null

step "stopping containerd"
stop containerd 10

step "unmounting what the node mounted"
# Deepest first; the kubelet also bind-mounts its root directory onto itself.
for _ in 1 2 3; do
  mounts=$(awk -v dir="$dir" '$5 == dir || index($5, dir "/") == 1 || $5 ~ "^/run/containerd/" || $5 ~ "^/run/netns/cni-" { print $5 }' \
    /proc/self/mountinfo | sort -r)
  [[ -z "$mounts" ]] && break
  while read -r mount; do umount -l "$mount" 2>/dev/null; done <<<"$mounts"
done
rm -f /run/netns/cni-* 2>/dev/null

step "removing the node's cgroups"
for controller in /sys/fs/cgroup/*/; do
  for root in kubepods k8s.io; do
    [[ -d "$controller$root" ]] || continue
    find "$controller$root" -depth -type d -exec rmdir {} + 2>/dev/null
  done
done

step "removing the bridge and the guard"
ip link delete "$BRIDGE" 2>/dev/null
nft delete table inet "$GUARD_TABLE" 2>/dev/null
for family in ip ip6; do nft delete table "$family" kube-proxy 2>/dev/null; done

step "restoring sysctls"
while read -r key value; do
  sysctl -q -w "$key=$value" >/dev/null 2>&1 || step "could not restore $key to $value"
done <"$dir/sysctls"

step "removing paths the node made outside $dir"
while read -r path; do
  [[ -n "$path" ]] && rm -rf "$path"
done <"$dir/created-paths"
step "done"
