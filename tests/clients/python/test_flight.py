"""Arrow Flight SQL with the real ADBC Flight SQL driver (adbc-driver-flightsql) and pyarrow.

Run with `scripts/test-clients.sh`. The driver logs in with a password (handshake), then sends
the bearer token it got on every call.
"""

from __future__ import annotations

import adbc_driver_flightsql.dbapi as flight_sql
import adbc_driver_manager
import pyarrow as pa
import pytest
from bkg_server import Server


@pytest.fixture(scope="module")
def server():
    srv = Server(env={"BKG_DB_RLS_DEFAULT": "off"})
    yield srv
    assert srv.stop() == 0


def connect(server, user="postgres", password=None):
    return flight_sql.connect(
        f"grpc://127.0.0.1:{server.flight_port}",
        db_kwargs={"username": user, "password": password or server.password},
        autocommit=True,
    )


def test_query_prepared_statement_and_errors(server):
    with connect(server) as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE items (id int PRIMARY KEY, name text, price numeric(10,2), tags text[])")
        cur.execute("INSERT INTO items VALUES (1, 'pen', 1.50, '{a,b}'), (2, 'ink', NULL, NULL), (3, NULL, 9.99, '{}')")
        assert cur.rowcount == 3
        cur.execute("SELECT id, name, price FROM items ORDER BY id")
        rows = cur.fetchall()
        assert [r[0] for r in rows] == [1, 2, 3]
        assert [r[1] for r in rows] == ["pen", "ink", None]
        assert str(rows[0][2]) == "1.50" and rows[1][2] is None
        # Arrow all the way: the table comes back typed.
        cur.execute("SELECT id, tags FROM items ORDER BY id")
        table = cur.fetch_arrow_table()
        assert table.schema.field("id").type == pa.int32()
        assert table.column("tags").to_pylist() == [["a", "b"], None, []]
        # Prepared statement with parameters, run with several bindings.
        for wanted, name in [(1, "pen"), (2, "ink"), (3, None)]:
            cur.execute("SELECT name FROM items WHERE id = ?", parameters=(wanted,))
            assert cur.fetchall() == [(name,)]
        cur.executemany("UPDATE items SET name = ? WHERE id = ?", [("pencil", 1), ("it's", 2)])
        cur.execute("SELECT name FROM items WHERE id <= 2 ORDER BY id")
        assert cur.fetchall() == [("pencil",), ("it's",)]
        # Errors carry their SQLSTATE.
        with pytest.raises(adbc_driver_manager.Error) as e:
            cur.execute("SELECT * FROM no_such_table")
            cur.fetchall()
        assert "42P01" in str(e.value)
        with pytest.raises(adbc_driver_manager.Error) as e:
            cur.execute("SELECT 1/0")
            cur.fetchall()
        assert "22012" in str(e.value)
        cur.execute("SELECT 2")
        assert cur.fetchall() == [(2,)]


def test_wrong_password_is_refused(server):
    with pytest.raises(adbc_driver_manager.Error) as e:
        with connect(server, password="wrong") as conn, conn.cursor() as cur:
            cur.execute("SELECT 1")
    assert "password authentication failed" in str(e.value)


def test_ingest_of_100k_rows_and_metadata(server):
    n = 100_000
    data = pa.table(
        {
            "id": pa.array(range(n), pa.int64()),
            "name": pa.array([None if i % 5 == 0 else f"row {i}" for i in range(n)]),
            "score": pa.array([i / 4 for i in range(n)], pa.float64()),
            "day": pa.array([i % 365 for i in range(n)], pa.int32()).cast(pa.date32()),
        }
    )
    with connect(server) as conn, conn.cursor() as cur:
        assert cur.adbc_ingest("ingested", data, mode="create") == n
        cur.execute("SELECT count(*), count(name), sum(score), min(day), max(id) FROM ingested")
        count, names, total, first_day, last = cur.fetchone()
        assert (count, names, last) == (n, n - n // 5, n - 1)
        assert total == sum(i / 4 for i in range(n))
        assert str(first_day) == "1970-01-01"
        # The same rows come back, in order, as Arrow.
        cur.execute("SELECT id, name, score, day FROM ingested ORDER BY id")
        back = cur.fetch_arrow_table()
        assert back.num_rows == n
        assert back.column("name").to_pylist() == data.column("name").to_pylist()
        assert back.column("day").to_pylist() == data.column("day").to_pylist()
        # Append; a second create is refused and changes nothing.
        assert cur.adbc_ingest("ingested", data.slice(0, 10).set_column(0, "id", pa.array(range(n, n + 10), pa.int64())), mode="append") == 10
        with pytest.raises(adbc_driver_manager.Error) as e:
            cur.adbc_ingest("ingested", data.slice(0, 1), mode="create")
        assert "42P07" in str(e.value)
        cur.execute("SELECT count(*) FROM ingested")
        assert cur.fetchone() == (n + 10,)

        schema = conn.adbc_get_table_schema("ingested")
        assert schema.names == ["id", "name", "score", "day"]
        assert schema.field("id").type == pa.int64() and schema.field("day").type == pa.date32()
        objects = conn.adbc_get_objects(depth="all", table_name_filter="ingested").read_all().to_pylist()
        catalogs = {o["catalog_name"]: o for o in objects}
        assert set(catalogs) == {"postgres"}
        public = [s for s in catalogs["postgres"]["catalog_db_schemas"] if s["db_schema_name"] == "public"][0]
        tables = {t["table_name"]: t for t in public["db_schema_tables"]}
        assert tables["ingested"]["table_type"] == "TABLE"
        assert [c["column_name"] for c in tables["ingested"]["table_columns"]] == ["id", "name", "score", "day"]


def test_a_role_sees_only_what_it_may(server):
    with connect(server) as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE secret_stuff (id int PRIMARY KEY)")
        cur.execute("CREATE USER flight_reader PASSWORD 'reader-pass'")
    with connect(server, "flight_reader", "reader-pass") as conn, conn.cursor() as cur:
        with pytest.raises(adbc_driver_manager.Error) as e:
            cur.execute("SELECT * FROM secret_stuff")
            cur.fetchall()
        assert "42501" in str(e.value)
        objects = conn.adbc_get_objects(depth="tables").read_all().to_pylist()
        names = [t["table_name"] for o in objects for s in o["catalog_db_schemas"] for t in s["db_schema_tables"] or []]
        assert "secret_stuff" not in names
