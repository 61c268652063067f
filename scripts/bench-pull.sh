#!/usr/bin/env bash
# Pull benchmark: multilayer:1 (gzip, and a zstd copy) from a local registry (Debian's
# docker-registry on 127.0.0.1, plain HTTP) into an empty store, side by side:
# barge vs docker pull (dockerd 20.10; loopback registries are insecure by default) vs
# podman pull vs skopeo copy to a directory. Prints medians and ratios.
# Usage: scripts/bench-pull.sh [N] [BARGE_BINARY]   (N runs per tool, default 5). Needs root.
# scripts/bench.sh runs it after its own benchmarks.
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-5}"
BARGE="${2:-$PWD/target/release/barge}"
IMAGES="${BARGE_IMAGES:-$PWD/../shared/images}"
export DEBIAN_FRONTEND=noninteractive
need=()
command -v docker-registry >/dev/null || need+=(docker-registry)
command -v skopeo >/dev/null || need+=(skopeo)
command -v zstd >/dev/null || need+=(zstd)
command -v dockerd >/dev/null || need+=(docker.io)
command -v podman >/dev/null || need+=(podman)
if ((${#need[@]})); then apt-get update -qq && apt-get install -y -qq "${need[@]}" >/dev/null; fi
[[ -x "$BARGE" ]] || scripts/build.sh --release >/dev/null
work="$(mktemp -d /tmp/barge-bench-pull.XXXXXX)"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
REG="127.0.0.1:$port"
export BARGE_HOST="unix://$work/barge.sock"
DOCKER="docker -H unix://$work/docker.sock"
PODMAN="podman --root $work/podman --runroot $work/podman-run --runtime runc --cgroup-manager cgroupfs --events-backend file"
cleanup() {
  set +e
  [[ -n "${barge_pid:-}" ]] && kill "$barge_pid" && wait "$barge_pid"
  [[ -n "${dockerd_pid:-}" ]] && kill "$dockerd_pid" && wait "$dockerd_pid"
  [[ -n "${reg_pid:-}" ]] && kill "$reg_pid" && wait "$reg_pid"
  $PODMAN system reset -f >/dev/null 2>&1
  grep -o " $work[^ ]*" /proc/mounts | sort -r | xargs -r -n1 umount -l 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

cat >"$work/registry.yml" <<EOF
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $work/registry
http:
  addr: $REG
EOF
docker-registry serve "$work/registry.yml" >"$work/registry.log" 2>&1 &
reg_pid=$!
"$BARGE" daemon --data-root "$work/barge" --exec-root "$work/barge-run" -H "$BARGE_HOST" \
  --config-file "$work/none.json" >"$work/barge.log" 2>&1 &
barge_pid=$!
dockerd --host "unix://$work/docker.sock" --data-root "$work/docker" --exec-root "$work/docker-run" \
  --pidfile "$work/docker.pid" --bridge none --iptables=false --ip-masq=false --insecure-registry "$REG" \
  --containerd-namespace barge-bench-pull --containerd-plugins-namespace barge-bench-pull-plugins >"$work/dockerd.log" 2>&1 &
dockerd_pid=$!
for _ in $(seq 200); do [[ -S "$work/barge.sock" && -S "$work/docker.sock" ]] && (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done

skopeo copy -q --dest-tls-verify=false "oci:$IMAGES/oci-layout:multilayer:1" "docker://$REG/bench/multilayer:1" >/dev/null
# A zstd copy of multilayer:1 (skopeo 1.9 keeps compressed blobs as they are, so recompress here).
python3 - "$IMAGES/oci-layout" "$work/zstd-layout" <<'PY'
import gzip, hashlib, json, os, subprocess, sys
src, dst = sys.argv[1:3]
os.makedirs(f"{dst}/blobs/sha256")
def blob(d): return open(f"{src}/blobs/sha256/{d[7:]}", "rb").read()
def put(data):
    h = hashlib.sha256(data).hexdigest()
    open(f"{dst}/blobs/sha256/{h}", "wb").write(data)
    return "sha256:" + h, len(data)
idx = json.load(open(f"{src}/index.json"))
m = [x for x in idx["manifests"] if x.get("annotations", {}).get("org.opencontainers.image.ref.name") == "multilayer:1"][0]
man = json.loads(blob(m["digest"]))
put(blob(man["config"]["digest"]))
for l in man["layers"]:
    z = subprocess.run(["zstd", "-3", "-q", "-c"], input=gzip.decompress(blob(l["digest"])), capture_output=True, check=True).stdout
    l["digest"], l["size"] = put(z)
    l["mediaType"] = "application/vnd.oci.image.layer.v1.tar+zstd"
d, n = put(json.dumps(man).encode())
json.dump({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": d, "size": n,
          "annotations": {"org.opencontainers.image.ref.name": "multilayer:1-zstd"}}]}, open(f"{dst}/index.json", "w"))
open(f"{dst}/oci-layout", "w").write('{"imageLayoutVersion":"1.0.0"}')
PY
skopeo copy -q --dest-tls-verify=false "oci:$work/zstd-layout:multilayer:1-zstd" "docker://$REG/bench/multilayer:1-zstd" >/dev/null

python3 - "$N" "$BARGE" "$DOCKER" "$PODMAN" "$work" "$REG" <<'PY'
import statistics, subprocess, sys, time
n, barge, docker, podman, work, reg = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6]

def sh(cmd):
    subprocess.run(cmd, shell=True, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

def timeit(cmd, setup):
    times = []
    for _ in range(n):
        sh(setup)
        t = time.perf_counter()
        sh(cmd)
        times.append(time.perf_counter() - t)
    return statistics.median(times), min(times)

for tag in ["1", "1-zstd"]:
    ref = f"{reg}/bench/multilayer:{tag}"
    rows = [
        ("barge pull", f"{barge} pull -q {ref}", f"{barge} rmi -f {ref}; {barge} image prune -af || true"),
        ("docker pull (dockerd 20.10)", f"{docker} pull -q {ref}", f"{docker} rmi -f {ref}; {docker} image prune -af || true"),
        ("podman pull", f"{podman} pull -q --tls-verify=false {ref}", f"{podman} rmi -af || true"),
        ("skopeo copy to dir:", f"skopeo copy -q --src-tls-verify=false docker://{ref} dir:{work}/skopeo-dir", f"rm -rf {work}/skopeo-dir"),
    ]
    print(f"## pull {ref.split('/', 1)[1]} into an empty store (N={n}, median / min, seconds)")
    res = {}
    for name, cmd, setup in rows:
        try:
            res[name] = timeit(cmd, setup)
            print(f"{name:32s} {res[name][0]:8.3f} {res[name][1]:8.3f}")
        except subprocess.CalledProcessError as e:
            err = (e.stderr or b"").decode(errors="replace").strip().splitlines()
            print(f"{name:32s}   failed: {err[-1] if err else e.cmd}")
    b = res.get("barge pull")
    for other in ["docker pull (dockerd 20.10)", "podman pull", "skopeo copy to dir:"]:
        if b and other in res:
            print(f"ratio {other.split(' ')[0]}/barge = {res[other][0] / b[0]:.2f}" + ("  (target >= 2)" if other.startswith("docker") else ""))
    print()
PY
