#!/usr/bin/env bash
# Regenerates crates/barge/layout/barge.order, the function order the `barge` binary is linked
# with (lld's --symbol-ordering-file, see crates/barge/build.rs): the functions the daemon runs
# from its start through `load` and two `save`s first (the idle footprint of issue 9: executed
# code packed into few pages instead of strewn over the 54 MB text), then those a daemon runs
# for `run --rm`, `exec`, `logs`, `ps` and `images`, then the CLI's for `run --rm`, `ps` and
# `images` (fewer page faults per start).
#
# How: a release build with every function on its own page (-align-all-functions=12, in
# target/layout), run with scripts/layout/touch.so preloaded (read-ahead and fault-around off
# for its text, see touch.c), then scripts/layout/touched.py maps the pages present in the
# process to functions. Names missing from a later build (changed dependencies, new hashes)
# are skipped by the linker, so a stale order costs footprint, never correctness; rerun this
# after dependency upgrades. Needs root, gcc, and the shared images (BARGE_IMAGES).
# Takes a full release build (~15 min on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."
IMAGES="${BARGE_IMAGES:-$PWD/../shared/images}"
CARGO_TARGET_DIR=target/layout RUSTFLAGS="-C llvm-args=-align-all-functions=12" \
  cargo build --release -p barge
work="$(mktemp -d /tmp/barge-layout.XXXXXX)"
gcc -shared -fPIC -O2 -o "$work/touch.so" scripts/layout/touch.c
# Separate copies for the traced daemon and the CLI, so neither's page cache serves the other.
cp target/layout/release/barge "$work/barged"
cp target/layout/release/barge "$work/barge"
export BARGE_HOST="unix://$work/barge.sock"
cleanup() {
  set +e
  for id in $("$work/barge" ps -aq 2>/dev/null); do "$work/barge" rm -f "$id" >/dev/null 2>&1; done
  [[ -n "${pid:-}" ]] && kill "$pid" && wait "$pid"
  grep -o " $work[^ ]*" /proc/mounts | sort -r | xargs -r -n1 umount -l 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
LD_PRELOAD="$work/touch.so" "$work/barged" daemon --data-root "$work/data" \
  --exec-root "$work/run" -H "$BARGE_HOST" >"$work/daemon.log" 2>&1 &
pid=$!
for _ in $(seq 100); do [[ -S "$work/barge.sock" ]] && break; sleep 0.1; done
B="$work/barge"
"$B" load -i "$IMAGES/oci-layout" >/dev/null
"$B" save -o "$work/a.tar" busybox:1.35
"$B" save -o "$work/b.tar" multilayer:1
sleep 2
scripts/layout/touched.py "$pid" "$work/barged" >"$work/idle.syms"
for _ in 1 2 3; do "$B" run --rm busybox:1.35 true; done
"$B" run -d --name layout-w busybox:1.35 sleep 30 >/dev/null
"$B" exec layout-w true
"$B" logs layout-w
"$B" ps >/dev/null
"$B" images >/dev/null
"$B" rm -f layout-w >/dev/null
scripts/layout/touched.py "$pid" "$work/barged" >"$work/daemon.syms"
# The CLI: each command's pages, written by touch.so when it exits.
for cmd in "run --rm busybox:1.35 true" "ps" "images"; do
  # shellcheck disable=SC2086
  LD_PRELOAD="$work/touch.so" LAYOUT_TOUCH_OUT="$work/cli.pages" "$B" $cmd >/dev/null
done
scripts/layout/touched.py --offsets "$work/cli.pages" "$B" >"$work/cli.syms"
# Idle first, then the daemon's other paths, then the CLI's; each name once.
cat "$work/idle.syms" "$work/daemon.syms" "$work/cli.syms" | awk '!seen[$0]++' \
  >crates/barge/layout/barge.order
echo "wrote crates/barge/layout/barge.order ($(wc -l <crates/barge/layout/barge.order) functions)"
