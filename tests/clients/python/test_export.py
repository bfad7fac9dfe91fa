"""Parquet export to a real S3-compatible server (moto in server mode, on loopback) and to a
local file, read back by DuckDB and pyarrow and compared row for row with the source query.
"""

from __future__ import annotations

import datetime as dt
import json
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import closing
from decimal import Decimal
from pathlib import Path

import boto3
import duckdb
import psycopg
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
from bkg_server import Server

KEY, SECRET, REGION, BUCKET = "testing", "testing-secret", "us-east-1", "exports"


def _free_port() -> int:
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def s3():
    port = _free_port()
    moto = Path(sys.executable).parent / "moto_server"
    proc = subprocess.Popen(
        [str(moto), "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(endpoint, timeout=1)
            break
        except OSError:
            assert time.monotonic() < deadline, "moto did not start"
            time.sleep(0.2)
    client = boto3.client(
        "s3", endpoint_url=endpoint, region_name=REGION, aws_access_key_id=KEY, aws_secret_access_key=SECRET
    )
    client.create_bucket(Bucket=BUCKET)
    yield endpoint, client
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture(scope="module")
def server(s3):
    endpoint, _ = s3
    srv = Server(
        env={
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_REGION": REGION,
            "AWS_ACCESS_KEY_ID": KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET,
            "BKG_DB_EXPORT_ALLOWED_URLS": f"s3://{BUCKET}/allowed/",
            "BKG_DB_RLS_DEFAULT": "off",
        }
    )
    yield srv
    assert srv.stop() == 0


SOURCE = "SELECT id, name, amount, day, at, tags FROM orders ORDER BY id"


@pytest.fixture(scope="module")
def conn(server):
    c = psycopg.connect(server.dsn, autocommit=True)
    c.execute(
        "CREATE TABLE orders (id bigint PRIMARY KEY, name text, amount numeric(12,2), day date,"
        " at timestamptz, tags text[])"
    )
    c.execute(
        "INSERT INTO orders SELECT x, CASE WHEN x % 13 = 0 THEN NULL ELSE 'order ' || x END,"
        " x * 1.25, date '2024-01-01' + (x % 365), CAST(to_timestamp(1704067200 + x) AS timestamptz),"
        " ARRAY['t' || (x % 3), 'u'] FROM generate_series(1, 50000) AS g(x)"
    )
    yield c
    c.close()


def _normal(rows):
    out = []
    for r in rows:
        r = list(r)
        if isinstance(r[4], dt.datetime):
            r[4] = r[4].astimezone(dt.timezone.utc)
        r[2] = Decimal(r[2]) if r[2] is not None else None
        out.append(tuple(r))
    return out


def test_copy_to_s3_read_back_by_pyarrow_and_duckdb(server, conn, s3):
    endpoint, client = s3
    expected = _normal(conn.execute(SOURCE).fetchall())
    cur = conn.execute(f"COPY ({SOURCE}) TO 's3://{BUCKET}/allowed/orders.parquet'")
    assert cur.rowcount == 50000
    fs = pafs.S3FileSystem(
        endpoint_override=endpoint, access_key=KEY, secret_key=SECRET, region=REGION, scheme="http"
    )
    table = pq.read_table(f"{BUCKET}/allowed/orders.parquet", filesystem=fs)
    assert table.num_rows == 50000
    meta = pq.ParquetFile(f"{BUCKET}/allowed/orders.parquet", filesystem=fs).metadata
    assert meta.row_group(0).column(0).compression == "ZSTD"
    got = _normal([tuple(r.values()) for r in table.to_pylist()])
    assert got == expected
    # DuckDB reads the same object through its own S3 client.
    body = client.get_object(Bucket=BUCKET, Key="allowed/orders.parquet")["Body"].read()
    local = Path(server.dir) / "from-s3.parquet"
    local.write_bytes(body)
    d = duckdb.sql(f"SELECT id, name, amount, day, \"at\", tags FROM '{local}' ORDER BY id").fetchall()
    assert _normal(d) == expected


def test_export_endpoint_and_local_file_read_by_duckdb(server, conn):
    keys = json.loads((Path(server.dir) / "data-0" / "auth" / "keys.json").read_text())
    req = urllib.request.Request(
        f"http://127.0.0.1:{server.http_port}/export",
        data=json.dumps({"query": SOURCE, "url": "reports/orders.parquet"}).encode(),
        headers={"apikey": keys["service_key"], "content-type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req) as r:
        assert json.loads(r.read()) == {"rows": 50000, "url": "reports/orders.parquet", "format": "parquet"}
    path = Path(server.dir) / "data-0" / "exports" / "reports" / "orders.parquet"
    d = duckdb.sql(f"SELECT id, name, amount, day, \"at\", tags FROM '{path}' ORDER BY id").fetchall()
    assert _normal(d) == _normal(conn.execute(SOURCE).fetchall())


def test_forbidden_targets_write_nothing(server, conn, s3):
    _, client = s3
    for target, state in [
        (f"s3://{BUCKET}/elsewhere/orders.parquet", "42501"),
        ("s3://other-bucket/allowed/orders.parquet", "42501"),
        ("../outside.parquet", "42501"),
    ]:
        with pytest.raises(psycopg.Error) as e:
            conn.execute(f"COPY orders TO '{target}'")
        assert e.value.sqlstate == state, target
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=BUCKET).get("Contents", [])]
    assert all(k.startswith("allowed/") for k in keys), keys
    # A query that fails half-way leaves no object behind.
    with pytest.raises(psycopg.Error) as e:
        conn.execute(f"COPY (SELECT 1 / (id - 40000) FROM orders) TO 's3://{BUCKET}/allowed/broken.parquet'")
    assert e.value.sqlstate == "22012"
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=BUCKET).get("Contents", [])]
    assert "allowed/broken.parquet" not in keys
