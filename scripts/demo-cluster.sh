#!/usr/bin/env bash
# The model-serving platform on barge's cluster (the README's first command ends with it; the
# test suite runs it too, crates/barge/tests/e2e_model_serving.rs, with a shorter load):
# 1. `barge server` on this machine: API server, scheduler, controllers, node agent, Ingress
#    controller, and the node's engine;
# 2. `barge build` the app of ../shared/images/src (multilayer.Dockerfile) as model:1, and as
#    model:2 with a changed model.json;
# 3. a Deployment (3 replicas, readiness probe on GET /, requests/limits), a Service, an Ingress
#    for model.localhost and a HorizontalPodAutoscaler (cpu 50 %, 1-10 replicas);
# 4. a bounded load loop through the Ingress scales it up; it scales back down once the load
#    stops (sync period and stabilization window shortened for the demo);
# 5. the same load with nothing changing gives the steady-state latency; model:2 rolls out under
#    that load with zero failed requests (its p99 printed against the steady state's);
#    `kubectl rollout undo` goes back, again with zero failed requests.
# Every step prints its timing. Env: BARGE (the binary; default target/release/barge),
# BARGE_IMAGES, LOAD_SECONDS (the scale-up load, default 40), LOAD_WORKERS (default 4),
# STEADY_SECONDS (the steady-state load before the rollout, default 10).
set -euo pipefail
cd "$(dirname "$0")/.."
BARGE="${BARGE:-$PWD/target/release/barge}"
IMAGES="${BARGE_IMAGES:-$PWD/../shared/images}"
LOAD_SECONDS="${LOAD_SECONDS:-40}"
LOAD_WORKERS="${LOAD_WORKERS:-4}"
STEADY_SECONDS="${STEADY_SECONDS:-10}"
LOADGEN="$PWD/scripts/loadgen.py"
PYTHON=/usr/bin/python3  # Debian's (scripts/install-deps.sh)
work="$(mktemp -d /tmp/barge-cluster-demo.XXXXXX)"
sock="$work/barge.sock"
free_port() { "$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
api_port="$(free_port)"; ingress_port="$(free_port)"; kubelet_port="$(free_port)"
export KUBECONFIG="$work/kubeconfig.yaml"
url="http://127.0.0.1:$ingress_port/"
t0=$(date +%s%N)
# Seconds since the start, one decimal.
elapsed() { local ms=$((($(date +%s%N) - t0) / 1000000)); printf '%d.%d' $((ms / 1000)) $((ms % 1000 / 100)); }
step() { printf '\n== [%6ss] %s\n' "$(elapsed)" "$*"; }
b() { "$BARGE" -H "unix://$sock" "$@"; }

cleanup() {
  local rc=$?
  set +e
  # Load generators still running (a step failed under load) would outlive the script and
  # hold its output open: they go first.
  for p in ${load_pid:-} ${rollout_load_pid:-}; do kill "$p" 2>/dev/null; done
  if ((rc != 0)) && [[ -n "${server_pid:-}" ]]; then
    # What a failed run needs to be understood from CI's log alone.
    echo "--- demo failed (exit $rc): the cluster's state" >&2
    kubectl get deployments,replicasets,pods,hpa,endpointslices -o wide >&2
    kubectl get events --sort-by=.lastTimestamp 2>/dev/null | tail -40 >&2
    echo "--- the server's log (warnings and errors, last 60)" >&2
    grep -aE 'WARN|ERROR' "$work/server.log" | tail -60 >&2
  fi
  if [[ -n "${server_pid:-}" ]]; then
    kubectl delete hpa,ingress,service,deployment --all --wait=false >/dev/null 2>&1
    kubectl delete pods --all -A --grace-period=0 --force --wait=false >/dev/null 2>&1
    for _ in $(seq 100); do [[ -z "$(b ps -aq 2>/dev/null)" ]] && break; sleep 0.2; done
    kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
  fi
  for id in $(ls "$work/data/containers" 2>/dev/null); do
    for cg in /sys/fs/cgroup/memory/barge /sys/fs/cgroup/pids/barge /sys/fs/cgroup/barge; do
      xargs -r kill -9 <"$cg/$id/cgroup.procs" 2>/dev/null
    done
  done
  grep -o " $work[^ ]*" /proc/mounts | sort -r | xargs -r -n1 umount -l 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

# Polls `kubectl get $1 -o jsonpath=$2` until it satisfies the bash test in $3 ($v is the value)
# or $4 seconds pass.
wait_for() {
  local what="$1" path="$2" cond="$3" secs="$4" v=""
  local end=$((SECONDS + secs))
  while ((SECONDS < end)); do
    v="$(kubectl get $what -o "jsonpath=$path" 2>/dev/null || true)"
    if eval "$cond"; then echo "$v"; return 0; fi
    sleep 1
  done
  echo "timed out after ${secs}s waiting for $what $path ($cond), last: '$v'" >&2
  kubectl get all,hpa,ingress -o wide >&2 || true
  return 1
}
# Replicas the HPA wants and the Deployment has, every few seconds, until $1 is true.
watch_scale() {
  local cond="$1" secs="$2" d r
  local end=$((SECONDS + secs))
  while ((SECONDS < end)); do
    d="$(kubectl get hpa model -o 'jsonpath={.status.desiredReplicas}' 2>/dev/null || true)"
    r="$(kubectl get deployment model -o 'jsonpath={.status.readyReplicas}' 2>/dev/null || true)"
    printf '   %6ss  hpa: %-18s desired=%s ready=%s\n' "$(elapsed)" \
      "$(kubectl get hpa model --no-headers 2>/dev/null | awk '{print $3,$4}')" "${d:-?}" "${r:-0}"
    if eval "$cond"; then return 0; fi
    sleep 3
  done
  echo "timed out after ${secs}s waiting for: $cond" >&2
  kubectl describe hpa model >&2 || true
  return 1
}

step "barge server (API :$api_port, Ingress :$ingress_port, data $work)"
"$BARGE" server --data-dir "$work/server" --bind-address 127.0.0.1 --https-listen-port "$api_port" \
  --write-kubeconfig "$KUBECONFIG" --data-root "$work/data" --exec-root "$work/run" -H "unix://$sock" \
  --bridge bargedemo0 --bip 10.231.0.1/24 --cluster-cidr 10.232.0.0/16 --service-cidr 10.233.0.0/16 \
  --node-name demo-node --kubelet-port "$kubelet_port" \
  --ingress-http-port "$ingress_port" --ingress-https-port 0 \
  --horizontal-pod-autoscaler-sync-period 3s --horizontal-pod-autoscaler-downscale-stabilization 15s \
  >"$work/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 200); do curl -sk "https://127.0.0.1:$api_port/readyz" 2>/dev/null | grep -q ok && break; sleep 0.05; done
wait_for "node demo-node" '{.status.conditions[?(@.type=="Ready")].status}' '[[ $v == True ]]' 60 >/dev/null
kubectl get nodes

step "barge load -i $IMAGES/oci-layout (the base image debian-python:bookworm)"
b load -i "$IMAGES/oci-layout" >/dev/null
step "barge build -t model:1 -f $IMAGES/src/multilayer.Dockerfile $IMAGES/src"
b build -q -t model:1 -f "$IMAGES/src/multilayer.Dockerfile" "$IMAGES/src"
step "barge build -t model:2 (the same app, a new model.json)"
mkdir -p "$work/src2"
cp "$IMAGES/src/app.py" "$IMAGES/src/multilayer.Dockerfile" "$work/src2/"
sed 's/demo-linear-v1/demo-linear-v2/; s/"bias": -0.1/"bias": 0.2/' "$IMAGES/src/model.json" >"$work/src2/model.json"
b build -q -t model:2 -f "$work/src2/multilayer.Dockerfile" "$work/src2"

step "kubectl apply: Deployment model (3 replicas), Service, Ingress model.localhost, HPA (cpu 50%, 1-10)"
kubectl apply -f - <<'YAML'
apiVersion: apps/v1
kind: Deployment
metadata: {name: model, labels: {app: model}}
spec:
  replicas: 3
  selector: {matchLabels: {app: model}}
  strategy: {type: RollingUpdate, rollingUpdate: {maxSurge: 1, maxUnavailable: 0}}
  template:
    metadata: {labels: {app: model}}
    spec:
      terminationGracePeriodSeconds: 5
      containers:
      - name: model
        image: model:1
        imagePullPolicy: Never
        ports: [{name: http, containerPort: 8080}]
        readinessProbe: {httpGet: {path: /, port: http}, periodSeconds: 1, failureThreshold: 1}
        resources:
          requests: {cpu: 50m, memory: 32Mi}
          limits: {cpu: 500m, memory: 128Mi}
---
apiVersion: v1
kind: Service
metadata: {name: model}
spec:
  selector: {app: model}
  ports: [{name: http, port: 80, targetPort: http}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: model}
spec:
  rules:
  - host: model.localhost
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: model, port: {number: 80}}}}
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: model}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: model}
  minReplicas: 1
  maxReplicas: 10
  metrics:
  - type: Resource
    resource: {name: cpu, target: {type: Utilization, averageUtilization: 50}}
  behavior:
    scaleDown:
      stabilizationWindowSeconds: 15
      policies: [{type: Percent, value: 100, periodSeconds: 5}]
