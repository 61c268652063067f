#!/usr/bin/env bash
# Stall benchmark: latencies of `barge ps`, `barge images` and `barge run --rm` on an idle
# daemon, then under hostile clients: N parked `wait` requests (default 300), a `save` of
# multilayer:1 whose reader stopped reading, and a `logs -f` that never reads. Prints the
# median and worst of R runs (default 5) per command and condition. Needs root; talks only to
# its own daemon's Unix socket.
# Usage: scripts/bench-stall.sh [R] [N]
set -euo pipefail
cd "$(dirname "$0")/.."
R="${1:-5}"
N="${2:-300}"
BARGE="${BARGE:-$PWD/target/release/barge}"
IMAGES="${BARGE_IMAGES:-$PWD/../shared/images}"
INIT="${BARGE_INIT_PATH:-$PWD/target/init/release/barge-init}"
[[ -x "$BARGE" ]] || scripts/build.sh --release >/dev/null
work="$(mktemp -d /tmp/barge-bench-stall.XXXXXX)"
export BARGE_HOST="unix://$work/barge.sock"
cleanup() {
  set +e
  [[ -n "${load_pid:-}" ]] && kill "$load_pid" 2>/dev/null && wait "$load_pid" 2>/dev/null
  "$BARGE" rm -f parked chatty >/dev/null 2>&1
  [[ -n "${barge_pid:-}" ]] && kill "$barge_pid" && wait "$barge_pid"
  grep -o " $work[^ ]*" /proc/mounts | sort -r | xargs -r -n1 umount -l 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
"$BARGE" daemon --data-root "$work/data" --exec-root "$work/run" -H "$BARGE_HOST" \
  --init-path "$INIT" --bridge bargestall0 --bip 10.199.0.1/24 >"$work/daemon.log" 2>&1 &
barge_pid=$!
for _ in $(seq 200); do [[ -S "$work/barge.sock" ]] && break; sleep 0.1; done
"$BARGE" load -i "$IMAGES/oci-layout" >/dev/null
"$BARGE" run --rm --network none busybox:1.35 true
"$BARGE" run -d --name parked --network none busybox:1.35 sleep 3600 >/dev/null
"$BARGE" run -d --name chatty --network none busybox:1.35 sh -c \
  'i=0; while [ $i -lt 30000 ]; do echo line-$i-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx; i=$((i+1)); done; sleep 3600' >/dev/null

measure() {
  python3 - "$R" "$BARGE" "$1" <<'PY'
import statistics, subprocess, sys, time
r, barge, label = int(sys.argv[1]), sys.argv[2], sys.argv[3]
for name, args in [("ps", ["ps"]), ("images", ["images"]),
                   ("run --rm", ["run", "--rm", "--network", "none", "busybox:1.35", "true"])]:
    ts = []
    for _ in range(r):
        t = time.perf_counter()
        try:
            subprocess.run([barge] + args, check=True, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, timeout=60)
            ts.append(time.perf_counter() - t)
        except subprocess.TimeoutExpired:
            ts.append(float("inf"))
    print(f"{label:<12} {name:<10} median {statistics.median(ts)*1000:8.1f} ms   worst {max(ts)*1000:8.1f} ms")
PY
}

echo "R=$R runs per row; load = $N parked waits + stalled save + unread logs -f"
measure "idle"

# The hostile clients, held open by a background python process until killed.
python3 - "$work/barge.sock" "$N" <<'PY' &
import socket, sys, time
path, n = sys.argv[1], int(sys.argv[2])
def send(req):
    s = socket.socket(socket.AF_UNIX)
    s.connect(path)
    s.sendall(req.encode())
    return s
def head(s):
    b = b""
    while not b.endswith(b"\r\n\r\n"):
        c = s.recv(1)
        if not c:
            break
        b += c
    return b
held = []
for _ in range(n):
    s = send("POST /v1.47/containers/parked/wait HTTP/1.1\r\nHost: d\r\nContent-Length: 0\r\n\r\n")
    head(s)
    held.append(s)
s = send("GET /v1.47/images/get?names=multilayer%3A1 HTTP/1.1\r\nHost: d\r\n\r\n")
head(s)
s.recv(4096)
held.append(s)
s = send("GET /v1.47/containers/chatty/logs?follow=1&stdout=1 HTTP/1.1\r\nHost: d\r\n\r\n")
head(s)
held.append(s)
print("load in place", flush=True)
time.sleep(3600)
PY
load_pid=$!
sleep 3
measure "under load"
