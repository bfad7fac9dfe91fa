#!/usr/bin/env bash
# REST side by side with pgwire: the same three queries against one bkg-db, over HTTP and over
# the PostgreSQL protocol, in one run.
#
#   cargo build --release -p bkg-db && benches/rest/compare.sh        (or: make bench-rest)
#
# Starts the release bkg-db on free loopback ports with a fresh data directory and the per-IP
# rate limit off (BKG_DB_REST_RATE_PER_S=0), loads items(id, cat, name, price) with 100 000 rows
# (cat = id % 1000: 100 rows per cat; no index on cat) by COPY and checkpoints it. Then, for
# each scenario and each connection count in $CONNECTIONS, wrk (2 threads, --latency) against
# /rest/v1 with the service key, then pgbench (-M prepared, 2 threads, same query) over pgwire:
#
#   get     GET /rest/v1/items?id=eq.<1..100000>&select=*         SELECT * FROM items WHERE id = :id
#   list    GET /rest/v1/items?cat=eq.<0..999>&select=id,name,price&order=id   (100 rows)
#                                                                  SELECT id, name, price ... ORDER BY id
#   insert  POST /rest/v1/inserts {"cat":1,"name":"x","price":1.5} (Prefer: return=minimal)
#                                                                  INSERT INTO inserts ... VALUES (1, 'x', 1.5)
#
# Each scenario is checked once with curl first (status, row count). Prints a Markdown table
# (REST req/s and p50/p99 from wrk's latency distribution, non-2xx answers, pgwire TPS and
# p50/p99 from pgbench's per-transaction log, ratio REST / pgwire) and keeps it in
# bench-results/. Errors are never dropped: non-2xx counts (and wrk socket errors, timeouts
# included; wrk's timeout is set to 10 s) are in the table, and when a run has any, a short
# second run prints the first error bodies; a failed pgbench run shows as ERR with its log.
#
# Environment: BKG_BIN (default $CARGO_TARGET_DIR/release/bkg-db, CARGO_TARGET_DIR defaulting to
# ~/.cache/bkg-target), DURATION (20 s per run), CONNECTIONS ("8 64").
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
DURATION=${DURATION:-20}
CONNECTIONS=${CONNECTIONS:-"8 64"}
ROWS=100000
scenarios=(get list insert)

BKG_BIN=${BKG_BIN:-${CARGO_TARGET_DIR:-$HOME/.cache/bkg-target}/release/bkg-db}
[[ -x $BKG_BIN ]] || { echo "compare: $BKG_BIN missing (cargo build --release -p bkg-db)" >&2; exit 1; }
for tool in wrk pgbench psql curl jq; do
  command -v "$tool" >/dev/null || { echo "compare: $tool missing (apt-get install wrk postgresql-client curl jq)" >&2; exit 1; }
done

# Free loopback ports: nothing answers a connect on port, port+1 or port+2.
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
port=
for _ in $(seq 50); do
  p=$((20000 + RANDOM % 20000))
  if port_free "$p" && port_free $((p + 1)) && port_free $((p + 2)); then port=$p; break; fi
done
[[ -n $port ]] || { echo "compare: no free loopback ports found" >&2; exit 1; }
http=$((port + 1))
base="http://127.0.0.1:$http"

work=$(mktemp -d /tmp/bkg-rest.XXXXXX)
BKG_DB_PASSWORD=bench BKG_DB_REST_RATE_PER_S=0 "$BKG_BIN" serve --data-dir "$work/data" \
  --pg-listen "127.0.0.1:$port" --http-listen "127.0.0.1:$http" --flight-listen "127.0.0.1:$((port + 2))" \
  >"$work/server.log" 2>&1 &
