#!/usr/bin/env bash
# Compose benchmark (issue 14), side by side in one run: `up -d`, a no-change `up -d` and `down`
# of a 10-service project with dependencies and of one service scaled to 100
# (`--scale web=100`), with
#   - barge compose on barge,
#   - Debian's docker-compose 1.29 (apt `docker-compose`) on Debian's dockerd 20.10,
#   - barge compose on that dockerd.
# Prints medians / minimums (seconds) and the ratios the issue sets targets for.
# Usage: scripts/bench-compose.sh [N]   (N runs per case, default 3). Needs root.
# BARGE_BIN=path uses that barge instead of building target/release/barge.
# dockerd runs in a private network namespace made here with its own data-root (as
# scripts/bench.sh); barge runs on the host.
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-3}"
export DEBIAN_FRONTEND=noninteractive
need=()
command -v dockerd >/dev/null || need+=(docker.io)
command -v docker-compose >/dev/null || need+=(docker-compose)
command -v nsenter >/dev/null || need+=(util-linux)
if ((${#need[@]})); then apt-get update -qq && apt-get install -y -qq "${need[@]}" >/dev/null; fi
if [[ -n "${BARGE_BIN:-}" ]]; then
  BARGE="$BARGE_BIN"
else
  scripts/build.sh --release >/dev/null
  BARGE="$PWD/target/release/barge"
fi
IMAGES="${BARGE_IMAGES:-$PWD/../shared/images}"
work="$(mktemp -d /tmp/barge-bench-compose.XXXXXX)"
barge_host="unix://$work/barge.sock"
docker_host="unix://$work/docker.sock"
netns="barge-bench-compose-$$"
ip netns add "$netns"
ip -n "$netns" link set lo up
IN_NS="nsenter --net=/run/netns/$netns"
cleanup() {
  set +e
  for p in c10 c100; do
    BARGE_HOST="$barge_host" "$BARGE" compose -p "$p" -f "$work/$p.yaml" down -t 0 >/dev/null 2>&1
    DOCKER_HOST="$docker_host" docker-compose -p "$p" -f "$work/$p.yaml" down -t 0 >/dev/null 2>&1
  done
  [[ -n "${barge_pid:-}" ]] && kill "$barge_pid" && wait "$barge_pid"
  [[ -n "${dockerd_pid:-}" ]] && kill "$dockerd_pid" && wait "$dockerd_pid"
  grep -o " $work[^ ]*" /proc/mounts | sort -r | xargs -r -n1 umount -l 2>/dev/null
  ip netns del "$netns" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

"$BARGE" daemon --data-root "$work/barge" --exec-root "$work/barge-run" -H "$barge_host" >"$work/barge.log" 2>&1 &
barge_pid=$!
$IN_NS dockerd --host "$docker_host" --data-root "$work/docker" --exec-root "$work/docker-run" \
  --pidfile "$work/docker.pid" \
  --containerd-namespace barge-bench-compose --containerd-plugins-namespace barge-bench-compose-plugins \
  >"$work/dockerd.log" 2>&1 &
dockerd_pid=$!
for _ in $(seq 300); do [[ -S "$work/barge.sock" && -S "$work/docker.sock" ]] && break; sleep 0.1; done
sleep 1
BARGE_HOST="$barge_host" "$BARGE" load -i "$IMAGES/oci-layout" >/dev/null
BARGE_HOST="$barge_host" "$BARGE" save -o "$work/busybox.tar" busybox:1.35
docker -H "$docker_host" load -i "$work/busybox.tar" >/dev/null

# 10 services: a database, a cache, 4 APIs on both, 3 workers on the APIs, a front on all APIs.
python3 - "$work" <<'PY'
import sys
work = sys.argv[1]
svc = lambda deps: ("    image: busybox:1.35\n    command: [\"sleep\", \"100000\"]\n    init: true\n"
                    "    stop_grace_period: 1s\n" + (f"    depends_on: [{', '.join(deps)}]\n" if deps else ""))
deps = {"db": [], "cache": []}
for i in range(1, 5):
    deps[f"api{i}"] = ["db", "cache"]
for i in range(1, 4):
    deps[f"worker{i}"] = [f"api{i}", f"api{i + 1}"]
deps["front"] = [f"api{i}" for i in range(1, 5)]
assert len(deps) == 10
with open(f"{work}/c10.yaml", "w") as f:
    f.write("services:\n" + "".join(f"  {n}:\n{svc(d)}" for n, d in deps.items()))
with open(f"{work}/c100.yaml", "w") as f:
    f.write("services:\n  web:\n" + svc([]))
PY

python3 - "$N" "$BARGE" "$work" "$barge_host" "$docker_host" <<'PY'
import os, statistics, subprocess, sys, time
n, barge, work, barge_host, docker_host = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
tools = {
    "barge compose on barge": (f"{barge} compose", {"BARGE_HOST": barge_host}),
    "docker-compose 1.29 on dockerd": ("docker-compose", {"DOCKER_HOST": docker_host}),
    "barge compose on dockerd": (f"{barge} compose", {"BARGE_HOST": docker_host}),
}

def run(tool, project, args):
    cmd, env = tools[tool]
    full = f"{cmd} -p {project} -f {work}/{project}.yaml {args}"
    t = time.perf_counter()
    r = subprocess.run(full, shell=True, env={**os.environ, **env},
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if r.returncode and args.startswith("down") and "has active endpoints" in r.stderr:
        # dockerd 20.10's race: the network still counts endpoints of containers it just
        # removed. A user runs `down` again; so does the benchmark, and counts both.
        r = subprocess.run(full, shell=True, env={**os.environ, **env},
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if r.returncode:
        sys.exit(f"{tool}: {full} failed ({r.returncode}):\n{r.stderr}")
    return time.perf_counter() - t

def stat(xs):
    return f"{statistics.median(xs):7.3f} / {min(xs):7.3f}"

results = {}
for project, up in [("c10", "up -d"), ("c100", "up -d --scale web=100")]:
    print(f"\n## {project}: {'10 services with dependencies' if project == 'c10' else 'one service, --scale web=100'} (N={n}, median / min, seconds)")
    print(f"{'':34s} {'up -d':>17s} {'no-change up -d':>17s} {'down':>17s}")
    for tool in tools:
        ups, again, downs = [], [], []
        for _ in range(n):
            ups.append(run(tool, project, up))
            again.append(run(tool, project, up))
            downs.append(run(tool, project, "down -t 1"))
        results[(project, tool)] = (statistics.median(ups), statistics.median(again), statistics.median(downs))
        print(f"{tool:34s} {stat(ups)} {stat(again)} {stat(downs)}")

b = results[("c10", "barge compose on barge")]
d = results[("c10", "docker-compose 1.29 on dockerd")]
print(f"\nc10 up -d: barge / docker-compose = {b[0] / d[0]:.3f} (target <= 0.25); down: {b[2] / d[2]:.3f}")
print(f"c100 up -d on barge: {results[('c100', 'barge compose on barge')][0]:.3f} s (target <= 5)")
print(f"no-change up -d on barge: c10 {b[1] * 1000:.0f} ms, c100 {results[('c100', 'barge compose on barge')][1] * 1000:.0f} ms (target <= 100 ms)")
PY