YAML
kubectl rollout status deployment/model --timeout=180s
kubectl get pods -o wide
step "GET http://model.localhost/ through the Ingress"
for _ in $(seq 100); do curl -fsS -H 'Host: model.localhost' "$url" >/dev/null 2>&1 && break; sleep 0.2; done
curl -fsS -H 'Host: model.localhost' "$url"; echo
curl -fsS -H 'Host: model.localhost' -H 'Content-Type: application/json' -d '{"features":[1,0,1]}' "$url"; echo

step "idle: the HPA scales the Deployment down to its minimum (1)"
watch_scale '[[ ${r:-0} == 1 && ${d:-0} == 1 ]]' 120

step "load: $LOAD_WORKERS clients for ${LOAD_SECONDS}s through the Ingress; the HPA scales up"
"$PYTHON" "$LOADGEN" "$url" model.localhost "$LOAD_SECONDS" "$LOAD_WORKERS" "$work/stop-load" >"$work/load1.json" &
load_pid=$!
load_start=$SECONDS
watch_scale '[[ ${d:-0} -gt 1 && ${r:-0} -gt 1 ]]' "$((LOAD_SECONDS + 30))"
echo "   first scale-up $((SECONDS - load_start))s after the load started"
touch "$work/stop-load"; wait "$load_pid"
echo "   load: $(cat "$work/load1.json")"
rm -f "$work/stop-load"

