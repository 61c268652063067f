#!/usr/bin/env bash
# Networking benchmarks, side by side in one run: barge vs Docker (dockerd 20.10, Debian's
# docker.io, default bridge with iptables) vs podman (--runtime runc, default network).
#  1. `run --rm busybox:1.35 true` on each tool's default bridge network;
#  2. requests per second through a published port on 127.0.0.1 (ab, same image and app:
#     busybox httpd serving a small file), barge's kernel DNAT vs docker's published port
#     (docker-proxy on loopback, its default) vs podman's.
# Usage: scripts/bench-net.sh [N] [BARGE_BINARY]   (N runs per tool, default 20). Needs root.
# Everything it starts talks over loopback only; it removes what it created (dockerd's
# iptables tables only if they did not exist before).
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-20}"
BARGE="${2:-}"
export DEBIAN_FRONTEND=noninteractive
need=()
command -v dockerd >/dev/null || need+=(docker.io)
command -v podman >/dev/null || need+=(podman)
command -v runc >/dev/null || need+=(runc)
command -v ab >/dev/null || need+=(apache2-utils)
if ((${#need[@]})); then apt-get update -qq && apt-get install -y -qq "${need[@]}" >/dev/null; fi
if [[ -z "$BARGE" ]]; then
  scripts/build.sh --release >/dev/null
  BARGE="$PWD/target/release/barge"
fi
IMAGES="${BARGE_IMAGES:-$PWD/../shared/images}"
work="$(mktemp -d /tmp/barge-bnet.XXXXXX)"
export BARGE_HOST="unix://$work/barge.sock"
DOCKER="docker -H unix://$work/docker.sock"
PODMAN="podman --root $work/podman --runroot $work/podman-run --runtime runc --cgroup-manager cgroupfs --events-backend file"
tables_before="$(nft list tables)"
cleanup() {
  set +e
  for id in $("$BARGE" ps -aq 2>/dev/null); do "$BARGE" rm -f "$id" >/dev/null 2>&1; done
  for id in $($DOCKER ps -aq 2>/dev/null); do $DOCKER rm -f "$id" >/dev/null 2>&1; done
  $PODMAN rm -af >/dev/null 2>&1
  [[ -n "${barge_pid:-}" ]] && kill "$barge_pid" && wait "$barge_pid"
  [[ -n "${dockerd_pid:-}" ]] && kill "$dockerd_pid" && wait "$dockerd_pid"
  $PODMAN system reset -f >/dev/null 2>&1
  ip link del docker0 2>/dev/null
  ip link del podman0 2>/dev/null
  # dockerd leaves its iptables chains behind; drop the tables it created.
  for t in "ip nat" "ip filter" "ip6 nat" "ip6 filter"; do
    if ! grep -qx "table $t" <<<"$tables_before" && nft list table $t >/dev/null 2>&1; then
      nft delete table $t
    fi
  done
  grep -o " $work[^ ]*" /proc/mounts | sort -r | xargs -r -n1 umount -l 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

"$BARGE" daemon --data-root "$work/barge" --exec-root "$work/barge-run" -H "$BARGE_HOST" >"$work/barge.log" 2>&1 &
barge_pid=$!
dockerd --host "unix://$work/docker.sock" --data-root "$work/docker" --exec-root "$work/docker-run" \
  --pidfile "$work/docker.pid" \
  --containerd-namespace barge-bench --containerd-plugins-namespace barge-bench-plugins >"$work/dockerd.log" 2>&1 &
dockerd_pid=$!
for _ in $(seq 200); do [[ -S "$work/barge.sock" && -S "$work/docker.sock" ]] && break; sleep 0.1; done

"$BARGE" load -i "$IMAGES/oci-layout" >/dev/null
"$BARGE" save -o "$work/busybox.tar" busybox:1.35
$DOCKER load -i "$work/busybox.tar" >/dev/null
$PODMAN load -i "$work/busybox.tar" >/dev/null 2>&1
head -c 2048 /dev/urandom | base64 >"$work/index.html"

python3 - "$N" "$BARGE" "$DOCKER" "$PODMAN" "$work" <<'PY'
import re, statistics, subprocess, sys, time
n, barge, docker, podman, work = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
q = dict(shell=True, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
pod = f"{podman} run --pull=never --ulimit nofile=1024:1024 --ulimit nproc=1024:1024"

def timeit(cmd, runs):
    subprocess.run(cmd, **q)  # warm-up
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run(cmd, **q)
        times.append(time.perf_counter() - t)
    return statistics.median(times), min(times)

img = "busybox:1.35"
rows = [
    ("barge run --rm (default bridge)", timeit(f"{barge} run --rm {img} true", n)),
    ("docker run --rm (default bridge)", timeit(f"{docker} run --rm {img} true", n)),
    ("podman --runtime runc run --rm (default network)", timeit(f"{pod} --rm localhost/{img} true", n)),
]
print(f"## run --rm {img} true on the default network (N={n}, median / min, seconds)")
for name, (med, mn) in rows:
    print(f"{name:50s} {med:8.3f} {mn:8.3f}")
b, d, p = rows[0][1][0], rows[1][1][0], rows[2][1][0]
print(f"ratio barge/docker = {b / d:.3f}  (target <= 0.25)")
print(f"ratio barge/podman = {b / p:.3f}")

def rps(port):
    out = subprocess.run(f"ab -q -k -n 4000 -c 8 http://127.0.0.1:{port}/index.html",
                         shell=True, capture_output=True, text=True, check=True).stdout
    return float(re.search(r"Requests per second:\s+([\d.]+)", out).group(1))

serve = f"-v {work}/index.html:/www/index.html:ro {img} busybox httpd -f -p 8080 -h /www"
subprocess.run(f"{barge} run -d --name web -p 18181:8080 {serve}", **q)
subprocess.run(f"{docker} run -d --name web -p 18182:8080 {serve}", **q)
subprocess.run(f"{pod} -d --name web -p 18183:8080 -v {work}/index.html:/www/index.html:ro localhost/{img} busybox httpd -f -p 8080 -h /www", **q)
time.sleep(1)
results = []
for name, port in [("barge -p (kernel DNAT)", 18181), ("docker -p (default, docker-proxy on loopback)", 18182), ("podman -p", 18183)]:
    rps(port)  # warm-up
    vals = [rps(port) for _ in range(3)]
    results.append((name, statistics.median(vals)))
print(f"\n## requests/s through a published port on 127.0.0.1 (ab -k -n 4000 -c 8, busybox httpd, median of 3)")
for name, v in results:
    print(f"{name:50s} {v:10.0f}")
print(f"ratio barge/docker = {results[0][1] / results[1][1]:.2f}  (target >= 1)")
print(f"ratio barge/podman = {results[0][1] / results[2][1]:.2f}")
PY
