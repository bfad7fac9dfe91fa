# Sourced by the comparison harnesses: starts $BKG_BIN on a fresh data directory and random
# loopback ports, waits for /healthz, and stops it (and removes the directory) on exit.
# Sets: work (temporary directory), port (pgwire; HTTP is port+1, Flight port+2), server (pid).
# Extra environment for the server can be passed in BKG_SERVER_ENV (e.g. "BKG_DB_X=1").
start_bkg() {
  local name=$1
  BKG_BIN=${BKG_BIN:-$root/target/release/bkg-db}
  [[ -x $BKG_BIN ]] || { echo "compare: $BKG_BIN missing (cargo build --release -p bkg-db)" >&2; exit 1; }
  work=$(mktemp -d "/tmp/bkg-$name.XXXXXX")
  port=$((20000 + RANDOM % 20000))
  env ${BKG_SERVER_ENV:-} BKG_DB_PASSWORD=bench "$BKG_BIN" serve --data-dir "$work/data" --pg-listen "127.0.0.1:$port" \
    --http-listen "127.0.0.1:$((port + 1))" --flight-listen "127.0.0.1:$((port + 2))" >"$work/server.log" 2>&1 &
  server=$!
  trap 'kill $server 2>/dev/null || true; wait $server 2>/dev/null || true; rm -rf "$work"' EXIT
  for _ in $(seq 100); do
    curl -fsS "http://127.0.0.1:$((port + 1))/healthz" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "compare: bkg-db did not start:" >&2
  cat "$work/server.log" >&2
  exit 1
}
