#!/usr/bin/env bash
# Builds barge and its static init (barge-init, bind-mounted into containers for --init).
# Usage: scripts/build.sh [--release]
set -euo pipefail
cd "$(dirname "$0")/.."
profile=debug
args=()
if [[ "${1:-}" == "--release" ]]; then profile=release; args=(--release); fi
cargo build "${args[@]}" -p barge
# The init runs inside containers that have no libc, so it is linked statically. It gets its own
# target dir so that workspace builds (which link it dynamically) never overwrite it.
CARGO_TARGET_DIR=target/init cargo rustc --release -p barge-init --bin barge-init -- -C target-feature=+crt-static
cp target/init/release/barge-init "target/$profile/barge-init"
echo "built target/$profile/barge and target/$profile/barge-init (static)"
