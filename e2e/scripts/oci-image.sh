#!/usr/bin/env bash
# Writes a directory tree as a single-layer OCI image layout tar, without a
# container engine or a registry: what `ctr images import` (containerd),
# `buildah pull oci-archive:` and `skopeo copy oci-archive:` read.
#
#   e2e/scripts/oci-image.sh ROOTFS NAME OUT.tar [USER] [ENTRYPOINT...]
#
#   ROOTFS      directory whose contents become the image's filesystem
#   NAME        full image reference, e.g. localhost/wasmplug:dev (kept in the
#               io.containerd.image.name annotation, so ctr imports it by name)
#   OUT.tar     the archive to write
#   USER        the image's default user, e.g. 65532:65532 (empty: root)
#   ENTRYPOINT  the image's entrypoint, one argument per word (none: empty)
#
# The layer is reproducible: sorted entries, owner root, every mtime 0.
set -euo pipefail

[[ $# -ge 3 ]] || { sed -n '2,16p' "$0" >&2; exit 2; }
rootfs=$1 name=$2 out=$3 user=${4:-}
shift $(( $# >= 4 ? 4 : 3 ))
[[ -d "$rootfs" ]] || { echo "oci-image: $rootfs is not a directory" >&2; exit 1; }
[[ "$name" == */*:* || "$name" == */*@* ]] || {
  echo "oci-image: name '$name' must be a full reference such as localhost/app:tag" >&2; exit 1; }

case "$(uname -m)" in
  x86_64) arch=amd64 ;; aarch64) arch=arm64 ;; *) arch=$(uname -m) ;;
esac

layout=$(mktemp -d)
trap 'rm -rf "$layout"' EXIT
mkdir -p "$layout/blobs/sha256"

# Stores stdin as a blob; prints "<digest> <size>".
put_blob() {
  local tmp="$layout/blob.partial" digest
  cat >"$tmp"
  digest=$(sha256sum "$tmp" | cut -d' ' -f1)
  mv "$tmp" "$layout/blobs/sha256/$digest"
  echo "sha256:$digest $(stat -c %s "$layout/blobs/sha256/$digest")"
}

json_strings() { # prints its arguments as a JSON array of strings
  local out="" arg
  for arg in "$@"; do
    arg=${arg//\\/\\\\}; arg=${arg//\"/\\\"}
    out+="${out:+,}\"$arg\""
  done
  echo "[$out]"
}

tar -C "$rootfs" --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 --format=posix \
  --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime -cf "$layout/layer.tar" .
diff_id="sha256:$(sha256sum "$layout/layer.tar" | cut -d' ' -f1)"
read -r layer_digest layer_size < <(gzip -n -c "$layout/layer.tar" | put_blob)
rm "$layout/layer.tar"

entrypoint=$(json_strings "$@")
read -r config_digest config_size < <(printf '%s' "{\"architecture\":\"$arch\",\"os\":\"linux\",\
\"config\":{\"User\":\"$user\",\"Env\":[\"PATH=/usr/local/bin:/usr/bin:/bin\"],\"Entrypoint\":$entrypoint,\"WorkingDir\":\"/\"},\
\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[\"$diff_id\"]}}" | put_blob)

read -r manifest_digest manifest_size < <(printf '%s' "{\"schemaVersion\":2,\
\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\
\"config\":{\"mediaType\":\"application/vnd.oci.image.config.v1+json\",\"digest\":\"$config_digest\",\"size\":$config_size},\
\"layers\":[{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+gzip\",\"digest\":\"$layer_digest\",\"size\":$layer_size}]}" | put_blob)

printf '%s' "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.index.v1+json\",\"manifests\":[{\
\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"$manifest_digest\",\"size\":$manifest_size,\
\"platform\":{\"architecture\":\"$arch\",\"os\":\"linux\"},\
\"annotations\":{\"io.containerd.image.name\":\"$name\",\"org.opencontainers.image.ref.name\":\"${name##*:}\"}}]}" \
  >"$layout/index.json"
printf '%s' '{"imageLayoutVersion":"1.0.0"}' >"$layout/oci-layout"

mkdir -p "$(dirname "$out")"
tar -C "$layout" --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -cf "$out.partial" oci-layout index.json blobs
mv "$out.partial" "$out"
echo "oci-image: wrote $name to $out (layer $((layer_size / 1024)) KiB)" >&2
