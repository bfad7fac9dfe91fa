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
/// refused where they would be ignored (0A000), and DISCARD ALL resets the session.
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
    // Top-level locking clauses take row locks; one in a subquery would be ignored: refused.
    for sql in [
        "SELECT * FROM jobs FOR UPDATE",
        "SELECT * FROM jobs ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED",
        "SELECT * FROM jobs FOR UPDATE NOWAIT",
        "SELECT * FROM jobs FOR SHARE",
        "SELECT * FROM jobs FOR NO KEY UPDATE",
        "SELECT * FROM jobs FOR KEY SHARE",
    ] {
        w.batch_execute(sql).await.unwrap();
    }
    for sql in [
        "SELECT count(*) FROM (SELECT id FROM jobs FOR UPDATE) AS s",
        "DELETE FROM jobs WHERE id IN (SELECT id FROM jobs FOR UPDATE SKIP LOCKED)",
        "WITH j AS (SELECT id FROM jobs FOR UPDATE) SELECT * FROM j",
        "INSERT INTO jobs SELECT id + 100 FROM jobs FOR UPDATE",
    ] {
        assert_eq!(code(&w.batch_execute(sql).await.unwrap_err()), "0A000", "{sql}");
    }
    // Locking needs UPDATE as well as SELECT (42501), as in PostgreSQL.
    su.batch_execute("REVOKE UPDATE ON jobs FROM worker").await.unwrap();
    assert_eq!(code(&w.batch_execute("SELECT * FROM jobs FOR SHARE").await.unwrap_err()), "42501");
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

    // Statements prepared over the extended protocol go too (a pooler resets a server connection
    // with DISCARD ALL before another client gets it); DEALLOCATE ALL drops them as well.
    for reset in ["DISCARD ALL", "DEALLOCATE ALL"] {
        let a = w.prepare("SELECT id FROM jobs WHERE id = $1").await.unwrap();
        let b = w.prepare("SELECT count(*) FROM jobs").await.unwrap();
        w.query(&a, &[&1i32]).await.unwrap();
        w.batch_execute(reset).await.unwrap();
        assert_eq!(code(&w.query(&a, &[&1i32]).await.unwrap_err()), "26000", "{reset}");
        assert_eq!(code(&w.query(&b, &[]).await.unwrap_err()), "26000", "{reset}");
        let c = w.prepare("SELECT count(*) FROM jobs").await.unwrap();
        assert_eq!(w.query_one(&c, &[]).await.unwrap().get::<_, i64>(0), 0, "{reset}");
    }
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

    server.wait_unpinned("interrupted pgwire work");
    let (n, changed): (i64, i64) = c
        .query_one("SELECT count(*), count(*) FILTER (WHERE v <> 0) FROM w", &[])
        .await
        .map(|r| (r.get(0), r.get(1)))
        .unwrap();
    assert_eq!((n, changed), (1000, 0), "nothing of the interrupted work is visible");
}

/// REST writes the client abandons: a body cut off half-way, and a complete write whose client
/// hangs up without reading the answer. Each is all or nothing, nothing stays pinned, and the
/// next request is served as usual.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_writes_the_client_abandons_are_all_or_nothing() {
    use std::io::Write;
    let server = TestServer::start_with(&[("BKG_DB_RLS_DEFAULT", "off")]);
    let c = server.connect().await;
    c.batch_execute("CREATE TABLE r (id int PRIMARY KEY, v text)").await.unwrap();
    let (_, service) = server.api_keys();
    let rows = |from: i32, n: i32| {
        let items: Vec<String> = (from..from + n).map(|i| format!(r#"{{"id":{i},"v":"row {i}"}}"#)).collect();
        format!("[{}]", items.join(","))
    };
    let head = |len: usize| {
        format!(
            "POST /rest/v1/r HTTP/1.1\r\nHost: localhost\r\napikey: {service}\r\nAuthorization: Bearer {service}\r\n\
             Content-Type: application/json\r\nContent-Length: {len}\r\n\r\n"
        )
    };
    // 1. Half the body, then the client goes away.
    let body = rows(0, 20_000);
    let mut s = std::net::TcpStream::connect(("127.0.0.1", server.http_port)).unwrap();
    s.write_all(head(body.len()).as_bytes()).unwrap();
    s.write_all(&body.as_bytes()[..body.len() / 2]).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    drop(s);
    // 2. The whole body, and the client hangs up at once without reading the answer.
    let body = rows(100_000, 20_000);
    let mut s = std::net::TcpStream::connect(("127.0.0.1", server.http_port)).unwrap();
    s.write_all(head(body.len()).as_bytes()).unwrap();
    s.write_all(body.as_bytes()).unwrap();
    drop(s);
    server.wait_unpinned("abandoned REST writes");
    let count = |sql: &'static str| {
        let c = &c;
        async move { c.query_one(sql, &[]).await.unwrap().get::<_, i64>(0) }
    };
    assert_eq!(count("SELECT count(*) FROM r WHERE id < 100000").await, 0, "a cut-off body wrote rows");
    let n = count("SELECT count(*) FROM r WHERE id >= 100000").await;
    assert!(n == 0 || n == 20_000, "an abandoned complete write is all or nothing: {n} rows");
    // The server still answers, and a write after it works.
    let (status, _, answer) = server.http(
        "POST",
        "/rest/v1/r",
        &[("apikey", &service), ("Authorization", &format!("Bearer {service}")), ("Content-Type", "application/json")],
        rows(200_000, 3).as_bytes(),
    );
    assert_eq!(status, 201, "{answer}");
    assert_eq!(count("SELECT count(*) FROM r WHERE id >= 200000").await, 3);
}