server=$!
cleanup() {
  local rc=$?
  if ! kill -0 "$server" 2>/dev/null; then
    echo "compare: bkg-db (pid $server) is not running any more; end of its log:" >&2
    tail -n 40 "$work/server.log" >&2 || true
  elif ((rc != 0)); then
    echo "compare: failed (exit $rc); end of the server log:" >&2
    tail -n 20 "$work/server.log" >&2 || true
  fi
  kill "$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
for _ in $(seq 100); do
  curl -fsS "$base/healthz" >/dev/null 2>&1 && break
  kill -0 "$server" 2>/dev/null || { echo "compare: bkg-db exited at start-up" >&2; exit 1; }
  sleep 0.1
done
curl -fsS "$base/healthz" >/dev/null || { echo "compare: bkg-db did not answer /healthz" >&2; exit 1; }
key=$(jq -r .service_key "$work/data/auth/keys.json")
[[ -n $key && $key != null ]] || { echo "compare: no service_key in $work/data/auth/keys.json" >&2; exit 1; }

export PGHOST=127.0.0.1 PGPORT=$port PGUSER=postgres PGPASSWORD=bench PGDATABASE=postgres
sql() { psql -qtAX -v ON_ERROR_STOP=1 "$@"; }

# ---- data ------------------------------------------------------------------------------------
echo "loading $ROWS rows into items ..." >&2
sql -c "CREATE TABLE items (id int PRIMARY KEY, cat int NOT NULL, name text NOT NULL, price float8 NOT NULL)"
seq 1 "$ROWS" | awk '{ printf "%d\t%d\titem-%d\t%.2f\n", $1, $1 % 1000, $1, ($1 % 9973) / 100 }' |
  sql -c "COPY items FROM STDIN"
sql -c "CREATE TABLE inserts (id serial PRIMARY KEY, cat int, name text, price float8)"
sql -c "CHECKPOINT"
n=$(sql -c "SELECT count(*) FROM items")
[[ $n == "$ROWS" ]] || { echo "compare: items has $n rows after COPY, expected $ROWS" >&2; exit 1; }

# ---- scripts ---------------------------------------------------------------------------------
# wrk: one Lua state per thread; each seeds its own generator.
common() {
  cat <<EOF
wrk.headers["apikey"] = "$key"
local n = 0
function setup(thread) thread:set("tid", n); n = n + 1 end
function init(args) math.randomseed(os.time() * 1000 + 7919 * (tid or 0)) end
EOF
}
{ common; cat <<'EOF'; } >"$work/get.lua"
function request()
  return wrk.format("GET", "/rest/v1/items?id=eq." .. math.random(1, 100000) .. "&select=*")
end
EOF
{ common; cat <<'EOF'; } >"$work/list.lua"
function request()
  return wrk.format("GET", "/rest/v1/items?cat=eq." .. math.random(0, 999) .. "&select=id,name,price&order=id")
end
EOF
{ common; cat <<'EOF'; } >"$work/insert.lua"
wrk.method = "POST"
wrk.body = '{"cat":1,"name":"x","price":1.5}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Prefer"] = "return=minimal"
EOF
# Appended for the diagnostic run after a run with errors: prints the first error answers.
cat >"$work/diag.lua" <<'EOF'
local shown = 0
function response(status, headers, body)
  if status > 399 and shown < 3 then
    shown = shown + 1
    io.stderr:write(string.format("  HTTP %d: %s\n", status, (string.sub(body or "", 1, 500):gsub("\n", " "))))
  end
end
EOF
declare -A path=([get]=/rest/v1/items [list]=/rest/v1/items [insert]=/rest/v1/inserts)
cat >"$work/get.sql" <<'EOF'
\set id random(1, 100000)
SELECT * FROM items WHERE id = :id;
EOF
cat >"$work/list.sql" <<'EOF'
\set cat random(0, 999)
SELECT id, name, price FROM items WHERE cat = :cat ORDER BY id;
EOF
cat >"$work/insert.sql" <<'EOF'
INSERT INTO inserts (cat, name, price) VALUES (1, 'x', 1.5);
EOF
declare -A title=([get]="GET by primary key" [list]="filtered list, 100 rows" [insert]="single-row insert")

notes=()

# ---- sanity: one request per scenario, checked ----------------------------------------------
# check NAME METHOD URL BODY EXPECTED_STATUS JQ_TEST
check() {
  local name=$1 method=$2 url=$3 body=$4 want=$5 test=$6 args=() code ok=1
  args=(-sS -D "$work/h" -o "$work/b" -w '%{http_code}' -X "$method" -H "apikey: $key")
  [[ $method == POST ]] && args+=(-H 'Content-Type: application/json' -H 'Prefer: return=minimal' --data "$body")
  code=$(curl "${args[@]}" "$url") || code=000
  [[ $code == "$want" ]] || ok=0
  if ((ok)) && [[ -n $test ]]; then jq -e "$test" "$work/b" >/dev/null 2>&1 || ok=0; fi
  if ((ok)); then
    echo "check $name: $method $url -> $code ok" >&2
  else
    echo "check $name FAILED: $method $url ${body:+body $body }-> $code (expected $want${test:+, $test})" >&2
    cat "$work/h" "$work/b" >&2 2>/dev/null || true
    echo >&2
    notes+=("check $name failed: \`$method $url\`${body:+ body \`$body\`} answered $code: \`$(head -c 300 "$work/b" 2>/dev/null | tr '\n' ' ')\`")
  fi
}
check get GET "$base/rest/v1/items?id=eq.4242&select=*" "" 200 \
  'length == 1 and .[0].id == 4242 and .[0].cat == 242 and .[0].name == "item-4242" and .[0].price == 42.42'
check list GET "$base/rest/v1/items?cat=eq.7&select=id,name,price&order=id" "" 200 \
  'length == 100 and (map(.id) == [range(7; 100000; 1000)]) and (.[0] | keys) == ["id","name","price"]'
check insert POST "$base/rest/v1/inserts" '{"cat":1,"name":"x","price":1.5}' 201 ''

# ---- runs ------------------------------------------------------------------------------------
# wrk's units (us, ms, s, m, h) to milliseconds.
to_ms() {
  awk -v v="$1" 'BEGIN { n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
    f = (u == "us") ? 0.001 : ((u == "ms") ? 1 : ((u == "s") ? 1000 : ((u == "m") ? 60000 : ((u == "h") ? 3600000 : -1))))
    if (v == "" || f < 0) print "?"; else printf "%.2f", n * f }'
}

