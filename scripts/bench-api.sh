#!/usr/bin/env bash
# The API server's figures (issue 10, docs/benchmarks.md "Cluster API server"): kube-rs against
# the router on loopback, on SQLite and on a local etcd (Debian's etcd-server), with raw etcd
# puts as the floor — creates at concurrency 16, 100 watchers' ack-to-event delay, a paged list
# of 10,000 objects and a get, and Lease heartbeats' disk writes and table size on SQLite.
# Usage: scripts/bench-api.sh   (release build; BENCH_SCALE=N divides every count for a quick
# run). Not a test: it prints markdown tables.
set -euo pipefail
cd "$(dirname "$0")/.."
exec nice cargo run --release -q -p barge-apiserver --example bench_api
