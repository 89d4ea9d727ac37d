#!/usr/bin/env bash
# Builds every example plugin for wasm32-wasip2 and packages each as
# target/packages/<name>/{plugin.toml,plugin.wasm}: the layout the operator
# installs and the host loads. Prints the packages directory.
#
#   examples/build.sh
set -euo pipefail
cd "$(dirname "$0")"

cargo build --release --locked --target wasm32-wasip2 --quiet >&2

out=target/packages
for manifest in */plugin.toml; do
  crate=$(dirname "$manifest")
  wasm="target/wasm32-wasip2/release/${crate//-/_}.wasm"
  [[ -f "$wasm" ]] || { echo "build.sh: $crate did not produce $wasm" >&2; exit 1; }
  mkdir -p "$out/$crate"
  cp "$manifest" "$out/$crate/plugin.toml"
  cp "$wasm" "$out/$crate/plugin.wasm"
done
echo "$(pwd)/$out"
