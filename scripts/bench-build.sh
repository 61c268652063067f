#!/usr/bin/env bash
# Build benchmark: the multilayer Dockerfile (../shared/images/src) side by side, cold
# (--no-cache) and no-change rebuild: barge build vs docker build (dockerd 20.10, legacy
# builder) vs podman --runtime runc build. Prints medians and ratios. Needs root.
# Usage: scripts/bench-build.sh [N]   (N runs per row, default 3)
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-3}"
BARGE="${BARGE:-$PWD/target/release/barge}"
IMAGES="${BARGE_IMAGES:-$PWD/../shared/images}"
export DEBIAN_FRONTEND=noninteractive
need=()
command -v dockerd >/dev/null || need+=(docker.io)
command -v podman >/dev/null || need+=(podman)
if ((${#need[@]})); then apt-get update -qq && apt-get install -y -qq "${need[@]}" >/dev/null; fi
[[ -x "$BARGE" ]] || scripts/build.sh --release >/dev/null
work="$(mktemp -d /tmp/barge-bench-build.XXXXXX)"
export BARGE_HOST="unix://$work/barge.sock"
DOCKER="docker -H unix://$work/docker.sock"
PODMAN="podman --root $work/podman --runroot $work/podman-run --runtime runc --cgroup-manager cgroupfs --events-backend file"
cleanup() {
  set +e
  [[ -n "${barge_pid:-}" ]] && kill "$barge_pid" && wait "$barge_pid"
  [[ -n "${dockerd_pid:-}" ]] && kill "$dockerd_pid" && wait "$dockerd_pid"
  $PODMAN system reset -f >/dev/null 2>&1
  grep -o " $work[^ ]*" /proc/mounts | sort -r | xargs -r -n1 umount -l 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
cp -r "$IMAGES/src" "$work/ctx"
"$BARGE" daemon --data-root "$work/barge" --exec-root "$work/barge-run" -H "$BARGE_HOST" >"$work/barge.log" 2>&1 &
barge_pid=$!
dockerd --host "unix://$work/docker.sock" --data-root "$work/docker" --exec-root "$work/docker-run" \
  --pidfile "$work/docker.pid" --bridge none --iptables=false --ip-masq=false \
  --containerd-namespace barge-bench-build --containerd-plugins-namespace barge-bench-build-plugins >"$work/dockerd.log" 2>&1 &
dockerd_pid=$!
for _ in $(seq 200); do [[ -S "$work/barge.sock" && -S "$work/docker.sock" ]] && break; sleep 0.1; done
"$BARGE" load -i "$IMAGES/oci-layout" >/dev/null
"$BARGE" save -o "$work/base.tar" debian-python:bookworm
$DOCKER load -i "$work/base.tar" >/dev/null
$PODMAN load -i "$work/base.tar" >/dev/null 2>&1
# Qualify the base for podman so short-name resolution finds it locally (never a registry).
$PODMAN tag localhost/debian-python:bookworm docker.io/library/debian-python:bookworm

python3 - "$N" "$BARGE" "$DOCKER" "$PODMAN" "$work/ctx" <<'PY'
import statistics, subprocess, sys, time
n, barge, docker, podman, ctx = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
df = f"{ctx}/multilayer.Dockerfile"
tools = {
    "barge build": f"{barge} build -q -f {df} -t bench:1",
    "docker build (legacy)": f"DOCKER_BUILDKIT=0 {docker} build -q -f {df} -t bench:1",
    "podman build": f"{podman} build -q --pull=never --ulimit nofile=1024:1024 --ulimit nproc=1024:1024 --network none -f {df} -t bench:1",
}
def timeit(cmd):
    t = time.perf_counter()
    subprocess.run(cmd + f" {ctx}", shell=True, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t
res = {}
for name, cmd in tools.items():
    nocache = " --no-cache" if "podman" not in name else " --no-cache"
    cold = [timeit(cmd + nocache) for _ in range(n)]
    timeit(cmd)
    warm = [timeit(cmd) for _ in range(n)]
    res[name] = (statistics.median(cold), statistics.median(warm))
print(f"## build multilayer.Dockerfile (N={n}, medians, seconds)")
print(f"{'':28s} {'cold':>8s} {'no-change':>10s}")
for name, (c, w) in res.items():
    print(f"{name:28s} {c:8.3f} {w:10.3f}")
b, d = res["barge build"], res["docker build (legacy)"]
print(f"cold barge/docker = {b[0] / d[0]:.3f} (target <= 0.5); no-change rebuild barge = {b[1]:.3f} s (target <= 0.1)")
PY
