#!/usr/bin/env bash
# The README's first command: build barge, start its daemon, load the shared OCI layout,
# run multilayer:1 (a small model-serving HTTP app) with --network host and query it; then run it
# on a private network with its port published and reach it from the host and, by name, from
# another container; clean up. Then the model-serving platform on barge's cluster
# (scripts/demo-cluster.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh --release
BARGE="$PWD/target/release/barge"
IMAGES="${BARGE_IMAGES:-$PWD/../shared/images}"
work="$(mktemp -d /tmp/barge-demo.XXXXXX)"
sock="$work/barge.sock"
export BARGE_HOST="unix://$sock"
cleanup() {
  "$BARGE" rm -f demo demo-net-app >/dev/null 2>&1 || true
  "$BARGE" network rm demo-net >/dev/null 2>&1 || true
  [[ -n "${daemon_pid:-}" ]] && kill "$daemon_pid" 2>/dev/null && wait "$daemon_pid" 2>/dev/null || true
  grep -o " $work[^ ]*" /proc/mounts | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

echo "== starting barge daemon (data root $work/data)"
"$BARGE" daemon --data-root "$work/data" --exec-root "$work/run" -H "unix://$sock" >"$work/daemon.log" 2>&1 &
daemon_pid=$!
for _ in $(seq 100); do [[ -S "$sock" ]] && break; sleep 0.05; done

echo "== barge load -i $IMAGES/oci-layout"
"$BARGE" load -i "$IMAGES/oci-layout"
"$BARGE" images

echo "== barge run -d --init --name demo --network host multilayer:1"
"$BARGE" run -d --init --name demo --network host multilayer:1
for _ in $(seq 100); do curl -fsS http://127.0.0.1:8080/ >/dev/null 2>&1 && break; sleep 0.1; done

echo "== GET /"
curl -fsS http://127.0.0.1:8080/; echo
echo "== POST / {\"features\":[1,0,1]}"
curl -fsS -X POST -H 'Content-Type: application/json' -d '{"features":[1,0,1]}' http://127.0.0.1:8080/; echo

echo "== barge network create demo-net; barge run -d --name demo-net-app --network demo-net -p 18080:8080 multilayer:1"
"$BARGE" network create demo-net
"$BARGE" run -d --init --name demo-net-app --network demo-net -p 18080:8080 multilayer:1
for _ in $(seq 100); do curl -fsS http://127.0.0.1:18080/ >/dev/null 2>&1 && break; sleep 0.1; done
echo "== GET http://127.0.0.1:18080/ (published port)"
curl -fsS http://127.0.0.1:18080/; echo
echo "== a client container on demo-net reaches it by name: wget http://demo-net-app:8080/"
"$BARGE" run --rm --network demo-net busybox:1.35 busybox wget -qO- http://demo-net-app:8080/; echo

echo "== barge ps; barge port demo-net-app"
"$BARGE" ps
"$BARGE" port demo-net-app
echo "== barge logs demo"
"$BARGE" logs demo
echo "== barge stop demo"
time "$BARGE" stop demo
echo "demo OK"

# The model-serving platform on barge's cluster: build, Deployment, Service, Ingress, HPA,
# scale-up under load, zero-failure rollout and rollback.
BARGE="$BARGE" BARGE_IMAGES="$IMAGES" scripts/demo-cluster.sh
