#!/usr/bin/env bash
# Realtime fan-out (benches/realtime/fanout.mjs) at the sizes docs/benchmarks.md reports:
# 1 000 and 10 000 subscribers with a per-user policy, and 1 000 subscribers all receiving every
# row. No realtime server of another project runs on this machine, so the anchor is Supabase
# Realtime's published benchmark (docs/benchmarks.md cites it).
#
#   make bench-realtime        (release build; results in bench-results/)
#
# Environment: BKG_BIN (default target/release/bkg-db), RT_SECONDS (20 s of inserts per scenario).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
BKG_BIN=${BKG_BIN:-$root/target/release/bkg-db}
SECONDS_PER=${RT_SECONDS:-20}
[[ -x $BKG_BIN ]] || { echo "realtime: $BKG_BIN missing (cargo build --release -p bkg-db)" >&2; exit 1; }
[[ -d $root/tests/clients/node/node_modules/ws ]] || { echo "realtime: run scripts/test-clients.sh once (node modules)" >&2; exit 1; }
ulimit -n "$(ulimit -Hn)"
run() { node "$root/benches/realtime/fanout.mjs" "$BKG_BIN" "$@"; }
mkdir -p "$root/bench-results"
out=$root/bench-results/realtime-$(date +%Y%m%d-%H%M%S).md
{
  echo "Realtime fan-out, $(nproc) CPUs, $(date -u +%Y-%m-%d), bkg-db $(git -C "$root" describe --always --dirty 2>/dev/null || echo unknown); ${SECONDS_PER} s of inserts per scenario, one commit per row."
  echo
  echo "| Scenario | Subscribers | Commits/s | Changes delivered/s | p50 ms | p99 ms | max ms | Delivered / expected | Dropped |"
  echo "|---|---|---|---|---|---|---|---|---|"
  for spec in "per-user 1000 100" "per-user 10000 100" "shared 1000 10"; do
    read -r scenario n rate <<<"$spec"
    json=$(run "$n" "$rate" "$SECONDS_PER" "$scenario" || true)
    [[ -n $json ]] || { echo "| $scenario | $n | failed | | | | | | |"; continue; }
    python3 - "$json" <<'PY'
import json, sys
r = json.loads(sys.argv[1])
print(f"| {r['scenario']} | {r['subscribers']:,} | {r['commits_per_s']:.0f} | {r['delivered_per_s']:,.0f} | {r['p50_ms']:.0f} | {r['p99_ms']:.0f} | {r['max_ms']:.0f} | {r['received']:,} / {r['expected']:,} | {r['dropped']} |")
PY
  done
} | tee "$out"
