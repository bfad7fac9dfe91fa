"""Driver tests: the real psycopg 3 client against a real bkg-db server process.

Run with `scripts/test-clients.sh` (or `make test-clients`). The server binary comes from
`BKG_DB_BIN`, else `$CARGO_TARGET_DIR/debug/bkg-db`, else `~/.cache/bkg-target/debug/bkg-db`.

Things psycopg does that bkg-db does not support yet are left out on purpose:
- interval parameters (text `'1 day 2:03:04'` and binary), savepoints (nested
  `conn.transaction()`), named cursors, COPY in binary format,   text-format uuid parameters in comparisons,
  `SELECT %b` (the result column is typed text).
- Where bkg-db differs from PostgreSQL, nothing is asserted: statements of a pipeline before
  an error (PostgreSQL rolls them back up to the Sync) and the transaction status after a
  failed COMMIT (PostgreSQL: idle; bkg-db reports a failed transaction but autocommits).
"""

from __future__ import annotations

import datetime as dt
import os
import re
import struct
import threading
import time
import uuid
from decimal import Decimal

import psycopg
import pytest
from bkg_server import Server
from psycopg import errors, pq
from psycopg.types.json import Json, Jsonb

UTC = dt.timezone.utc


# --------------------------------------------------------------------------- server


@pytest.fixture(scope="session")
def server():
    srv = Server()
    yield srv
    code = srv.stop()
    assert code == 0, f"bkg-db exited with {code} after SIGTERM"


@pytest.fixture
def connect(server):
    """Opens connections for one test and closes them afterwards."""
    opened: list[psycopg.Connection] = []

    def _connect(**kwargs) -> psycopg.Connection:
        # psycopg's default: statements run 5 times are prepared server-side, and DEALLOCATE ALL
        # follows every ROLLBACK and DDL.
        c = psycopg.connect(server.dsn, **kwargs)
        opened.append(c)
        return c

    yield _connect
    for c in opened:
        c.close()


@pytest.fixture
def conn(connect):
    return connect(autocommit=True)


_table_seq = 0


def table_name(prefix: str) -> str:
    """Tables live in one server for the whole session: give each test its own."""
    global _table_seq
    _table_seq += 1
    return f"{prefix}_{os.getpid()}_{_table_seq}"


# ------------------------------------------------------------------------------ types

INTERVAL_TEXT = "3 days 4 hours 5 minutes 6.5 seconds"

