#!/usr/bin/env bash
# Builds the OCI tools the tests use from the Go module proxy and caches them
# outside the repository, keyed by version: the CNCF distribution registry (the
# reference OCI registry: filesystem storage, htpasswd basic auth, TLS), the
# oras CLI (how plugin authors push Wasm artifacts) and the cosign CLI (how
# they sign them in a registry). Idempotent: it builds only a binary that is
# missing, and prints their directory.
#
#   e2e/scripts/oci-tools.sh                 # build (or reuse) and print the bin dir
#   REGISTRY_VERSION=3.1.2 ORAS_VERSION=1.3.6 COSIGN_VERSION=2.6.5 e2e/scripts/oci-tools.sh
set -euo pipefail

REGISTRY_VERSION="${REGISTRY_VERSION:-3.1.2}"
ORAS_VERSION="${ORAS_VERSION:-1.3.6}"
COSIGN_VERSION="${COSIGN_VERSION:-2.6.5}"
CACHE_ROOT="${WASMPLUG_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/wasmplug}"
BIN_DIR="$CACHE_ROOT/oci-tools/registry-v$REGISTRY_VERSION-oras-v$ORAS_VERSION/bin"

# The binary each tool is, and the module it is built from. cosign's version
# is part of its file name, so that a new version is built beside the old.
declare -A MODULES=(
  [registry]="github.com/distribution/distribution/v3/cmd/registry@v$REGISTRY_VERSION"
  [oras]="oras.land/oras/cmd/oras@v$ORAS_VERSION"
  [cosign-v$COSIGN_VERSION]="github.com/sigstore/cosign/v2/cmd/cosign@v$COSIGN_VERSION"
)

missing=()
for tool in "${!MODULES[@]}"; do
  [[ -x "$BIN_DIR/$tool" ]] || missing+=("$tool")
done
if [[ ${#missing[@]} -eq 0 ]]; then
  echo "$BIN_DIR"
  exit 0
fi

command -v go >/dev/null || { echo "oci-tools: go is required to build ${missing[*]} (install Go >= 1.24)" >&2; exit 1; }

started=$(date +%s)
mkdir -p "$BIN_DIR"
for tool in "${missing[@]}"; do
  module="${MODULES[$tool]}"
  echo "oci-tools: building $module into $BIN_DIR (cosign takes several minutes)" >&2
  work=$(mktemp -d)
  GOBIN="$work" CGO_ENABLED=0 go install -ldflags "-s -w" "$module" >&2
  mv "$work/$(basename "${module%@*}")" "$BIN_DIR/$tool"
  rm -rf "$work"
done
echo "oci-tools: built in $(( $(date +%s) - started ))s" >&2
echo "$BIN_DIR"
