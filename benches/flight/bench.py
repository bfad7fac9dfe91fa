"""Flight SQL DoGet/DoPut beside PostgreSQL's COPY on the same machine, TPC-H SF1 lineitem.

Run by benches/flight/compare.sh, which starts both servers. Prints a Markdown table.
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time

import adbc_driver_flightsql.dbapi as flight_sql
import psycopg
import pyarrow as pa
import pyarrow.parquet as pq

DDL = """CREATE TABLE lineitem (
  l_orderkey bigint NOT NULL, l_partkey bigint NOT NULL, l_suppkey bigint NOT NULL,
  l_linenumber integer NOT NULL, l_quantity numeric(15,2) NOT NULL,
  l_extendedprice numeric(15,2) NOT NULL, l_discount numeric(15,2) NOT NULL,
  l_tax numeric(15,2) NOT NULL, l_returnflag text NOT NULL, l_linestatus text NOT NULL,
  l_shipdate date NOT NULL, l_commitdate date NOT NULL, l_receiptdate date NOT NULL,
  l_shipinstruct text NOT NULL, l_shipmode text NOT NULL, l_comment text NOT NULL)"""
RUNS = int(os.environ.get("RUNS", "3"))
INGEST_ROWS = 1_000_000


def timed(f):
    t = time.perf_counter()
    out = f()
    return time.perf_counter() - t, out


def tcp_ceiling(total=4 << 30, chunk=4 << 20) -> float:
    """Bytes per second one loopback TCP connection carries (Python, large buffers)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    port = srv.getsockname()[1]

    def sink():
        c, _ = srv.accept()
        buf = bytearray(chunk)
        view = memoryview(buf)
        got = 0
        while got < total:
            n = c.recv_into(view)
            if n == 0:
                break
            got += n
        c.close()

    t = threading.Thread(target=sink)
    t.start()
    s = socket.create_connection(("127.0.0.1", port))
    data = b"x" * chunk
    start = time.perf_counter()
    sent = 0
    while sent < total:
        s.sendall(data)
        sent += chunk
    s.close()
    t.join()
    return total / (time.perf_counter() - start)


def main() -> None:
    flight_uri, bkg_password, parquet_path, csv_path = sys.argv[1:5]
    table = pq.read_table(parquet_path)
    # Plain strings (the generator writes string views).
    table = table.cast(pa.schema([pa.field(f.name, pa.string() if pa.types.is_string_view(f.type) else f.type, f.nullable) for f in table.schema]))
    # Batches of 64k rows: the Go Flight client sends messages of at most 16 MiB.
    table = pa.Table.from_batches(table.to_batches(max_chunksize=65536))
    rows = table.num_rows
    results = []

    # ---- ingest
    bkg = flight_sql.connect(flight_uri, db_kwargs={"username": "postgres", "password": bkg_password}, autocommit=True)
    cur = bkg.cursor()
    cur.execute(DDL)
    # One DoPut (one transaction) per million rows: a transaction's WAL record is limited to
    # 512 MiB, and the whole table would be 1.7 GB.
    def put():
        return sum(cur.adbc_ingest("lineitem", table.slice(i, INGEST_ROWS), mode="append") for i in range(0, rows, INGEST_ROWS))

    t_put, n = timed(put)
    assert n == rows, (n, rows)
    pg = psycopg.connect(autocommit=True)
    pg.execute(DDL)

    def copy_in():
        with pg.cursor() as c, c.copy("COPY lineitem FROM STDIN WITH (FORMAT csv, HEADER true)") as cp, open(csv_path, "rb") as f:
            while block := f.read(1 << 20):
                cp.write(block)

    t_copy_in, _ = timed(copy_in)
    assert pg.execute("SELECT count(*) FROM lineitem").fetchone()[0] == rows
    results.append(("ingest: Flight DoPut (adbc_ingest, 1M rows per call) vs COPY FROM STDIN (CSV, one call)", rows / t_put, rows / t_copy_in, None, None))

    # ---- export
    def doget():
        cur.execute("SELECT * FROM lineitem")
        return cur.fetch_arrow_table()

    gets = []
    arrow_bytes = 0
    for _ in range(RUNS):
        t, got = timed(doget)
        assert got.num_rows == rows
        arrow_bytes = got.nbytes
        gets.append(t)
        del got

    def copy_out():
        n = 0
        with pg.cursor() as c, c.copy("COPY lineitem TO STDOUT") as cp:
            for block in cp:
                n += len(block)
        return n

    outs = []
    text_bytes = 0
    for _ in range(RUNS):
        t, text_bytes = timed(copy_out)
        outs.append(t)
    t_get, t_out = statistics.median(gets), statistics.median(outs)
    results.append(("export: Flight DoGet (SELECT *, ADBC Go client) vs COPY TO STDOUT (text)", rows / t_get, rows / t_out, arrow_bytes / t_get, text_bytes / t_out))
    # The same DoGet read by a Rust client (arrow-flight, crates/bkg-db/examples/flight_doget.rs),
    # which decodes without re-exporting through the C data interface.
    rust_client = os.environ.get("BKG_FLIGHT_RUST_CLIENT")
    if rust_client:
        out = subprocess.run([rust_client, flight_uri, "postgres", bkg_password, "SELECT * FROM lineitem", str(RUNS)],
                             check=True, capture_output=True, text=True).stdout
        runs = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
        assert all(r["rows"] == rows for r in runs), runs
        t_rust = statistics.median(r["seconds"] for r in runs)
        results.append(("export: Flight DoGet (SELECT *, Rust arrow-flight client) vs COPY TO STDOUT (text)", rows / t_rust, rows / t_out, runs[0]["arrow_bytes"] / t_rust, text_bytes / t_out))
    ceiling = tcp_ceiling()

    print(f"lineitem SF1: {rows} rows; Arrow {arrow_bytes / 1e9:.2f} GB in memory, COPY text {text_bytes / 1e9:.2f} GB; median of {RUNS} runs for exports")
    print()
    print("| What | bkg-db rows/s | PostgreSQL rows/s | bkg-db / PostgreSQL | bkg-db GB/s | PostgreSQL GB/s |")
    print("|---|---|---|---|---|---|")
    for name, a, b, ga, gb in results:
        g = f"{ga / 1e9:.2f} | {gb / 1e9:.2f}" if ga else "- | -"
        print(f"| {name} | {a:,.0f} | {b:,.0f} | {a / b:.2f} | {g} |")
    print()
    print(f"Loopback TCP ceiling (one connection, Python sender and receiver): {ceiling / 1e9:.2f} GB/s")


if __name__ == "__main__":
    main()
