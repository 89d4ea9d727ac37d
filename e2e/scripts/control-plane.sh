#!/usr/bin/env bash
# Builds the Kubernetes binaries the tests run (kube-apiserver and kubectl; for the
# real node also kubelet, kube-proxy, kube-controller-manager and kube-scheduler)
# from the Go module proxy and caches them outside the repository, keyed by
# Kubernetes version. Idempotent: a second run builds only what is missing and
# prints the bin dir.
#
#   e2e/scripts/control-plane.sh            # build (or reuse) and print the bin dir
#   KUBE_VERSION=1.34.4 e2e/scripts/control-plane.sh
#
# Why a wrapper module: k8s.io/kubernetes replaces its staging modules
# (k8s.io/api, apimachinery, client-go, ...) with local paths, so `go install`
# of its commands fails. The wrapper requires k8s.io/kubernetes and replaces
# every staging module with its published version (v0.<minor>.<patch>).
set -euo pipefail

KUBE_VERSION="${KUBE_VERSION:-1.34.4}"
CACHE_ROOT="${WASMPLUG_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/wasmplug}"
BIN_DIR="$CACHE_ROOT/control-plane/v$KUBE_VERSION/bin"
COMMANDS=(kube-apiserver kubectl kubelet kube-proxy kube-controller-manager kube-scheduler)

have_all() {
  for cmd in "${COMMANDS[@]}"; do
    [[ -x "$BIN_DIR/$cmd" ]] || return 1
  done
}

if have_all; then
  echo "$BIN_DIR"
  exit 0
fi

command -v go >/dev/null || { echo "control-plane: go is required to build kube-apiserver (install Go >= 1.24)" >&2; exit 1; }

IFS=. read -r major minor patch <<<"$KUBE_VERSION"
staging_version="v0.$minor.$patch"
work="$CACHE_ROOT/control-plane/build-v$KUBE_VERSION"
rm -rf "$work"
mkdir -p "$work" "$BIN_DIR"
cd "$work"

started=$(date +%s)
echo "control-plane: building Kubernetes v$KUBE_VERSION into $BIN_DIR (first run takes several minutes)" >&2

go mod download -json "k8s.io/kubernetes@v$KUBE_VERSION" >kubernetes.json
kube_gomod=$(sed -n 's/^\s*"GoMod": "\(.*\)",\?$/\1/p' kubernetes.json)
[[ -f "$kube_gomod" ]] || { echo "control-plane: could not download k8s.io/kubernetes@v$KUBE_VERSION" >&2; exit 1; }

{
  echo "module wasmplug.dev/control-plane-build"
  echo
  echo "go 1.24.0"
  echo
  echo "require k8s.io/kubernetes v$KUBE_VERSION"
  echo
  # Every `k8s.io/<x> => ./staging/src/k8s.io/<x>` line becomes a published version.
  grep -E '=>\s*\./staging/src/' "$kube_gomod" \
    | awk -v v="$staging_version" '{ print "replace " $1 " => " $1 " " v }'
} >go.mod

# Build tags and ldflags as the Kubernetes release build sets them, so that
# /version reports the real version rather than v0.0.0-master.
build_date=$(date -u +%Y-%m-%dT%H:%M:%SZ)
ldflags=""
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X $pkg.gitVersion=v$KUBE_VERSION -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
  ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=$build_date"
done

export GOFLAGS="-mod=mod -buildvcs=false" CGO_ENABLED=0
for cmd in "${COMMANDS[@]}"; do
  [[ -x "$BIN_DIR/$cmd" ]] && continue
  go build -trimpath -ldflags "-s -w $ldflags" -o "$BIN_DIR/$cmd.partial" "k8s.io/kubernetes/cmd/$cmd"
  mv "$BIN_DIR/$cmd.partial" "$BIN_DIR/$cmd"
done

cd /
rm -rf "$work"
echo "control-plane: built in $(( $(date +%s) - started ))s" >&2
echo "$BIN_DIR"
