#!/usr/bin/env bash
# Installs every Debian package that barge's build, its demo and its tests need
# (scripts/packages.txt, one package a line with the reason), with apt, and the tests' docker-py
# (scripts/python-requirements.txt) into target/pyenv. Debian 12, as root.
# Idempotent: apt runs only when a package is missing.
# The docker CLI the tests drive (28) comes with the development machines; where none is
# present, Debian's docker.io provides one.
set -euo pipefail
cd "$(dirname "$0")"
mapfile -t pkgs < <(sed -e 's/#.*//' -e '/^[[:space:]]*$/d' packages.txt | awk '{print $1}')
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
# docker-py as users run it (PyPI, pinned in python-requirements.txt), in a venv of Debian's
# python3 under target/ (the tests run their docker-py programs with target/pyenv/bin/python3).
venv=../target/pyenv
if ! "$venv/bin/python3" -c 'import docker' 2>/dev/null; then
  echo "creating $venv (docker-py for the tests)"
  rm -rf "$venv"
  /usr/bin/python3 -m venv "$venv"
fi
"$venv/bin/pip" install -q --disable-pip-version-check -r python-requirements.txt
if ! command -v cargo >/dev/null; then
  echo "cargo (Rust toolchain) is required: https://rustup.rs" >&2
  exit 1
fi
