#!/usr/bin/env bash
# Installs every Debian package that barge's build, its demo and its tests need (the `packages`
# list below, one package a line with the reason), with apt, and the tests' docker-py
# (scripts/python-requirements.txt) into target/pyenv. Debian 12, as root.
# crates/barge/tests/deps.rs reads the list below and fails when a library barge links or a
# program the build, the demo or the tests run comes from no package in it.
# Idempotent: apt runs only when a package is missing.
# The docker CLI the tests drive (28) comes with the development machines; where none is
# present, Debian's docker.io provides one.
set -euo pipefail
cd "$(dirname "$0")"
# BEGIN packages (read by crates/barge/tests/deps.rs)
packages=(
  # build
  gcc               # cc for -sys crates and the linker driver
  libc6-dev         # crt files, libc.so for the link
  pkg-config        # -sys crates' library lookup
  libseccomp-dev    # -lseccomp (youki's libcontainer, the embedded runtime's seccomp filters)
  protobuf-compiler # protoc, run by etcd-client's build script (crates/datastore's etcd backend)
  libprotobuf-dev   # the google/protobuf/*.proto well-known types that protoc needs for etcd's protos

  # run time
  libseccomp2       # libseccomp.so.2, linked by barge
  nftables          # nft: published ports, masquerade, isolation rules
  iproute2          # ip: the tests' link and namespace checks
  kmod              # modprobe: the node agent loads br_netfilter when its sysctl is missing
  runc              # --runtime runc, and the tests that compare with it

  # tests and demo
  curl              # demo and published-port tests
  bsdutils          # script: a pty for `run -it` tests
  procps            # ps: the harness's process checks
  python3           # /usr/bin/python3, the base of the tests' venv (target/pyenv)
  python3-venv      # that venv, where docker-py (scripts/python-requirements.txt) is installed
  docker-registry   # a real OCI registry (distribution) on loopback
  apache2-utils     # htpasswd for the registry's Basic auth
  skopeo            # a second OCI client to cross-check pushes
  openssl           # the registry's TLS certificates
  etcd-server       # /usr/bin/etcd: the datastore's and API server's tests against etcd v3
  etcd-client       # /usr/bin/etcdctl: snapshot save/restore (docs/operations.md and its tests)
  nginx             # /usr/sbin/nginx: the Ingress proxy's benchmark reference (crates/ingress/examples/bench.rs)
  docker.io         # dockerd: e2e_compose runs one project through barge compose on dockerd too
)
# END packages
pkgs=("${packages[@]}")
command -v docker >/dev/null || pkgs+=(docker.io)
need=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$' || need+=("$p")
done
if ((${#need[@]})); then
  echo "installing: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# docker-py and the Kubernetes Python client as users run them (PyPI, pinned in python-requirements.txt), in a venv of Debian's
# python3 under target/ (the tests run their docker-py programs with target/pyenv/bin/python3).
venv=../target/pyenv
if ! "$venv/bin/python3" -c "import sys" 2>/dev/null; then
  echo "creating $venv (docker-py and the Kubernetes client for the tests)"
  rm -rf "$venv"
  /usr/bin/python3 -m venv "$venv"
fi
"$venv/bin/pip" install -q --disable-pip-version-check -r python-requirements.txt
if ! command -v cargo >/dev/null; then
  echo "cargo (Rust toolchain) is required: https://rustup.rs" >&2
  exit 1
fi
