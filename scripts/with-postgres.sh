#!/usr/bin/env bash
# Runs a command beside a throwaway PostgreSQL server (Debian's `postgresql` package), started
# on a Unix socket in a temporary directory and removed afterwards. The command finds it in
# BKG_SLT_POSTGRES_DSN (a libpq keyword/value string) and PGHOST/PGPORT/PGUSER. Port:
# BKG_PG_REF_PORT (default 55439).
#   scripts/with-postgres.sh cargo nextest run -p bkg-db --run-ignored only slt_against_postgresql
set -euo pipefail
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
if [[ -z "$bin" ]]; then
  echo "with-postgres: no PostgreSQL server found under /usr/lib/postgresql (apt-get install postgresql)" >&2
  exit 1
fi
dir=$(mktemp -d /tmp/bkg-pg.XXXXXX)
port=${BKG_PG_REF_PORT:-55439}
as_pg=()
if [[ $(id -u) -eq 0 ]]; then
  # The server refuses to run as root.
  chown postgres "$dir"
  as_pg=(runuser -u postgres --)
fi
stop() {
  "${as_pg[@]}" "$bin/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$dir"
}
trap stop EXIT
"${as_pg[@]}" "$bin/initdb" -D "$dir/data" -U postgres --locale=C.UTF-8 -E UTF8 >"$dir/initdb.log" 2>&1 ||
  { cat "$dir/initdb.log" >&2; exit 1; }
listen="''"
[[ -n ${BKG_PG_REF_TCP:-} ]] && listen=127.0.0.1
"${as_pg[@]}" "$bin/pg_ctl" -D "$dir/data" -w -l "$dir/server.log" \
  -o "-p $port -k $dir -c listen_addresses=$listen -c fsync=on -c timezone=UTC" start >/dev/null ||
  { cat "$dir/server.log" >&2; exit 1; }
export PGHOST="$dir" PGPORT="$port" PGUSER=postgres
# BKG_PG_REF_TCP=1: reachable over TCP on loopback too, and PGHOST points there.
[[ -n ${BKG_PG_REF_TCP:-} ]] && export PGHOST=127.0.0.1
export BKG_SLT_POSTGRES_DSN="host=$dir port=$port user=postgres dbname=postgres"
"$@"