# name, SQL type, value sent, value expected back
TYPED_VALUES = [
    ("b", "boolean", True, True),
    ("i2", "smallint", -12345, -12345),
    ("i4", "integer", 2_000_000_000, 2_000_000_000),
    ("i8", "bigint", -9_000_000_000_000_000_000, -9_000_000_000_000_000_000),
    ("f4", "real", -2.5, -2.5),
    ("f8", "double precision", 3.141592653589793, 3.141592653589793),
    ("n", "numeric(12,4)", Decimal("12345.6789"), Decimal("12345.6789")),
    ("t", "text", "héllo 'wörld' \\ \"ok\" ✓", "héllo 'wörld' \\ \"ok\" ✓"),
    ("vc", "varchar(20)", "varchar value", "varchar value"),
    ("by", "bytea", b"\x00\x01\xde\xad\xbe\xef\xff", b"\x00\x01\xde\xad\xbe\xef\xff"),
    ("d", "date", dt.date(2024, 2, 29), dt.date(2024, 2, 29)),
    ("tm", "time", dt.time(13, 14, 15, 123456), dt.time(13, 14, 15, 123456)),
    ("ts", "timestamp", dt.datetime(2024, 1, 2, 3, 4, 5, 678901), dt.datetime(2024, 1, 2, 3, 4, 5, 678901)),
    (
        "tstz",
        "timestamptz",
        dt.datetime(2024, 6, 1, 14, 30, 0, 250000, tzinfo=dt.timezone(dt.timedelta(hours=2))),
        dt.datetime(2024, 6, 1, 12, 30, 0, 250000, tzinfo=UTC),
    ),
    # timedelta parameters are refused by bkg-db (both formats): sent as a string.
    ("iv", "interval", INTERVAL_TEXT, dt.timedelta(days=3, hours=4, minutes=5, seconds=6.5)),
    (
        "u",
        "uuid",
        uuid.UUID("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
        uuid.UUID("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
    ),
    ("j", "json", Json({"a": [1, 2.5, None], "b": "x"}), {"a": [1, 2.5, None], "b": "x"}),
    ("jb", "jsonb", Jsonb({"k": True, "nested": {"l": [1]}}), {"k": True, "nested": {"l": [1]}}),
]

EXPECTED_OIDS = {
    "b": 16, "i2": 21, "i4": 23, "i8": 20, "f4": 700, "f8": 701, "n": 1700, "t": 25,
    "vc": 1043, "by": 17, "d": 1082, "tm": 1083, "ts": 1114, "tstz": 1184, "iv": 1186,
    "u": 2950, "j": 114, "jb": 3802,
}


def create_typed_table(conn) -> str:
    name = table_name("typed")
    cols = ", ".join(f"{c} {t}" for c, t, _, _ in TYPED_VALUES)
    conn.execute(f"CREATE TABLE {name} (id int PRIMARY KEY, {cols})")
    return name


@pytest.mark.parametrize("param_format", ["s", "t", "b"], ids=["auto", "text", "binary"])
def test_parameters_of_every_type_round_trip(conn, param_format):
    tbl = create_typed_table(conn)
    cols = [c for c, _, _, _ in TYPED_VALUES]
    # The interval goes as an untyped string in every mode (timedelta is refused).
    marks = ["%s" if c == "iv" else f"%{param_format}" for c in cols]
    insert = f"INSERT INTO {tbl} (id, {', '.join(cols)}) VALUES (%s, {', '.join(marks)})"
    cur = conn.execute(insert, [1] + [v for _, _, v, _ in TYPED_VALUES])
    assert cur.rowcount == 1
    # NULL of every type, sent as parameters too.
    conn.execute(insert.replace("%b", "%s").replace("%t", "%s"), [2] + [None] * len(cols))

    for binary in (False, True):
        cur = conn.cursor(binary=binary)
        cur.execute(f"SELECT id, {', '.join(cols)} FROM {tbl} ORDER BY id")
        assert [d.name for d in cur.description] == ["id"] + cols
        assert [d.type_code for d in cur.description[1:]] == [EXPECTED_OIDS[c] for c in cols]
        full, nulls = cur.fetchall()
        assert full[0] == 1 and nulls[0] == 2
        for (col, _, _, expected), got in zip(TYPED_VALUES, full[1:]):
            assert got == expected, f"{col} (binary results: {binary}): {got!r} != {expected!r}"
            assert type(got) is type(expected), f"{col}: {type(got)}"
        assert str(full[1 + cols.index("n")]) == "12345.6789"  # the scale survives
        assert nulls[1:] == (None,) * len(cols)


# Values at the edges of each type, each sent as a parameter and read back in text and in
# binary. `expected_binary` differs where PostgreSQL's binary format is more exact (float4).
def _f32(x: float) -> float:
    return struct.unpack("f", struct.pack("f", x))[0]


EDGE_VALUES = [
    ("smallint", [-32768, 32767, 0]),
    ("integer", [-2147483648, 2147483647]),
    ("bigint", [-9223372036854775808, 9223372036854775807]),
    ("double precision", [0.1, -1e308, 5e-324, float("inf"), float("-inf")]),
    ("real", [1e30, -0.0, float("inf")]),
    ("numeric(12,4)", [Decimal("-0.0001"), Decimal("99999999.9999"), Decimal("0.0000")]),
    ("numeric", [Decimal("12345678901234567890.5"), Decimal("-0.25")]),
    ("text", ["", "unicode ✓ 日本語 \U0001F600", "tab\tnew\nline\\back", "x" * 100_000]),
    ("varchar(5)", ["abcde", ""]),
    ("bytea", [b"", bytes(range(256)), b"\\x00"]),
    ("date", [dt.date(1, 1, 1), dt.date(9999, 12, 31), dt.date(1970, 1, 1), dt.date(1969, 12, 31)]),
    ("time", [dt.time(0, 0), dt.time(23, 59, 59, 999999)]),
    ("timestamp", [dt.datetime(1900, 1, 1), dt.datetime(2262, 1, 1, 0, 0, 0, 1), dt.datetime(1969, 12, 31, 23, 59, 59)]),
    (
        "timestamptz",
        [
            dt.datetime(1960, 6, 1, 12, 0, tzinfo=dt.timezone(dt.timedelta(hours=-5))),
            dt.datetime(2038, 1, 19, 3, 14, 8, tzinfo=UTC),
        ],
    ),
    ("uuid", [uuid.UUID(int=0), uuid.UUID(int=2**128 - 1), uuid.UUID("12345678-1234-5678-1234-567812345678")]),
    ("json", [Json([1, "é", {"a": None}]), Json("just a string"), Json(1.5), Json(None)]),
    ("jsonb", [Jsonb([]), Jsonb({"a": {"b": [1, 2, {"c": False}]}})]),
    ("boolean", [False]),
]


@pytest.mark.parametrize("sql_type,values", EDGE_VALUES, ids=[t for t, _ in EDGE_VALUES])
def test_edge_values_round_trip(conn, sql_type, values):
    tbl = table_name("edge")
    conn.execute(f"CREATE TABLE {tbl} (id int PRIMARY KEY, v {sql_type})")
    with conn.cursor() as cur:
        cur.executemany(f"INSERT INTO {tbl} VALUES (%s, %s)", list(enumerate(values)))
    for binary in (False, True):
        cur = conn.cursor(binary=binary)
        cur.execute(f"SELECT v FROM {tbl} ORDER BY id")
        got = [r[0] for r in cur.fetchall()]
        expected = [v.obj if isinstance(v, (Json, Jsonb)) else v for v in values]
        if sql_type == "real" and binary:
            expected = [_f32(v) for v in expected]
        assert got == expected, f"binary results: {binary}"


def test_arrays_round_trip_in_text_and_binary(conn):
    tbl = table_name("arrs")
    conn.execute(
        f"CREATE TABLE {tbl} (id int PRIMARY KEY, nums int[], tags text[], ivs interval[],"
        " days date[], ids uuid[])"
    )
    row = (
        [3, None, -1],
        ["a b", None, '{"q"}', ""],
        ["1 day", "2 hours 3 minutes 4 seconds", "1 mon"],
        [dt.date(2024, 2, 29), None],
        [uuid.UUID(int=7)],
    )
    # interval elements go as text (psycopg refuses timedelta parameters here too).
    conn.execute(
        f"INSERT INTO {tbl} VALUES (1, %s, %s, %s::interval[], %s, %s), (2, NULL, '{{}}', '{{}}', NULL, NULL)",
        row,
    )
    for binary in (False, True):
        cur = conn.cursor(binary=binary)
        cur.execute(f"SELECT nums, tags, ivs, days, ids FROM {tbl} ORDER BY id")
        assert [d.type_code for d in cur.description] == [1007, 1009, 1187, 1182, 2951]
        full, empty = cur.fetchall()
        assert full == (
            row[0],
            row[1],
            [dt.timedelta(days=1), dt.timedelta(hours=2, minutes=3, seconds=4), dt.timedelta(days=30)],
            row[3],
            row[4],
        ), f"binary results: {binary}"
        assert empty == (None, [], [], None, None)


def test_parameters_in_where_clauses(conn):
    tbl = table_name("where")
    conn.execute(
        f"CREATE TABLE {tbl} (id int PRIMARY KEY, i8 bigint, n numeric(10,2), t text, by bytea,"
        " d date, ts timestamp, tstz timestamptz, u uuid, b boolean)"
    )
    row = (
        7, 2**40, Decimal("1.50"), "needle", b"\x00\xff", dt.date(2024, 1, 1),
        dt.datetime(2024, 1, 1, 12), dt.datetime(2024, 1, 1, 10, tzinfo=UTC),
        uuid.UUID(int=7), True,
    )
    conn.execute(f"INSERT INTO {tbl} VALUES ({', '.join(['%s'] * len(row))})", row)
    conn.execute(f"INSERT INTO {tbl} (id) VALUES (8)")
    probes = [
        ("id", "%s", 7), ("id", "%b", 7), ("i8", "%t", 2**40), ("i8", "%b", 2**40),
        ("n", "%t", Decimal("1.5")), ("n", "%b", Decimal("1.5")),
        ("t", "%s", "needle"), ("by", "%t", b"\x00\xff"), ("by", "%b", b"\x00\xff"),
        ("d", "%t", dt.date(2024, 1, 1)), ("d", "%b", dt.date(2024, 1, 1)),
        ("ts", "%b", dt.datetime(2024, 1, 1, 12)),
        # The same instant written with another offset.
        ("tstz", "%t", dt.datetime(2024, 1, 1, 12, tzinfo=dt.timezone(dt.timedelta(hours=2)))),
        ("tstz", "%b", dt.datetime(2024, 1, 1, 12, tzinfo=dt.timezone(dt.timedelta(hours=2)))),
        ("u", "%b", uuid.UUID(int=7)), ("u", "%s", str(uuid.UUID(int=7))),
        ("b", "%t", True), ("b", "%b", True),
    ]
    for col, mark, value in probes:
        rows = conn.execute(f"SELECT id FROM {tbl} WHERE {col} = {mark}", (value,)).fetchall()
        assert rows == [(7,)], f"{col} = {mark} {value!r}"
    assert conn.execute(f"SELECT id FROM {tbl} WHERE id > %s AND t IS NULL", (0,)).fetchall() == [(8,)]
    assert conn.execute(f"SELECT count(*) FROM {tbl} WHERE i8 = %s", (2**40 + 1,)).fetchone() == (0,)


# ---------------------------------------------------------------- prepared statements


def _named_parses(trace: str) -> list[tuple[str, str]]:
    """(statement name, SQL) of every named Parse message in a libpq trace."""
    return re.findall(r'^F\t\d+\tParse\t "([^"]+)" "((?:[^"]|"")*)"', trace, re.M)


def _binds_of(trace: str, name: str) -> int:
    return len(re.findall(rf'^F\t\d+\tBind\t "" "{re.escape(name)}"', trace, re.M))


def test_server_side_prepared_statements(server, conn, connect, tmp_path):
    tbl = table_name("prep")
    conn.execute(f"CREATE TABLE {tbl} (id int PRIMARY KEY, name text, score double precision)")

    # A connection of its own: psycopg would send DEALLOCATE ALL after a ROLLBACK or DDL.
    pconn = connect(autocommit=True, prepare_threshold=5)
    trace_path = tmp_path / "libpq.trace"
    with open(trace_path, "w") as trace_file:
        pconn.pgconn.trace(trace_file.fileno())
        pconn.pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS)
        cur = pconn.cursor()
        insert = f"INSERT INTO {tbl} (id, name, score) VALUES (%s, %s, %s)"
        for i in range(10):
            cur.execute(insert, (i, f"name-{i}", i * 1.5), prepare=True)
            assert cur.rowcount == 1
        for i in (3, 7, 0, 9):
            cur.execute(f"SELECT name, score FROM {tbl} WHERE id = %s", (i,), prepare=True)
            assert cur.fetchall() == [(f"name-{i}", i * 1.5)]
        bcur = pconn.cursor(binary=True)
        for i in (1, 2):
            bcur.execute(f"SELECT id, name FROM {tbl} WHERE id = %s", (i,), prepare=True)
            assert bcur.fetchone() == (i, f"name-{i}")
        # Without prepare=True psycopg prepares a query from its 6th run on (threshold 5).
        for _ in range(8):
            cur.execute(f"SELECT count(*) FROM {tbl} WHERE score >= %s", (3.0,))
            assert cur.fetchone() == (8,)
        # Prepared statements survive transactions that commit.
        with pconn.transaction():
            cur.execute(insert, (100, "in-tx", 0.5), prepare=True)
        pconn.pgconn.untrace()
    trace = trace_path.read_text()

    parses = _named_parses(trace)
    by_sql = {sql.replace('""', '"'): name for name, sql in parses}
    assert len(parses) == len(by_sql) == 4, parses  # each statement parsed once
    ins_name = by_sql[f"INSERT INTO {tbl} (id, name, score) VALUES ($1, $2, $3)"]
    sel_name = by_sql[f"SELECT name, score FROM {tbl} WHERE id = $1"]
    cnt_name = by_sql[f"SELECT count(*) FROM {tbl} WHERE score >= $1"]
    assert _binds_of(trace, ins_name) == 11
    assert _binds_of(trace, sel_name) == 4
    assert _binds_of(trace, cnt_name) == 3  # runs 6, 7, 8

    # The server knows the statements by name and describes them.
    desc = pconn.pgconn.describe_prepared(ins_name.encode())
    assert desc.status == pq.ExecStatus.COMMAND_OK
    assert desc.nparams == 3 and desc.nfields == 0
    desc = pconn.pgconn.describe_prepared(sel_name.encode())
    assert desc.status == pq.ExecStatus.COMMAND_OK
    assert desc.nparams == 1
    assert [desc.fname(i) for i in range(desc.nfields)] == [b"name", b"score"]
    assert [desc.ftype(i) for i in range(desc.nfields)] == [25, 701]
    missing = pconn.pgconn.describe_prepared(b"no_such_statement")
    assert missing.status == pq.ExecStatus.FATAL_ERROR
    assert missing.error_field(pq.DiagnosticField.SQLSTATE) == b"26000"

    assert conn.execute(f"SELECT count(*), sum(score) FROM {tbl}").fetchone() == (11, 68.0)


# ---------------------------------------------------------------------- transactions


def _count(conn, tbl, where="true") -> int:
    return conn.execute(f"SELECT count(*) FROM {tbl} WHERE {where}").fetchone()[0]


def test_commit_and_rollback(conn, connect):
    tbl = table_name("tx")
    conn.execute(f"CREATE TABLE {tbl} (id int PRIMARY KEY, v text)")
    tx = connect()  # not autocommit: psycopg sends BEGIN before the first statement
    assert tx.info.transaction_status == pq.TransactionStatus.IDLE
    tx.execute(f"INSERT INTO {tbl} VALUES (%s, %s)", (1, "committed"))
    assert tx.info.transaction_status == pq.TransactionStatus.INTRANS
    assert _count(conn, tbl) == 0  # not visible before COMMIT
    assert _count(tx, tbl) == 1  # but to the transaction itself
    tx.commit()
    assert tx.info.transaction_status == pq.TransactionStatus.IDLE
    assert _count(conn, tbl) == 1

    tx.execute(f"INSERT INTO {tbl} VALUES (%s, %s)", (2, "rolled back"))
    tx.execute(f"UPDATE {tbl} SET v = %s WHERE id = %s", ("changed", 1))
    tx.execute(f"DELETE FROM {tbl} WHERE id = %s", (1,))
    assert _count(tx, tbl) == 1
    tx.rollback()
    assert conn.execute(f"SELECT id, v FROM {tbl}").fetchall() == [(1, "committed")]
    assert tx.execute(f"SELECT id, v FROM {tbl}").fetchall() == [(1, "committed")]
    tx.rollback()

    # DDL is transactional too.
    tbl2 = table_name("tx_ddl")
    tx.execute(f"CREATE TABLE {tbl2} (id int)")
    tx.rollback()
    with pytest.raises(errors.UndefinedTable):
        conn.execute(f"SELECT * FROM {tbl2}")


def test_transaction_context_manager(conn, connect):
    tbl = table_name("txcm")
    conn.execute(f"CREATE TABLE {tbl} (id int PRIMARY KEY)")
    tx = connect(autocommit=True)
    with tx.transaction():
        tx.execute(f"INSERT INTO {tbl} VALUES (1)")
        tx.execute(f"INSERT INTO {tbl} VALUES (2)")
        assert tx.info.transaction_status == pq.TransactionStatus.INTRANS
        assert _count(conn, tbl) == 0
    assert tx.info.transaction_status == pq.TransactionStatus.IDLE
    assert _count(conn, tbl) == 2

    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        with tx.transaction():
            tx.execute(f"INSERT INTO {tbl} VALUES (3)")
            raise Boom()
    assert _count(conn, tbl) == 2

    with tx.transaction() as t:
        tx.execute(f"INSERT INTO {tbl} VALUES (4)")
        raise psycopg.Rollback(t)  # leaves the block quietly, rolled back
    assert _count(conn, tbl) == 2

    # A unique violation inside the block rolls all of it back.
    with pytest.raises(errors.UniqueViolation):
        with tx.transaction():
            tx.execute(f"INSERT INTO {tbl} VALUES (5)")
            tx.execute(f"INSERT INTO {tbl} VALUES (1)")
    assert sorted(r[0] for r in conn.execute(f"SELECT id FROM {tbl}")) == [1, 2]
    assert tx.info.transaction_status == pq.TransactionStatus.IDLE


@pytest.mark.parametrize(
    "level,shown",
    [
        (psycopg.IsolationLevel.READ_COMMITTED, "read committed"),
        (psycopg.IsolationLevel.REPEATABLE_READ, "repeatable read"),
    ],
)
def test_isolation_level_attribute(connect, level, shown):
    tx = connect()
    tx.isolation_level = level
    assert tx.execute("SHOW transaction_isolation").fetchone() == (shown,)
    tx.rollback()


def test_error_mid_transaction_fails_until_rollback(conn, connect):
    tbl = table_name("failed")
    conn.execute(f"CREATE TABLE {tbl} (id int PRIMARY KEY)")
    tx = connect()
    tx.execute(f"INSERT INTO {tbl} VALUES (1)")
    with pytest.raises(errors.UndefinedTable) as exc:
        tx.execute("SELECT * FROM no_such_table_here")
    assert exc.value.sqlstate == "42P01"
    assert tx.info.transaction_status == pq.TransactionStatus.INERROR
    for stmt in ("SELECT 1", f"INSERT INTO {tbl} VALUES (2)"):
        with pytest.raises(errors.InFailedSqlTransaction) as exc:
            tx.execute(stmt)
        assert exc.value.sqlstate == "25P02"
    tx.rollback()
    assert tx.info.transaction_status == pq.TransactionStatus.IDLE
    assert tx.execute("SELECT 41 + 1").fetchone() == (42,)
    assert _count(conn, tbl) == 0  # the insert before the error is gone too
    tx.rollback()

    # COMMIT of a failed transaction rolls it back and ends it.
    tx.execute(f"INSERT INTO {tbl} VALUES (3)")
    with pytest.raises(errors.DivisionByZero):
        tx.execute("SELECT 1 / 0")
    tx.commit()
    assert tx.info.transaction_status == pq.TransactionStatus.IDLE
    assert _count(conn, tbl) == 0


def test_serialization_failure_between_two_connections(conn, connect):
    tbl = table_name("ser")
    conn.execute(f"CREATE TABLE {tbl} (id int PRIMARY KEY, v int)")
    conn.execute(f"INSERT INTO {tbl} VALUES (1, 0), (2, 0)")
    a, b = connect(), connect()
    for c in (a, b):
        c.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ

    # Both update the same row: the second waits for the first's row lock and, once the first
    # committed, fails with 40001 (REPEATABLE READ, as in PostgreSQL).
    assert a.execute(f"UPDATE {tbl} SET v = %s WHERE id = %s", (100, 2)).rowcount == 1
    outcome = {}

    def second():
        try:
            b.execute(f"UPDATE {tbl} SET v = %s WHERE id = %s", (200, 2))
            outcome["ok"] = True
        except errors.SerializationFailure as e:
            outcome["error"] = e

    waiter = threading.Thread(target=second)
    waiter.start()
    waiter.join(0.5)
    assert waiter.is_alive(), "the second writer must wait for the row lock"
    a.commit()
    waiter.join(10)
    assert not waiter.is_alive()
    assert outcome["error"].sqlstate == "40001"
    b.rollback()
    assert conn.execute(f"SELECT id, v FROM {tbl} ORDER BY id").fetchall() == [(1, 0), (2, 100)]

    # When the other commit is already in when the UPDATE runs, the UPDATE itself fails.
    assert b.execute(f"SELECT v FROM {tbl} WHERE id = 2").fetchone() == (100,)  # snapshot taken
    a.execute(f"UPDATE {tbl} SET v = v + 1 WHERE id = 2")
    a.commit()
    with pytest.raises(errors.SerializationFailure):
        b.execute(f"UPDATE {tbl} SET v = v + 10 WHERE id = 2")
    b.rollback()
    # A retry with a fresh snapshot succeeds.
    b.execute(f"UPDATE {tbl} SET v = v + 10 WHERE id = 2")
    b.commit()
    assert conn.execute(f"SELECT v FROM {tbl} WHERE id = 2").fetchone() == (111,)

    # Different rows do not conflict.
    a.execute(f"UPDATE {tbl} SET v = 1 WHERE id = 1")
    b.execute(f"UPDATE {tbl} SET v = 2 WHERE id = 2")
    a.commit()
    b.commit()
    assert conn.execute(f"SELECT id, v FROM {tbl} ORDER BY id").fetchall() == [(1, 1), (2, 2)]


def test_a_failed_commit_leaves_the_connection_idle(connect, conn):
    # Two transactions change the catalog; the second to commit loses (40001). As in
    # PostgreSQL, its COMMIT ends the transaction: the connection is idle, not failed.
    a = connect()
    t1, t2 = table_name("ddl_a"), table_name("ddl_b")
    a.execute(f"CREATE TABLE {t1} (x int)")
    assert a.info.transaction_status == pq.TransactionStatus.INTRANS
    conn.execute(f"CREATE TABLE {t2} (x int)")
    with pytest.raises(errors.SerializationFailure):
        a.commit()
    assert a.info.transaction_status == pq.TransactionStatus.IDLE
    # The same with a plain COMMIT statement in autocommit mode (simple protocol).
    b = connect(autocommit=True)
    b.execute("BEGIN")
    b.execute(f"CREATE TABLE {t1} (x int)")
    conn.execute(f"DROP TABLE {t2}")
    with pytest.raises(errors.SerializationFailure):
        b.execute("COMMIT")
    assert b.info.transaction_status == pq.TransactionStatus.IDLE
    assert b.execute("SELECT 1").fetchone() == (1,)
    assert conn.execute(f"SELECT count(*) FROM pg_class WHERE relname = '{t1}'").fetchone() == (0,)


# ---------------------------------------------------------------------------- errors


def test_unique_violation(conn):
    tbl = table_name("uniq")
    conn.execute(f"CREATE TABLE {tbl} (id int PRIMARY KEY, email text UNIQUE)")
    conn.execute(f"INSERT INTO {tbl} VALUES (%s, %s)", (1, "a@example.com"))
    with pytest.raises(errors.UniqueViolation) as exc:
        conn.execute(f"INSERT INTO {tbl} VALUES (%s, %s)", (1, "b@example.com"))
    assert exc.value.sqlstate == "23505"
    assert exc.value.diag.severity_nonlocalized == "ERROR" or exc.value.diag.severity == "ERROR"
    assert f"{tbl}_pkey" in exc.value.diag.message_primary
    assert exc.value.diag.message_detail == "Key (id)=(1) already exists."
    with pytest.raises(errors.UniqueViolation):
        conn.execute(f"INSERT INTO {tbl} VALUES (%s, %s)", (2, "a@example.com"))
    # The session stays usable and nothing was written.
    assert conn.execute(f"SELECT id, email FROM {tbl}").fetchall() == [(1, "a@example.com")]
    # executemany stops at the failing row. (Whether the rows before it stay is not
    # checked: PostgreSQL rolls back the whole pipeline up to Sync, bkg-db keeps them.)
    with pytest.raises(errors.UniqueViolation):
        conn.cursor().executemany(f"INSERT INTO {tbl} VALUES (%s, %s)", [(3, "c"), (1, "d"), (4, "e")])
    assert _count(conn, tbl, "id = 4") == 0


@pytest.mark.parametrize(
    "sql,params,exc_class,sqlstate",
    [
        ("SELECT * FROM no_such_relation", None, errors.UndefinedTable, "42P01"),
        ("SELECT no_such_column FROM {tbl}", None, errors.UndefinedColumn, "42703"),
        ("SELEC 1", None, errors.SyntaxError, "42601"),
        ("SELECT 1 / 0", None, errors.DivisionByZero, "22012"),
        ("INSERT INTO {tbl} (id, i) VALUES (%s, %s)", (1, None), errors.NotNullViolation, "23502"),
        ("INSERT INTO {tbl} (id, i) VALUES (%s, %s)", (1, "abc"), errors.InvalidTextRepresentation, "22P02"),
        ("INSERT INTO {tbl} (id, i, s) VALUES (%s, %s, %s)", (1, 1, "abcd"), errors.StringDataRightTruncation, "22001"),
        ("CREATE TABLE {tbl} (id int)", None, errors.DuplicateTable, "42P07"),
    ],
    ids=["undefined-table", "undefined-column", "syntax", "division-by-zero", "not-null", "bad-int", "too-long", "duplicate-table"],
)
def test_errors_map_to_psycopg_classes(conn, sql, params, exc_class, sqlstate):
    tbl = table_name("err")
    conn.execute(f"CREATE TABLE {tbl} (id int PRIMARY KEY, i int NOT NULL, s varchar(3))")
    with pytest.raises(exc_class) as exc:
        conn.execute(sql.format(tbl=tbl), params)
    assert exc.value.sqlstate == sqlstate
    assert conn.info.transaction_status == pq.TransactionStatus.IDLE
    assert conn.execute("SELECT 'still usable'").fetchone() == ("still usable",)
    assert _count(conn, tbl) == 0


def test_statement_timeout_cancels_query(conn):
    conn.execute("SET statement_timeout = 100")
    started = time.monotonic()
    with pytest.raises(errors.QueryCanceled) as exc:
        conn.execute("SELECT count(*) FROM generate_series(1, 3000000000)").fetchone()
    assert exc.value.sqlstate == "57014"
    assert time.monotonic() - started < 5
    conn.execute("RESET statement_timeout")
    assert conn.execute("SELECT count(*) FROM generate_series(1, 1000)").fetchone() == (1000,)


# ------------------------------------------------------------------------------ COPY


def test_copy_from_and_to(conn):
    tbl = table_name("copy")
    conn.execute(f"CREATE TABLE {tbl} (id int PRIMARY KEY, name text, amount numeric(10,2), d date, flag boolean)")
    rows = [
        (1, "alice", Decimal("1.50"), dt.date(2024, 1, 1), True),
        (2, "tab\there\nnewline \\ backslash", None, None, False),
        (3, "ünïcödé ✓", Decimal("-3.25"), dt.date(1999, 12, 31), None),
    ]
    cur = conn.cursor()
    with cur.copy(f"COPY {tbl} (id, name, amount, d, flag) FROM STDIN") as copy:
        for r in rows:
            copy.write_row(r)
    assert cur.rowcount == 3
    assert conn.execute(f"SELECT * FROM {tbl} ORDER BY id").fetchall() == rows

    with cur.copy(f"COPY {tbl} TO STDOUT") as copy:
        copy.set_types(["int4", "text", "numeric", "date", "bool"])
        assert sorted(copy.rows()) == rows

    with cur.copy(f"COPY (SELECT id, name FROM {tbl} WHERE id <> 2 ORDER BY id) TO STDOUT WITH (FORMAT csv, HEADER)") as copy:
        data = b"".join(bytes(chunk) for chunk in copy)
    assert data.decode() == "id,name\n1,alice\n3,ünïcödé ✓\n"

    with cur.copy(f"COPY {tbl} (id, name) FROM STDIN WITH (FORMAT csv)") as copy:
        copy.write(b'10,"comma, and ""quotes"""\n11,\n')
    assert cur.rowcount == 2
    assert conn.execute(f"SELECT id, name FROM {tbl} WHERE id >= 10 ORDER BY id").fetchall() == [
        (10, 'comma, and "quotes"'),
        (11, None),
    ]

    # A bulk load.
    with cur.copy(f"COPY {tbl} (id, name) FROM STDIN") as copy:
        for i in range(1000, 21000):
            copy.write_row((i, f"row {i}"))
    assert cur.rowcount == 20000
    assert conn.execute(f"SELECT count(*), min(id), max(id) FROM {tbl} WHERE id >= 1000").fetchone() == (20000, 1000, 20999)


def test_copy_errors_insert_nothing(conn, connect):
    tbl = table_name("copyerr")
    conn.execute(f"CREATE TABLE {tbl} (id int PRIMARY KEY, name text)")
    conn.execute(f"INSERT INTO {tbl} VALUES (1, 'existing')")
    cur = conn.cursor()
    with pytest.raises(errors.UniqueViolation):
        with cur.copy(f"COPY {tbl} (id, name) FROM STDIN") as copy:
            copy.write_row((20, "new"))
            copy.write_row((1, "duplicate"))
    with pytest.raises(errors.InvalidTextRepresentation):
        with cur.copy(f"COPY {tbl} (id, name) FROM STDIN") as copy:
            copy.write(b"21\tok\nnot-a-number\tx\n")
    assert conn.execute(f"SELECT id, name FROM {tbl}").fetchall() == [(1, "existing")]

    # COPY inside a transaction is undone by ROLLBACK.
    tx = connect()
    with tx.cursor().copy(f"COPY {tbl} (id, name) FROM STDIN") as copy:
        copy.write_row((30, "in a transaction"))
    assert _count(tx, tbl) == 2
    tx.rollback()
    assert _count(conn, tbl) == 1


# --------------------------------------------------------------------- other protocol


def test_executemany_pipeline_and_stream(conn):
    tbl = table_name("many")
    conn.execute(f"CREATE TABLE {tbl} (id int PRIMARY KEY, name text)")
    cur = conn.cursor()
    cur.executemany(f"INSERT INTO {tbl} VALUES (%s, %s)", [(i, f"n{i}") for i in range(200)])
    assert cur.rowcount == 200
    cur.executemany(
        f"INSERT INTO {tbl} VALUES (%s, %s) RETURNING id * 10", [(1000, "a"), (1001, "b")], returning=True
    )
    assert cur.fetchall() == [(10000,)]
    assert cur.nextset() and cur.fetchall() == [(10010,)]

    with conn.pipeline():
        c1 = conn.execute(f"SELECT count(*) FROM {tbl}")
        c2 = conn.execute(f"INSERT INTO {tbl} VALUES (%s, %s)", (5000, "piped"))
        c3 = conn.execute(f"SELECT name FROM {tbl} WHERE id = %s", (5000,))
    assert c1.fetchone() == (202,)
    assert c2.rowcount == 1
    assert c3.fetchone() == ("piped",)

    # An error in a pipeline skips the statements after it up to the Sync. (The statement
    # before it is not checked: PostgreSQL rolls it back, bkg-db commits it.)
    with pytest.raises(errors.UniqueViolation):
        with conn.pipeline():
            conn.execute(f"INSERT INTO {tbl} VALUES (%s, %s)", (6000, "before"))
            conn.execute(f"INSERT INTO {tbl} VALUES (%s, %s)", (1, "duplicate"))
            conn.execute(f"INSERT INTO {tbl} VALUES (%s, %s)", (6001, "after"))
    assert _count(conn, tbl, "id = 6001") == 0
    assert conn.execute("SELECT 'usable after the pipeline'").fetchone() == ("usable after the pipeline",)

    seen = [row[0] for row in cur.stream(f"SELECT id FROM {tbl} WHERE id < 200 ORDER BY id")]
    assert seen == list(range(200))

    cur.execute(f"SELECT id FROM {tbl} ORDER BY id")
    assert [r[0] for r in cur.fetchmany(5)] == [0, 1, 2, 3, 4]
    assert len(cur.fetchall()) == 199

    cur.execute(f"SELECT 1 AS one; SELECT name FROM {tbl} WHERE id = 0")
    assert cur.fetchall() == [(1,)]
    assert cur.nextset() and cur.fetchall() == [("n0",)]

    assert cur.execute(f"UPDATE {tbl} SET name = 'u' WHERE id < 10").rowcount == 10
    assert cur.statusmessage == "UPDATE 10"
    assert cur.execute(f"DELETE FROM {tbl} WHERE id < 5").statusmessage == "DELETE 5"


def test_connection_parameters(conn, server):
    assert conn.info.server_version >= 150000
    assert conn.info.encoding == "utf-8"
    assert conn.info.parameter_status("standard_conforming_strings") == "on"
    assert conn.info.parameter_status("integer_datetimes") == "on"
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(server.dsn.replace(f"password={server.password}", "password=wrong"))


def test_default_prepare_threshold_with_rollback_and_ddl(connect):
    """psycopg prepares repeated statements and sends DEALLOCATE ALL after ROLLBACK and DDL."""
    c = connect()
    tbl = table_name("prep")
    c.execute(f"CREATE TABLE {tbl} (id int PRIMARY KEY)")
    c.commit()
    for i in range(8):
        c.execute(f"INSERT INTO {tbl} VALUES (%s)", (i,))
    c.rollback()
    assert c.execute(f"SELECT count(*) FROM {tbl}").fetchone()[0] == 0
    for i in range(8):
        c.execute(f"INSERT INTO {tbl} VALUES (%s)", (i,))
    c.commit()
    counts = [c.execute(f"SELECT count(*) FROM {tbl} WHERE id >= %s", (i,)).fetchone()[0] for i in range(8)]
    assert counts == [8, 7, 6, 5, 4, 3, 2, 1]
    c.execute(f"DROP TABLE {tbl}")
    c.commit()


def test_typeinfo_fetch_reads_the_catalog(conn):
    """psycopg's TypeInfo.fetch queries pg_type with to_regtype() and ::regtype."""
    from psycopg.types import TypeInfo

    expected = {"json": (114, 199, "json"), "int4": (23, 1007, "integer"), "uuid": (2950, 2951, "uuid")}
    for name, (oid, array_oid, regtype) in expected.items():
        info = TypeInfo.fetch(conn, name)
        assert info is not None, name
        assert (info.oid, info.array_oid, info.regtype) == (oid, array_oid, regtype)
    assert TypeInfo.fetch(conn, "no_such_type") is None


def test_parameter_types_from_values(conn):
    """psycopg binds on the server: a small int is an int2 parameter, and a statement whose
    columns need its parameters' types is described from the bound portal."""
    assert conn.execute("SELECT %s AS a", (1,)).fetchone() == (1,)
    assert conn.execute("SELECT %s::int + 1", (41,)).fetchone() == (42,)
    (ts,) = conn.execute("SELECT now() AT TIME ZONE %s", ("UTC",)).fetchone()
    assert ts is not None


def test_nested_transactions_are_savepoints(connect):
    c = connect()
    tbl = table_name("nested")
    c.execute(f"CREATE TABLE {tbl} (id int PRIMARY KEY)")
    c.commit()
    with c.transaction():
        c.execute(f"INSERT INTO {tbl} VALUES (1)")
        with pytest.raises(psycopg.errors.UniqueViolation):
            with c.transaction():
                c.execute(f"INSERT INTO {tbl} VALUES (2)")
                c.execute(f"INSERT INTO {tbl} VALUES (1)")
        with c.transaction():
            c.execute(f"INSERT INTO {tbl} VALUES (3)")
    assert [r[0] for r in c.execute(f"SELECT id FROM {tbl} ORDER BY id")] == [1, 3]
    c.rollback()


def test_skip_locked_hands_each_worker_another_row(connect):
    a, b = connect(), connect()
    tbl = table_name("queue")
    a.execute(f"CREATE TABLE {tbl} (id int PRIMARY KEY, state text)")
    a.execute(f"INSERT INTO {tbl} SELECT g, 'new' FROM generate_series(1, 3) AS t(g)")
    a.commit()
    take = f"SELECT id FROM {tbl} WHERE state = 'new' ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED"
    assert a.execute(take).fetchone() == (1,)
    assert b.execute(take).fetchone() == (2,)
    with pytest.raises(psycopg.errors.LockNotAvailable):
        b.execute(f"SELECT id FROM {tbl} WHERE id = 1 FOR UPDATE NOWAIT")
    a.rollback()
    b.rollback()


def test_set_config_and_current_setting(connect):
    c = connect(autocommit=True)
    assert c.execute("SELECT set_config('TimeZone', %s, false)", ("UTC",)).fetchone() == ("UTC",)
    assert c.execute("SELECT set_config('app.tenant', %s, false)", ("acme",)).fetchone() == ("acme",)
    assert c.execute("SELECT current_setting('app.tenant')").fetchone() == ("acme",)
    assert c.execute("SELECT current_setting('app.nosuch', true)").fetchone() == (None,)
    with pytest.raises(psycopg.errors.UndefinedObject):
        c.execute("SET nosuch_param = 1")


def test_server_side_cursors_stream_in_batches(connect):
    """psycopg's named cursors: DECLARE, then FETCH FORWARD n as the client iterates."""
    c = connect()
    tbl = table_name("curs")
    c.execute(f"CREATE TABLE {tbl} (id int PRIMARY KEY, v text)")
    c.execute(f"INSERT INTO {tbl} SELECT g, 'v' || g FROM generate_series(1, 5000) AS t(g)")
    c.commit()
    with c.cursor(name="big") as cur:
        cur.itersize = 700
        cur.execute(f"SELECT id, v FROM {tbl} ORDER BY id")
        ids = [r[0] for r in cur]
    assert ids == list(range(1, 5001))
    with c.cursor(name="some") as cur:
        cur.execute(f"SELECT id FROM {tbl} WHERE id <= %s ORDER BY id", (10,))
        assert cur.fetchmany(3) == [(1,), (2,), (3,)]
        cur.scroll(2)
        assert cur.fetchone() == (6,)
        assert [r[0] for r in cur.fetchall()] == [7, 8, 9, 10]
    c.commit()
    # WITH HOLD: still readable after the transaction that declared it committed.
    with c.cursor(name="held", withhold=True) as cur:
        cur.execute(f"SELECT id FROM {tbl} WHERE id > 4990 ORDER BY id")
        c.commit()
        assert [r[0] for r in cur] == list(range(4991, 5001))
    c.execute(f"DROP TABLE {tbl}")
    c.commit()

