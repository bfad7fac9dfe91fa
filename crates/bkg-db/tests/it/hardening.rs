//! Defects of the kind that lose data or leak state, each driven from outside with a real
//! driver: unique-key races under READ COMMITTED, COMMITs that a timeout or cancel must not
//! misreport, cancels inside multi-statement queries, privileges of server-wide commands,
//! locking clauses and DISCARD ALL.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::server::TestServer;

fn code(e: &tokio_postgres::Error) -> String {
    e.as_db_error().map(|d| d.code().code().to_string()).unwrap_or_else(|| format!("no SQLSTATE: {e}"))
}

/// An UPDATE of a row's unique column racing an INSERT of the same value: one of them fails
/// with 23505 (or 40001), and the updated row is never lost. It used to vanish in about one
/// race of ten: the update's retry ran on a write set that still held its first attempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unique_key_race_never_loses_the_row() {
    let server = TestServer::start();
    let setup = server.connect().await;
    setup.batch_execute("CREATE TABLE u (id int PRIMARY KEY, k int UNIQUE, v int)").await.unwrap();
    let a = Arc::new(server.connect().await);
    let b = Arc::new(server.connect().await);
    let races = 300;
    for i in 0..races {
        setup.execute("INSERT INTO u VALUES ($1, $2, 0)", &[&i, &(i * 10)]).await.unwrap();
        let new_k = 1_000_000 + i;
        let (a2, b2) = (a.clone(), b.clone());
        let upd = tokio::spawn(async move { a2.execute("UPDATE u SET k = $1 WHERE id = $2", &[&new_k, &i]).await });
        let ins =
            tokio::spawn(
                async move { b2.execute("INSERT INTO u VALUES ($1, $2, 1)", &[&(100_000 + i), &new_k]).await },
            );
        let (upd, ins) = (upd.await.unwrap(), ins.await.unwrap());
        for r in [&upd, &ins] {
            if let Err(e) = r {
                assert!(["23505", "40001"].contains(&code(e).as_str()), "race {i}: {e:?}");
            }
        }
        assert!(upd.is_err() || ins.is_err(), "race {i}: both wrote key {new_k}");
        let row = setup.query_opt("SELECT k FROM u WHERE id = $1", &[&i]).await.unwrap();
        let k: i32 = row.unwrap_or_else(|| panic!("race {i}: the updated row was lost")).get(0);
        assert_eq!(k == new_k, upd.is_ok(), "race {i}: the row holds what the update reported");
        if let Ok(n) = upd {
            assert_eq!(n, 1, "race {i}");
        }
    }

    // Then many clients for a while: random key moves and inserts on a small key space.
    let clients = 4;
    let inserted = Arc::new(AtomicU64::new(0));
    let before: i64 = setup.query_one("SELECT count(*) FROM u", &[]).await.unwrap().get(0);
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut tasks = Vec::new();
    for c in 0..clients {
        let conn = server.connect().await;
        let inserted = inserted.clone();
        tasks.push(tokio::spawn(async move {
            let mut x: u64 = 0x9E37_79B9_7F4A_7C15 ^ (c as u64 + 1);
            let mut next = move || {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x
            };
            let mut n = 0u32;
            while Instant::now() < deadline && n < 20_000 {
                n += 1;
                let key = 5_000_000 + (next() % 64) as i32;
                let r = if next() % 2 == 0 {
                    let id = (next() % races as u64) as i32;
                    conn.execute("UPDATE u SET k = $1 WHERE id = $2", &[&key, &id]).await
                } else {
                    let id = 200_000 + c * 1_000_000 + n as i32;
                    let r = conn.execute("INSERT INTO u VALUES ($1, $2, 2)", &[&id, &key]).await;
                    if r.is_ok() {
                        inserted.fetch_add(1, Ordering::Relaxed);
                    }
                    r
                };
                if let Err(e) = r {
                    assert!(["23505", "40001"].contains(&code(&e).as_str()), "{e:?}");
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let (count, distinct): (i64, i64) =
        setup.query_one("SELECT count(*), count(DISTINCT k) FROM u", &[]).await.map(|r| (r.get(0), r.get(1))).unwrap();
    assert_eq!(count, before + inserted.load(Ordering::Relaxed) as i64, "no row lost or added");
    assert_eq!(count, distinct, "keys stay unique");
    let ids: i64 = setup.query_one("SELECT count(*) FROM u WHERE id < $1", &[&races]).await.unwrap().get(0);
    assert_eq!(ids, races as i64, "every original row is still there");
}

/// A COMMIT that reached the WAL is reported as committed, whatever the statement timeout:
/// the timeout applies to statements, never to the commit of their work. It used to answer
/// 57014 for commits that were durable (and leave their snapshot pinned).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_timeout_never_misreports_a_commit() {
    let server = TestServer::start();
    let c = server.connect().await;
    c.batch_execute("CREATE TABLE t (id int PRIMARY KEY, pad text)").await.unwrap();
    let pad = "x".repeat(4000);
    let mut acknowledged = 0i64;
    for i in 0..60 {
        c.batch_execute("BEGIN").await.unwrap();
        c.execute("INSERT INTO t VALUES ($1, $2)", &[&i, &pad]).await.unwrap();
        c.batch_execute("SET statement_timeout = 1").await.unwrap();
        match c.batch_execute("COMMIT").await {
            Ok(()) => acknowledged += 1,
            Err(e) => panic!("COMMIT {i} failed: {e:?}"),
        }
        c.batch_execute("RESET statement_timeout").await.unwrap();
    }
    // Autocommit statements: a statement may time out, but one that reports success committed.
    c.batch_execute("SET statement_timeout = 1").await.unwrap();
    for i in 1000..1100 {
        match c.execute("INSERT INTO t VALUES ($1, $2)", &[&i, &pad]).await {
            Ok(_) => acknowledged += 1,
            Err(e) => assert_eq!(code(&e), "57014", "{e:?}"),
        }
    }
    c.batch_execute("RESET statement_timeout").await.unwrap();
    let other = server.connect().await;
    let n: i64 = other.query_one("SELECT count(*) FROM t", &[]).await.unwrap().get(0);
    assert_eq!(n, acknowledged, "exactly the acknowledged rows are there");
    // Nothing stays pinned.
    let (_, body) = server.http_get("/metrics");
    let metric = |name: &str| -> f64 {
        body.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
            .unwrap_or_else(|| panic!("no {name} in /metrics"))
    };
    assert_eq!(metric("bkg_active_snapshots "), 0.0);
    assert_eq!(metric("bkg_oldest_snapshot_age_seconds "), 0.0);
    assert_eq!(metric("bkg_gc_horizon_lag "), 0.0);
}

/// A CancelRequest during a multi-statement simple query rolls the whole query back, and the
/// connection then behaves as a fresh one: its next autocommit statements commit. They used to
/// be acknowledged inside a transaction that never ended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_inside_a_multi_statement_query_leaves_a_clean_connection() {
    let server = TestServer::start();
    let c = server.connect().await;
    c.batch_execute("CREATE TABLE q (id int PRIMARY KEY)").await.unwrap();
    let token = c.cancel_token();
    let canceller = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        token.cancel_query(tokio_postgres::NoTls).await.unwrap();
    });
    let err = c
        .batch_execute("INSERT INTO q VALUES (1); SELECT count(*) FROM generate_series(1, 3000000000) AS t(a)")
        .await
        .unwrap_err();
    canceller.await.unwrap();
    assert_eq!(code(&err), "57014");
    c.batch_execute("INSERT INTO q VALUES (2)").await.unwrap();
    let other = server.connect().await;
    let ids: Vec<i32> =
        other.query("SELECT id FROM q ORDER BY id", &[]).await.unwrap().iter().map(|r| r.get(0)).collect();
    assert_eq!(ids, vec![2], "the cancelled query left nothing, the next statement committed");
    // A cancel that arrives while nothing runs does not hit the next statement.
    c.cancel_token().cancel_query(tokio_postgres::NoTls).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    c.batch_execute("INSERT INTO q VALUES (3)").await.unwrap();
    assert_eq!(other.query_one("SELECT count(*) FROM q", &[]).await.unwrap().get::<_, i64>(0), 2);
}

/// Server-wide maintenance is for superusers (PostgreSQL 15: 42501), locking clauses are
/// refused until row locks exist (0A000), and DISCARD ALL resets the session.
#[tokio::test]
async fn maintenance_privileges_locking_clauses_and_discard_all() {
    let server = TestServer::start();
    let su = server.connect().await;
    su.batch_execute(
        "CREATE USER worker PASSWORD 'w-pass'; CREATE TABLE jobs (id int PRIMARY KEY); GRANT ALL ON jobs TO worker",
    )
    .await
    .unwrap();
    su.batch_execute("CHECKPOINT").await.unwrap();
    su.batch_execute("VACUUM").await.unwrap();
    let conn = format!("host=127.0.0.1 port={} user=worker password=w-pass dbname=postgres", server.pg_port);
    let (w, task) = tokio_postgres::connect(&conn, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(task);
    for sql in ["CHECKPOINT", "VACUUM"] {
        assert_eq!(code(&w.batch_execute(sql).await.unwrap_err()), "42501", "{sql}");
    }
    for sql in [
        "SELECT * FROM jobs FOR UPDATE",
        "SELECT * FROM jobs ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED",
        "SELECT * FROM jobs FOR UPDATE NOWAIT",
        "SELECT * FROM jobs FOR SHARE",
        "SELECT count(*) FROM (SELECT id FROM jobs FOR UPDATE) AS s",
        "DELETE FROM jobs WHERE id IN (SELECT id FROM jobs FOR UPDATE SKIP LOCKED)",
    ] {
        assert_eq!(code(&w.batch_execute(sql).await.unwrap_err()), "0A000", "{sql}");
    }
    // Strengths the parser does not know yet are a syntax error: refused all the same.
    for sql in ["SELECT * FROM jobs FOR NO KEY UPDATE", "SELECT * FROM jobs FOR KEY SHARE"] {
        let c = code(&w.batch_execute(sql).await.unwrap_err());
        assert!(c == "0A000" || c == "42601", "{sql}: {c}");
    }
    let show = |sql: &'static str| {
        let w = &w;
        async move {
            w.simple_query(sql).await.unwrap().iter().find_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
                _ => None,
            })
        }
    };
    w.batch_execute("SET search_path TO nowhere; SET statement_timeout = '5s'; SET application_name = 'x'")
        .await
        .unwrap();
    assert_eq!(show("SHOW statement_timeout").await.as_deref(), Some("5s"));
    w.batch_execute("BEGIN").await.unwrap();
    assert_eq!(code(&w.batch_execute("DISCARD ALL").await.unwrap_err()), "25001");
    w.batch_execute("ROLLBACK").await.unwrap();
    w.batch_execute("DISCARD ALL").await.unwrap();
    assert_eq!(show("SHOW search_path").await.as_deref(), Some("\"$user\", public"));
    assert_eq!(show("SHOW statement_timeout").await.as_deref(), Some("0"));
    assert_eq!(show("SHOW application_name").await.as_deref(), Some(""));
}

