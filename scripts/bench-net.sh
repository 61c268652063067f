#!/usr/bin/env bash
# Networking benchmark, side by side in one run: requests per second through a published port
# on 127.0.0.1 (ab, same image and app: busybox httpd serving a 2.7 kB file) — barge's kernel
# DNAT vs Docker's published port (dockerd 20.10, Debian's docker.io, defaults: docker0,
# iptables, docker-proxy on loopback) vs podman's (--runtime runc, netavark). dockerd and podman
# run in a private network namespace the script makes (their bridges and iptables rules vanish
# with it), and their `ab` runs there too; barge runs in the host namespace. `run --rm` on each
# default network is measured by scripts/bench.sh.
# Usage: scripts/bench-net.sh [BARGE_BINARY]   Needs root. Loopback traffic only.
set -euo pipefail
cd "$(dirname "$0")/.."
BARGE="${1:-}"
export DEBIAN_FRONTEND=noninteractive
need=()
command -v dockerd >/dev/null || need+=(docker.io)
command -v podman >/dev/null || need+=(podman)
command -v runc >/dev/null || need+=(runc)
command -v ab >/dev/null || need+=(apache2-utils)
command -v nsenter >/dev/null || need+=(util-linux)
if ((${#need[@]})); then apt-get update -qq && apt-get install -y -qq "${need[@]}" >/dev/null; fi
if [[ -z "$BARGE" ]]; then
  scripts/build.sh --release >/dev/null
  BARGE="$PWD/target/release/barge"
fi
IMAGES="${BARGE_IMAGES:-$PWD/../shared/images}"
work="$(mktemp -d /tmp/barge-bnet.XXXXXX)"
export BARGE_HOST="unix://$work/barge.sock"
netns="barge-bnet-$$"
ip netns add "$netns"
ip -n "$netns" link set lo up
IN_NS="nsenter --net=/run/netns/$netns"
DOCKER="docker -H unix://$work/docker.sock"
PODMAN="$IN_NS podman --root $work/podman --runroot $work/podman-run --runtime runc --cgroup-manager cgroupfs --events-backend file"
cleanup() {
  set +e
  for id in $("$BARGE" ps -aq 2>/dev/null); do "$BARGE" rm -f "$id" >/dev/null 2>&1; done
  for id in $($DOCKER ps -aq 2>/dev/null); do $DOCKER rm -f "$id" >/dev/null 2>&1; done
  $PODMAN rm -af >/dev/null 2>&1
  [[ -n "${barge_pid:-}" ]] && kill "$barge_pid" && wait "$barge_pid"
  [[ -n "${dockerd_pid:-}" ]] && kill "$dockerd_pid" && wait "$dockerd_pid"
  $PODMAN system reset -f >/dev/null 2>&1
  grep -o " $work[^ ]*" /proc/mounts | sort -r | xargs -r -n1 umount -l 2>/dev/null
  ip netns del "$netns" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

"$BARGE" daemon --data-root "$work/barge" --exec-root "$work/barge-run" -H "$BARGE_HOST" >"$work/barge.log" 2>&1 &
barge_pid=$!
$IN_NS dockerd --host "unix://$work/docker.sock" --data-root "$work/docker" --exec-root "$work/docker-run" \
  --pidfile "$work/docker.pid" \
  --containerd-namespace barge-bench --containerd-plugins-namespace barge-bench-plugins >"$work/dockerd.log" 2>&1 &
dockerd_pid=$!
for _ in $(seq 200); do [[ -S "$work/barge.sock" && -S "$work/docker.sock" ]] && break; sleep 0.1; done

"$BARGE" load -i "$IMAGES/oci-layout" >/dev/null
"$BARGE" save -o "$work/busybox.tar" busybox:1.35
$DOCKER load -i "$work/busybox.tar" >/dev/null
$PODMAN load -i "$work/busybox.tar" >/dev/null 2>&1
head -c 2048 /dev/urandom | base64 >"$work/index.html"

python3 - "$BARGE" "$DOCKER" "$PODMAN" "$work" "$IN_NS" <<'PY'
import re, statistics, subprocess, sys, time
barge, docker, podman, work, in_ns = sys.argv[1:6]
q = dict(shell=True, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
pod = f"{podman} run --pull=never --ulimit nofile=1024:1024 --ulimit nproc=1024:1024"

img = "busybox:1.35"

def rps(port, ns=""):
    out = subprocess.run(f"{ns} ab -q -k -n 4000 -c 8 http://127.0.0.1:{port}/index.html",
                         shell=True, capture_output=True, text=True, check=True).stdout
    return float(re.search(r"Requests per second:\s+([\d.]+)", out).group(1))

serve = f"-v {work}/index.html:/www/index.html:ro {img} busybox httpd -f -p 8080 -h /www"
subprocess.run(f"{barge} run -d --name web -p 18181:8080 {serve}", **q)
subprocess.run(f"{docker} run -d --name web -p 18182:8080 {serve}", **q)
subprocess.run(f"{pod} -d --name web -p 18183:8080 -v {work}/index.html:/www/index.html:ro localhost/{img} busybox httpd -f -p 8080 -h /www", **q)
time.sleep(1)
targets = [("barge -p (kernel DNAT)", 18181, ""), ("docker -p (default, docker-proxy on loopback)", 18182, in_ns), ("podman -p", 18183, in_ns)]
vals = {name: [] for name, _, _ in targets}
for name, port, ns in targets:
    rps(port, ns)  # warm-up
for _ in range(5):  # rounds interleave the tools, so load drift hits all of them alike
    for name, port, ns in targets:
        vals[name].append(rps(port, ns))
results = [(name, statistics.median(vals[name])) for name, _, _ in targets]
print(f"\n## requests/s through a published port on 127.0.0.1 (ab -k -n 4000 -c 8, busybox httpd, median of 5)")
for name, v in results:
    print(f"{name:50s} {v:10.0f}")
print(f"ratio barge/docker = {results[0][1] / results[1][1]:.2f}  (target >= 1)")
print(f"ratio barge/podman = {results[0][1] / results[2][1]:.2f}")
PY
