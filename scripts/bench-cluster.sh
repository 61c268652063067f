#!/usr/bin/env bash
# The cluster's pod figures (issues 11 and 13 "Performance"), loopback and a private bridge only:
# 1. One `barge server` (SQLite; its node's agent and engine in the same process): idle RSS; a
#    Deployment of PODS busybox `sleep` replicas — time until all are Running and Ready, each
#    pod's start latency (first seen → Running and Ready, from a `kubectl get -w` stamped as its
#    events arrive), RSS with the pods; a rolling update of them (wall time to `rollout status`).
#    Anchors: Kubernetes's pod-startup SLO (p99 ≤ 5 s at 20 pods/s), the issue's target (all 100
#    Running ≤ 10 s), k3s's published 1.4-1.6 GB server + 275 MB agent
#    (docs.k3s.io/reference/resource-profiling, v1.26.5).
# 2. Three servers on a three-member etcd (Debian's etcd-server), the first also the node (as
#    every k3s server is), the other two `--disable-agent`, joined with `--server` + the token;
#    the same Deployment; each process's RSS after IDLE s (servers, etcd members, monitors).
#    Anchors: k3s's server with embedded etcd and a workload, 1606 MB (same page), ≈ 700-800 MB
#    per HA server reported by users (k3s-io/k3s#7336).
# Usage: scripts/bench-cluster.sh [PODS] [single|ha|both]   (defaults 100, both). BARGE=<binary>
# (default target/release/barge, built unless BENCH_NO_BUILD=1), IDLE=<seconds> (default 10).
set -euo pipefail
cd "$(dirname "$0")/.."
PODS="${1:-100}"
WHAT="${2:-both}"
IDLE="${IDLE:-10}"
if [[ -z "${BARGE:-}" ]]; then
  [[ "${BENCH_NO_BUILD:-0}" == 1 ]] || scripts/build.sh --release >/dev/null
  BARGE="$PWD/target/release/barge"
fi
IMAGES="${BARGE_IMAGES:-$PWD/../shared/images}"
work="$(mktemp -d /tmp/barge-bench-cluster.XXXXXX)"
rss_mib() { awk '/^VmRSS/ {printf "%.1f", $2/1024}' "/proc/$1/status"; }
# Proportional set size: shared pages (the one binary's code) divided among their users.
pss_mib() { awk '/^Pss:/ {printf "%.1f", $2/1024}' "/proc/$1/smaps_rollup"; }
add() { awk -v a="$1" -v b="$2" 'BEGIN {print a + b}'; }
# free_port, now_ms, percentile, server, node, teardown.
source scripts/lib-cluster.sh
watch_pid=""
# The pod watch of `single`, then the cluster.
stop_all() {
  [[ -n "$watch_pid" ]] && kill "$watch_pid" 2>/dev/null
  watch_pid=""
  teardown
}
trap 'stop_all; rm -rf "$work"' EXIT