/// Malformed messages before login end the connection with FATAL 08P01 and nothing else: a
/// startup packet without its terminator, a length beyond the limit, and a SASLInitialResponse
/// whose response length runs past its end (pgwire's decoder panicked on it). The server goes
/// on serving.
#[tokio::test]
async fn malformed_messages_before_login_get_fatal_08p01() {
    use std::io::{Read, Write};
    let server = TestServer::start();
    let startup = |params: &[u8]| {
        let mut body = 196_608i32.to_be_bytes().to_vec();
        body.extend_from_slice(params);
        let mut m = ((body.len() + 4) as i32).to_be_bytes().to_vec();
        m.extend(body);
        m
    };
    let answer = |bytes: &[&[u8]]| {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", server.pg_port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        for b in bytes {
            s.write_all(b).unwrap();
            std::thread::sleep(Duration::from_millis(50));
        }
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        out
    };
    let fatal_08p01 = |out: &[u8]| {
        let text = String::from_utf8_lossy(out);
        out.first() == Some(&b'E') && text.contains("SFATAL") && text.contains("C08P01")
    };
    // Pairs without the final NUL.
    let out = answer(&[&startup(b"user\0postgres\0database")]);
    assert!(fatal_08p01(&out), "{:?}", String::from_utf8_lossy(&out));
    // A length beyond the startup limit.
    let out = answer(&[&[0x7f, 0xff, 0xff, 0xff, 0, 3, 0, 0]]);
    assert!(fatal_08p01(&out), "{:?}", String::from_utf8_lossy(&out));
    // A SASLInitialResponse claiming 1000 bytes of response and carrying 3.
    let mut sasl = b"SCRAM-SHA-256\0".to_vec();
    sasl.extend(1000i32.to_be_bytes());
    sasl.extend(b"abc");
    let mut p = vec![b'p'];
    p.extend(((sasl.len() + 4) as i32).to_be_bytes());
    p.extend(sasl);
    let out = answer(&[&startup(b"user\0postgres\0\0"), &p]);
    let text = String::from_utf8_lossy(&out);
    assert!(out.first() == Some(&b'R'), "the server asks for SASL first: {text:?}");
    assert!(text.contains("SFATAL") && text.contains("C08P01"), "{text:?}");
    // The server is still there.
    let c = server.connect().await;
    assert_eq!(c.query_one("SELECT 1::int", &[]).await.unwrap().get::<_, i32>(0), 1);
}

/// A refusal sent before the server read the whole request (a body over the limit) reaches the
/// client every time: the server drains before closing instead of resetting the connection,
/// which made the client lose the 413 it had already been sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_early_refusal_is_never_lost_to_a_reset() {
    use std::io::{Read, Write};
    let server = TestServer::start_with(&[("BKG_DB_REST_BODY_MAX_MB", "1")]);
    let (_, service) = server.api_keys();
    server.connect().await.batch_execute("CREATE TABLE anything (id int PRIMARY KEY)").await.unwrap();
    let port = server.http_port;
    let statuses = tokio::task::spawn_blocking(move || {
        (0..20)
            .map(|_| {
                let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
                c.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
                c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                let head = format!(
                    "POST /rest/v1/anything HTTP/1.1\r\nHost: localhost\r\napikey: {service}\r\n\
                     Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                    16 << 20
                );
                c.write_all(head.as_bytes()).unwrap();
                // Clients such as undici and ws give up when a write fails, before they read
                // the answer: the whole body must go out.
                let chunk = vec![b' '; 1 << 20];
                for _ in 0..16 {
                    if let Err(e) = c.write_all(&chunk) {
                        return format!("write: {:?}", e.kind());
                    }
                }
                let mut got = Vec::new();
                match c.read_to_end(&mut got) {
                    Ok(_) => String::from_utf8_lossy(&got).split_whitespace().nth(1).unwrap_or("none").to_string(),
                    Err(e) => format!("{:?}", e.kind()),
                }
            })
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    assert!(statuses.iter().all(|s| s == "413"), "{statuses:?}");
}

/// pgwire too: the FATAL for a message over the limit reaches a client that is still sending
/// it, instead of a reset (libpq would report "server closed the connection unexpectedly").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fatal_before_the_rest_of_the_message_reaches_the_client() {
    use std::io::{Read, Write};
    let server = TestServer::start();
    let port = server.pg_port;
    let outcomes = tokio::task::spawn_blocking(move || {
        (0..10)
            .map(|_| {
                let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
                s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                // A startup message claiming 2 GiB, then 8 MiB of it.
                s.write_all(&[0x7f, 0xff, 0xff, 0xff, 0, 3, 0, 0]).unwrap();
                let chunk = vec![0u8; 1 << 20];
                for _ in 0..8 {
                    if let Err(e) = s.write_all(&chunk) {
                        return format!("write: {:?}", e.kind());
                    }
                }
                let mut out = Vec::new();
                match s.read_to_end(&mut out) {
                    Ok(_) => {
                        let text = String::from_utf8_lossy(&out);
                        if out.first() == Some(&b'E') && text.contains("SFATAL") && text.contains("C08P01") {
                            "fatal".to_string()
                        } else {
                            format!("other: {text:?}")
                        }
                    }
                    Err(e) => format!("read: {:?}", e.kind()),
                }
            })
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    assert!(outcomes.iter().all(|o| o == "fatal"), "{outcomes:?}");
}
