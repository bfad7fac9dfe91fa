"""Telemetry through a real OTLP receiver (grpcio with opentelemetry-proto's TraceService, and
OTLP/HTTP protobuf): one trace per statement or request with parse/plan/execute/commit child
spans, SQLSTATE on errors, W3C traceparent honoured, CAVE_OTEL_SAMPLING_RATE 0 sends nothing and
1 sends everything, the rate changes at runtime through /admin/telemetry (and is audited), an
invalid rate stops the server at start, and /metrics passes `promtool check metrics`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.request

import psycopg
import pytest
from bkg_server import Server, _server_binary
from otlp_receiver import GrpcReceiver, HttpReceiver

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"


def _http(server: Server, method: str, path: str, key: str, body: bytes | None = None, headers=None):
    req = urllib.request.Request(f"http://127.0.0.1:{server.http_port}{path}", data=body, method=method)
    req.add_header("apikey", key)
    if body is not None:
        req.add_header("Content-Type", "application/json")
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def _env(endpoint: str, protocol: str, rate: str) -> dict[str, str]:
    return {
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
        "OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
        "OTEL_SERVICE_NAME": "bkg-under-test",
        "CAVE_OTEL_SAMPLING_RATE": rate,
    }


def _by_id(spans):
    return {s["span_id"]: s for s in spans}


def _descendants(spans, root):
    """Every span below `root` in its trace."""
    below, frontier = [], {root["span_id"]}
    same = [s for s in spans if s["trace_id"] == root["trace_id"]]
    while frontier:
        nxt = [s for s in same if s["parent_span_id"] in frontier]
        below += nxt
        frontier = {s["span_id"] for s in nxt}
    return below


def _statement(spans, text):
    return [s for s in spans if s["name"] == "pg.statement" and text in str(s["attributes"].get("db.query.text"))]


def _metrics_checked(server: Server) -> str:
    """The server's /metrics, after `promtool check metrics` accepted it."""
    with urllib.request.urlopen(f"http://127.0.0.1:{server.http_port}/metrics", timeout=10) as r:
        metrics = r.read().decode()
    promtool = shutil.which("promtool")
    assert promtool, "promtool not found (Debian package prometheus; scripts/install-test-deps.sh)"
    check = subprocess.run([promtool, "check", "metrics"], input=metrics, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    return metrics


@pytest.fixture
def grpc_receiver():
    r = GrpcReceiver()
    yield r
    r.stop()


def test_grpc_traces_have_the_statement_structure(grpc_receiver):
    server = Server(_env(grpc_receiver.endpoint, "grpc", "1.0"))
    try:
        # The simple query protocol (client-side binding): one message, one statement span.
        with psycopg.connect(server.dsn, autocommit=True, cursor_factory=psycopg.ClientCursor) as c:
            c.execute("CREATE TABLE tel (id int PRIMARY KEY, v text)")
            c.execute("INSERT INTO tel VALUES (1, 'a'), (2, 'b')")
            assert c.execute("SELECT count(*) FROM tel WHERE id > %s", (0,)).fetchone()[0] == 2
            with pytest.raises(psycopg.errors.DivisionByZero):
                c.execute("SELECT 1/0")
        # The extended protocol: the Execute is the statement span.
        with psycopg.connect(server.dsn, autocommit=True) as c:
            assert c.execute("SELECT v FROM tel WHERE id = %s AND v <> 'extended'", (1,)).fetchone() == ("a",)
        _, service = server.api_keys()
        traceparent = f"00-{TRACE_ID}-{PARENT_ID}-01"
        status, _ = _http(server, "GET", "/rest/v1/tel?select=id", service, headers={"traceparent": traceparent})
        assert status == 200
        received = grpc_receiver.received
        spans = received.wait_for(lambda s: _statement(s, "1/0") and any(x["trace_id"] == TRACE_ID for x in s))
        assert spans, "no spans arrived"
        assert {s["service"] for s in spans} == {"bkg-under-test"}
        # INSERT: one trace, its statement span the root, parse/plan-or-execute/commit below it.
        [insert] = _statement(spans, "INSERT INTO tel")
        assert insert["parent_span_id"] == ""
        assert insert["attributes"]["db.system.name"] == "postgresql"
        names = {s["name"] for s in _descendants(spans, insert)}
        assert {"sql.parse", "sql.execute", "sql.commit"} <= names, names
        [select] = _statement(spans, "SELECT count(*)")
        names = {s["name"] for s in _descendants(spans, select)}
        assert {"sql.parse", "sql.plan", "sql.execute"} <= names, names
        # The failing statement: error status and its SQLSTATE.
        [failed] = _statement(spans, "1/0")
        assert failed["status_code"] == 2  # STATUS_CODE_ERROR
        assert failed["attributes"]["db.response.status_code"] == "22012"
        [extended] = _statement(spans, "<> 'extended'")
        assert extended["parent_span_id"] == "" and extended["attributes"]["db.system.name"] == "postgresql"
        # REST under the caller's trace: same trace id, parented to the caller's span.
        rest = [s for s in spans if s["trace_id"] == TRACE_ID]
        root = [s for s in rest if s["parent_span_id"] == PARENT_ID]
        assert len(root) == 1, rest
        assert root[0]["attributes"]["http.response.status_code"] == 200
        assert root[0]["attributes"]["http.request.method"] == "GET"
        assert root[0]["name"] == "GET /rest/v1/{table}"
        ids = _by_id(rest)
        assert all(s["parent_span_id"] in ids or s is root[0] for s in rest), "every REST span hangs off the root"
        assert any(s["name"] == "sql.execute" for s in rest)
        # /metrics counts what was exported, and passes promtool.
        metrics = _metrics_checked(server)
        exported = [ln for ln in metrics.splitlines() if ln.startswith("bkg_otel_spans_exported_total ")]
        assert exported and int(exported[0].split()[1]) > 0, metrics
    finally:
        server.stop()


def test_flight_and_storage_spans(grpc_receiver):
    import adbc_driver_flightsql
    import adbc_driver_flightsql.dbapi as flight_sql

    server = Server(_env(grpc_receiver.endpoint, "grpc", "1.0"))
    try:
        # Flight SQL, under the caller's trace (gRPC metadata traceparent).
        traceparent = f"00-{TRACE_ID}-{PARENT_ID}-01"
        header = adbc_driver_flightsql.DatabaseOptions.RPC_CALL_HEADER_PREFIX.value + "traceparent"
        with flight_sql.connect(
            f"grpc://127.0.0.1:{server.flight_port}",
            db_kwargs={"username": "postgres", "password": server.password, header: traceparent},
            autocommit=True,
        ) as conn, conn.cursor() as cur:
            cur.execute("SELECT 'over flight' AS t")
            assert cur.fetchall() == [("over flight",)]
        # Storage: a bucket, an upload and a download.
        _, service = server.api_keys()
        status, body = _http(server, "POST", "/storage/v1/bucket", service, json.dumps({"id": "traced", "name": "traced"}).encode())
        assert status == 200, body
        status, body = _http(server, "POST", "/storage/v1/object/traced/a.txt", service, b"hello", {"Content-Type": "text/plain"})
        assert status == 200, body
        status, body = _http(server, "GET", "/storage/v1/object/traced/a.txt", service)
        assert (status, body) == (200, "hello")
        spans = grpc_receiver.received.wait_for(
            lambda s: any(x["name"] == "storage.download" for x in s)
            and any(x["trace_id"] == TRACE_ID and x["attributes"].get("rpc.system") == "grpc" for x in s)
        )
        rpcs = [s for s in spans if s["attributes"].get("rpc.system") == "grpc"]
        assert rpcs, [s["name"] for s in spans]
        assert all(s["trace_id"] == TRACE_ID and s["parent_span_id"] == PARENT_ID for s in rpcs), rpcs
        assert {s["attributes"]["rpc.service"] for s in rpcs} == {"arrow.flight.protocol.FlightService"}
        # The statement ran below one of the RPCs.
        below = [d for r in rpcs for d in _descendants(spans, r)]
        assert any(d["name"] == "sql.execute" for d in below), [d["name"] for d in below]
        for name, method in (("storage.upload", "POST"), ("storage.download", "GET")):
            [span] = [s for s in spans if s["name"] == name]
            assert span["attributes"]["storage.object"] == "a.txt", span
            parent = _by_id(spans)[span["parent_span_id"]]
            assert parent["attributes"]["http.request.method"] == method, parent
        [download] = [s for s in spans if s["name"] == "storage.download"]
        assert download["attributes"]["storage.bytes"] == 5
        # Storage is in /metrics too, and the exposition still passes promtool.
        metrics = _metrics_checked(server)
        values = dict(ln.split() for ln in metrics.splitlines() if ln.startswith("bkg_storage_"))
        assert values["bkg_storage_uploads_total"] == "1" and values["bkg_storage_upload_bytes_total"] == "5", values
        assert values["bkg_storage_downloads_total"] == "1" and values["bkg_storage_download_bytes_total"] == "5", values
    finally:
        server.stop()


def test_sampling_zero_sends_nothing_until_changed_at_runtime(grpc_receiver):
    server = Server(_env(grpc_receiver.endpoint, "grpc", "0"))
    try:
        with psycopg.connect(server.dsn, autocommit=True) as c:
            for i in range(20):
                c.execute("SELECT %s::int", (i,))
        time.sleep(3)
        assert grpc_receiver.received.snapshot() == []
        _, service = server.api_keys()
        status, body = _http(server, "GET", "/admin/telemetry", service)
        assert status == 200, body
        assert json.loads(body)["sampling_rate"] == 0.0
        status, body = _http(server, "PUT", "/admin/telemetry", service, json.dumps({"sampling_rate": 1.5}).encode())
        assert status == 400, body
        status, body = _http(server, "PUT", "/admin/telemetry", service, json.dumps({"sampling_rate": 1}).encode())
        assert status == 200, body
        with psycopg.connect(server.dsn, autocommit=True) as c:
            c.execute("SELECT 'after the change'")
        spans = grpc_receiver.received.wait_for(lambda s: _statement(s, "after the change"))
        assert _statement(spans, "after the change")
        status, body = _http(server, "GET", "/audit?action=settings", service)
        events = json.loads(body)["events"]
        assert events and events[0]["detail"] == {"setting": "sampling_rate", "old": 0.0, "new": 1.0}, events
        # A user's token may not change it.
        anon, _ = server.api_keys()
        assert _http(server, "PUT", "/admin/telemetry", anon, b'{"sampling_rate": 0}')[0] in (401, 403)
    finally:
        server.stop()


def _ws_join(server: Server, key: str, topic: str) -> dict:
    """Joins a realtime channel over a hand-made WebSocket (RFC 6455, one masked text frame) and
    returns the server's reply."""
    import base64
    import socket
    import struct

    s = socket.create_connection(("127.0.0.1", server.http_port), timeout=10)
    nonce = base64.b64encode(os.urandom(16)).decode()
    s.sendall(
        (
            f"GET /realtime/v1/websocket?apikey={key}&vsn=1.0.0 HTTP/1.1\r\nHost: localhost\r\n"
            f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {nonce}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(1)
    assert head.startswith(b"HTTP/1.1 101"), head
    payload = json.dumps({"topic": topic, "event": "phx_join", "payload": {"config": {}}, "ref": "1", "join_ref": "1"}).encode()
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    assert len(payload) < 126
    s.sendall(bytes([0x81, 0x80 | len(payload)]) + mask + masked)

    def exact(n):
        out = b""
        while len(out) < n:
            out += s.recv(n - len(out))
        return out

    first, second = exact(2)
    n = second & 0x7F
    if n == 126:
        n = struct.unpack(">H", exact(2))[0]
    elif n == 127:
        n = struct.unpack(">Q", exact(8))[0]
    reply = json.loads(exact(n))
    s.close()
    return reply


def test_sampling_is_decided_at_the_door(grpc_receiver):
    """Parent-based at every rate: a caller's sampled traceparent is traced at rate 0, an
    unsampled one is not at rate 1; a realtime join is a trace of its own; and no span starts a
    trace except at a door (nothing from background work)."""
    server = Server(_env(grpc_receiver.endpoint, "grpc", "0"))
    try:
        _, service = server.api_keys()
        sampled, unsampled = "a" * 32, "b" * 32
        status, _ = _http(server, "GET", "/rest/v1/no_such?select=id", service,
                          headers={"traceparent": f"00-{sampled}-{PARENT_ID}-01"})
        assert status == 404
        spans = grpc_receiver.received.wait_for(lambda s: any(x["trace_id"] == sampled for x in s))
        [root] = [s for s in spans if s["trace_id"] == sampled and s["parent_span_id"] == PARENT_ID]
        assert root["attributes"]["http.response.status_code"] == 404
        status, _ = _http(server, "PUT", "/admin/telemetry", service, b'{"sampling_rate": 1}')
        assert status == 200
        status, _ = _http(server, "GET", "/rest/v1/no_such?select=id", service,
                          headers={"traceparent": f"00-{unsampled}-{PARENT_ID}-00"})
        assert status == 404
        reply = _ws_join(server, service, "realtime:room-1")
        assert reply["event"] == "phx_reply" and reply["payload"]["status"] == "ok", reply
        with psycopg.connect(server.dsn, autocommit=True) as c:
            c.execute("SELECT 'last of the test'")
        spans = grpc_receiver.received.wait_for(
            lambda s: _statement(s, "last of the test") and any(x["name"] == "realtime.join" for x in s))
        [join] = [s for s in spans if s["name"] == "realtime.join"]
        assert join["parent_span_id"] == "" and join["attributes"]["messaging.destination.name"] == "realtime:room-1"
        assert not [s for s in spans if s["trace_id"] == unsampled], "an unsampled caller's request was traced"
        doors = {"pg.statement", "realtime.join", "rpc"}
        roots = [s for s in spans if s["parent_span_id"] == ""]
        assert all(s["name"] in doors or s["name"].startswith(("GET ", "POST ", "PUT ")) for s in roots), \
            sorted({s["name"] for s in roots})
        ids = {s["span_id"] for s in spans}
        orphans = [s for s in spans if s["parent_span_id"] not in ids | {"", PARENT_ID}]
        assert not orphans, orphans
    finally:
        server.stop()


def test_a_stalled_receiver_never_blocks_requests(grpc_receiver):
    """The export queue is bounded: with a receiver that stopped answering, statements keep
    their pace and the spans that do not fit are dropped and counted."""
    server = Server(_env(grpc_receiver.endpoint, "grpc", "1"))
    try:
        grpc_receiver.stall.set()
        started = time.monotonic()
        with psycopg.connect(server.dsn, autocommit=True) as c:
            # About four spans a statement (statement, parse, plan, execute): past the queue of 8192.
            for i in range(3000):
                c.execute("SELECT %s::int", (i,))
        took = time.monotonic() - started
        values = {}
        for line in _metrics_checked(server).splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.partition(" ")
                values[name] = value
        assert int(values["bkg_otel_spans_dropped_total"]) > 0, values
        # Not a timing assertion: a blocked request would wait for the export timeout (10 s) or
        # forever; 3000 statements take a few seconds on a debug build.
        assert took < 60, took
        grpc_receiver.stall.clear()
        # The backlog goes out first (a statement now would find the queue still full).
        grpc_receiver.received.wait_for(lambda s: len(s) >= 8192, timeout=60)
        with psycopg.connect(server.dsn, autocommit=True) as c:
            c.execute("SELECT 'after the stall'")
        spans = grpc_receiver.received.wait_for(lambda s: _statement(s, "after the stall"), timeout=30)
        assert _statement(spans, "after the stall"), "export did not resume"
    finally:
        server.stop()


def test_http_protobuf_exporter():
    receiver = HttpReceiver()
    server = Server(_env(receiver.endpoint, "http/protobuf", "1"))
    try:
        with psycopg.connect(server.dsn, autocommit=True) as c:
            c.execute("SELECT 'over http'")
        spans = receiver.received.wait_for(lambda s: _statement(s, "over http"))
        assert _statement(spans, "over http"), spans[:5]
    finally:
        server.stop()
        receiver.stop()


@pytest.mark.parametrize("rate", ["1.5", "-0.1", "often"])
def test_an_invalid_rate_stops_the_server_at_start(rate, tmp_path):
    out = subprocess.run(
        [str(_server_binary()), "serve", "--data-dir", str(tmp_path / "d"), "--pg-listen", "127.0.0.1:0",
         "--http-listen", "127.0.0.1:0", "--flight-listen", "127.0.0.1:0"],
        env={**os.environ, "CAVE_OTEL_SAMPLING_RATE": rate, "BKG_DB_PASSWORD": "x"},
        capture_output=True, text=True, timeout=60,
    )
    assert out.returncode != 0
    assert "CAVE_OTEL_SAMPLING_RATE" in out.stderr, out.stderr
