#!/usr/bin/env bash
# Prepares what the test harness's real node needs besides the Kubernetes binaries
# (e2e/scripts/control-plane.sh builds kubelet, kube-proxy, kube-controller-manager
# and kube-scheduler): containerd, runc, the CNI plugins and nftables from Debian
# packages, the sandbox ("pause") image built from the Kubernetes module's
# source (build/pause/linux/pause.c) with `gcc -static`, and a Debian bookworm
# base image from debootstrap (for building the Dockerfile with buildah), cached
# outside the repository. Idempotent; prints the directory that holds pause.tar
# and debian-bookworm-slim.tar.
#
#   e2e/scripts/node.sh
set -euo pipefail

KUBE_VERSION="${KUBE_VERSION:-1.34.4}"
CACHE_ROOT="${WASMPLUG_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/wasmplug}"
NODE_DIR="$CACHE_ROOT/node/v$KUBE_VERSION"
PAUSE_IMAGE="localhost/pause:v$KUBE_VERSION"
here=$(cd "$(dirname "$0")" && pwd)

log() { echo "node: $*" >&2; }

missing=()
for pair in containerd:containerd runc:runc nft:nftables iptables:iptables conntrack:conntrack \
  busybox:busybox-static ip:iproute2 flock:util-linux debootstrap:debootstrap buildah:buildah; do
  command -v "${pair%%:*}" >/dev/null || missing+=("${pair#*:}")
done
[[ -x /usr/lib/cni/bridge && -x /usr/lib/cni/host-local && -x /usr/lib/cni/loopback ]] \
  || missing+=(containernetworking-plugins)
if [[ ${#missing[@]} -gt 0 ]]; then
  command -v apt-get >/dev/null || { log "install these packages: ${missing[*]}"; exit 1; }
  sudo=""; [[ "$(id -u)" -eq 0 ]] || sudo="sudo"
  log "installing ${missing[*]}"
  $sudo apt-get update -qq >&2
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
fi

if [[ ! -f "$NODE_DIR/pause.tar" ]]; then
  command -v go >/dev/null || { log "go is required to fetch the Kubernetes source for pause.c"; exit 1; }
  source_dir=$(go mod download -json "k8s.io/kubernetes@v$KUBE_VERSION" | sed -n 's/^\s*"Dir": "\(.*\)",\?$/\1/p')
  [[ -f "$source_dir/build/pause/linux/pause.c" ]] || { log "no pause.c in k8s.io/kubernetes@v$KUBE_VERSION"; exit 1; }
  rootfs=$(mktemp -d)
  trap 'rm -rf "$rootfs"' EXIT
  gcc -Os -Wall -Werror -static -DVERSION="v$KUBE_VERSION-wasmplug" \
    -o "$rootfs/pause" "$source_dir/build/pause/linux/pause.c"
  strip "$rootfs/pause"
  mkdir -p "$NODE_DIR"
  "$here/oci-image.sh" "$rootfs" "$PAUSE_IMAGE" "$NODE_DIR/pause.tar" 65535:65535 /pause
  rm -rf "$rootfs"
fi
if [[ ! -f "$NODE_DIR/debian-bookworm-slim.tar" ]]; then
  # The base the Dockerfile's runtime stage names, as `docker pull` would give it.
  rootfs=$(mktemp -d)
  trap 'rm -rf "$rootfs"' EXIT
  log "debootstrap of Debian bookworm (about a minute)"
  debootstrap --variant=minbase bookworm "$rootfs" http://deb.debian.org/debian >/dev/null
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  mkdir -p "$NODE_DIR"
  "$here/oci-image.sh" "$rootfs" docker.io/library/debian:bookworm-slim "$NODE_DIR/debian-bookworm-slim.tar"
  rm -rf "$rootfs"
fi
echo "$NODE_DIR"
