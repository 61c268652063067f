#!/usr/bin/env bash
# The highly available control plane's footprint (issue 13 "Performance"): three `barge server`s
# on a three-member etcd (Debian's etcd-server, loopback ports), the first one also its node's
# agent and engine (as every k3s server is), the other two `--disable-agent` joined with
# `--server` + the token. A Deployment of PODS busybox pods (default 100) runs on the node.
# Printed: the time until all are available, then, after IDLE seconds (default 20) of steady
# state, each process's RSS (VmRSS) — servers, etcd members — and the per-container monitors'.
# Peers: k3s's published minimum for a server with embedded etcd and a workload, 1606 MB
# (docs.k3s.io/reference/resource-profiling, v1.26.5), and ≈ 700-800 MB per HA server reported
# by users (k3s-io/k3s#7336).
# Usage: scripts/bench-ha.sh [PODS]   BARGE=<binary> (default target/release/barge, built unless
# BENCH_NO_BUILD=1), IDLE=<seconds>. Loopback and a private bridge only; everything is removed.
set -euo pipefail
cd "$(dirname "$0")/.."
PODS="${1:-100}"
IDLE="${IDLE:-20}"
if [[ -z "${BARGE:-}" ]]; then
  [[ "${BENCH_NO_BUILD:-0}" == 1 ]] || scripts/build.sh --release >/dev/null
  BARGE="$PWD/target/release/barge"
fi
IMAGES="${BARGE_IMAGES:-$PWD/../shared/images}"
work="$(mktemp -d /tmp/barge-bench-ha.XXXXXX)"
sock="$work/barge.sock"
export KUBECONFIG="$work/s1/kubeconfig.yaml"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
rss_mib() { awk '/^VmRSS/ {printf "%.1f", $2/1024}' "/proc/$1/status"; }
add() { awk -v a="$1" -v b="$2" 'BEGIN {print a + b}'; }
b() { "$BARGE" -H "unix://$sock" "$@"; }
etcd_pids=() server_pids=()

cleanup() {
  set +e
  if [[ ${#server_pids[@]} -gt 0 ]]; then
    kubectl delete deployment --all --wait=false >/dev/null 2>&1
    kubectl delete pods --all --grace-period=0 --force --wait=false >/dev/null 2>&1
    for _ in $(seq 300); do [[ -z "$(b ps -aq 2>/dev/null)" ]] && break; sleep 0.2; done
    for p in "${server_pids[@]}"; do kill "$p" 2>/dev/null; done
    for p in "${server_pids[@]}"; do wait "$p" 2>/dev/null; done
  fi
  for p in "${etcd_pids[@]}"; do kill -9 "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
  for id in $(ls "$work/s1/data/containers" 2>/dev/null); do
    for cg in /sys/fs/cgroup/memory/barge /sys/fs/cgroup/pids/barge /sys/fs/cgroup/barge; do
      xargs -r kill -9 <"$cg/$id/cgroup.procs" 2>/dev/null
    done
  done
  grep -o " $work[^ ]*" /proc/mounts | sort -r | xargs -r -n1 umount -l 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

# Three etcd members.
cluster="" ; declare -a client peer
for i in 0 1 2; do
  client[$i]="$(free_port)"; peer[$i]="$(free_port)"
  cluster+="${cluster:+,}m$i=http://127.0.0.1:${peer[$i]}"
done
for i in 0 1 2; do
  /usr/bin/etcd --name "m$i" --data-dir "$work/etcd$i" \
    --listen-client-urls "http://127.0.0.1:${client[$i]}" --advertise-client-urls "http://127.0.0.1:${client[$i]}" \
    --listen-peer-urls "http://127.0.0.1:${peer[$i]}" --initial-advertise-peer-urls "http://127.0.0.1:${peer[$i]}" \
    --initial-cluster "$cluster" --initial-cluster-state new --initial-cluster-token "$work" \
    --logger zap --log-level error >"$work/etcd$i.log" 2>&1 &
  etcd_pids+=($!)
done
endpoints="http://127.0.0.1:${client[0]},http://127.0.0.1:${client[1]},http://127.0.0.1:${client[2]}"
for i in 0 1 2; do
  until curl -s "http://127.0.0.1:${client[$i]}/health" | grep -q '"health":"true"'; do sleep 0.1; done
done

# start N ARGS…: server N on its own port and data dir; waits for /readyz.
declare -a port
start() {
  local n="$1"; shift
  port[$n]="$(free_port)"
  mkdir -p "$work/s$n"
  "$BARGE" server --data-dir "$work/s$n/server" --write-kubeconfig "$work/s$n/kubeconfig.yaml" \
    --bind-address 127.0.0.1 --https-listen-port "${port[$n]}" --datastore-endpoint "$endpoints" "$@" \
    >"$work/s$n/server.log" 2>&1 &
  server_pids+=($!)
  until [[ "$(curl -sk --max-time 1 "https://127.0.0.1:${port[$n]}/readyz" 2>/dev/null)" == ok ]]; do
    kill -0 "${server_pids[-1]}" 2>/dev/null || { cat "$work/s$n/server.log" >&2; exit 1; }
    sleep 0.05
  done
}
start 1 --data-root "$work/s1/data" --exec-root "$work/s1/run" -H "unix://$sock" \
  --bridge bbha0 --bip 10.234.0.1/24 --cluster-cidr 10.235.0.0/16 --service-cidr 10.236.0.0/16 \
  --node-name ha-node --kubelet-port "$(free_port)" --ingress-http-port 0 --ingress-https-port 0
token="$(cat "$work/s1/server/token")"
for n in 2 3; do
  start "$n" --disable-agent -H "unix://$work/s$n/unused.sock" --server "https://127.0.0.1:${port[1]}" --token "$token"
done
until [[ "$(kubectl get node ha-node -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" == True ]]; do
  sleep 0.5
done
b load -i "$IMAGES/oci-layout" >/dev/null

t0=$(date +%s%N)
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
        resources: {requests: {cpu: 1m, memory: 4Mi}}
YAML
until [[ "$(kubectl get deployment fleet -o 'jsonpath={.status.availableReplicas}')" == "$PODS" ]]; do sleep 0.5; done
up_ms=$(( ($(date +%s%N) - t0) / 1000000 ))
sleep "$IDLE"

printf 'three barge servers on a three-member etcd, one node, %s pods (%s, %s)\n' "$PODS" "$("$BARGE" --version 2>/dev/null | head -1)" "$(uname -r)"
printf '  Deployment of %s pods applied → all available: %d.%03d s\n' "$PODS" $((up_ms / 1000)) $((up_ms % 1000))
total=0
for n in 1 2 3; do
  r="$(rss_mib "${server_pids[$((n - 1))]}")"; total="$(add "$total" "$r")"
  [[ $n == 1 ]] && what="server + node agent + engine" || what="server (--disable-agent)"
  printf '  server %s RSS: %6s MiB  (%s)\n' "$n" "$r" "$what"
done
etcd_total=0
for i in 0 1 2; do
  r="$(rss_mib "${etcd_pids[$i]}")"; etcd_total="$(add "$etcd_total" "$r")"
  printf '  etcd m%s RSS:   %6s MiB\n' "$i" "$r"
done
mon=0 nmon=0
for p in $(pgrep -f "monitor.*$work" || true); do
  [[ -r /proc/$p/status ]] || continue
  mon="$(add "$mon" "$(rss_mib "$p")")"; nmon=$((nmon + 1))
done
printf '  servers total: %s MiB; with etcd: %s MiB; %s container monitors: %s MiB in all\n' \
  "$total" "$(add "$total" "$etcd_total")" "$nmon" "$mon"