/// Interrupted work of several kinds leaves nothing behind: a client that disconnects inside a
/// transaction, a COPY the client abandons, a statement timeout inside a transaction block. The
/// next statement behaves as on a fresh connection and no snapshot stays pinned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupted_work_leaves_no_trace_and_no_pinned_snapshot() {
    let server = TestServer::start();
    let c = server.connect().await;
    c.batch_execute("CREATE TABLE w (id int PRIMARY KEY, v int)").await.unwrap();
    c.batch_execute("INSERT INTO w SELECT x, 0 FROM generate_series(1, 1000) AS g(x)").await.unwrap();

    // A client that goes away inside a transaction.
    let gone = server.connect().await;
    gone.batch_execute("BEGIN; INSERT INTO w VALUES (5000, 1); UPDATE w SET v = 9 WHERE id = 1").await.unwrap();
    drop(gone);

    // COPY over the extended protocol (tokio-postgres): it hung, the CopyInResponse waiting
    // in the reply buffer for a Sync the client sends only after its data. Then a COPY the
    // client abandons half-way.
    {
        use futures::SinkExt;
        let within = |what: &'static str| move |_| panic!("{what} hung");
        let copy = c.copy_in::<_, bytes::Bytes>("COPY w FROM STDIN");
        let sink = tokio::time::timeout(Duration::from_secs(10), copy).await.unwrap_or_else(within("copy_in")).unwrap();
        let mut sink = std::pin::pin!(sink);
        sink.send(bytes::Bytes::from_static(b"7000\t0\n7001\t0\n")).await.unwrap();
        assert_eq!(sink.as_mut().finish().await.unwrap(), 2);
        c.batch_execute("DELETE FROM w WHERE id >= 7000").await.unwrap();
        let copy = c.copy_in::<_, bytes::Bytes>("COPY w FROM STDIN");
        let sink = tokio::time::timeout(Duration::from_secs(10), copy).await.unwrap_or_else(within("copy_in")).unwrap();
        let mut sink = std::pin::pin!(sink);
        sink.send(bytes::Bytes::from_static(b"6000\t1\n6001\t1\n")).await.unwrap();
        // Dropped without finish: the driver sends CopyFail.
    }
    let one: i32 = c.query_one("SELECT 1::int", &[]).await.unwrap().get(0);
    assert_eq!(one, 1, "the connection is usable after the abandoned COPY");

    // A statement timeout inside a block fails the block; COMMIT then rolls it back.
    c.batch_execute("BEGIN; UPDATE w SET v = 7 WHERE id = 2; SET statement_timeout = 100").await.unwrap();
    let err = c.batch_execute("SELECT count(*) FROM generate_series(1, 3000000000) AS t(a)").await.unwrap_err();
    assert_eq!(code(&err), "57014");
    c.batch_execute("COMMIT; RESET statement_timeout").await.unwrap();

    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, body) = server.http_get("/metrics");
        let pinned = body.lines().find_map(|l| l.strip_prefix("bkg_active_snapshots ")).map(str::trim) == Some("0");
        if pinned {
            break;
        }
        assert!(Instant::now() < deadline, "a snapshot stays pinned:\n{body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (n, changed): (i64, i64) = c
        .query_one("SELECT count(*), count(*) FILTER (WHERE v <> 0) FROM w", &[])
        .await
        .map(|r| (r.get(0), r.get(1)))
        .unwrap();
    assert_eq!((n, changed), (1000, 0), "nothing of the interrupted work is visible");
}
