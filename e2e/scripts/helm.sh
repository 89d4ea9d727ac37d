#!/usr/bin/env bash
# Builds helm from the Go module proxy and caches it outside the repository,
# keyed by version. Idempotent: with the binary in place it prints its directory
# and does nothing else. (Helm's go.mod has no local replaces, so `go install`
# works as is.)
#
#   e2e/scripts/helm.sh                      # build (or reuse) and print the bin dir
#   HELM_VERSION=3.19.0 e2e/scripts/helm.sh
set -euo pipefail

HELM_VERSION="${HELM_VERSION:-3.19.0}"
# The Kubernetes minor version Helm's client libraries come from (client-go
# v0.34 for Helm 3.19): `helm template` and `helm lint` assume it as the
# cluster's version, as release builds of Helm do.
HELM_KUBE_MINOR="${HELM_KUBE_MINOR:-34}"
CACHE_ROOT="${WASMPLUG_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/wasmplug}"
BIN_DIR="$CACHE_ROOT/helm/v$HELM_VERSION-k1.$HELM_KUBE_MINOR/bin"

if [[ -x "$BIN_DIR/helm" ]]; then
  echo "$BIN_DIR"
  exit 0
fi

command -v go >/dev/null || { echo "helm: go is required to build helm (install Go >= 1.24)" >&2; exit 1; }

started=$(date +%s)
echo "helm: building helm v$HELM_VERSION into $BIN_DIR" >&2
mkdir -p "$BIN_DIR"
# The ldflags of Helm's own Makefile: its version, and the Kubernetes version.
ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=v$HELM_VERSION"
for pkg in pkg/lint/rules pkg/chartutil; do
  ldflags+=" -X helm.sh/helm/v3/$pkg.k8sVersionMajor=1 -X helm.sh/helm/v3/$pkg.k8sVersionMinor=$HELM_KUBE_MINOR"
done
GOBIN="$BIN_DIR" CGO_ENABLED=0 go install -ldflags "$ldflags" \
  "helm.sh/helm/v3/cmd/helm@v$HELM_VERSION" >&2
echo "helm: built in $(( $(date +%s) - started ))s" >&2
echo "$BIN_DIR"
