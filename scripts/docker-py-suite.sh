#!/usr/bin/env bash
# docker-py's own integration suite (from its PyPI sdist), run against barge and against
# dockerd 20.10 (Debian's docker.io) side by side; prints the tests whose outcome differs.
# Usage: scripts/docker-py-suite.sh [DOCKER_PY_VERSION]   (default 6.1.3, the last sdist that
# ships tests/). Needs root, PyPI, and the shared images. Not part of the test suite: it
# downloads the sdist and takes ~10 minutes.
#
# No registry is reachable, so the suite's images (alpine, busybox, hello-world) are tagged
# from a busybox image with every applet installed (built here from busybox:1.35). Both
# daemons see the same images; tests that pull, use swarm or plugins fail on both.
# The API version is pinned to 1.41 (dockerd 20.10's), so version-dependent behaviours are
# compared at one version. dockerd runs in a private network namespace made here.
set -euo pipefail
cd "$(dirname "$0")/.."
VER="${1:-6.1.3}"
IMAGES="${BARGE_IMAGES:-$PWD/../shared/images}"
export DEBIAN_FRONTEND=noninteractive
command -v dockerd >/dev/null || { apt-get update -qq && apt-get install -y -qq docker.io >/dev/null; }
scripts/build.sh >/dev/null
BARGE="$PWD/target/debug/barge"
work="$(mktemp -d /tmp/barge-dpy.XXXXXX)"
netns="barge-dpy-$$"
cleanup() {
  set +e
  for id in $(BARGE_HOST="unix://$work/barge.sock" "$BARGE" ps -aq 2>/dev/null); do
    BARGE_HOST="unix://$work/barge.sock" "$BARGE" rm -f "$id" >/dev/null 2>&1
  done
  for id in $(docker -H "unix://$work/docker.sock" ps -aq 2>/dev/null); do
    docker -H "unix://$work/docker.sock" rm -f "$id" >/dev/null 2>&1
  done
  BARGE_HOST="unix://$work/barge.sock" "$BARGE" network prune -f >/dev/null 2>&1
  [[ -n "${barge_pid:-}" ]] && kill "$barge_pid" && wait "$barge_pid"
  [[ -n "${dockerd_pid:-}" ]] && kill "$dockerd_pid" && wait "$dockerd_pid"
  # The daemon's bridge and nftables table (named after its exec root) outlive it by design.
  for l in $(ip -o link show type bridge | awk -F': ' '{print $2}' | grep '^barge-'); do
    grep -qx "$l" "$work/links.before" 2>/dev/null && continue
    ip link del "$l" 2>/dev/null
    nft delete table ip "$l" 2>/dev/null
    nft delete table ip6 "$l" 2>/dev/null
  done
  grep -o " $work[^ ]*" /proc/mounts | sort -r | xargs -r -n1 umount -l 2>/dev/null
  ip netns del "$netns" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

python3 -m venv "$work/venv"
"$work/venv/bin/pip" install -q pytest pytest-timeout paramiko websocket-client packaging \
  'requests<2.32' 'urllib3<2'
"$work/venv/bin/pip" download -q --no-binary :all: --no-deps "docker==$VER" -d "$work"
tar xzf "$work/docker-$VER.tar.gz" -C "$work"
src="$work/docker-$VER"

ip -o link show type bridge | awk -F': ' '{print $2}' >"$work/links.before"
"$BARGE" daemon --data-root "$work/barge" --exec-root "$work/barge-run" \
  -H "unix://$work/barge.sock" >"$work/barge.log" 2>&1 &
barge_pid=$!
ip netns add "$netns"
ip -n "$netns" link set lo up
nsenter --net="/run/netns/$netns" dockerd --host "unix://$work/docker.sock" \
  --data-root "$work/docker" --exec-root "$work/docker-run" --pidfile "$work/docker.pid" \
  --containerd-namespace barge-dpy --containerd-plugins-namespace barge-dpy-plugins \
  >"$work/dockerd.log" 2>&1 &
dockerd_pid=$!
for _ in $(seq 200); do [[ -S "$work/barge.sock" && -S "$work/docker.sock" ]] && break; sleep 0.1; done

export BARGE_HOST="unix://$work/barge.sock"
"$BARGE" load -i "$IMAGES/oci-layout" >/dev/null
mkdir -p "$work/full"
printf '%s\n' 'FROM busybox:1.35' 'RUN ["/bin/busybox", "--install", "-s", "/bin"]' \
  'RUN mkdir -p /usr/bin && ln -s /bin/env /usr/bin/env' \
  'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' >"$work/full/Dockerfile"
"$BARGE" build -q -t bbfull:1 "$work/full" >/dev/null
"$BARGE" save -o "$work/bbfull.tar" bbfull:1
DOCKER="docker -H unix://$work/docker.sock"
$DOCKER load -i "$work/bbfull.tar" >/dev/null
for t in alpine:3.10 alpine:latest busybox:latest hello-world:latest; do
  "$BARGE" tag bbfull:1 "$t"
  $DOCKER tag bbfull:1 "$t"
done

skip=(api_config_test api_secret_test api_service_test api_swarm_test api_plugin_test
  models_nodes_test models_services_test models_swarm_test)
ignore=()
for s in "${skip[@]}"; do ignore+=(--ignore "tests/integration/$s.py"); done
models=(models_containers_test models_images_test models_networks_test models_volumes_test
  models_resources_test regression_test errors_test client_test)
for m in "${models[@]}"; do ignore+=(--ignore "tests/integration/$m.py"); done
suite() { # $1 = socket, $2 = output; the models tests run apart: a test of the API part
  # unsets DOCKER_HOST for the rest of its session.
  (cd "$src" && DOCKER_HOST="unix://$1" DOCKER_TEST_API_VERSION=1.41 timeout 2400 \
    "$work/venv/bin/python" -m pytest -p no:cacheprovider --timeout 90 -rA -q \
    tests/integration "${ignore[@]}" >"$2.api" 2>&1 || true)
  (cd "$src" && DOCKER_HOST="unix://$1" DOCKER_TEST_API_VERSION=1.41 timeout 1200 \
    "$work/venv/bin/python" -m pytest -p no:cacheprovider --timeout 90 -rA -q \
    "${models[@]/#/tests/integration/}" >"$2.models" 2>&1 || true)
  cat "$2.api" "$2.models" | grep -E '^(PASSED|FAILED|ERROR|XPASS|XFAIL|SKIPPED) ' \
    | sed -E 's/ - .*//' | awk '{print $2, $1}' | sort -u >"$2"
}
# The model tests' module names need the .py suffix.
models=("${models[@]/%/.py}")
suite "$work/barge.sock" "$work/barge.res" &
suite_pid=$!
suite "$work/docker.sock" "$work/docker.res"
wait "$suite_pid"
echo "## docker-py $VER integration suite, API 1.41"
printf 'barge:   %s passed, %s failed or errored\n' \
  "$(grep -c ' PASSED$' "$work/barge.res")" "$(grep -cE ' (FAILED|ERROR)$' "$work/barge.res")"
printf 'dockerd: %s passed, %s failed or errored\n' \
  "$(grep -c ' PASSED$' "$work/docker.res")" "$(grep -cE ' (FAILED|ERROR)$' "$work/docker.res")"
echo "## outcomes that differ (test, barge, dockerd)"
join "$work/barge.res" "$work/docker.res" | awk '$2 != $3' | column -t
