#!/usr/bin/env bash
# Driver tests with real client libraries against the built server:
#   - Python psycopg 3 and the ADBC Flight SQL driver with pyarrow (pytest), Django 5.2 (the
#     built-in apps' migrations and an ORM workload, unmodified), SQLAlchemy 2 with Alembic's
#     operations, plus DuckDB and
#     moto's S3 server for the export tests (and tpchgen-cli and DataFusion for the
#     benchmark harness's smoke run), and an OTLP trace receiver (opentelemetry-proto over
#     grpcio and HTTP) for the telemetry tests, in a venv under $HOME/.cache/bkg-venv
#   - Node.js `pg`, `@supabase/postgrest-js` and `@supabase/supabase-js` (node --test),
#     installed from tests/clients/node/package-lock.json; postgrest-js drives the REST API
#     (/rest/v1), supabase-js signs users up and in (/auth/v1), reads under row-level
#     security and subscribes to realtime changes, broadcast and presence (/realtime/v1, over
#     `ws`), stores objects with storage-js (/storage/v1, on the local and on a moto S3
#     backend), and @redocly/cli lints the OpenAPI document the server serves
# The suites start their own bkg-db (BKG_DB_BIN, default $CARGO_TARGET_DIR/debug/bkg-db) on
# free loopback ports and stop it again. Exits non-zero if either suite fails.
set -uo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/bkg-target}
export BKG_DB_BIN=${BKG_DB_BIN:-$CARGO_TARGET_DIR/debug/bkg-db}
venv=${BKG_VENV:-$HOME/.cache/bkg-venv}

# Verified versions; bump together with a run of this script.
PSYCOPG_VERSION=3.3.9
PYTEST_VERSION=9.2.0
ADBC_VERSION=1.13.0
PYARROW_VERSION=26.0.1
DUCKDB_VERSION=2.0.1
MOTO_VERSION=5.2.5
TPCHGEN_VERSION=4.0.0
DATAFUSION_VERSION=55.0.0
OTEL_PROTO_VERSION=1.38.0
GRPCIO_VERSION=1.76.0
DJANGO_VERSION=5.2.9
SQLALCHEMY_VERSION=2.0.44
ALEMBIC_VERSION=1.17.2

if [[ ! -x $BKG_DB_BIN ]]; then
  echo "test-clients: server binary $BKG_DB_BIN not found (run 'make build' or set BKG_DB_BIN)" >&2
  exit 1
fi

status=0

# ---- Python / psycopg 3
python_suite() {
  if ! "$venv/bin/python" -c 'import sys' >/dev/null 2>&1; then
    rm -rf "$venv"
    if ! python3 -m venv "$venv"; then
      echo "test-clients: 'python3 -m venv' failed; install python3-venv (scripts/install-test-deps.sh)" >&2
      return 1
    fi
  fi
  if ! "$venv/bin/python" -c "
import importlib.metadata as m, sys
want = {'psycopg': '$PSYCOPG_VERSION', 'psycopg-binary': '$PSYCOPG_VERSION', 'pytest': '$PYTEST_VERSION',
        'adbc-driver-flightsql': '$ADBC_VERSION', 'adbc-driver-manager': '$ADBC_VERSION',
        'pyarrow': '$PYARROW_VERSION', 'duckdb': '$DUCKDB_VERSION', 'moto': '$MOTO_VERSION',
        'tpchgen-cli': '$TPCHGEN_VERSION', 'datafusion': '$DATAFUSION_VERSION',
        'opentelemetry-proto': '$OTEL_PROTO_VERSION', 'grpcio': '$GRPCIO_VERSION', 'Django': '$DJANGO_VERSION',
        'SQLAlchemy': '$SQLALCHEMY_VERSION', 'alembic': '$ALEMBIC_VERSION'}
sys.exit(any(m.version(k) != v for k, v in want.items()))" >/dev/null 2>&1; then
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
      "psycopg[binary]==$PSYCOPG_VERSION" "pytest==$PYTEST_VERSION" \
      "adbc-driver-flightsql==$ADBC_VERSION" "adbc-driver-manager==$ADBC_VERSION" \
      "pyarrow==$PYARROW_VERSION" "duckdb==$DUCKDB_VERSION" "moto[server]==$MOTO_VERSION" boto3 \
      "tpchgen-cli==$TPCHGEN_VERSION" "datafusion==$DATAFUSION_VERSION" \
      "opentelemetry-proto==$OTEL_PROTO_VERSION" "grpcio==$GRPCIO_VERSION" "Django==$DJANGO_VERSION" \
      "SQLAlchemy==$SQLALCHEMY_VERSION" "alembic==$ALEMBIC_VERSION" || return 1
  fi
  echo "== psycopg $PSYCOPG_VERSION, adbc-driver-flightsql $ADBC_VERSION (pytest) against $BKG_DB_BIN"
  (cd "$root" && "$venv/bin/python" -m pytest -p no:cacheprovider tests/clients/python)
}

# ---- Node.js / pg and postgrest-js
node_suite() {
  if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    echo "test-clients: node and npm are required (scripts/install-test-deps.sh)" >&2
    return 1
  fi
  cd "$root/tests/clients/node" || return 1
  if [[ -f package-lock.json ]]; then
    npm ci --no-audit --no-fund --loglevel=error || return 1
  else
    npm install --no-audit --no-fund --loglevel=error || return 1
  fi
  echo "== node $(node --version), pg $(node -p "require('pg/package.json').version") (node --test) against $BKG_DB_BIN"
  echo "== node $(node --version), @supabase/postgrest-js $(node -p "require('@supabase/postgrest-js/package.json').version") (node --test) against $BKG_DB_BIN"
  echo "== node $(node --version), @supabase/supabase-js $(node -p "require('@supabase/supabase-js/package.json').version") (node --test) against $BKG_DB_BIN"
  echo "== node $(node --version), @redocly/cli $(node -p "require('@redocly/cli/package.json').version") (OpenAPI lint) against $BKG_DB_BIN"
  echo "== node $(node --version), @supabase/storage-js $(node -p "require('@supabase/storage-js/package.json').version") (node --test, local and moto S3 backends) against $BKG_DB_BIN"
  BKG_MOTO_SERVER=$venv/bin/moto_server node --test test_pg.mjs test_postgrest.mjs test_openapi.mjs test_supabase.mjs test_realtime.mjs test_storage.mjs
}

python_suite || { status=1; echo "test-clients: psycopg suite FAILED" >&2; }
node_suite || { status=1; echo "test-clients: node pg/postgrest-js/supabase-js suite FAILED" >&2; }

if ((status == 0)); then
  echo "test-clients: all driver suites passed"
fi
exit $status
