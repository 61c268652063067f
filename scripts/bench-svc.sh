#!/usr/bin/env bash
# The cluster's Service data path (issue 12 "Performance"), side by side in one run, on one
# `barge server` (its node's agent and engine in the same process; loopback, a private bridge
# and private subnets only):
# 1. HTTP through a ClusterIP vs straight to the pod IP: a one-replica Deployment of busybox
#    httpd serving a 2.7 kB file (from a ConfigMap), a ClusterIP Service in front; `ab` run in
#    two client pods' network namespaces (`nsenter --net`), the same requests at the same
#    concurrency from one to the pod IP and from the other to the ClusterIP, rounds alternating
#    (ABBA); req/s, p50, p99 (ab's percentiles, `-e`) and the ratio. busybox httpd closes every
#    connection, so each request is a new connection: each goes through the Service's DNAT
#    (its nftables chains and a new conntrack entry), the Service's worst case. Target:
#    overhead ≤ 10 %.
# 2. DNS: queries/s, p50, p99 for `web.default.svc.cluster.local` asked from the client pod
#    (its resolv.conf's nameserver: the kube-dns Service IP, DNATed to the agent's in-process
#    cluster DNS) vs the engine's embedded DNS (127.0.0.11) asked for another container's name
#    from a container on a `barge network create` network. A dnsperf-like loop (Python,
#    standard library: one UDP socket, INFLIGHT queries outstanding, every query timed), run in
#    each namespace with `nsenter --net`; rounds alternating. Also the cluster DNS asked at its
#    listen address (the pod network's gateway) from the pod, without the Service's DNAT, and
#    from the node (no bridge or veth crossed: the engine's server is asked on loopback).
# Usage: scripts/bench-svc.sh [ROUNDS] [http|dns|both]   (defaults 6, both). BARGE=<binary>
# (default target/release/barge, built unless BENCH_NO_BUILD=1), REQUESTS (default 10000) and
# CONCURRENCY (8) for ab, QUERIES (20000) and INFLIGHT (4) for DNS. Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS="${1:-6}"
WHAT="${2:-both}"
REQUESTS="${REQUESTS:-10000}"
CONCURRENCY="${CONCURRENCY:-8}"
QUERIES="${QUERIES:-20000}"
INFLIGHT="${INFLIGHT:-4}"
case "$WHAT" in http|dns|both) ;; *) echo "usage: $0 [ROUNDS] [http|dns|both]" >&2; exit 2 ;; esac
export DEBIAN_FRONTEND=noninteractive
need=()
command -v ab >/dev/null || need+=(apache2-utils)
command -v nsenter >/dev/null || need+=(util-linux)
if ((${#need[@]})); then apt-get update -qq && apt-get install -y -qq "${need[@]}" >/dev/null; fi
if [[ -z "${BARGE:-}" ]]; then
  [[ "${BENCH_NO_BUILD:-0}" == 1 ]] || scripts/build.sh --release >/dev/null
  BARGE="$PWD/target/release/barge"
fi
IMAGES="${BARGE_IMAGES:-$PWD/../shared/images}"
work="$(mktemp -d /tmp/barge-bench-svc.XXXXXX)"
# A bridge and subnets of this script's own (not the demo's 10.231-233, not bench-cluster's).
CLUSTER_BRIDGE=bbsv0 CLUSTER_BIP=10.244.0.1/24 CLUSTER_CIDR=10.245.0.0/16 CLUSTER_SERVICE_CIDR=10.246.0.0/16
ENGINE_SUBNET=10.247.0.0/24
# free_port, now_ms, percentile, server, node, teardown.
source scripts/lib-cluster.sh
engine() { "$BARGE" -H "unix://$sock" "$@"; }

# The engine's containers and network (teardown waits for the engine to have no container),
# then the cluster, then whatever kernel state a killed run could leave: the bridges, the
# server's nftables tables.
stop_all() {
  set +e
  if [[ -n "$sock" && -S "$sock" ]]; then
    engine rm -f bsv-a bsv-b >/dev/null 2>&1
    engine network rm bsv-net >/dev/null 2>&1
  fi
  teardown
  # Only what holds this run's subnets (10.244-247), left by a server that died: bridges, and
  # barge's tables (the engine's `barge-<hash>` and its `-proxy`/`-netpol` siblings).
  local l t base
  for l in $(ip -o link show | awk -F': ' '{print $2}' | sed 's/@.*//' | grep -E "^($CLUSTER_BRIDGE|br-)"); do
    [[ "$(ip -o addr show dev "$l" 2>/dev/null)" =~ \ 10\.24[4-7]\. ]] && ip link del "$l" 2>/dev/null
  done
  for t in $(nft list tables ip 2>/dev/null | awk '$3 ~ /^barge-/ {print $3}'); do
    [[ "$(nft list table ip "$t" 2>/dev/null)" =~ 10\.24[4-7]\. ]] || continue
    base="${t%-proxy}"; base="${base%-netpol}"
    for l in "$base" "$base-proxy" "$base-netpol"; do nft delete table ip "$l" 2>/dev/null; done
  done
  true
}
trap 'stop_all; rm -rf "$work"' EXIT

# The dnsperf-like loop: python3 dnsq.py SERVER NAME QUERIES INFLIGHT [EXPECTED_IPV4] prints one
# JSON line (answered, lost, errors, qps, p50/p99 in ms).
cat >"$work/dnsq.py" <<'PY'
import json, socket, struct, sys, time
server, name, n, inflight = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
expected = socket.inet_aton(sys.argv[5]) if len(sys.argv) > 5 else None
qname = b"".join(bytes([len(l)]) + l.encode() for l in name.rstrip(".").split(".")) + b"\0"
tail = qname + struct.pack(">HH", 1, 1)  # A, IN
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.connect((server, 53))
s.settimeout(1.0)
perf = time.perf_counter
sent, lat = {}, []
issued = lost = errors = 0
t0 = perf()
while len(lat) + lost + errors < n:
    while len(sent) < inflight and issued < n:
        qid = issued & 0xFFFF
        s.send(struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0) + tail)  # RD
        sent[qid] = perf()
        issued += 1
    try:
        data = s.recv(4096)
    except socket.timeout:
        lost += len(sent)
        sent.clear()
        continue
    now = perf()
    qid, flags, _, ancount = struct.unpack(">HHHH", data[:8])
    t = sent.pop(qid, None)
    if t is None:
        continue
    if flags & 0xF or ancount == 0 or (expected and data[-4:] != expected):
        errors += 1
    else:
        lat.append(now - t)
elapsed = perf() - t0
lat.sort()
q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] * 1000 if lat else float("nan")
print(json.dumps({"answered": len(lat), "lost": lost, "errors": errors,
                  "qps": len(lat) / elapsed, "p50": q(0.5), "p99": q(0.99)}))
PY

# One ab round: URL in NETNS → JSON line (rps, p50, p99 in ms, failed).
ab_round() {
  local netns="$1" url="$2"
  nsenter --net="$netns" ab -q -n "$REQUESTS" -c "$CONCURRENCY" -e "$work/ab.csv" "$url" >"$work/ab.out" 2>&1 || {
    cat "$work/ab.out" >&2; return 1; }
  python3 - "$work/ab.out" "$work/ab.csv" <<'PY'
import csv, json, re, sys
out = open(sys.argv[1]).read()
rows = {int(r[0]): float(r[1]) for r in list(csv.reader(open(sys.argv[2])))[1:]}
rps = float(re.search(r"Requests per second:\s+([\d.]+)", out).group(1))
failed = int(re.search(r"Failed requests:\s+(\d+)", out).group(1))
non2xx = re.search(r"Non-2xx responses:\s+(\d+)", out)
print(json.dumps({"rps": rps, "p50": rows[50], "p99": rows[99],
                  "failed": failed + (int(non2xx.group(1)) if non2xx else 0)}))
PY
}

# summary http|dns FILE…: the medians over the rounds in each FILE (JSON lines), the first
# FILE compared with the last.
summary() {
  python3 - "$@" <<'PY'
import json, statistics, sys
kind, files = sys.argv[1], sys.argv[2:]
med, rows_of = {}, {}
for f in files:
    rows = rows_of[f] = [json.loads(l) for l in open(f)]
    m = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
    m["n"] = len(rows)
    m["all"] = " ".join(f"{r['rps' if kind == 'http' else 'qps']:.0f}" for r in rows)
    med[f] = m
a, b = med[files[0]], med[files[-1]]
# The ratio within each round (ClusterIP/pod IP, cluster/engine: measured minutes apart at
# most), then their median: robust to load drift.
key = "rps" if kind == "http" else "qps"
pairs = list(zip(rows_of[files[0]], rows_of[files[-1]]))
paired = statistics.median((y[key] / x[key]) if kind == "http" else (x[key] / y[key]) for x, y in pairs)
if kind == "http":
    for label, m in (("pod IP", a), ("ClusterIP", b)):
        print(f"  {label:10s} {m['rps']:9.0f} req/s   p50 {m['p50']:6.2f} ms   p99 {m['p99']:6.2f} ms   failed {m['failed']:.0f}   (median of {m['n']}: {m['all']})")
    print(f"  ClusterIP/pod IP: req/s x{b['rps'] / a['rps']:.3f} of the medians, x{paired:.3f} median of the round pairs "
          f"(overhead {100 * (1 - paired):.1f} %, target <= 10 %), p50 x{b['p50'] / a['p50']:.2f}, p99 x{b['p99'] / a['p99']:.2f}")
else:
    labels = ("cluster DNS (kube-dns IP)", "cluster DNS (gateway, no DNAT)", "cluster DNS from the node", "engine DNS (127.0.0.11)")
    for label, f in zip(labels, files):
        m = med[f]
        print(f"  {label:31s} {m['qps']:8.0f} q/s   p50 {m['p50']:6.3f} ms   p99 {m['p99']:6.3f} ms   lost {m['lost']:.0f}   errors {m['errors']:.0f}   (median of {m['n']}: {m['all']})")
    print(f"  cluster/engine: q/s x{a['qps'] / b['qps']:.2f} of the medians, x{paired:.2f} median of the round pairs, p50 x{a['p50'] / b['p50']:.2f}, p99 x{a['p99'] / b['p99']:.2f}")
PY
}

setup() {
  node svc
  head -c 2048 /dev/urandom | base64 >"$work/index.html"
  kubectl create configmap www --from-file=index.html="$work/index.html" >/dev/null
  kubectl apply -f - >/dev/null <<'YAML'
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: httpd
        image: busybox:1.35
        imagePullPolicy: Never
        command: [busybox, httpd, -f, -p, '8080', -h, /www]
        ports: [{containerPort: 8080, name: http}]
        readinessProbe: {tcpSocket: {port: 8080}, periodSeconds: 1}
        volumeMounts: [{name: www, mountPath: /www}]
      volumes: [{name: www, configMap: {name: www}}]
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: http}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: client}
spec:
  replicas: 2
  selector: {matchLabels: {app: client}}
  template:
    metadata: {labels: {app: client}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - {name: main, image: busybox:1.35, imagePullPolicy: Never, command: [sleep, '3600']}
YAML
  kubectl rollout status deployment/web --timeout=180s >/dev/null
  kubectl rollout status deployment/client --timeout=180s >/dev/null
  pod_ip="$(kubectl get pods -l app=web -o 'jsonpath={.items[0].status.podIP}')"
  cluster_ip="$(kubectl get service web -o 'jsonpath={.spec.clusterIP}')"
  # Two client pods: one asks the pod IP, the other the ClusterIP. With one, a connection
  # through the ClusterIP can reuse the 4-tuple (after DNAT) of a direct one the backend still
  # holds in TIME_WAIT, with TCP timestamps from another offset (the kernel derives it from
  # the addresses): PAWS drops the SYN and the client retries after 1 s.
  local pids=() cid
  for cid in $(engine ps -q --filter label=io.kubernetes.pod.namespace=default --filter label=io.kubernetes.container.name=main); do
    pids+=("$(engine inspect -f '{{.State.Pid}}' "$cid")")
  done
  client_ns="/proc/${pids[0]}/ns/net" client2_ns="/proc/${pids[1]}/ns/net"
  dns_ip="$(awk '$1 == "nameserver" {print $2; exit}' "/proc/${pids[0]}/root/etc/resolv.conf")"
  # The Service's rules are in once a request through it succeeds (bounded).
  for _ in $(seq 300); do
    nsenter --net="$client2_ns" curl -sf --max-time 1 -o /dev/null "http://$cluster_ip/index.html" && break
    sleep 0.2
  done
  nsenter --net="$client2_ns" curl -sf --max-time 2 -o /dev/null "http://$cluster_ip/index.html"
}

