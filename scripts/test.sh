#!/usr/bin/env bash
# The README's second command: installs what the tests need, builds, and runs the whole suite
# (unit, integration and end-to-end tests; root is needed for the latter two).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh
export BARGE_INIT_PATH="$PWD/target/init/release/barge-init"
export BARGE_IMAGES="${BARGE_IMAGES:-$(cd .. && pwd)/shared/images}"
cargo test --workspace --no-fail-fast -- --test-threads=2
