# Shared by the cluster benchmarks (scripts/bench-cluster.sh, scripts/bench-svc.sh): sourced,
# not run. Starts `barge server`s on loopback, each with its own port and data dir, the first
# one also the node (its engine on a private bridge and subnets), and tears everything down
# again: the pods, the servers and etcd members, leftover container processes and mounts.
# The caller sets before sourcing: BARGE (the binary), IMAGES (the OCI layout's folder), work
# (a fresh temporary folder); and may set, for `node`: CLUSTER_BRIDGE, CLUSTER_BIP,
# CLUSTER_CIDR, CLUSTER_SERVICE_CIDR (defaults: bbcl0, 10.234.0.1/24, 10.235.0.0/16,
# 10.236.0.0/16). After `node`: sock (the engine's socket) and KUBECONFIG are set.
# The caller installs the trap: `trap 'teardown; rm -rf "$work"' EXIT` (or its own function
# that calls `teardown`).

CLUSTER_BRIDGE="${CLUSTER_BRIDGE:-bbcl0}"
CLUSTER_BIP="${CLUSTER_BIP:-10.234.0.1/24}"
CLUSTER_CIDR="${CLUSTER_CIDR:-10.235.0.0/16}"
CLUSTER_SERVICE_CIDR="${CLUSTER_SERVICE_CIDR:-10.236.0.0/16}"
etcd_pids=() server_pids=() sock=""
declare -A port

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
# percentile Q: the Q-quantile (0..1, nearest rank) of the numbers on stdin, one per line.
percentile() { sort -n | awk -v q="$1" '{a[NR]=$1} END {i=int(q*NR+0.999); if (i<1) i=1; print a[i]}'; }

# Removes the pods (their containers stop with them), then every process and mount of the run.
# Safe to call twice and on a half-started run.
teardown() {
  set +e
  if [[ ${#server_pids[@]} -gt 0 ]]; then
    kubectl delete deployment --all --wait=false >/dev/null 2>&1
    kubectl delete pods --all --grace-period=0 --force --wait=false >/dev/null 2>&1
    for _ in $(seq 300); do [[ -z "$("$BARGE" -H "unix://$sock" ps -aq 2>/dev/null)" ]] && break; sleep 0.2; done
    for p in "${server_pids[@]}"; do kill "$p" 2>/dev/null; done
    for p in "${server_pids[@]}"; do wait "$p" 2>/dev/null; done
  fi
  for p in "${etcd_pids[@]}"; do kill -9 "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
  server_pids=() etcd_pids=()
  for d in "$work"/*/s1/data/containers; do
    for id in $(ls "$d" 2>/dev/null); do
      for cg in /sys/fs/cgroup/memory/barge /sys/fs/cgroup/pids/barge /sys/fs/cgroup/barge; do
        [[ -r "$cg/$id/cgroup.procs" ]] && xargs -r kill -9 <"$cg/$id/cgroup.procs" 2>/dev/null
      done
    done
  done
  grep -o " $work[^ ]*" /proc/mounts | sort -r | xargs -r -n1 umount -l 2>/dev/null
  true
}

# server RUN N ARGS…: server N of run RUN on its own port and data dir; waits for /readyz.
server() {
  local run="$1" n="$2"; shift 2
  local dir="$work/$run/s$n"
  port[$run$n]="$(free_port)"
  mkdir -p "$dir"
  "$BARGE" server --data-dir "$dir/server" --write-kubeconfig "$dir/kubeconfig.yaml" \
    --bind-address 127.0.0.1 --https-listen-port "${port[$run$n]}" "$@" >"$dir/server.log" 2>&1 &
  server_pids+=($!)
  until [[ "$(curl -sk --max-time 1 "https://127.0.0.1:${port[$run$n]}/readyz" 2>/dev/null)" == ok ]]; do
    kill -0 "${server_pids[-1]}" 2>/dev/null || { cat "$dir/server.log" >&2; exit 1; }
    sleep 0.02
  done
}

# node RUN ARGS…: server 1 of RUN, also its node `bench-node` (engine on $sock, bridge
# $CLUSTER_BRIDGE); waits for the Node to be Ready and loads the images.
node() {
  local run="$1"; shift
  sock="$work/$run/s1/barge.sock"
  server "$run" 1 --data-root "$work/$run/s1/data" --exec-root "$work/$run/s1/run" -H "unix://$sock" \
    --bridge "$CLUSTER_BRIDGE" --bip "$CLUSTER_BIP" --cluster-cidr "$CLUSTER_CIDR" \
    --service-cidr "$CLUSTER_SERVICE_CIDR" \
    --node-name bench-node --kubelet-port "$(free_port)" --ingress-http-port 0 --ingress-https-port 0 "$@"
  export KUBECONFIG="$work/$run/s1/kubeconfig.yaml"
  until [[ "$(kubectl get node bench-node -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" == True ]]; do
    sleep 0.2
  done
  "$BARGE" -H "unix://$sock" load -i "$IMAGES/oci-layout" >/dev/null
}