step "load stopped: the HPA scales back down to 1"
watch_scale '[[ ${d:-0} == 1 && ${r:-0} == 1 ]]' 150

# A rollout under load: the client must see no failed request.
rollout_under_load() {
  local name="$1"; shift
  "$PYTHON" "$LOADGEN" "$url" model.localhost 600 "$LOAD_WORKERS" "$work/stop-load" >"$work/$name.json" &
  local pid=$!
  rollout_load_pid=$pid
  sleep 2
  "$@"
  kubectl rollout status deployment/model --timeout=180s
  # Until the old pods are gone (their grace period), the load keeps running.
  wait_for "pods -l app=model" '{.items[*].metadata.deletionTimestamp}' '[[ -z $v ]]' 60 >/dev/null
  sleep 2
  touch "$work/stop-load"; wait "$pid"; rm -f "$work/stop-load"
  echo "   load during the rollout: $(cat "$work/$name.json")"
  "$PYTHON" -c 'import json,sys; r=json.load(open(sys.argv[1])); sys.exit(0 if r["failures"]==0 and r["requests"]>0 else 1)' "$work/$name.json" \
    || { echo "FAILED requests during $name" >&2; exit 1; }
}

step "steady state: the same load for ${STEADY_SECONDS}s with nothing changing (the rollout's baseline)"
"$PYTHON" "$LOADGEN" "$url" model.localhost "$STEADY_SECONDS" "$LOAD_WORKERS" >"$work/steady.json"
echo "   load at steady state: $(cat "$work/steady.json")"

step "kubectl set image deployment/model model=model:2 (under load)"
rollout_under_load rollout kubectl set image deployment/model model=model:2
"$PYTHON" -c 'import json,sys; s,r=(json.load(open(p)) for p in sys.argv[1:]); print("   p99 during the rollout %s ms vs %s ms at steady state (%.2fx)" % (r["p99_ms"], s["p99_ms"], r["p99_ms"] / max(s["p99_ms"], 0.1)))' \
  "$work/steady.json" "$work/rollout.json"
curl -fsS -H 'Host: model.localhost' "$url"; echo
kubectl rollout history deployment/model

step "kubectl rollout undo deployment/model (under load)"
rollout_under_load undo kubectl rollout undo deployment/model
curl -fsS -H 'Host: model.localhost' "$url"; echo

step "done"
kubectl get deployment,rs,hpa,ingress,svc
echo "cluster demo OK"
