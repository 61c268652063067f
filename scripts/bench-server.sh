#!/usr/bin/env bash
# `barge server` start-up and footprint (issue 10): time from exec to the first `/readyz` 200,
# cold (a fresh data dir: CAs, serving/admin certificates, token and kubeconfig are made) and
# warm (a restart on the same data dir: everything is reused), and the idle RSS 5 s after a warm
# start. Release build, `--disable-agent` (the Kubernetes API alone, no engine), loopback only.
# Usage: scripts/bench-server.sh [N]   (N cold + N warm starts, default 10). BENCH_NO_BUILD=1
# skips the release build. Readiness is polled with `curl` every ~2 ms, so figures include up
# to one curl round (a few ms).
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-10}"
[[ "${BENCH_NO_BUILD:-0}" == 1 ]] || scripts/build.sh --release >/dev/null
BARGE="$PWD/target/release/barge"
work="$(mktemp -d /tmp/barge-bench-server.XXXXXX)"
pid=""
cleanup() {
  set +e
  [[ -n "$pid" ]] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"

# start DIR: starts a server on DIR (pid in $pid), waits for /readyz 200; $ms = how long it took.
start() {
  local dir="$1" t0 t1
  t0=$(date +%s%N)
  "$BARGE" server --disable-agent --data-dir "$dir/server" --write-kubeconfig "$dir/kubeconfig.yaml" \
    --bind-address 127.0.0.1 --https-listen-port "$port" -H "unix://$dir/unused.sock" \
    >>"$dir/server.log" 2>&1 &
  pid=$!
  until [[ "$(curl -sk --max-time 1 "https://127.0.0.1:$port/readyz" 2>/dev/null)" == ok ]]; do
    kill -0 "$pid" 2>/dev/null || { echo "barge server exited:" >&2; cat "$dir/server.log" >&2; exit 1; }
    sleep 0.002
  done
  t1=$(date +%s%N)
  ms=$(( (t1 - t0) / 1000000 ))
}

stop() {
  kill "$pid" && wait "$pid" || true
  pid=""
}

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
minmax() { sort -n | awk 'NR==1{min=$1} {max=$1} END {print min "-" max}'; }

cold=() warm=() rss=()
for i in $(seq "$N"); do
  dir="$work/run$i"
  mkdir -p "$dir"
  start "$dir"
  cold+=("$ms")
  stop
  start "$dir"
  warm+=("$ms")
  sleep 5
  rss+=("$(awk '/^VmRSS/ {print int($2/1024)}' "/proc/$pid/status")")
  stop
done

printf 'barge server --disable-agent, %s runs (release build, %s)\n' "$N" "$(uname -r)"
printf '  cold start to /readyz 200 (ms): median %s, range %s\n' \
  "$(printf '%s\n' "${cold[@]}" | median)" "$(printf '%s\n' "${cold[@]}" | minmax)"
printf '  warm start to /readyz 200 (ms): median %s, range %s\n' \
  "$(printf '%s\n' "${warm[@]}" | median)" "$(printf '%s\n' "${warm[@]}" | minmax)"
printf '  idle RSS 5 s after start (MiB): median %s, range %s\n' \
  "$(printf '%s\n' "${rss[@]}" | median)" "$(printf '%s\n' "${rss[@]}" | minmax)"
