#!/usr/bin/env bash
# Builds wasmplug's container image from binaries already built on this machine,
# without a container engine or a registry: the three binaries (debug symbols
# stripped), the shared libraries they link, the CA bundle and a passwd/group
# entry for uid 65532 (the chart's runAsUser), written as an OCI image tar.
#
#   cargo build --release --bins
#   e2e/scripts/image.sh                    # target/release -> target/wasmplug-image.tar, localhost/wasmplug:dev
#   e2e/scripts/image.sh --binaries target/debug --name localhost/wasmplug:e2e --out /tmp/wasmplug.tar
#
# Then load it into the node's containerd, e.g.
#   ctr --address <containerd.sock> -n k8s.io images import /tmp/wasmplug.tar
# and install the chart with image.repository/image.tag set to the name and
# image.pullPolicy=Never. The Dockerfile builds the same layout for a registry.
set -euo pipefail
cd "$(dirname "$0")/../.."

target_dir=${CARGO_TARGET_DIR:-target}
from="$target_dir/release" name=localhost/wasmplug:dev out="$target_dir/wasmplug-image.tar"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --binaries) from=$2; shift 2 ;;
    --name) name=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    *) sed -n '2,14p' "$0" >&2; exit 2 ;;
  esac
done
binaries=("$from/wasmplug-operator" "$from/wasmplug-host" "$from/wasmplug")
for binary in "${binaries[@]}"; do
  [[ -x "$binary" ]] || {
    echo "image: $binary is missing; build it first (cargo build --release --bins)" >&2
    exit 1
  }
done

rootfs=$(mktemp -d)
trap 'rm -rf "$rootfs"' EXIT
mkdir -p "$rootfs"/{usr/local/bin,etc/ssl/certs,tmp}
chmod 1777 "$rootfs/tmp"
for binary in "${binaries[@]}"; do
  objcopy --strip-debug "$binary" "$rootfs/usr/local/bin/$(basename "$binary")"
  # Every shared library the binary loads, and the dynamic loader, at their paths.
  ldd "$binary" | grep -oE '/[^ ]+' | while read -r library; do
    mkdir -p "$rootfs$(dirname "$library")"
    cp -L -n "$library" "$rootfs$library"
  done
done
cp -L /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"
printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$rootfs/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' >"$rootfs/etc/group"

e2e/scripts/oci-image.sh "$rootfs" "$name" "$out" 65532:65532
echo "$out"
