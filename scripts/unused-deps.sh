#!/usr/bin/env bash
# Fails when a crate of the workspace declares a dependency its code never names (what
# cargo-machete checks, without installing it): each [dependencies], [dev-dependencies] and
# [build-dependencies] entry of crates/*/Cargo.toml must appear as `name::`, `use name` or
# `extern crate name` (dashes as underscores) in that crate's src/, tests/, benches/, examples/
# or build.rs.
set -euo pipefail
cd "$(dirname "$0")/.."
status=0
for manifest in crates/*/Cargo.toml; do
  crate_dir=$(dirname "$manifest")
  sources=()
  for d in src tests benches examples build.rs; do
    [[ -e $crate_dir/$d ]] && sources+=("$crate_dir/$d")
  done
  deps=$(awk '
    /^\[/ { section = $0; next }
    section ~ /^\[(dev-|build-)?dependencies\]$/ && /^[A-Za-z0-9_-]+[ ]*=/ {
      split($0, parts, "="); gsub(/[ ]/, "", parts[1]); print parts[1]
    }' "$manifest")
  for dep in $deps; do
    ident=${dep//-/_}
    if ! grep -rqE "(\b$ident::|use $ident\b|extern crate $ident\b|\b$ident!)" "${sources[@]}"; then
      echo "unused-deps: $manifest declares $dep, which its code never uses" >&2
      status=1
    fi
  done
done
exit $status
