#!/usr/bin/env bash
# What tracing costs: pgbench select-only (simple and prepared protocol) against bkg-db with
# telemetry off (no OTLP endpoint), and exporting over OTLP/HTTP to a local receiver with
# CAVE_OTEL_SAMPLING_RATE 0, 0.1 and 1.0; PostgreSQL in the same run for scale. Each setting gets
# a fresh server; the settings run in turn, $ROUNDS times, and the table shows the median TPS of
# each and its ratio to "off".
#
#   cargo build --release -p bkg-db && benches/telemetry/overhead.sh
#
# Environment: BKG_BIN (default target/release/bkg-db), SCALE (10), CLIENTS (8),
# DURATION (20 s per mode), ROUNDS (3).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
export SCALE=${SCALE:-10} CLIENTS=${CLIENTS:-8} DURATION=${DURATION:-20}
ROUNDS=${ROUNDS:-3}
pgb="$root/benches/pgbench/compare.sh"
command -v pgbench >/dev/null || { echo "overhead: pgbench missing (apt-get install postgresql)" >&2; exit 1; }
. "$root/benches/start-bkg.sh"

results=$(mktemp)
sink_out=$(mktemp)
python3 "$root/benches/telemetry/sink.py" >"$sink_out" &
sink=$!
trap 'kill $sink 2>/dev/null || true; rm -f "$results" "$sink_out"' EXIT
for _ in $(seq 50); do [[ -s $sink_out ]] && break; sleep 0.1; done
sink_port=$(head -1 "$sink_out")

# One setting: a fresh server, pgbench -i, then select-only in both protocols.
one() {
  local name=$1 env=$2
  (
    BKG_SERVER_ENV=$env
    start_bkg telemetry
    export PGHOST=127.0.0.1 PGPORT=$port PGUSER=postgres PGPASSWORD=bench
    "$pgb" --init
    for proto in simple prepared; do
      read -r _ _ tps _ < <("$pgb" --mode "select $proto")
      echo "$name $proto $tps" >>"$results"
    done
  )
}

endpoint="OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:$sink_port"
for round in $(seq "$ROUNDS"); do
  echo "round $round of $ROUNDS" >&2
  one off ""
  one rate-0 "$endpoint CAVE_OTEL_SAMPLING_RATE=0"
  one rate-0.1 "$endpoint CAVE_OTEL_SAMPLING_RATE=0.1"
  one rate-1 "$endpoint CAVE_OTEL_SAMPLING_RATE=1.0"
done
pg=$(BKG_PG_REF_TCP=1 "$root/scripts/with-postgres.sh" bash -c "\"$pgb\" --init && \"$pgb\" --mode 'select simple' && \"$pgb\" --mode 'select prepared'")
kill -TERM $sink
wait $sink 2>/dev/null || true
read -r requests bytes < <(tail -1 "$sink_out")

median() { sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
mkdir -p "$root/bench-results"
out="$root/bench-results/telemetry-$(date +%Y%m%d-%H%M%S).md"
{
  echo "pgbench select-only, scale $SCALE, $CLIENTS clients, ${DURATION} s per mode, median of $ROUNDS rounds; $(nproc) CPUs; $(date -u +%Y-%m-%d)"
  echo "The receiver got $requests export requests, $bytes bytes."
  echo
  echo "| Setting | simple TPS | / off | prepared TPS | / off |"
  echo "|---|---|---|---|---|"
  for proto in simple prepared; do
    eval "off_$proto=$(awk -v p=$proto '$1 == "off" && $2 == p {print $3}' "$results" | median)"
  done
  for name in off rate-0 rate-0.1 rate-1; do
    s=$(awk -v n=$name '$1 == n && $2 == "simple" {print $3}' "$results" | median)
    p=$(awk -v n=$name '$1 == n && $2 == "prepared" {print $3}' "$results" | median)
    # shellcheck disable=SC2154
    printf '| %s | %s | %s | %s | %s |\n' "$name" "$s" "$(awk -v a="$s" -v b="$off_simple" 'BEGIN {printf "%.3f", a / b}')" \
      "$p" "$(awk -v a="$p" -v b="$off_prepared" 'BEGIN {printf "%.3f", a / b}')"
  done
  read -r ps pp < <(echo "$pg" | awk '{t[$2]=$3} END {print t["simple"], t["prepared"]}')
  printf '| PostgreSQL 15 | %s | | %s | |\n' "$ps" "$pp"
} | tee "$out"
