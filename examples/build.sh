#!/usr/bin/env bash
# Builds every example plugin for wasm32-wasip2 and packages each as
# <dir>/<name>/{plugin.toml,plugin.wasm}, the layout the operator installs and
# the host loads:
#   target/packages/         the working examples (what the quickstart serves)
#   target/broken-packages/  the broken plugins the tests use (examples/broken/)
#   target/fixture-packages/ plugins made for tests and benchmarks (examples/fixtures/)
# Prints the directory of the working packages.
#
#   examples/build.sh
set -euo pipefail
cd "$(dirname "$0")"

if command -v rustup >/dev/null && ! rustup target list --installed | grep -qx wasm32-wasip2; then
  rustup target add wasm32-wasip2 >&2
fi
cargo build --release --locked --target wasm32-wasip2 --quiet >&2

package() { # <package dir> <output dir>
  local dir=$1 out=$2 name component
  name=$(basename "$dir")
  # A package directory without a crate names the crate whose component it ships.
  component=$name
  [[ -f "$dir/component" ]] && component=$(tr -d '[:space:]' < "$dir/component")
  local wasm="target/wasm32-wasip2/release/${component//-/_}.wasm"
  [[ -f "$wasm" ]] || { echo "build.sh: no $wasm for $dir" >&2; exit 1; }
  mkdir -p "$out/$name"
  cp "$dir/plugin.toml" "$out/$name/plugin.toml.tmp"
  cp "$wasm" "$out/$name/plugin.wasm.tmp"
  mv "$out/$name/plugin.wasm.tmp" "$out/$name/plugin.wasm"
  mv "$out/$name/plugin.toml.tmp" "$out/$name/plugin.toml"
}

for manifest in */plugin.toml; do package "$(dirname "$manifest")" target/packages; done
for manifest in broken/*/plugin.toml; do package "$(dirname "$manifest")" target/broken-packages; done
for manifest in fixtures/*/plugin.toml; do package "$(dirname "$manifest")" target/fixture-packages; done
echo "$(pwd)/target/packages"
