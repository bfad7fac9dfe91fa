#!/usr/bin/env bash
# Two bkg-db builds side by side in one run, to tell a regression from noise on a machine whose
# speed drifts: TPC-H with the base build in benches/tpch/bench.py's reference slot (every query
# runs on both, interleaved; DuckDB and DataFusion stay as anchors), then pgbench with each mode
# run base, new, new, base (so drift during the run hits both alike).
#
#   benches/ab.sh BASE_BIN NEW_BIN        (release builds; the report goes to bench-results/)
#
# The load (COPY FROM STDIN of lineitem, CSV) is timed base, new, new, base as well: bench.py
# loads its two servers one after the other, and the first load pays for a cold page cache.
#
# Environment: SF (1), RUNS (3), SCALE (10), CLIENTS (8), DURATION (20 s per pgbench run),
# AB_PARTS (which parts, default "tpch load pgbench"), BKG_VENV (the client venv of
# scripts/test-clients.sh).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
[[ $# -eq 2 && -x $1 && -x $2 ]] || { echo "usage: benches/ab.sh BASE_BIN NEW_BIN" >&2; exit 2; }
base_bin=$1
new_bin=$2
export SF=${SF:-1} RUNS=${RUNS:-3} SCALE=${SCALE:-10} CLIENTS=${CLIENTS:-8} DURATION=${DURATION:-20}
parts=${AB_PARTS:-tpch load pgbench}
venv=${BKG_VENV:-$HOME/.cache/bkg-venv}
DATA=$HOME/.cache/bkg-bench/tpch-sf$SF
if [[ $parts == *tpch* || $parts == *load* ]]; then
  [[ -s $DATA/lineitem.csv && -s $DATA/lineitem.parquet ]] || { echo "ab: run make bench-compare SF=$SF once for the data" >&2; exit 1; }
fi

work=$(mktemp -d /tmp/bkg-ab.XXXXXX)
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done; rm -rf "$work"' EXIT

# Starts a server; prints its pgwire port.
start() {
  local bin=$1 name=$2 port
  port=$((20000 + RANDOM % 20000))
  BKG_DB_PASSWORD=bench "$bin" serve --data-dir "$work/$name" --pg-listen "127.0.0.1:$port" \
    --http-listen "127.0.0.1:$((port + 1))" --flight-listen "127.0.0.1:$((port + 2))" >"$work/$name.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do
    curl -fsS "http://127.0.0.1:$((port + 1))/healthz" >/dev/null 2>&1 && { echo "$port"; return 0; }
    sleep 0.1
  done
  echo "ab: $name did not start" >&2
  cat "$work/$name.log" >&2
  exit 1
}

base_port=$(start "$base_bin" base)
new_port=$(start "$new_bin" new)
dsn() { echo "host=127.0.0.1 port=$1 user=postgres password=bench dbname=postgres"; }

if [[ $parts == *tpch* ]]; then
  "$venv/bin/python" "$root/benches/tpch/bench.py" --sf "$SF" --data "$DATA" --runs "$RUNS" \
    --bkg "$(dsn "$new_port")" --pg "$(dsn "$base_port")" --pg-name "base" --markdown "$work/tpch.md" >/dev/null
fi

# One COPY of lineitem into a fresh table on the server at port $1; prints rows/s.
load() {
  local p=$1 start end rows
  psql "$(dsn "$p")" -qX -c "DROP TABLE IF EXISTS ab_lineitem" \
    -c "$(sed -n '/CREATE TABLE lineitem/,/);/p' "$root/benches/tpch/schema.sql" | sed 's/CREATE TABLE lineitem/CREATE TABLE ab_lineitem/')" >/dev/null
  start=$(date +%s.%N)
  psql "$(dsn "$p")" -qX -c "\\copy ab_lineitem FROM '$DATA/lineitem.csv' WITH (FORMAT csv, HEADER true)" >/dev/null
  end=$(date +%s.%N)
  rows=$(psql "$(dsn "$p")" -qXAt -c "SELECT count(*) FROM ab_lineitem")
  psql "$(dsn "$p")" -qX -c "DROP TABLE ab_lineitem" -c "CHECKPOINT" >/dev/null
  awk -v r="$rows" -v s="$start" -v e="$end" 'BEGIN { printf "%.0f", r / (e - s) }'
}
if [[ $parts == *load* ]]; then
  lb1=$(load "$base_port"); ln1=$(load "$new_port"); ln2=$(load "$new_port"); lb2=$(load "$base_port")
  echo "ab: load: base $lb1,$lb2 new $ln1,$ln2 rows/s" >&2
  {
    echo "| Load (COPY lineitem, CSV) | run 1 rows/s | run 2 rows/s | mean | new / base |"
    echo "|---|---|---|---|---|"
    awk -v b1="$lb1" -v b2="$lb2" -v n1="$ln1" -v n2="$ln2" 'BEGIN {
      printf "| base | %d | %d | %d | |\n", b1, b2, (b1 + b2) / 2
      printf "| new | %d | %d | %d | %.2f |\n", n1, n2, (n1 + n2) / 2, (n1 + n2) / (b1 + b2) }'
  } >"$work/load.md"
fi

pg() { PGHOST=127.0.0.1 PGPORT=$1 PGUSER=postgres PGPASSWORD=bench "$root/benches/pgbench/compare.sh" "${@:2}"; }
: >"$work/pgbench-base.txt"
: >"$work/pgbench-new.txt"
if [[ $parts == *pgbench* ]]; then
  pg "$base_port" --init
  pg "$new_port" --init
fi
for m in "tpcb simple" "tpcb prepared" "select simple" "select prepared"; do
  [[ $parts == *pgbench* ]] || break
  b1=$(pg "$base_port" --mode "$m")
  n1=$(pg "$new_port" --mode "$m")
  n2=$(pg "$new_port" --mode "$m")
  b2=$(pg "$base_port" --mode "$m")
  # The mean TPS of the two runs, and the latencies of the first.
  avg() { awk -v a="$(echo "$1" | cut -d' ' -f3)" -v b="$(echo "$2" | cut -d' ' -f3)" 'BEGIN { printf "%.0f", (a + b) / 2 }'; }
  echo "$m $(avg "$b1" "$b2") $(echo "$b1" | cut -d' ' -f4-6)" >>"$work/pgbench-base.txt"
  echo "$m $(avg "$n1" "$n2") $(echo "$n1" | cut -d' ' -f4-6)" >>"$work/pgbench-new.txt"
  echo "ab: $m: base $(echo "$b1" | cut -d' ' -f3),$(echo "$b2" | cut -d' ' -f3) new $(echo "$n1" | cut -d' ' -f3),$(echo "$n2" | cut -d' ' -f3) TPS" >&2
done

mkdir -p "$root/bench-results"
out=$root/bench-results/ab-$(date +%Y%m%d-%H%M%S).md
{
  echo "A/B: base $base_bin, new $new_bin; $(nproc) CPUs; $(date -u +%Y-%m-%d)."
  echo
  if [[ -s $work/tpch.md ]]; then
    echo "TPC-H (the \"bkg-db\" columns are the new build, \"base\" the base build; ratios > 1: new is faster):"
    echo
    cat "$work/tpch.md"
    echo
  fi
  if [[ -s $work/load.md ]]; then
    echo "Load, base-new-new-base:"
    echo
    cat "$work/load.md"
    echo
  fi
  if [[ -s $work/pgbench-new.txt ]]; then
    echo "pgbench scale $SCALE, $CLIENTS clients, $DURATION s per run, each mode base-new-new-base (TPS: mean of two runs):"
    echo
    "$root/benches/pgbench/compare.sh" --table "$work/pgbench-new.txt" "$work/pgbench-base.txt" |
      sed 's/| bkg-db TPS/| new TPS/; s/| PostgreSQL TPS/| base TPS/; s/| bkg-db \/ PostgreSQL |/| new \/ base |/'
  fi
} | tee "$out"