# rest SCENARIO CONNS: prints "rps p50 p99 errors" (errors: non-2xx, plus socket errors if any).
rest() {
  local s=$1 c=$2 out="$work/wrk.out"
  wrk -t2 -c "$c" -d "${DURATION}s" --timeout 10s --latency -s "$work/$s.lua" "$base${path[$s]}" >"$out" 2>&1 ||
    { cat "$out" >&2; echo "ERR ? ? wrk-failed"; return; }
  local rps p50 p99 non2xx sock
  rps=$(awk '/^Requests\/sec:/ { printf "%.0f", $2 }' "$out")
  p50=$(to_ms "$(awk '$1 == "50%" { print $2 }' "$out")")
  p99=$(to_ms "$(awk '$1 == "99%" { print $2 }' "$out")")
  non2xx=$(sed -n 's/.*Non-2xx or 3xx responses: *\([0-9]*\).*/\1/p' "$out")
  sock=$(sed -n 's/.*Socket errors: connect \([0-9]*\), read \([0-9]*\), write \([0-9]*\), timeout \([0-9]*\).*/\1 \2 \3 \4/p' "$out")
  local errs=${non2xx:-0}
  if [[ -n $sock && $sock != "0 0 0 0" ]]; then
    read -r sc sr sw st <<<"$sock"
    errs="$errs+sock(c$sc,r$sr,w$sw,t$st)"
  fi
  cat "$out" >&2
  if [[ ${non2xx:-0} != 0 || -n $sock && $sock != "0 0 0 0" ]]; then
    echo "REST $s c=$c had errors; a 3 s run showing the first error answers:" >&2
    cat "$work/$s.lua" "$work/diag.lua" >"$work/diag-run.lua"
    wrk -t1 -c "$c" -d 3s --timeout 10s -s "$work/diag-run.lua" "$base${path[$s]}" 2>&1 | grep -E '^  HTTP|Non-2xx|Socket' >&2 || true
  fi
  echo "${rps:-0} $p50 $p99 $errs"
}

