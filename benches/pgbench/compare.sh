#!/usr/bin/env bash
# pgbench side by side: bkg-db and a throwaway PostgreSQL on this machine, in one run.
#
#   cargo build --release -p bkg-db && benches/pgbench/compare.sh
#
# For each server: `pgbench -i -s $SCALE`, then TPC-B-like and select-only (-S), each with the
# simple and the prepared protocol (-M), $CLIENTS clients on 2 pgbench threads for $DURATION
# seconds. Both servers are reached over TCP on loopback and both fsync their commits. Prints a
# Markdown table (TPS, p50/p99 latency from pgbench's per-transaction log, ratio bkg-db /
# PostgreSQL) and keeps it in bench-results/. "failed" counts transactions pgbench gave up on
# (serialization failures or deadlocks).
#
# Environment: BKG_BIN (default target/release/bkg-db), SCALE (10), CLIENTS (8), DURATION (30).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
SCALE=${SCALE:-10}
CLIENTS=${CLIENTS:-8}
DURATION=${DURATION:-30}
modes=("tpcb simple" "tpcb prepared" "select simple" "select prepared")

# Initialises the pgbench tables on the server PG* names.
init() {
  local log
  log=$(mktemp)
  pgbench -i -s "$SCALE" -q postgres >"$log" 2>&1 || { cat "$log" >&2; rm -f "$log"; exit 1; }
  rm -f "$log"
}

# One server: initialise, then run every mode; prints "mode tps p50_ms p99_ms failed" lines.
suite() {
  init
  for m in "${modes[@]}"; do
    run_mode "$m"
  done
}

# Runs one mode ("tpcb simple", ...) on an initialised server; prints its line.
run_mode() {
  local logs
  logs=$(mktemp -d)
  local m=$1
  {
    read -r script proto <<<"$m"
    local extra=()
    [[ $script == select ]] && extra=(-S)
    rm -f "$logs"/pgbench_log.*
    pgbench -n "${extra[@]}" -M "$proto" -c "$CLIENTS" -j 2 -T "$DURATION" -l --log-prefix="$logs/pgbench_log" \
      postgres >"$logs/run.log" 2>&1 || { cat "$logs/run.log" >&2; exit 1; }
    local tps
    tps=$(sed -n 's/^tps = \([0-9.]*\) (without initial connection time)/\1/p' "$logs/run.log")
    # Per-transaction log: field 3 is the latency in microseconds.
    # Failed transactions (serialization failures) log "failed" there and are left out.
    read -r p50 p99 < <(cat "$logs"/pgbench_log.* | awk '$3 ~ /^[0-9]+$/ {print $3}' | sort -n |
      awk '{v[NR]=$1} END {printf "%.2f %.2f\n", v[int(NR*0.50)+1]/1000, v[int(NR*0.99)+1]/1000}')
    local failed
    failed=$(sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p' "$logs/run.log")
    printf '%s %s %.0f %s %s %s\n' "$script" "$proto" "${tps:-0}" "$p50" "$p99" "${failed:-0}"
  }
  rm -rf "$logs"
}

# Markdown rows from two suite outputs (bkg-db's, PostgreSQL's), with the ratio.
table() {
  echo "| Mode | bkg-db TPS | p50 ms | p99 ms | failed | PostgreSQL TPS | p50 ms | p99 ms | bkg-db / PostgreSQL |"
  echo "|---|---|---|---|---|---|---|---|---|"
  paste -d' ' "$1" "$2" | while read -r s p btps b50 b99 bfail _ _ ptps p50 p99 _; do
    ratio=$(awk -v a="$btps" -v b="$ptps" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }')
    echo "| $s $p | $btps | $b50 | $b99 | $bfail | $ptps | $p50 | $p99 | $ratio |"
  done
}

case ${1:-} in
  --suite) suite; exit 0 ;;
  --init) init; exit 0 ;;
  --mode) run_mode "$2"; exit 0 ;;
  --table) table "$2" "$3"; exit 0 ;;
esac

command -v pgbench >/dev/null || { echo "compare: pgbench missing (apt-get install postgresql)" >&2; exit 1; }
. "$root/benches/start-bkg.sh"
start_bkg pgbench
echo "bkg-db: $("$BKG_BIN" --version 2>/dev/null || echo "$BKG_BIN")" >&2
bkg=$(PGHOST=127.0.0.1 PGPORT=$port PGUSER=postgres PGPASSWORD=bench suite)
pg=$(BKG_PG_REF_TCP=1 "$root/scripts/with-postgres.sh" "$0" --suite)

mkdir -p "$root/bench-results"
out="$root/bench-results/pgbench-$(date +%Y%m%d-%H%M%S).md"
{
  echo "pgbench scale $SCALE, $CLIENTS clients, 2 threads, ${DURATION} s per mode; $(nproc) CPUs; $(date -u +%Y-%m-%d)"
  echo
  table <(echo "$bkg") <(echo "$pg")
} | tee "$out"
