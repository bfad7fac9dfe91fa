//! Row locks taken by queries (`SELECT … FOR UPDATE [NOWAIT | SKIP LOCKED]`), savepoints and
//! set_config through a real driver (tokio-postgres, extended protocol), and a job queue of
//! concurrent workers.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::server::TestServer;

fn code(e: &tokio_postgres::Error) -> String {
    e.as_db_error().map(|d| d.code().code().to_string()).unwrap_or_else(|| format!("no SQLSTATE: {e}"))
}

#[tokio::test]
async fn for_update_waits_for_the_holder_then_sees_its_change() {
    let server = TestServer::start();
    let a = server.connect().await;
    let b = Arc::new(server.connect().await);
    a.batch_execute("CREATE TABLE acct (id int PRIMARY KEY, bal int); INSERT INTO acct VALUES (1, 100), (2, 100)")
        .await
        .unwrap();
    // READ COMMITTED: the waiter gets the row as the holder committed it.
    a.batch_execute("BEGIN; UPDATE acct SET bal = 90 WHERE id = 1").await.unwrap();
    b.batch_execute("BEGIN").await.unwrap();
    let b2 = b.clone();
    let waiting =
        tokio::spawn(async move { b2.query_one("SELECT bal FROM acct WHERE id = $1 FOR UPDATE", &[&1i32]).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiting.is_finished(), "FOR UPDATE must wait for the row's lock");
    a.batch_execute("COMMIT").await.unwrap();
    let bal: i32 = waiting.await.unwrap().unwrap().get(0);
    assert_eq!(bal, 90);
    // b holds the lock now: a's UPDATE waits until b ends.
    let a = Arc::new(a);
    let a2 = a.clone();
    let writer = tokio::spawn(async move { a2.execute("UPDATE acct SET bal = bal + 1 WHERE id = 1", &[]).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!writer.is_finished(), "an UPDATE must wait for a row locked FOR UPDATE");
    b.batch_execute("UPDATE acct SET bal = bal - 50 WHERE id = 1; COMMIT").await.unwrap();
    assert_eq!(writer.await.unwrap().unwrap(), 1);
    let bal: i32 = a.query_one("SELECT bal FROM acct WHERE id = 1", &[]).await.unwrap().get(0);
    assert_eq!(bal, 41, "no update was lost");
    // REPEATABLE READ: a row changed since the snapshot cannot be locked (40001), as in PostgreSQL.
    b.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ").await.unwrap();
    let _: i32 = b.query_one("SELECT bal FROM acct WHERE id = 2", &[]).await.unwrap().get(0);
    a.batch_execute("UPDATE acct SET bal = 1 WHERE id = 2").await.unwrap();
    let e = b.query("SELECT bal FROM acct WHERE id = 2 FOR UPDATE", &[]).await.unwrap_err();
    assert_eq!(code(&e), "40001");
    b.batch_execute("ROLLBACK").await.unwrap();
    // lock_timeout bounds the wait (55P03).
    a.batch_execute("BEGIN; SELECT * FROM acct WHERE id = 2 FOR SHARE").await.unwrap();
    b.batch_execute("SET lock_timeout = '200ms'").await.unwrap();
    let e = b.query("SELECT * FROM acct WHERE id = 2 FOR UPDATE", &[]).await.unwrap_err();
    assert_eq!(code(&e), "55P03");
    a.batch_execute("COMMIT").await.unwrap();
}

/// Workers take jobs with `FOR UPDATE SKIP LOCKED` for a fixed time: every job is processed
/// exactly once, and no worker ever waits for another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_queue_with_skip_locked_processes_every_job_exactly_once() {
    const JOBS: i32 = 300;
    const WORKERS: i32 = 4;
    let server = TestServer::start();
    let setup = server.connect().await;
    setup
        .batch_execute(
            "CREATE TABLE jobs (id int PRIMARY KEY, state text NOT NULL, runs int NOT NULL, worker int);
             CREATE TABLE done (job int PRIMARY KEY, worker int NOT NULL)",
        )
        .await
        .unwrap();
    setup
        .batch_execute(&format!("INSERT INTO jobs SELECT g, 'new', 0, NULL FROM generate_series(1, {JOBS}) AS t(g)"))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut handles = Vec::new();
    for w in 0..WORKERS {
        let c = server.connect().await;
        handles.push(tokio::spawn(async move {
            let mut taken = 0u32;
            // Each worker also bounds its own waits: SKIP LOCKED must never wait.
            c.batch_execute("SET lock_timeout = '5s'").await.unwrap();
            while Instant::now() < deadline {
                c.batch_execute("BEGIN").await.unwrap();
                let row = c
                    .query_opt(
                        "SELECT id FROM jobs WHERE state = 'new' ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED",
                        &[],
                    )
                    .await
                    .unwrap();
                let Some(row) = row else {
                    c.batch_execute("COMMIT").await.unwrap();
                    break;
                };
                let id: i32 = row.get(0);
                let n = c
                    .execute("UPDATE jobs SET state = 'done', runs = runs + 1, worker = $2 WHERE id = $1", &[&id, &w])
                    .await
                    .unwrap();
                assert_eq!(n, 1);
                c.execute("INSERT INTO done VALUES ($1, $2)", &[&id, &w]).await.unwrap();
                c.batch_execute("COMMIT").await.unwrap();
                taken += 1;
            }
            taken
        }));
    }
    let mut per_worker = Vec::new();
    for h in handles {
        per_worker.push(h.await.unwrap());
    }
    assert_eq!(per_worker.iter().sum::<u32>(), JOBS as u32, "jobs taken per worker: {per_worker:?}");
    let rows = setup.query("SELECT state, runs, count(*) FROM jobs GROUP BY state, runs", &[]).await.unwrap();
    let by: BTreeMap<(String, i32), i64> = rows.iter().map(|r| ((r.get(0), r.get(1)), r.get(2))).collect();
    assert_eq!(by, BTreeMap::from([(("done".to_string(), 1), JOBS as i64)]), "every job ran exactly once");
    let n: i64 = setup.query_one("SELECT count(DISTINCT job) FROM done", &[]).await.unwrap().get(0);
    assert_eq!(n, JOBS as i64);
    let busy = per_worker.iter().filter(|n| **n > 0).count();
    assert!(busy >= 2, "the workers took jobs side by side: {per_worker:?}");
}

/// Nested transactions as drivers make them (savepoints over the extended protocol), an error
/// inside one, and set_config with a parameter as Django sends it at every connection.
#[tokio::test]
async fn savepoints_and_set_config_through_the_extended_protocol() {
    let server = TestServer::start();
    let mut c = server.connect().await;
    c.batch_execute("CREATE TABLE t (id int PRIMARY KEY)").await.unwrap();
    let tz: String = c.query_one("SELECT set_config('TimeZone', $1, false)", &[&"UTC"]).await.unwrap().get(0);
    assert_eq!(tz, "UTC");
    let mut tx = c.transaction().await.unwrap();
    tx.execute("INSERT INTO t VALUES ($1)", &[&1i32]).await.unwrap();
    {
        let sp = tx.savepoint("inner").await.unwrap();
        sp.execute("INSERT INTO t VALUES ($1)", &[&2i32]).await.unwrap();
        let e = sp.execute("INSERT INTO t VALUES ($1)", &[&1i32]).await.unwrap_err();
        assert_eq!(code(&e), "23505");
        let e = sp.query("SELECT 1", &[]).await.unwrap_err();
        assert_eq!(code(&e), "25P02");
        sp.rollback().await.unwrap();
    }
    {
        let sp = tx.savepoint("again").await.unwrap();
        sp.execute("INSERT INTO t VALUES ($1)", &[&3i32]).await.unwrap();
        sp.commit().await.unwrap();
    }
    tx.commit().await.unwrap();
    let ids: Vec<i32> = c.query("SELECT id FROM t ORDER BY id", &[]).await.unwrap().iter().map(|r| r.get(0)).collect();
    assert_eq!(ids, vec![1, 3]);
    let v: String = c.query_one("SELECT current_setting($1)", &[&"TimeZone"]).await.unwrap().get(0);
    assert_eq!(v, "UTC");
}
