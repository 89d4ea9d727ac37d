#!/usr/bin/env bash
# Builds the repository's Dockerfile — its runtime stage, the image users build —
# with buildah and no registry: the `debian:bookworm-slim` base comes from
# debootstrap (cached by e2e/scripts/node.sh) and the binaries from a directory
# (`--build-arg BINARIES=prebuilt`, so the Rust build stage is skipped), then
# writes the image as an OCI archive whose tag `ctr images import --base-name`
# reads. The runtime stage's `apt-get` reaches Debian's package mirror.
#
#   e2e/scripts/dockerfile-image.sh --binaries target/debug --tag dockerfile --out /tmp/wasmplug-dockerfile.tar
#   ctr -n k8s.io images import --base-name localhost/wasmplug /tmp/wasmplug-dockerfile.tar
#
# Everything buildah stores stays in a temporary directory; the few directories
# it makes on the machine anyway (/var/lib/containers, /run/containers,
# /etc/containers/networks) are removed again unless they were there before.
set -euo pipefail
cd "$(dirname "$0")/../.."

binaries="" tag=dockerfile out=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --binaries) binaries=$2; shift 2 ;;
    --tag) tag=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    *) sed -n '2,14p' "$0" >&2; exit 2 ;;
  esac
done
[[ -n "$binaries" && -n "$out" ]] || { sed -n '2,14p' "$0" >&2; exit 2; }
for binary in wasmplug-operator wasmplug-host wasmplug; do
  [[ -x "$binaries/$binary" ]] || { echo "dockerfile-image: $binaries/$binary is missing" >&2; exit 1; }
done
command -v buildah >/dev/null || { echo "dockerfile-image: buildah is missing; run e2e/scripts/node.sh" >&2; exit 1; }
base=$(e2e/scripts/node.sh)/debian-bookworm-slim.tar

work=$(mktemp -d)
made=()
for dir in /var/lib/containers /run/containers /etc/containers/networks; do
  [[ -e "$dir" ]] || made+=("$dir")
done
cleanup() {
  rm -rf "$work"
  for dir in "${made[@]}"; do rm -rf "$dir"; done
}
trap cleanup EXIT

mkdir -p "$work/context"
for binary in wasmplug-operator wasmplug-host wasmplug; do
  objcopy --strip-debug "$binaries/$binary" "$work/context/$binary"
done
buildah=(buildah --root "$work/storage" --runroot "$work/run" --storage-driver vfs)
"${buildah[@]}" pull --quiet "oci-archive:$base" >/dev/null
"${buildah[@]}" bud --quiet --pull=never --isolation chroot --build-arg BINARIES=prebuilt \
  -f Dockerfile -t "localhost/wasmplug:$tag" "$work/context" >&2
mkdir -p "$(dirname "$out")"
"${buildah[@]}" push --quiet "localhost/wasmplug:$tag" "oci-archive:$out.partial:$tag" >&2
mv "$out.partial" "$out"
echo "$out"
