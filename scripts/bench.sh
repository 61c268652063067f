#!/usr/bin/env bash
# Side-by-side benchmarks: barge vs Docker (dockerd 20.10, Debian's docker.io) vs podman
# (--runtime runc), same image, same machine, one run. Prints medians and ratios.
# Usage: scripts/bench.sh [N]   (N runs per tool, default 20). Needs root. BENCH_PULL=0 skips the
# registry pull part; BENCH_CHURN=K sets the churn part's container count (default 200, 0 skips).
# dockerd and podman run in a private network namespace made here (their bridges, veths and
# iptables rules live and die there); barge runs on the host.
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-20}"
export DEBIAN_FRONTEND=noninteractive
need=()
command -v dockerd >/dev/null || need+=(docker.io)
command -v podman >/dev/null || need+=(podman)
command -v runc >/dev/null || need+=(runc)
command -v nsenter >/dev/null || need+=(util-linux)
if ((${#need[@]})); then apt-get update -qq && apt-get install -y -qq "${need[@]}" >/dev/null; fi
scripts/build.sh --release >/dev/null
BARGE="$PWD/target/release/barge"
IMAGES="${BARGE_IMAGES:-$PWD/../shared/images}"
work="$(mktemp -d /tmp/barge-bench.XXXXXX)"
export BARGE_HOST="unix://$work/barge.sock"
netns="barge-bench-$$"
ip netns add "$netns"
ip -n "$netns" link set lo up
IN_NS="nsenter --net=/run/netns/$netns"
DOCKER="docker -H unix://$work/docker.sock"
PODMAN="$IN_NS podman --root $work/podman --runroot $work/run/podman --runtime runc --cgroup-manager cgroupfs --events-backend file"
cleanup() {
  set +e
  for id in $("$BARGE" ps -aq 2>/dev/null); do "$BARGE" rm -f "$id" >/dev/null 2>&1; done
  [[ -n "${barge_pid:-}" ]] && kill "$barge_pid" && wait "$barge_pid"
  [[ -n "${dockerd_pid:-}" ]] && kill "$dockerd_pid" && wait "$dockerd_pid"
  $PODMAN system reset -f >/dev/null 2>&1
  grep -o " $work[^ ]*" /proc/mounts | sort -r | xargs -r -n1 umount -l 2>/dev/null
  ip netns del "$netns" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
# The daemons' run-time state (--exec-root, podman's --runroot) lives on a tmpfs, as it does
# under /run on a systemd host (their defaults: /var/run/barge, /var/run/docker,
# /run/containers/storage); this VM's /run is on its ext4 root, which has no journal, and there
# each new inode costs 0.1-1 ms (ext4 skips the inodes deleted in the last minute).
mkdir "$work/run"
mount -t tmpfs -o mode=0700 barge-bench-run "$work/run"

"$BARGE" daemon --data-root "$work/barge" --exec-root "$work/run/barge" -H "$BARGE_HOST" >"$work/barge.log" 2>&1 &
barge_pid=$!
# Default networking (docker0 + iptables), confined to the private namespace.
$IN_NS dockerd --host "unix://$work/docker.sock" --data-root "$work/docker" --exec-root "$work/run/docker" \
  --pidfile "$work/docker.pid" \
  --containerd-namespace barge-bench --containerd-plugins-namespace barge-bench-plugins >"$work/dockerd.log" 2>&1 &
dockerd_pid=$!
for _ in $(seq 200); do [[ -S "$work/barge.sock" && -S "$work/docker.sock" ]] && break; sleep 0.1; done

"$BARGE" load -i "$IMAGES/oci-layout" >/dev/null
"$BARGE" save -o "$work/busybox.tar" busybox:1.35
"$BARGE" save -o "$work/multilayer.tar" multilayer:1
$DOCKER load -i "$work/busybox.tar" >/dev/null
$PODMAN load -i "$work/busybox.tar" >/dev/null 2>&1

sleep 2
barge_rss=$(ps -o rss= -p "$barge_pid")
# Where barge's RSS is: anonymous (heap, stacks, relocated data) vs file-backed (code pages).
barge_anon=$(awk '/^Anonymous:/ {print $2}' "/proc/$barge_pid/smaps_rollup")
dockerd_rss=$(ps -o rss= -p "$dockerd_pid")
containerd_rss=$(ps -o rss= -C containerd | awk '{s+=$1} END {print s+0}')

python3 - "$N" "$BARGE" "$DOCKER" "$PODMAN" "$work" "$barge_rss" "$dockerd_rss" "$containerd_rss" "$barge_anon" <<'PY'
import shlex, statistics, subprocess, sys, time
n, barge, docker, podman, work = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
barge_rss, dockerd_rss, containerd_rss, barge_anon = (int(x) for x in sys.argv[6:10])

def timeit(cmd, runs, setup=None):
    times = []
    for _ in range(runs):
        if setup:
            subprocess.run(setup, shell=True, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        t = time.perf_counter()
        subprocess.run(cmd, shell=True, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - t)
    return statistics.median(times), min(times)

rows = []
img = "busybox:1.35"
# podman stores unqualified docker-archive names under localhost/; --pull=never keeps it off
# the network; this sandbox refuses podman's default (raised) nofile/nproc rlimits.
prun = f"{podman} run --pull=never --ulimit nofile=1024:1024 --ulimit nproc=1024:1024 --rm"
# The tools' runs alternate (barge, docker, podman, barge, ...) so that they meet the same
# host: this VM's CPU speed drifts by a third from minute to minute (a pure-CPU loop of
# Python took 241 ms, then 350 ms), and timing one tool's N runs after the other's put the
# drift into the ratio.
def timeit_interleaved(named_cmds, runs):
    for _, cmd in named_cmds:  # warm-up
        subprocess.run(cmd, shell=True, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    times = {name: [] for name, _ in named_cmds}
    for _ in range(runs):
        for name, cmd in named_cmds:
            t = time.perf_counter()
            subprocess.run(cmd, shell=True, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            times[name].append(time.perf_counter() - t)
    return [(name, statistics.median(times[name]), min(times[name])) for name, _ in named_cmds]

rows += timeit_interleaved([
    ("barge run --rm (none)", f"{barge} run --rm --network none {img} true"),
    ("barge run --rm (runc via --runtime)", f"{barge} run --rm --runtime runc --network none {img} true"),
    ("docker run --rm --network none", f"{docker} run --rm --network none {img} true"),
    ("podman --runtime runc run --rm --network none", f"{prun} --network none localhost/{img} true"),
], n)
rows += timeit_interleaved([
    ("barge run --rm (default bridge)", f"{barge} run --rm {img} true"),
    ("docker run --rm (default bridge)", f"{docker} run --rm {img} true"),
    ("podman --runtime runc run --rm (default net)", f"{prun} localhost/{img} true"),
], n)

print(f"## run --rm {img} true  (N={n}, median / min, seconds)")
base = {r[0]: r[1] for r in rows}
for name, med, mn in rows:
    print(f"{name:50s} {med:8.3f} {mn:8.3f}")
b = base["barge run --rm (none)"]
print(f"ratio barge/docker = {b / base['docker run --rm --network none']:.3f}  (target <= 0.125)")
print(f"ratio barge/podman = {b / base['podman --runtime runc run --rm --network none']:.3f}  (target <= 0.33)")
b = base["barge run --rm (default bridge)"]
print(f"bridge: ratio barge/docker = {b / base['docker run --rm (default bridge)']:.3f}  (target <= 0.25)")
print(f"bridge: ratio barge/podman = {b / base['podman --runtime runc run --rm (default net)']:.3f}  (target <= 0.33)")

# Container churn: what a node's pod starts look like. CHURN runs of `run --rm true` on the
# default network, 8 at a time; containers/s (higher is better).
from concurrent.futures import ThreadPoolExecutor
churn = int(__import__("os").environ.get("BENCH_CHURN", "200"))
def churn_rate(cmd):
    def one(_):
        subprocess.run(cmd, shell=True, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t = time.perf_counter()
    with ThreadPoolExecutor(8) as ex:
        list(ex.map(one, range(churn)))
    return churn / (time.perf_counter() - t)
if churn:
    print(f"\n## churn: {churn} x run --rm {img} true, concurrency 8 (containers/s)")
    rates = {}
    for name, cmd in [
        ("barge", f"{barge} run --rm {img} true"),
        ("docker", f"{docker} run --rm {img} true"),
        ("podman --runtime runc", f"{prun} localhost/{img} true"),
    ]:
        rates[name] = churn_rate(cmd)
        print(f"{name:50s} {rates[name]:8.1f}")
    print(f"ratio barge/docker = {rates['barge'] / rates['docker']:.2f}x  barge/podman = {rates['barge'] / rates['podman --runtime runc']:.2f}x")

print(f"\n## load multilayer:1 archive (N={max(3, n // 4)}, median / min, seconds)")
k = max(3, n // 4)
lb = timeit(f"{barge} load -i {work}/multilayer.tar", k, setup=f"{barge} rmi -f multilayer:1 >/dev/null 2>&1; {barge} image prune -af >/dev/null 2>&1 || true")
ld = timeit(f"{docker} load -i {work}/multilayer.tar", k, setup=f"{docker} rmi -f multilayer:1 >/dev/null 2>&1 || true")
print(f"{'barge load':50s} {lb[0]:8.3f} {lb[1]:8.3f}")
print(f"{'docker load':50s} {ld[0]:8.3f} {ld[1]:8.3f}")
print(f"ratio barge/docker = {lb[0] / ld[0]:.3f}")

print("\n## idle daemon RSS (MiB)")
print(f"barge daemon     {barge_rss / 1024:8.1f}   (target <= 12; anonymous {barge_anon / 1024:.1f}, file-backed {(barge_rss - barge_anon) / 1024:.1f})")
print(f"dockerd          {dockerd_rss / 1024:8.1f}")
print(f"containerd       {containerd_rss / 1024:8.1f}")
PY

# Registry pull: barge vs docker pull vs podman pull vs skopeo copy (its own registry and daemons).
[[ "${BENCH_PULL:-1}" == 0 ]] && exit 0
scripts/bench-pull.sh "$(( N / 4 > 3 ? N / 4 : 3 ))" "$BARGE"
