#!/usr/bin/env bash
# Installs what barge needs at run time and what its tests need, with apt (Debian 12).
# Idempotent: skips apt when everything is already there.
set -euo pipefail
need=()
command -v runc >/dev/null || need+=(runc)
command -v curl >/dev/null || need+=(curl)
command -v script >/dev/null || need+=(bsdutils)
command -v python3 >/dev/null || need+=(python3)
command -v ps >/dev/null || need+=(procps)
command -v nft >/dev/null || need+=(nftables)
# Registry tests: a real registry (distribution 2.8), htpasswd for its Basic auth, skopeo, openssl.
command -v docker-registry >/dev/null || need+=(docker-registry)
command -v htpasswd >/dev/null || need+=(apache2-utils)
command -v skopeo >/dev/null || need+=(skopeo)
command -v openssl >/dev/null || need+=(openssl)
python3 -c 'import docker' 2>/dev/null || need+=(python3-docker)
if ((${#need[@]})); then
  echo "installing: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need[@]}" >/dev/null
fi
if ! command -v cargo >/dev/null; then
  echo "cargo (Rust toolchain) is required: https://rustup.rs" >&2
  exit 1
fi
