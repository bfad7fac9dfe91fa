#!/usr/bin/env bash
# Side by side, in one run on this machine: TPC-H (22 queries) on bkg-db, PostgreSQL 15, DuckDB
# and DataFusion; the load of the TPC-H tables (COPY FROM STDIN) into bkg-db and PostgreSQL;
# pgbench (TPC-B-like and select-only, simple and prepared) on bkg-db and PostgreSQL.
#
#   make bench-compare SF=1        (release build; writes docs/benchmarks.md's generated section)
#   benches/compare.sh --smoke     (SF 0.01, answers checked, timings ignored; part of make test)
#
# Data: tpchgen-cli (PyPI) writes CSV (for COPY) and Parquet (for DuckDB and DataFusion) once
# into $HOME/.cache/bkg-bench/tpch-sf$SF. bkg-db starts on a fresh data directory, PostgreSQL in a
# throwaway cluster (scripts/with-postgres.sh, fsync on); both on loopback, both stopped after.
# Every bkg-db answer is checked against DuckDB's; a wrong or failed answer makes the run fail.
#
# Environment: BKG_BIN (default target/release/bkg-db), SF (1), RUNS (3 hot runs per query),
# PG_TIMEOUT_S (300, PostgreSQL's statement_timeout per query), PGBENCH_SCALE (10),
# PGBENCH_CLIENTS (8), PGBENCH_DURATION (30 s per mode), BKG_VENV (the client venv, set up by
# scripts/test-clients.sh).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv=${BKG_VENV:-$HOME/.cache/bkg-venv}
py=$venv/bin/python
smoke=
[[ ${1:-} == --smoke ]] && smoke=1
if [[ -n $smoke ]]; then
  SF=${SF:-0.01} RUNS=${RUNS:-1} PGBENCH_SCALE=${PGBENCH_SCALE:-1} PGBENCH_DURATION=${PGBENCH_DURATION:-1}
  PGBENCH_CLIENTS=${PGBENCH_CLIENTS:-2}
fi
export SF=${SF:-1} RUNS=${RUNS:-3} PG_TIMEOUT_S=${PG_TIMEOUT_S:-300} PGBENCH_SCALE=${PGBENCH_SCALE:-10} \
  PGBENCH_CLIENTS=${PGBENCH_CLIENTS:-8} PGBENCH_DURATION=${PGBENCH_DURATION:-30}

if [[ ${1:-} == --inner ]]; then
  # Runs beside the throwaway PostgreSQL (PGHOST/PGPORT set by with-postgres.sh).
  status=0
  "$py" "$root/benches/tpch/bench.py" --sf "$SF" --data "$DATA" --runs "$RUNS" --pg-timeout-s "$PG_TIMEOUT_S" \
    --bkg "host=127.0.0.1 port=$BKG_PORT user=postgres password=bench dbname=postgres" \
    --pg "host=$PGHOST port=$PGPORT user=postgres dbname=postgres" \
    --markdown "$OUT_DIR/tpch.md" --json "$OUT_DIR/tpch.json" || status=$?
  export SCALE=$PGBENCH_SCALE CLIENTS=$PGBENCH_CLIENTS DURATION=$PGBENCH_DURATION
  PGHOST=127.0.0.1 PGPORT=$BKG_PORT PGUSER=postgres PGPASSWORD=bench \
    "$root/benches/pgbench/compare.sh" --suite >"$OUT_DIR/pgbench-bkg.txt" || status=1
  "$root/benches/pgbench/compare.sh" --suite >"$OUT_DIR/pgbench-pg.txt" || status=1
  exit $status
fi

for tool in pgbench psql; do
  command -v $tool >/dev/null || { echo "compare: $tool missing (apt-get install postgresql)" >&2; exit 1; }
done
"$py" -c 'import duckdb, datafusion, psycopg' 2>/dev/null ||
  { echo "compare: run scripts/test-clients.sh once to set up $venv" >&2; exit 1; }
[[ -x $venv/bin/tpchgen-cli ]] || { echo "compare: tpchgen-cli missing in $venv (scripts/test-clients.sh)" >&2; exit 1; }
DATA=$HOME/.cache/bkg-bench/tpch-sf$SF
if [[ ! -s $DATA/lineitem.parquet || ! -s $DATA/lineitem.csv ]]; then
  mkdir -p "$DATA"
  "$venv/bin/tpchgen-cli" csv -s "$SF" --output-dir="$DATA" >/dev/null
  "$venv/bin/tpchgen-cli" parquet -s "$SF" --output-dir="$DATA" >/dev/null
fi

. "$root/benches/start-bkg.sh"
start_bkg compare
OUT_DIR=$work/out
mkdir -p "$OUT_DIR"
status=0
DATA=$DATA BKG_PORT=$port OUT_DIR=$OUT_DIR BKG_PG_REF_TCP=1 BKG_PG_REF_PORT=$((port + 3)) "$root/scripts/with-postgres.sh" "$0" --inner || status=$?

pgbench_table() {
  echo "pgbench scale $PGBENCH_SCALE, $PGBENCH_CLIENTS clients, 2 threads, $PGBENCH_DURATION s per mode."
  echo
  "$root/benches/pgbench/compare.sh" --table "$OUT_DIR/pgbench-bkg.txt" "$OUT_DIR/pgbench-pg.txt"
}

report=$work/report.md
{
  [[ -s $OUT_DIR/tpch.md ]] && cat "$OUT_DIR/tpch.md"
  echo
  [[ -s $OUT_DIR/pgbench-bkg.txt && -s $OUT_DIR/pgbench-pg.txt ]] && pgbench_table
  echo
  echo "Machine: $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1), $(nproc) CPUs; $(uname -sr)." \
    "bkg-db $(git -C "$root" describe --always --dirty 2>/dev/null || echo unknown) ($(basename "$(dirname "$BKG_BIN")") build)."
} >"$report"
cat "$report"
if [[ -z $smoke ]]; then
  mkdir -p "$root/bench-results"
  stamp=$root/bench-results/compare-sf$SF-$(date +%Y%m%d-%H%M%S)
  cp "$report" "$stamp.md"
  cp "$OUT_DIR/tpch.json" "$stamp.json" 2>/dev/null || true
  # The generated part of docs/benchmarks.md lies between two marker lines.
  doc=$root/docs/benchmarks.md
  if grep -q '^<!-- bench-compare:start -->$' "$doc" && grep -q '^<!-- bench-compare:end -->$' "$doc"; then
    "$py" - "$doc" "$report" <<'EOF'
import sys
doc, report = sys.argv[1], open(sys.argv[2]).read()
text = open(doc).read()
head, rest = text.split("<!-- bench-compare:start -->\n", 1)
_, tail = rest.split("<!-- bench-compare:end -->\n", 1)
open(doc, "w").write(head + "<!-- bench-compare:start -->\n" + report + "<!-- bench-compare:end -->\n" + tail)
EOF
    echo "compare: docs/benchmarks.md updated" >&2
  fi
fi
[[ $status -eq 0 ]] || echo "compare: FAILED (see above)" >&2
exit $status
