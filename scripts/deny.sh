#!/usr/bin/env bash
# cargo deny for `make lint`: licences, bans and sources always; advisories when the RustSec
# advisory database can be fetched, with a visible notice when it cannot (offline machines).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v cargo-deny >/dev/null; then
  echo "deny: cargo-deny is not installed (scripts/install-test-deps.sh installs it)" >&2
  exit 1
fi
cargo deny --log-level error --offline check licenses bans sources
if timeout 120 cargo deny --log-level error fetch db >/dev/null 2>&1; then
  cargo deny --log-level error --offline check advisories
else
  echo "NOTICE: deny: the RustSec advisory database could not be fetched; advisories were NOT checked" >&2
fi
