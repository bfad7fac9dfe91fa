#!/usr/bin/env bash
# Flight SQL side by side with PostgreSQL's COPY, TPC-H SF1 lineitem (6 001 215 rows), one run.
#
#   cargo build --release -p bkg-db && benches/flight/compare.sh
#
# Generates lineitem once with tpchgen-cli (PyPI) into $HOME/.cache/bkg-bench/tpch-sf1 (Parquet
# and CSV), starts bkg-db (release) and a throwaway PostgreSQL 15 (fsync on, TCP on loopback),
# then measures: DoPut ingest (ADBC adbc_ingest) beside COPY FROM STDIN (CSV); DoGet of
# SELECT * (ADBC, Arrow) beside COPY TO STDOUT (text); the loopback TCP ceiling. Prints a
# Markdown table and keeps it in bench-results/.
#
# Environment: BKG_BIN (default target/release/bkg-db), RUNS (3), BKG_VENV (the client venv).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
venv=${BKG_VENV:-$HOME/.cache/bkg-venv}
py=$venv/bin/python
"$py" -c 'import adbc_driver_flightsql, psycopg, pyarrow' 2>/dev/null ||
  { echo "compare: run scripts/test-clients.sh once to set up $venv" >&2; exit 1; }
"$py" -m pip install --quiet --disable-pip-version-check "tpchgen-cli==4.0.0" >/dev/null
data=$HOME/.cache/bkg-bench/tpch-sf1
mkdir -p "$data"
[[ -s $data/lineitem.parquet ]] || "$venv/bin/tpchgen-cli" parquet -s 1 --tables=lineitem --output-dir="$data"
[[ -s $data/lineitem.csv ]] || "$venv/bin/tpchgen-cli" csv -s 1 --tables=lineitem --output-dir="$data"

. "$root/benches/start-bkg.sh"
start_bkg flight
mkdir -p "$root/bench-results"
out=$root/bench-results/flight-$(date +%Y%m%d-%H%M%S).md
BKG_PG_REF_TCP=1 BKG_PG_REF_PORT=$((port + 3)) "$root/scripts/with-postgres.sh" \
  "$py" "$root/benches/flight/bench.py" "grpc://127.0.0.1:$((port + 2))" bench \
  "$data/lineitem.parquet" "$data/lineitem.csv" | tee "$out"
