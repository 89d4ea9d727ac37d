#!/usr/bin/env bash
# Audits every lockfile of the repository (the workspace, the example plugins,
# the libFuzzer targets) against a local copy of the RustSec advisory database,
# without network access: CI has none, so this runs where a snapshot is.
# Fails on any vulnerability; warnings (unmaintained, unsound, yanked) are
# printed.
#
#   scripts/audit.sh <advisory-db directory>
set -euo pipefail
cd "$(dirname "$0")/.."

db=${1:?usage: scripts/audit.sh <advisory-db directory, a git clone of github.com/rustsec/advisory-db>}
command -v cargo-audit >/dev/null || { echo "audit: install it first: cargo install cargo-audit --locked" >&2; exit 1; }

status=0
for lock in Cargo.lock examples/Cargo.lock fuzz/libfuzzer/Cargo.lock; do
    echo "== $lock" >&2
    cargo audit --db "$db" --no-fetch --stale --file "$lock" || status=1
done
exit $status
