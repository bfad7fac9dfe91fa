#!/usr/bin/env bash
# Installs what `make test` drives on a fresh Debian machine: psql (postgresql-client), pgbench
# (postgresql, the server package, which the benchmarks also need), curl, chromium (the admin
# dashboard's end-to-end test), python3 with venv
# support (the psycopg driver tests make a venv), promtool (prometheus), openssl (audit and
# release signatures are checked with it), cargo-nextest and cargo-deny (make lint). node and npm (the Node.js
# driver tests) come with the machine: they are only checked. Safe to run again: it only
# installs what is missing.
set -euo pipefail
need=()
command -v psql >/dev/null || need+=(postgresql-client)
command -v pgbench >/dev/null || need+=(postgresql)
command -v curl >/dev/null || need+=(curl)
command -v openssl >/dev/null || need+=(openssl)
# promtool, which checks the /metrics exposition in the telemetry tests.
command -v promtool >/dev/null || need+=(prometheus)
# The admin dashboard's end-to-end test drives a real browser (no browser download).
command -v chromium >/dev/null || need+=(chromium)
if ! command -v python3 >/dev/null; then
  need+=(python3 python3-venv)
else
  # Debian's python3 lacks ensurepip until python3-venv is installed.
  venv_probe=$(mktemp -d)
  python3 -m venv "$venv_probe/v" >/dev/null 2>&1 || need+=(python3-venv)
  rm -rf "$venv_probe"
fi
if ((${#need[@]})); then
  sudo=""
  [[ $(id -u) -ne 0 ]] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}"
fi
if ! command -v cargo-nextest >/dev/null; then
  cargo install --locked cargo-nextest || echo "cargo-nextest unavailable; falling back to cargo test"
fi
if ! command -v cargo-deny >/dev/null; then
  cargo install --locked cargo-deny
fi
missing_js=()
command -v node >/dev/null || missing_js+=(node)
command -v npm >/dev/null || missing_js+=(npm)
if ((${#missing_js[@]})); then
  echo "install-test-deps: ${missing_js[*]} not found: the Node.js driver tests (make test-clients) need node >= 20 and npm" >&2
  exit 1
fi