# fleet: applies the Deployment (V: its template's env value).
fleet() {
  kubectl apply -f - >/dev/null <<YAML
apiVersion: apps/v1
kind: Deployment
metadata: {name: fleet}
spec:
  replicas: $PODS
  selector: {matchLabels: {app: fleet}}
  template:
    metadata: {labels: {app: fleet}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: main
        image: busybox:1.35
        imagePullPolicy: Never
        command: [sleep, '3600']
        env: [{name: V, value: '${1:-1}'}]
        resources: {requests: {cpu: 1m, memory: 4Mi}}
YAML
}
available() {
  until [[ "$(kubectl get deployment fleet -o 'jsonpath={.status.updatedReplicas} {.status.availableReplicas} {.status.replicas}')" == "$PODS $PODS $PODS" ]]; do
    sleep 0.1
  done
}

single() {
  node single
  local pid="${server_pids[0]}"
  sleep "$IDLE"
  local idle_rss; idle_rss="$(rss_mib "$pid")"
  # Every pod event, stamped on arrival: ms name phase ready.
  mkfifo "$work/watch"
  kubectl get pods -l app=fleet -w -o \
    'jsonpath={.metadata.name} {.status.phase} {.status.conditions[?(@.type=="Ready")].status}{"\n"}' \
    >"$work/watch" 2>/dev/null &
  watch_pid=$!
  while read -r name phase ready; do echo "$(now_ms) $name $phase $ready"; done <"$work/watch" >"$work/events" &
  sleep 1
  local t0; t0=$(now_ms)
  fleet 1
  available
  local up=$(( $(now_ms) - t0 ))
  sleep 1
  awk '!($2 in first) {first[$2]=$1} $3=="Running" && $4=="True" && !($2 in ready) {ready[$2]=$1}
       END {for (p in ready) print ready[p]-first[p]}' "$work/events" >"$work/lat"
  local n p50 p99 mx
  n=$(wc -l <"$work/lat"); p50=$(percentile 0.5 <"$work/lat"); p99=$(percentile 0.99 <"$work/lat")
  mx=$(percentile 1 <"$work/lat")
  sleep "$IDLE"
  local busy_rss; busy_rss="$(rss_mib "$pid")"
  t0=$(now_ms)
  fleet 2
  kubectl rollout status deployment/fleet --timeout=600s >/dev/null
  available
  local roll=$(( $(now_ms) - t0 ))
  printf 'one barge server (SQLite; API, controllers, scheduler, node agent and engine in one process)\n'
  printf '  idle RSS, no pods: %s MiB\n' "$idle_rss"
  printf '  Deployment of %s replicas: all Running and Ready %d.%03d s after apply (%.1f pods/s)\n' \
    "$PODS" $((up / 1000)) $((up % 1000)) "$(awk -v n="$PODS" -v ms="$up" 'BEGIN {print n * 1000 / ms}')"
  printf '  pod start latency (first seen → Running and Ready), %s pods: p50 %s ms, p99 %s ms, max %s ms\n' \
    "$n" "$p50" "$p99" "$mx"
  printf '  RSS with %s pods: %s MiB\n' "$PODS" "$busy_rss"
  printf '  rolling update of %s replicas (25%% surge / 25%% unavailable): %d.%03d s\n' \
    "$PODS" $((roll / 1000)) $((roll % 1000))
  stop_all
}

ha() {
  local cluster="" i n
  declare -a client peer
  for i in 0 1 2; do
    client[$i]="$(free_port)"; peer[$i]="$(free_port)"
    cluster+="${cluster:+,}m$i=http://127.0.0.1:${peer[$i]}"
  done
  mkdir -p "$work/ha"
  for i in 0 1 2; do
    /usr/bin/etcd --name "m$i" --data-dir "$work/ha/etcd$i" \
      --listen-client-urls "http://127.0.0.1:${client[$i]}" --advertise-client-urls "http://127.0.0.1:${client[$i]}" \
      --listen-peer-urls "http://127.0.0.1:${peer[$i]}" --initial-advertise-peer-urls "http://127.0.0.1:${peer[$i]}" \
      --initial-cluster "$cluster" --initial-cluster-state new --initial-cluster-token "$work" \
      --logger zap --log-level error >"$work/ha/etcd$i.log" 2>&1 &
    etcd_pids+=($!)
  done
  local endpoints="http://127.0.0.1:${client[0]},http://127.0.0.1:${client[1]},http://127.0.0.1:${client[2]}"
  for i in 0 1 2; do
    until curl -s "http://127.0.0.1:${client[$i]}/health" | grep -q '"health":"true"'; do sleep 0.1; done
  done
  node ha --datastore-endpoint "$endpoints"
  local token; token="$(cat "$work/ha/s1/server/token")"
  for n in 2 3; do
    server ha "$n" --disable-agent -H "unix://$work/ha/s$n/unused.sock" --datastore-endpoint "$endpoints" \
      --server "https://127.0.0.1:${port[ha1]}" --token "$token"
  done
  local t0; t0=$(now_ms)
  fleet 1
  available
  local up=$(( $(now_ms) - t0 ))
  sleep "$IDLE"
  printf 'three barge servers on a three-member etcd, one node, %s pods\n' "$PODS"
  printf '  Deployment of %s replicas: all available %d.%03d s after apply\n' "$PODS" $((up / 1000)) $((up % 1000))
  local total=0 etcd_total=0 r what
  for n in 1 2 3; do
    r="$(rss_mib "${server_pids[$((n - 1))]}")"; total="$(add "$total" "$r")"
    [[ $n == 1 ]] && what="server + node agent + engine" || what="server (--disable-agent)"
    printf '  server %s RSS: %6s MiB  (%s)\n' "$n" "$r" "$what"
  done
  for i in 0 1 2; do
    r="$(rss_mib "${etcd_pids[$i]}")"; etcd_total="$(add "$etcd_total" "$r")"
    printf '  etcd m%s RSS:   %6s MiB\n' "$i" "$r"
  done
  local mon=0 nmon=0 p
  for p in $(pgrep -f "monitor.*$work" || true); do
    [[ -r /proc/$p/smaps_rollup ]] || continue
    mon="$(add "$mon" "$(pss_mib "$p")")"; nmon=$((nmon + 1))
  done
  printf '  servers: %s MiB in all; with etcd: %s MiB; %s container monitors: %s MiB PSS in all\n' \
    "$total" "$(add "$total" "$etcd_total")" "$nmon" "$mon"
  teardown
}

printf 'barge %s, %s, %s cores\n' "$("$BARGE" --version | awk '{print $3}')" "$(uname -r)" "$(nproc)"
case "$WHAT" in
  single) single ;;
  ha) ha ;;
  both) single; ha ;;
  *) echo "usage: $0 [PODS] [single|ha|both]" >&2; exit 2 ;;
esac
