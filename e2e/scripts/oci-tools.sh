#!/usr/bin/env bash
# Builds the OCI tools the tests use from the Go module proxy and caches them
# outside the repository, keyed by version: the CNCF distribution registry (the
# reference OCI registry: filesystem storage, htpasswd basic auth, TLS) and the
# oras CLI (how plugin authors push Wasm artifacts). Idempotent: with both
# binaries in place it prints their directory and does nothing else.
#
#   e2e/scripts/oci-tools.sh                 # build (or reuse) and print the bin dir
#   REGISTRY_VERSION=3.1.2 ORAS_VERSION=1.3.6 e2e/scripts/oci-tools.sh
set -euo pipefail

REGISTRY_VERSION="${REGISTRY_VERSION:-3.1.2}"
ORAS_VERSION="${ORAS_VERSION:-1.3.6}"
CACHE_ROOT="${WASMPLUG_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/wasmplug}"
BIN_DIR="$CACHE_ROOT/oci-tools/registry-v$REGISTRY_VERSION-oras-v$ORAS_VERSION/bin"

if [[ -x "$BIN_DIR/registry" && -x "$BIN_DIR/oras" ]]; then
  echo "$BIN_DIR"
  exit 0
fi

command -v go >/dev/null || { echo "oci-tools: go is required to build the registry and oras (install Go >= 1.24)" >&2; exit 1; }

started=$(date +%s)
echo "oci-tools: building registry v$REGISTRY_VERSION and oras v$ORAS_VERSION into $BIN_DIR" >&2
mkdir -p "$BIN_DIR"
GOBIN="$BIN_DIR" CGO_ENABLED=0 go install -ldflags "-s -w" \
  "github.com/distribution/distribution/v3/cmd/registry@v$REGISTRY_VERSION" >&2
GOBIN="$BIN_DIR" CGO_ENABLED=0 go install -ldflags "-s -w" \
  "oras.land/oras/cmd/oras@v$ORAS_VERSION" >&2
echo "oci-tools: built in $(( $(date +%s) - started ))s" >&2
echo "$BIN_DIR"
