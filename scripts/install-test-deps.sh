#!/usr/bin/env bash
# Installs what `make test` drives on a fresh Debian machine: psql (postgresql-client), pgbench
# (postgresql, the server package, which the benchmarks also need), curl and cargo-nextest. Safe to run again: it only installs what is missing.
set -euo pipefail
need=()
command -v psql >/dev/null || need+=(postgresql-client)
command -v pgbench >/dev/null || need+=(postgresql)
command -v curl >/dev/null || need+=(curl)
command -v python3 >/dev/null || need+=(python3)
if ((${#need[@]})); then
  sudo=""
  [[ $(id -u) -ne 0 ]] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}"
fi
if ! command -v cargo-nextest >/dev/null; then
  cargo install --locked cargo-nextest || echo "cargo-nextest unavailable; falling back to cargo test"
fi
