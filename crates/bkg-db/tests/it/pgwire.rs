//! The PostgreSQL wire front door driven by a real driver (tokio-postgres): extended protocol
//! with typed parameters, errors with SQLSTATE, transaction states, limits and shutdown.

use crate::server::TestServer;

fn code(e: &tokio_postgres::Error) -> String {
    e.as_db_error().map(|d| d.code().code().to_string()).unwrap_or_else(|| format!("no SQLSTATE: {e}"))
}

#[tokio::test]
async fn extended_protocol_round_trip_with_typed_parameters() {
    let server = TestServer::start();
    let c = server.connect().await;
    c.batch_execute(
        "CREATE TABLE items (id bigint PRIMARY KEY, name text NOT NULL, qty integer, price double precision, ok boolean, small smallint, born date, seen timestamp)",
    )
    .await
    .unwrap();
    let ins = c
        .prepare(
            "INSERT INTO items (id, name, qty, price, ok, small, born, seen) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .await
        .unwrap();
    let day = chrono::NaiveDate::from_ymd_opt(2024, 2, 29).unwrap();
    let ts = day.and_hms_micro_opt(13, 14, 15, 123_456).unwrap();
    for i in 1..=5i64 {
        let n = c
            .execute(
                &ins,
                &[&i, &format!("item {i}"), &(i as i32 * 10), &(i as f64 / 4.0), &(i % 2 == 0), &(i as i16), &day, &ts],
            )
            .await
            .unwrap();
        assert_eq!(n, 1);
    }
    let rows = c
        .query("SELECT id, name, qty, price, ok, small, born, seen FROM items WHERE id >= $1 ORDER BY id", &[&3i64])
        .await
        .unwrap();
    assert_eq!(rows.len(), 3);
    let r = &rows[0];
    assert_eq!(r.get::<_, i64>(0), 3);
    assert_eq!(r.get::<_, String>(1), "item 3");
    assert_eq!(r.get::<_, i32>(2), 30);
    assert_eq!(r.get::<_, f64>(3), 0.75);
    assert!(!r.get::<_, bool>(4));
    assert_eq!(r.get::<_, i16>(5), 3);
    assert_eq!(r.get::<_, chrono::NaiveDate>(6), day);
    assert_eq!(r.get::<_, chrono::NaiveDateTime>(7), ts);
    // NULL in both directions.
    c.execute("INSERT INTO items (id, name, qty) VALUES ($1, $2, $3)", &[&9i64, &"nulls", &None::<i32>]).await.unwrap();
    let row = c.query_one("SELECT qty, price FROM items WHERE id = $1", &[&9i64]).await.unwrap();
    assert_eq!(row.get::<_, Option<i32>>(0), None);
    assert_eq!(row.get::<_, Option<f64>>(1), None);
    // UPDATE and DELETE with parameters report their counts.
    assert_eq!(c.execute("UPDATE items SET qty = qty + $1 WHERE id <= $2", &[&1i32, &2i64]).await.unwrap(), 2);
    assert_eq!(c.execute("DELETE FROM items WHERE id = $1", &[&9i64]).await.unwrap(), 1);
    let total: i64 = c.query_one("SELECT sum(qty) FROM items", &[]).await.unwrap().get(0);
    assert_eq!(total, 10 + 20 + 30 + 40 + 50 + 2);
}

#[tokio::test]
async fn errors_carry_sqlstate_and_failed_transactions_stay_failed() {
    let server = TestServer::start();
    let c = server.connect().await;
    assert_eq!(code(&c.batch_execute("SELEC 1").await.unwrap_err()), "42601");
    assert_eq!(code(&c.batch_execute("SELECT * FROM nowhere").await.unwrap_err()), "42P01");
    c.batch_execute("CREATE TABLE t (id int PRIMARY KEY, v int NOT NULL)").await.unwrap();
    assert_eq!(code(&c.batch_execute("SELECT nope FROM t").await.unwrap_err()), "42703");
    assert_eq!(code(&c.batch_execute("CREATE TABLE t (x int)").await.unwrap_err()), "42P07");
    assert_eq!(code(&c.batch_execute("INSERT INTO t VALUES (1, NULL)").await.unwrap_err()), "23502");
    c.batch_execute("INSERT INTO t VALUES (1, 1)").await.unwrap();
    assert_eq!(code(&c.batch_execute("INSERT INTO t VALUES (1, 2)").await.unwrap_err()), "23505");
    assert_eq!(code(&c.batch_execute("SELECT 1/0").await.unwrap_err()), "22012");
    assert_eq!(code(&c.batch_execute("SELECT 'abc'::int").await.unwrap_err()), "22P02");
    // Several statements in one simple query are one implicit transaction.
    assert_eq!(code(&c.batch_execute("INSERT INTO t VALUES (7, 7); SELECT 1/0").await.unwrap_err()), "22012");
    let n: i64 = c.query_one("SELECT count(*) FROM t WHERE id = 7", &[]).await.unwrap().get(0);
    assert_eq!(n, 0, "the whole implicit transaction was rolled back");
    c.batch_execute("BEGIN").await.unwrap();
    c.batch_execute("INSERT INTO t VALUES (2, 2)").await.unwrap();
    assert_eq!(code(&c.batch_execute("INSERT INTO t VALUES (1, 1)").await.unwrap_err()), "23505");
    assert_eq!(code(&c.batch_execute("SELECT 1").await.unwrap_err()), "25P02");
    c.batch_execute("ROLLBACK").await.unwrap();
    let n: i64 = c.query_one("SELECT count(*) FROM t", &[]).await.unwrap().get(0);
    assert_eq!(n, 1, "the failed transaction left nothing behind");
}

#[tokio::test]
async fn concurrent_writers_wait_for_row_locks_as_in_postgresql() {
    let server = TestServer::start();
    let a = server.connect().await;
    let b = std::sync::Arc::new(server.connect().await);
    a.batch_execute("CREATE TABLE acct (id int PRIMARY KEY, bal int); INSERT INTO acct VALUES (1, 100), (2, 100)")
        .await
        .unwrap();
    // REPEATABLE READ: the second writer waits for the first, then fails with 40001.
    a.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ").await.unwrap();
    b.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ").await.unwrap();
    a.batch_execute("UPDATE acct SET bal = bal - 10 WHERE id = 1").await.unwrap();
    let b2 = b.clone();
    let waiting = tokio::spawn(async move { b2.batch_execute("UPDATE acct SET bal = bal - 20 WHERE id = 1").await });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(!waiting.is_finished(), "the second writer must wait for the row lock");
    a.batch_execute("COMMIT").await.unwrap();
    assert_eq!(code(&waiting.await.unwrap().unwrap_err()), "40001");
    b.batch_execute("ROLLBACK").await.unwrap();
    let v: i32 = b.query_one("SELECT bal FROM acct WHERE id = 1", &[]).await.unwrap().get(0);
    assert_eq!(v, 90);
    // READ COMMITTED (the default): the waiter then updates the newest version; nothing is lost.
    a.batch_execute("BEGIN").await.unwrap();
    b.batch_execute("BEGIN").await.unwrap();
    a.batch_execute("UPDATE acct SET bal = bal - 10 WHERE id = 1").await.unwrap();
    let b2 = b.clone();
    let waiting = tokio::spawn(async move { b2.batch_execute("UPDATE acct SET bal = bal - 20 WHERE id = 1").await });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(!waiting.is_finished());
    a.batch_execute("COMMIT").await.unwrap();
    waiting.await.unwrap().unwrap();
    b.batch_execute("COMMIT").await.unwrap();
    let v: i32 = a.query_one("SELECT bal FROM acct WHERE id = 1", &[]).await.unwrap().get(0);
    assert_eq!(v, 60);
    // A rolled-back holder lets the waiter go on the same row.
    a.batch_execute("BEGIN; DELETE FROM acct WHERE id = 2").await.unwrap();
    let b2 = b.clone();
    let waiting = tokio::spawn(async move { b2.execute("UPDATE acct SET bal = 1 WHERE id = 2", &[]).await });
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    a.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(waiting.await.unwrap().unwrap(), 1);
    // Deadlock: one of the two gets 40P01 and its transaction ends, the other goes on.
    a.batch_execute("BEGIN; UPDATE acct SET bal = 0 WHERE id = 1").await.unwrap();
    b.batch_execute("BEGIN; UPDATE acct SET bal = 0 WHERE id = 2").await.unwrap();
    let b2 = b.clone();
    let waiting = tokio::spawn(async move { b2.batch_execute("UPDATE acct SET bal = 5 WHERE id = 1").await });
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(code(&a.batch_execute("UPDATE acct SET bal = 5 WHERE id = 2").await.unwrap_err()), "40P01");
    a.batch_execute("ROLLBACK").await.unwrap();
    waiting.await.unwrap().unwrap();
    b.batch_execute("COMMIT").await.unwrap();
    let rows: Vec<i32> =
        a.query("SELECT bal FROM acct ORDER BY id", &[]).await.unwrap().iter().map(|r| r.get(0)).collect();
    assert_eq!(rows, vec![5, 0]);
    // lock_timeout bounds the wait (55P03).
    a.batch_execute("BEGIN; UPDATE acct SET bal = 7 WHERE id = 1").await.unwrap();
    b.batch_execute("SET lock_timeout = '200ms'").await.unwrap();
    assert_eq!(code(&b.batch_execute("UPDATE acct SET bal = 8 WHERE id = 1").await.unwrap_err()), "55P03");
    a.batch_execute("COMMIT").await.unwrap();
}

#[tokio::test]
async fn wrong_password_and_connection_limit_are_refused() {
    let server = TestServer::start_with(&[("BKG_DB_MAX_CONNECTIONS", "2")]);
    let bad = format!("host=127.0.0.1 port={} user=postgres password=wrong dbname=postgres", server.pg_port);
    let err = tokio_postgres::connect(&bad, tokio_postgres::NoTls).await.err().expect("refused");
    assert_eq!(code(&err), "28P01");
    let _c1 = server.connect().await;
    let _c2 = server.connect().await;
    let err =
        tokio_postgres::connect(&server.conn_string(), tokio_postgres::NoTls).await.err().expect("over the limit");
    assert_eq!(code(&err), "53300");
}

#[tokio::test]
async fn health_metrics_and_clean_shutdown() {
    let mut server = TestServer::start();
    // Anyone learns status, version and uptime; only an operator learns where the data is.
    let (anon, service) = server.api_keys();
    let dir_name = server.dir.file_name().unwrap().to_str().unwrap().to_string();
    for (who, key, details) in
        [("nobody", None, false), ("anon", Some(&anon), false), ("service", Some(&service), true)]
    {
        let headers: Vec<(&str, &str)> = key.map(|k| vec![("apikey", k.as_str())]).unwrap_or_default();
        let (status, _, body) = server.http("GET", "/healthz", &headers, b"");
        assert_eq!(status, 200, "{who}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["status"], "ok", "{who}");
        assert!(v["uptime_s"].is_u64() && v["version"].is_string(), "{who}: {body}");
        assert_eq!(body.contains(&dir_name), details, "{who} sees the data directory: {body}");
        assert_eq!(v["last_checkpoint"].is_null() && v.get("recovery").is_none(), !details, "{who}: {body}");
    }
    let (status, body) = server.http_get("/metrics");
    assert_eq!(status, 200);
    assert!(body.contains("# TYPE bkg_wal_fsyncs_total counter"));
    let c = server.connect().await;
    c.batch_execute("CREATE TABLE s (id int PRIMARY KEY); INSERT INTO s VALUES (1), (2)").await.unwrap();
    drop(c);
    let st = server.terminate();
    assert!(st.success(), "SIGTERM exits 0, got {st:?}");
    server.spawn();
    let c = server.connect().await;
    let n: i64 = c.query_one("SELECT count(*) FROM s", &[]).await.unwrap().get(0);
    assert_eq!(n, 2);
}

#[tokio::test]
async fn committed_rows_survive_kill_9() {
    let mut server = TestServer::start();
    let c = server.connect().await;
    c.batch_execute("CREATE TABLE k (id bigint PRIMARY KEY, v text)").await.unwrap();
    for i in 0..50i64 {
        c.execute("INSERT INTO k VALUES ($1, $2)", &[&i, &format!("v{i}")]).await.unwrap();
    }
    c.batch_execute("BEGIN; INSERT INTO k VALUES (1000, 'uncommitted')").await.unwrap();
    server.kill9();
    server.spawn();
    let c = server.connect().await;
    let n: i64 = c.query_one("SELECT count(*) FROM k", &[]).await.unwrap().get(0);
    assert_eq!(n, 50);
}

#[tokio::test]
async fn hostile_statements_get_errors_not_crashes() {
    let server = TestServer::start();
    let c = server.connect().await;
    let deep = format!("SELECT 1{}", "+1".repeat(5000));
    assert_eq!(code(&c.batch_execute(&deep).await.unwrap_err()), "54001");
    let ors = format!("SELECT 1 WHERE 1=0{}", " OR 1=1".repeat(3000));
    assert_eq!(code(&c.batch_execute(&ors).await.unwrap_err()), "54001");
    let nested = format!("SELECT {}1{}", "(".repeat(1000), ")".repeat(1000));
    assert_eq!(code(&c.batch_execute(&nested).await.unwrap_err()), "54001");
    let moderate = format!("SELECT 1{}", "+1".repeat(500));
    let v: i64 = c.query_one(moderate.as_str(), &[]).await.unwrap().get(0);
    assert_eq!(v, 501);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statement_timeout_and_memory_limit_give_their_sqlstates() {
    let server = TestServer::start_with(&[("BKG_DB_QUERY_MEMORY_MB", "16")]);
    let c = server.connect().await;
    c.batch_execute("SET statement_timeout = 200").await.unwrap();
    let err = c.batch_execute("SELECT count(*) FROM generate_series(1, 2000000000) a").await.unwrap_err();
    assert_eq!(code(&err), "57014");
    c.batch_execute("RESET statement_timeout").await.unwrap();
    // A hash join whose build side is far larger than the 16 MiB pool fails with 53200 instead of
    // exhausting memory (sorts and aggregates spill to disk instead).
    let err = c
        .batch_execute("SELECT count(*) FROM generate_series(1, 4000000) AS x(a) JOIN generate_series(1, 4000000) AS y(b) ON a = b")
        .await
        .unwrap_err();
    assert_eq!(code(&err), "53200", "{err:?}");
    // The session and the server carry on.
    let one: i64 = c.query_one("SELECT count(*) FROM generate_series(1, 10) a", &[]).await.unwrap().get(0);
    assert_eq!(one, 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_request_stops_a_running_query() {
    let server = TestServer::start();
    let c = server.connect().await;
    let token = c.cancel_token();
    let canceller = tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        token.cancel_query(tokio_postgres::NoTls).await.unwrap();
    });
    let started = std::time::Instant::now();
    let err = c.batch_execute("SELECT count(*) FROM generate_series(1, 3000000000) AS t(a)").await.unwrap_err();
    canceller.await.unwrap();
    assert_eq!(code(&err), "57014");
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
    let v: i64 = c.query_one("SELECT 41 + 1", &[]).await.unwrap().get(0);
    assert_eq!(v, 42, "the connection is usable after the cancel");
}

#[tokio::test]
async fn result_columns_are_named_as_postgresql_names_them() {
    let server = TestServer::start();
    let c = server.connect().await;
    c.batch_execute("CREATE TABLE nm (a int, b text); INSERT INTO nm VALUES (1, 'x')").await.unwrap();
    let rows = c
        .query("SELECT count(*), 1, a + 1, upper(b), a::text, a, a, b AS label FROM nm GROUP BY a, b", &[])
        .await
        .unwrap();
    let names: Vec<&str> = rows[0].columns().iter().map(|col| col.name()).collect();
    assert_eq!(names, ["count", "?column?", "?column?", "upper", "a", "a", "a", "label"]);
    let rows = c.query("SELECT 1 AS one, 2 AS one", &[]).await.unwrap();
    assert_eq!(rows[0].get::<_, i64>(0) + rows[0].get::<_, i64>(1), 3);
    let n: i64 = c.query_one("SELECT count(*) AS n FROM nm ORDER BY n", &[]).await.unwrap().get("n");
    assert_eq!(n, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_closed_with_their_sqlstate() {
    let server = TestServer::start_with(&[("BKG_DB_IDLE_SESSION_TIMEOUT_S", "0")]);
    // Idle inside a transaction block: FATAL 25P03, and the transaction is rolled back.
    let (c, conn) = tokio_postgres::connect(&server.conn_string(), tokio_postgres::NoTls).await.unwrap();
    let conn = tokio::spawn(conn);
    c.batch_execute("CREATE TABLE idle_t (id int PRIMARY KEY)").await.unwrap();
    let shown: String = c.query_one("SHOW idle_in_transaction_session_timeout", &[]).await.unwrap().get(0);
    assert_eq!(shown, "10min", "the server default (600 s) applies, shown as PostgreSQL shows it");
    c.batch_execute("SET idle_in_transaction_session_timeout = 500; BEGIN; INSERT INTO idle_t VALUES (1)")
        .await
        .unwrap();
    let ended = tokio::time::timeout(std::time::Duration::from_secs(10), conn).await.expect("closed in time");
    let err = ended.unwrap().unwrap_err();
    assert_eq!(code(&err), "25P03", "{err:?}");
    assert!(c.batch_execute("SELECT 1").await.is_err());
    // Idle outside a transaction: FATAL 57P05. A long statement is not idleness.
    let (c2, conn2) = tokio_postgres::connect(&server.conn_string(), tokio_postgres::NoTls).await.unwrap();
    let conn2 = tokio::spawn(conn2);
    let n: i64 = c2.query_one("SELECT count(*) FROM idle_t", &[]).await.unwrap().get(0);
    assert_eq!(n, 0, "the idle transaction was rolled back");
    c2.batch_execute("SET idle_session_timeout = 700").await.unwrap();
    c2.batch_execute("SELECT count(*) FROM generate_series(1, 30000000)").await.unwrap();
    let ended = tokio::time::timeout(std::time::Duration::from_secs(10), conn2).await.expect("closed in time");
    assert_eq!(code(&ended.unwrap().unwrap_err()), "57P05");
    // Other connections carry on.
    let c3 = server.connect().await;
    c3.batch_execute("SELECT 1").await.unwrap();
}

#[tokio::test]
async fn arrays_travel_as_parameters_and_results_in_binary() {
    let server = TestServer::start();
    let c = server.connect().await;
    c.batch_execute("CREATE TABLE arr (id int PRIMARY KEY, nums int[], tags text[], big bigint[])").await.unwrap();
    // tokio-postgres sends and reads arrays in the binary format, with their array type oids.
    let nums: Vec<i32> = vec![3, 1, 2];
    let tags: Vec<Option<String>> = vec![Some("a b".into()), None, Some("{}".into())];
    let empty: Vec<i64> = vec![];
    c.execute("INSERT INTO arr VALUES ($1, $2, $3, $4)", &[&1i32, &nums, &tags, &empty]).await.unwrap();
    let row = c.query_one("SELECT nums, tags, big FROM arr WHERE id = $1", &[&1i32]).await.unwrap();
    assert_eq!(row.get::<_, Vec<i32>>(0), nums);
    assert_eq!(row.get::<_, Vec<Option<String>>>(1), tags);
    assert_eq!(row.get::<_, Vec<i64>>(2), empty);
    let n: i64 = c.query_one("SELECT count(*) FROM arr WHERE nums = $1", &[&nums]).await.unwrap().get(0);
    assert_eq!(n, 1);
    // Text form, as psql shows it.
    let text = c.simple_query("SELECT tags FROM arr").await.unwrap();
    let tokio_postgres::SimpleQueryMessage::Row(r) = &text[1] else { panic!("no row: {text:?}") };
    assert_eq!(r.get(0), Some(r#"{"a b",NULL,"{}"}"#));
}

#[tokio::test]
async fn prepared_point_queries_run_from_their_cached_plan() {
    let server = TestServer::start();
    let c = server.connect().await;
    c.batch_execute(
        "CREATE TABLE kv (id bigint PRIMARY KEY, small int UNIQUE, name text, note text);
         CREATE UNIQUE INDEX kv_name ON kv (name);
         INSERT INTO kv VALUES (1, 10, 'one', 'a'), (2, 20, 'two', 'b');
         CREATE USER reader PASSWORD 'r'; GRANT SELECT ON kv TO reader;
         ALTER TABLE kv DISABLE ROW LEVEL SECURITY;",
    )
    .await
    .unwrap();
    let fast = || {
        let (_, body) = server.http_get("/metrics");
        body.lines()
            .find_map(|l| l.strip_prefix("bkg_fast_path_queries_total "))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap()
    };
    let by_id = c.prepare("SELECT name, note FROM kv WHERE id = $1").await.unwrap();
    let by_name = c.prepare("SELECT id FROM kv WHERE name = $1 AND small = $2").await.unwrap();
    let before = fast();
    for (id, name) in [(1i64, "one"), (2, "two")] {
        let row = c.query_one(&by_id, &[&id]).await.unwrap();
        assert_eq!(row.get::<_, String>(0), name);
    }
    assert!(c.query_opt(&by_id, &[&3i64]).await.unwrap().is_none());
    let id: i64 = c.query_one(&by_name, &[&"two", &20i32]).await.unwrap().get(0);
    assert_eq!(id, 2);
    assert!(c.query_opt(&by_name, &[&"two", &10i32]).await.unwrap().is_none(), "every equality is checked");
    assert_eq!(fast() - before, 5, "all five ran from the cached point plan");
    // Inside a transaction the plan sees the transaction's own writes.
    c.batch_execute("BEGIN; UPDATE kv SET note = 'changed' WHERE id = 1").await.unwrap();
    let note: String = c.query_one(&by_id, &[&1i64]).await.unwrap().get(1);
    assert_eq!(note, "changed");
    c.batch_execute("ROLLBACK").await.unwrap();
    // After DDL the cached plan no longer applies and the statement is planned again.
    let star = c.prepare("SELECT * FROM kv WHERE id = $1").await.unwrap();
    c.batch_execute("ALTER TABLE kv ADD COLUMN extra int DEFAULT 7").await.unwrap();
    // The row shape changed under the prepared statement: refused with 0A000 ("cached plan
    // must not change result type") as in PostgreSQL; prepared again, it works.
    let e = c.query_one(&star, &[&1i64]).await.unwrap_err();
    assert_eq!(code(&e), "0A000", "{e}");
    let star = c.prepare("SELECT * FROM kv WHERE id = $1").await.unwrap();
    assert_eq!(c.query_one(&star, &[&1i64]).await.unwrap().len(), 5);
    // Privileges are checked at every execution.
    let dsn = format!("host=127.0.0.1 port={} user=reader password=r dbname=postgres", server.pg_port);
    let (r, conn) = tokio_postgres::connect(&dsn, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    let stmt = r.prepare("SELECT name FROM kv WHERE id = $1").await.unwrap();
    assert_eq!(r.query_one(&stmt, &[&2i64]).await.unwrap().get::<_, String>(0), "two");
    c.batch_execute("REVOKE SELECT ON kv FROM reader").await.unwrap();
    assert_eq!(code(&r.query_one(&stmt, &[&2i64]).await.unwrap_err()), "42501");
}

/// Parameters whose types only their values tell: a result column of a typed parameter is of
/// that type (psycopg sends int2 for small ints; the column was described as text, and the
/// first run failed with "cached plan must not change result type"), and a statement that
/// cannot be described without a type for its parameter (`AT TIME ZONE $1`) was described as
/// returning no rows, then sent rows the client could not read (a protocol violation).
#[tokio::test]
async fn parameter_types_decide_described_columns() {
    use tokio_postgres::types::Type;
    let server = TestServer::start();
    let c = server.connect().await;
    let st = c.prepare_typed("SELECT $1 AS a", &[Type::INT2]).await.unwrap();
    assert_eq!(st.columns()[0].type_(), &Type::INT2);
    let v: i16 = c.query_one(&st, &[&7i16]).await.unwrap().get(0);
    assert_eq!(v, 7);
    // Untyped: text, as PostgreSQL resolves an unknown.
    let st = c.prepare("SELECT upper($1)").await.unwrap();
    assert_eq!(st.params(), &[Type::TEXT]);
    let v: String = c.query_one(&st, &[&"abc"]).await.unwrap().get(0);
    assert_eq!(v, "ABC");
    // `AT TIME ZONE $1` can be planned only with its value: the statement's Describe says so
    // (0A000) where it used to answer NoData and then send rows. Clients that describe the
    // bound portal (psycopg) get its rows: tests/clients/python/test_psycopg.py.
    let e = c.prepare("SELECT now() AT TIME ZONE $1").await.unwrap_err();
    assert_eq!(code(&e), "0A000");
    // A statement whose rows cannot be described says why at Describe, never NoData.
    let e = c.prepare("SELECT nosuch_column FROM (SELECT $1::int AS x) s").await.unwrap_err();
    assert_eq!(code(&e), "42703");
}

/// CHECK constraints hold on COPY too (large enough for the columnar path a table without
/// checks takes), with 23514 and nothing of the COPY left behind.
#[tokio::test]
async fn copy_enforces_check_constraints() {
    use futures::SinkExt;
    let server = TestServer::start();
    let c = server.connect().await;
    c.batch_execute("CREATE TABLE ck (id int PRIMARY KEY, v int CHECK (v >= 0))").await.unwrap();
    let mut data = String::new();
    for i in 0..5000 {
        data.push_str(&format!("{i}\t{}\n", if i == 4321 { -1 } else { i }));
    }
    let sink = c.copy_in::<_, bytes::Bytes>("COPY ck FROM STDIN").await.unwrap();
    let mut sink = std::pin::pin!(sink);
    sink.send(bytes::Bytes::from(data.clone())).await.unwrap();
    let e = sink.as_mut().finish().await.unwrap_err();
    assert_eq!(code(&e), "23514");
    let n: i64 = c.query_one("SELECT count(*) FROM ck", &[]).await.unwrap().get(0);
    assert_eq!(n, 0, "a failed COPY leaves no row");
    let ok = data.replace("4321\t-1\n", "4321\t1\n");
    let sink = c.copy_in::<_, bytes::Bytes>("COPY ck FROM STDIN").await.unwrap();
    let mut sink = std::pin::pin!(sink);
    sink.send(bytes::Bytes::from(ok)).await.unwrap();
    assert_eq!(sink.as_mut().finish().await.unwrap(), 5000);
}