http_bench() {
  local pod_url="http://$pod_ip:8080/index.html" svc_url="http://$cluster_ip/index.html" i
  printf '\n## HTTP from two client pods: pod IP %s vs ClusterIP %s (ab -n %s -c %s, a new connection per request, busybox httpd, %s rounds ABBA)\n' \
    "$pod_ip" "$cluster_ip" "$REQUESTS" "$CONCURRENCY" "$ROUNDS"
  ab_round "$client_ns" "$pod_url" >/dev/null   # warm-up
  ab_round "$client2_ns" "$svc_url" >/dev/null
  : >"$work/http-pod" ; : >"$work/http-svc"
  for i in $(seq "$ROUNDS"); do
    if ((i % 2)); then
      ab_round "$client_ns" "$pod_url" >>"$work/http-pod"; ab_round "$client2_ns" "$svc_url" >>"$work/http-svc"
    else
      ab_round "$client2_ns" "$svc_url" >>"$work/http-svc"; ab_round "$client_ns" "$pod_url" >>"$work/http-pod"
    fi
  done
  summary http "$work/http-pod" "$work/http-svc"
}

dns_bench() {
  local name=web.default.svc.cluster.local
  engine network create --subnet "$ENGINE_SUBNET" bsv-net >/dev/null
  engine run -d --name bsv-a --network bsv-net busybox:1.35 sleep 3600 >/dev/null
  engine run -d --name bsv-b --network bsv-net busybox:1.35 sleep 3600 >/dev/null
  local a_ip b_ns
  a_ip="$(engine inspect bsv-a | python3 -c 'import json, sys; print(json.load(sys.stdin)[0]["NetworkSettings"]["Networks"]["bsv-net"]["IPAddress"])')"
  b_ns="/proc/$(engine inspect -f '{{.State.Pid}}' bsv-b)/ns/net"
  local cluster=(nsenter --net="$client_ns" python3 "$work/dnsq.py" "$dns_ip" "$name")
  # The same server without the Service's DNAT: its listen address, the pod network's gateway.
  local gw; gw="$(nsenter --net="$client_ns" ip -4 route show default | awk '{print $3; exit}')"
  local direct=(nsenter --net="$client_ns" python3 "$work/dnsq.py" "$gw" "$name")
  # And from the node itself (the host's namespace: a local address, no bridge or veth crossed,
  # as the engine's server is asked on the container's loopback).
  local node_side=(python3 "$work/dnsq.py" "$gw" "$name")
  local eng=(nsenter --net="$b_ns" python3 "$work/dnsq.py" 127.0.0.11 bsv-a)
  printf '\n## DNS: %s from the client pod (at %s, the kube-dns Service) vs bsv-a from a container on a user-defined network (127.0.0.11); %s queries, %s in flight, %s rounds ABBA\n' \
    "$name" "$dns_ip" "$QUERIES" "$INFLIGHT" "$ROUNDS"
  "${cluster[@]}" 2000 "$INFLIGHT" "$cluster_ip" >/dev/null   # warm-up, and both answer right
  "${eng[@]}" 2000 "$INFLIGHT" "$a_ip" >/dev/null
  local order=(cluster direct node engine) what
  for what in "${order[@]}"; do : >"$work/dns-$what"; done
  for i in $(seq "$ROUNDS"); do
    if ((i % 2)); then order=(cluster direct node engine); else order=(engine node direct cluster); fi
    for what in "${order[@]}"; do
      case "$what" in
        cluster) "${cluster[@]}" "$QUERIES" "$INFLIGHT" "$cluster_ip" ;;
        direct) "${direct[@]}" "$QUERIES" "$INFLIGHT" "$cluster_ip" ;;
        node) "${node_side[@]}" "$QUERIES" "$INFLIGHT" "$cluster_ip" ;;
        engine) "${eng[@]}" "$QUERIES" "$INFLIGHT" "$a_ip" ;;
      esac >>"$work/dns-$what"
    done
  done
  summary dns "$work/dns-cluster" "$work/dns-direct" "$work/dns-node" "$work/dns-engine"
}

printf 'barge %s, %s, %s cores, load average %s\n' "$("$BARGE" --version | awk '{print $3}')" "$(uname -r)" "$(nproc)" \
  "$(awk '{print $1, $2, $3}' /proc/loadavg)"
setup
case "$WHAT" in
  http) http_bench ;;
  dns) dns_bench ;;
  both) http_bench; dns_bench ;;
esac
printf '\nload average at the end: %s\n' "$(awk '{print $1, $2, $3}' /proc/loadavg)"
