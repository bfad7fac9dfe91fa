#!/usr/bin/env bash
# Storage throughput (benches/storage/bench.py): objects through bkg-db's /storage/v1 beside the
# direct transfer of the same bytes, on both storage backends, in one run:
#
#   local       one large object (ST_LARGE_MB) up and down, beside a file write (fsync) and read
#               on the same file system; ST_SMALL_N objects of 4 KiB up, then down, beside as
#               many file writes (fsync) and reads
#   s3 (moto)   the same through a bkg-db whose bytes live in moto's S3 (ST_S3_MB for the large
#               object: moto is slow), beside boto3 against the same moto (upload_fileobj,
#               put_object, get_object)
#
#   make bench-storage        (release build; results in bench-results/)
#
# Starts moto_server and two bkg-db (BKG_DB_STORAGE_BACKEND local and s3) on free loopback
# ports, each with a fresh data directory in one temporary directory (the direct files go there
# too: same disk), the per-IP rate limit off and the object size limit raised. Prints a Markdown
# table (MiB/s or ops/s for each side and the time ratio bkg-db / direct; the goal for large
# objects is at most 1.20) and keeps it in bench-results/.
#
# Environment: BKG_BIN (default $CARGO_TARGET_DIR/release/bkg-db, CARGO_TARGET_DIR defaulting to
# ~/.cache/bkg-target), ST_LARGE_MB (256), ST_S3_MB (64), ST_SMALL_N (500), ST_RUNS (3: the
# median is reported), ST_DIR (where the temporary directory goes; default $TMPDIR or /tmp),
# BKG_VENV (the client venv, ~/.cache/bkg-venv: python with boto3), BKG_MOTO_SERVER (default
# $BKG_VENV/bin/moto_server).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
BKG_BIN=${BKG_BIN:-${CARGO_TARGET_DIR:-$HOME/.cache/bkg-target}/release/bkg-db}
venv=${BKG_VENV:-$HOME/.cache/bkg-venv}
py=$venv/bin/python
moto=${BKG_MOTO_SERVER:-$venv/bin/moto_server}
export ST_LARGE_MB=${ST_LARGE_MB:-256} ST_S3_MB=${ST_S3_MB:-64} ST_SMALL_N=${ST_SMALL_N:-500} ST_RUNS=${ST_RUNS:-3}
[[ -x $BKG_BIN ]] || { echo "storage: $BKG_BIN missing (cargo build --release -p bkg-db)" >&2; exit 1; }
"$py" -c 'import boto3' 2>/dev/null || { echo "storage: run scripts/test-clients.sh once to set up $venv (boto3)" >&2; exit 1; }
[[ -x $moto ]] || { echo "storage: $moto missing (scripts/test-clients.sh installs moto[server])" >&2; exit 1; }
command -v curl >/dev/null || { echo "storage: curl missing" >&2; exit 1; }

work=$(mktemp -d "${ST_DIR:-${TMPDIR:-/tmp}}/bkg-storage.XXXXXX")
pids=()
cleanup() {
  local rc=$? p
  if ((rc != 0)); then
    for log in "$work"/*.log; do
      [[ -s $log ]] && { echo "storage: failed (exit $rc); end of $(basename "$log"):" >&2; tail -n 20 "$log" >&2; }
    done
  fi
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

# A loopback port nothing listens on (the kernel's choice; released before use).
free_port() { "$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
# wait_http URL PID: until URL answers 200 (30 s at most), or the process is gone.
wait_http() {
  for _ in $(seq 300); do
    curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
    kill -0 "$2" 2>/dev/null || { echo "storage: the server behind $1 exited at start-up" >&2; return 1; }
    sleep 0.1
  done
  echo "storage: $1 did not answer" >&2
  return 1
}

# ---- moto: the bucket bkg-db keeps its bytes in, and one for the direct transfers -------------
mport=$(free_port)
moto_url=http://127.0.0.1:$mport
"$moto" -H 127.0.0.1 -p "$mport" >"$work/moto.log" 2>&1 &
pids+=($!)
wait_http "$moto_url" "${pids[-1]}"
curl -fsS -o /dev/null -X PUT "$moto_url/bkg-objects"
curl -fsS -o /dev/null -X PUT "$moto_url/direct"

# ---- bkg-db, one per backend ---------------------------------------------------------------
size_max=$((ST_LARGE_MB > ST_S3_MB ? ST_LARGE_MB : ST_S3_MB))
size_max=$((size_max + 16 > 2048 ? size_max + 16 : 2048))
# start_bkg NAME [ENV=VALUE...]: sets url_NAME and key_NAME.
start_bkg() {
  local name=$1 http
  shift
  http=$(free_port)
  mkdir -p "$work/$name"
  env "$@" BKG_DB_PASSWORD=bench BKG_DB_LOG=warn BKG_DB_REST_RATE_PER_S=0 BKG_DB_STORAGE_FILE_SIZE_MAX_MB="$size_max" \
    "$BKG_BIN" serve --data-dir "$work/$name/data" --pg-listen "127.0.0.1:$(free_port)" \
    --http-listen "127.0.0.1:$http" --flight-listen "127.0.0.1:$(free_port)" >"$work/bkg-$name.log" 2>&1 &
  pids+=($!)
  wait_http "http://127.0.0.1:$http/healthz" "${pids[-1]}"
  printf -v "url_$name" '%s' "http://127.0.0.1:$http"
  printf -v "key_$name" '%s' "$("$py" -c 'import json, sys; print(json.load(open(sys.argv[1]))["service_key"])' \
    "$work/$name/data/auth/keys.json")"
}
start_bkg local
start_bkg s3 BKG_DB_STORAGE_BACKEND=s3 BKG_DB_STORAGE_S3_BUCKET=bkg-objects BKG_DB_STORAGE_S3_ENDPOINT="$moto_url" \
  AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1

# ---- run -----------------------------------------------------------------------------------
mkdir -p "$root/bench-results"
out=$root/bench-results/storage-$(date +%Y%m%d-%H%M%S).md
fs=$(df --output=fstype "$work" | tail -n 1)
{
  echo "Storage throughput, $(nproc) CPUs, $(date -u +%Y-%m-%d), bkg-db $(git -C "$root" describe --always --dirty 2>/dev/null || echo unknown) ($(basename "$(dirname "$BKG_BIN")") build); large object ${ST_LARGE_MB} MiB local, ${ST_S3_MB} MiB on S3; ${ST_SMALL_N} small objects; temporary directory on ${fs}."
  echo
  "$py" "$root/benches/storage/bench.py" "$work" "$url_local" "$key_local" "$url_s3" "$key_s3" "$moto_url" direct
} | tee "$out"