# pgwire SCENARIO CONNS: prints "tps p50 p99" from pgbench's per-transaction log.
pgwire() {
  local s=$1 c=$2 logs="$work/pgb"
  rm -rf "$logs"; mkdir -p "$logs"
  if ! pgbench -n -M prepared -f "$work/$s.sql" -c "$c" -j 2 -T "$DURATION" -l --log-prefix="$logs/pgbench_log" \
    postgres >"$work/pgbench.out" 2>&1; then
    echo "pgbench $s c=$c FAILED:" >&2
    cat "$work/pgbench.out" >&2
    notes+=("pgwire $s c=$c failed: \`$(grep -m3 -E 'error|ERROR|FATAL|aborted' "$work/pgbench.out" | tr '\n' ' ')\`")
    echo "ERR ? ?"
    return
  fi
  cat "$work/pgbench.out" >&2
  local tps p50 p99
  tps=$(sed -n 's/^tps = \([0-9.]*\) (without initial connection time)/\1/p' "$work/pgbench.out")
  # Field 3 of the per-transaction log is the latency in microseconds ("failed" for failures).
  read -r p50 p99 < <(cat "$logs"/pgbench_log.* | awk '$3 ~ /^[0-9]+$/ {print $3}' | sort -n |
    awk '{v[NR]=$1} END {if (NR) printf "%.2f %.2f\n", v[int(NR*0.50)+1]/1000, v[int(NR*0.99)+1]/1000; else print "? ?"}')
  printf '%.0f %s %s\n' "${tps:-0}" "$p50" "$p99"
}

rows=()
for s in "${scenarios[@]}"; do
  for c in $CONNECTIONS; do
    echo "== $s, $c connections: REST (wrk) ==" >&2
    rest "$s" "$c" >"$work/res"
    read -r rrps r50 r99 rerr <"$work/res"
    kill -0 "$server" 2>/dev/null || { echo "compare: bkg-db died during REST $s c=$c" >&2; exit 1; }
    [[ $rerr == 0 ]] || notes+=("REST $s c=$c: $rerr error answers of $(awk '/requests in/ {print $1}' "$work/wrk.out") requests (see the diagnostic run on stderr)")
    echo "== $s, $c connections: pgwire (pgbench -M prepared) ==" >&2
    pgwire "$s" "$c" >"$work/res"
    read -r ptps p50 p99 <"$work/res"
    kill -0 "$server" 2>/dev/null || { echo "compare: bkg-db died during pgwire $s c=$c" >&2; exit 1; }
    ratio=$(awk -v a="$rrps" -v b="$ptps" 'BEGIN { if (a ~ /^[0-9.]+$/ && b ~ /^[0-9.]+$/ && b > 0) printf "%.2f", a / b; else print "n/a" }')
    rows+=("| ${title[$s]} | $c | $rrps | $r50 | $r99 | $rerr | $ptps | $p50 | $p99 | $ratio |")
  done
done
inserted=$(sql -c "SELECT count(*) FROM inserts")

mkdir -p "$root/bench-results"
out="$root/bench-results/rest-$(date +%Y%m%d-%H%M%S).md"
{
  echo "REST (wrk -t2, --latency) and pgwire (pgbench -M prepared -j 2) against one bkg-db, ${DURATION} s per run; items: $ROWS rows, 100 per cat, checkpointed; $(date -u +%Y-%m-%d)"
  echo
  echo "- machine: $(nproc) CPUs, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1), $(awk '/^MemTotal/ {printf "%.0f GiB RAM", $2 / 1048576}' /proc/meminfo)"
  echo "- bkg-db: $("$BKG_BIN" --version 2>/dev/null || echo "$BKG_BIN")"
  echo "- wrk: $(wrk -v 2>&1 | head -1 || true)"
  echo "- pgbench: $(pgbench --version 2>&1 | head -1 || true)"
  echo
  echo "| Scenario | Connections | REST req/s | REST p50 ms | REST p99 ms | non-2xx | pgwire TPS | pgwire p50 ms | pgwire p99 ms | REST / pgwire |"
  echo "|---|---|---|---|---|---|---|---|---|---|"
  printf '%s\n' "${rows[@]}"
  echo
  echo "rows in inserts at the end: $inserted"
  for note in "${notes[@]}"; do echo "- $note"; done
} | tee "$out"
