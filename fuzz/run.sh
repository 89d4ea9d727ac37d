#!/usr/bin/env bash
# The long fuzz run: every target under libFuzzer (cargo-fuzz, nightly) for
# SECONDS each (default 600), starting from fuzz/seeds/<target> and
# fuzz/corpus/<target>, adding what it finds to the latter (then minimized).
# Installs the nightly toolchain and cargo-fuzz when missing. Crashes land in
# fuzz/libfuzzer/artifacts/<target>/; reproduce one with
#   cargo +nightly fuzz run --fuzz-dir fuzz/libfuzzer <target> <file>
# then fix it, and add the input to fuzz/corpus/<target>/ so CI replays it.
#
#   fuzz/run.sh [SECONDS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")"

seconds=${1:-600}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(builtin builtin_index manifest wire_request wire_query)

rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal >&2
cargo +nightly fuzz --version >/dev/null 2>&1 || cargo +nightly install cargo-fuzz --locked >&2

for target in "${targets[@]}"; do
    echo "== $target: ${seconds}s" >&2
    # -rss_limit_mb: a builtin call must fit in far less than a host's memory.
    mkdir -p "corpus/$target"
    cargo +nightly fuzz run --fuzz-dir libfuzzer "$target" "corpus/$target" "seeds/$target" -- \
        -max_total_time="$seconds" -rss_limit_mb=1024 -timeout=10 -max_len=1048576 -print_final_stats=1
    # Keep the corpus small: the inputs that reach distinct coverage.
    cargo +nightly fuzz cmin --fuzz-dir libfuzzer "$target" "corpus/$target" >&2
done
