//! Scans of the columnar base through SQL: filters skip Parquet row groups by their statistics.

use bkg_db::{Engine, EngineConfig, Output};
use bkg_kernel::Options;

async fn count(session: &mut bkg_db::Session, sql: &str) -> i64 {
    let out = session.execute(sql).await.pop().unwrap().unwrap();
    let Output::Rows { batches, .. } = out else { panic!("{sql}: no rows") };
    let col = batches[0].column(0).as_any().downcast_ref::<datafusion::arrow::array::Int64Array>().unwrap();
    col.value(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_skip_row_groups_of_the_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = Options::new(dir.path());
    opts.limits.snapshot_row_group_rows = 1000;
    let engine = Engine::open(opts, EngineConfig::default()).unwrap();
    let mut s = engine.session("postgres");
    for r in s
        .execute(
            "CREATE TABLE events (id int PRIMARY KEY, day date, kind text);
             INSERT INTO events SELECT i, DATE '2024-01-01' + (i / 1000), 'k' || (i % 7) FROM generate_series(0, 9999) AS g(i)",
        )
        .await
    {
        r.unwrap();
    }
    s.execute("CHECKPOINT").await.pop().unwrap().unwrap();
    let t = engine.kernel().catalog().find_table("public", "events").unwrap().id;
    let store = engine.kernel().store(t).unwrap();
    assert_eq!(store.base_rows(), 10_000);
    let pruned = |s: &bkg_kernel::mvcc::TableStore| s.groups_pruned.load(std::sync::atomic::Ordering::Relaxed);
    // Ten row groups of 1000 rows in row-id (insertion) order, which follows the ids closely but
    // not exactly: a range of 100 ids lies in one or two groups, the others are skipped.
    let before = pruned(&store);
    assert_eq!(count(&mut s, "SELECT count(*) FROM events WHERE id >= 2500 AND id < 2600").await, 100);
    assert!(pruned(&store) - before >= 8, "{} groups skipped", pruned(&store) - before);
    // Dates and text have statistics too.
    let before = pruned(&store);
    assert_eq!(count(&mut s, "SELECT count(*) FROM events WHERE day = DATE '2024-01-05'").await, 1000);
    assert!(pruned(&store) - before >= 7, "{} groups skipped", pruned(&store) - before);
    let before = pruned(&store);
    assert_eq!(count(&mut s, "SELECT count(*) FROM events WHERE kind = 'zzz'").await, 0);
    assert_eq!(pruned(&store) - before, 10);
    // Rows changed after the checkpoint are found whatever the statistics say.
    s.execute("UPDATE events SET id = 20000 WHERE id = 2550").await.pop().unwrap().unwrap();
    assert_eq!(count(&mut s, "SELECT count(*) FROM events WHERE id >= 2500 AND id < 2600").await, 99);
    assert_eq!(count(&mut s, "SELECT count(*) FROM events WHERE id > 15000").await, 1);
    // No filter, no pruning.
    let before = pruned(&store);
    assert_eq!(count(&mut s, "SELECT count(*) FROM events").await, 10_000);
    assert_eq!(pruned(&store), before);
}

/// One statement, its future boxed (the test's own future stays small).
async fn run(s: &mut bkg_db::Session, sql: &str) -> Result<Output, bkg_db::SqlError> {
    Box::pin(s.execute(sql)).await.pop().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn point_queries_take_the_fast_path_with_the_same_answers() {
    use std::sync::atomic::Ordering::Relaxed;
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(Options::new(dir.path()), EngineConfig::default()).unwrap();
    let mut s = engine.session("postgres");
    for r in s
        .execute(
            "CREATE TABLE acc (id int PRIMARY KEY, region text, n bigint, UNIQUE (region, n));
             INSERT INTO acc VALUES (1, 'eu', 10), (2, 'us', 20), (3, NULL, 30)",
        )
        .await
    {
        r.unwrap();
    }
    let fast = |e: &Engine| e.fast_path_queries.load(Relaxed);
    let text = |out: Output| -> Vec<String> {
        let Output::Rows { batches, schema, .. } = out else { panic!("no rows") };
        let mut lines = vec![schema.fields().iter().map(|f| f.name().clone()).collect::<Vec<_>>().join(",")];
        for b in &batches {
            for i in 0..b.num_rows() {
                let cells: Vec<String> = b
                    .columns()
                    .iter()
                    .map(|c| bkg_db::sql::pg_format::text_value(c.as_ref(), i).unwrap().unwrap_or("NULL".into()))
                    .collect();
                lines.push(cells.join(","));
            }
        }
        lines
    };
    let cases: &[(&str, &[&str])] = &[
        ("SELECT n FROM acc WHERE id = 2", &["n", "20"]),
        ("SELECT * FROM acc WHERE id = '1'", &["id,region,n", "1,eu,10"]),
        ("SELECT a.region AS r, n FROM acc a WHERE 3 = a.id", &["r,n", "NULL,30"]),
        ("SELECT id FROM acc WHERE id = CAST(2 AS INTEGER)", &["id", "2"]),
        ("SELECT id FROM acc WHERE region = 'us' AND n = 20", &["id", "2"]),
        ("SELECT id FROM acc WHERE id = 1 AND n = 11", &["id"]),
        ("SELECT id FROM acc WHERE id = 99", &["id"]),
        ("SELECT id FROM acc WHERE id = -1", &["id"]),
    ];
    for (sql, want) in cases {
        let before = fast(&engine);
        let out = s.execute(sql).await.pop().unwrap().unwrap();
        assert_eq!(text(out), *want, "{sql}");
        assert_eq!(fast(&engine), before + 1, "{sql} should take the fast path");
    }
    // Shapes the fast path leaves to the planner give the same kind of answers.
    for (sql, want) in [
        ("SELECT n + 1 FROM acc WHERE id = 2", vec!["?column?", "21"]),
        ("SELECT id FROM acc WHERE id = 2.0", vec!["id", "2"]),
        ("SELECT id FROM acc WHERE n = 20", vec!["id", "2"]),
        ("SELECT id FROM acc WHERE id = 2 ORDER BY id", vec!["id", "2"]),
    ] {
        let before = fast(&engine);
        let out = s.execute(sql).await.pop().unwrap().unwrap();
        assert_eq!(text(out), want, "{sql}");
        assert_eq!(fast(&engine), before, "{sql} is planned");
    }
    // Point updates of integer columns by literals and `column ± literal`.
    for (sql, tag) in [
        ("UPDATE acc SET n = n + 5 WHERE id = 1", "UPDATE 1"),
        ("UPDATE acc a SET n = a.n - 2, id = 4 WHERE a.id = 1", "UPDATE 1"),
        ("UPDATE acc SET n = 7 WHERE id = 99", "UPDATE 0"),
    ] {
        let before = fast(&engine);
        assert_eq!(run(&mut s, sql).await.unwrap().tag_text(), tag, "{sql}");
        assert_eq!(fast(&engine), before + 1, "{sql} should take the fast path");
    }
    let out = run(&mut s, "SELECT id, n FROM acc WHERE id = 4").await.unwrap();
    assert_eq!(text(out), ["id,n", "4,13"]);
    let err = run(&mut s, "UPDATE acc SET id = id + 2147483647 WHERE id = 4").await.unwrap_err();
    assert_eq!(err.code, "22003", "{err:?}");
    let err = run(&mut s, "UPDATE acc SET id = 2 WHERE id = 4").await.unwrap_err();
    assert_eq!(err.code, "23505", "{err:?}");
    let before = fast(&engine);
    assert_eq!(run(&mut s, "UPDATE acc SET n = n + 1 WHERE id = 4 RETURNING n").await.unwrap().tag_text(), "UPDATE 1");
    assert_eq!(fast(&engine), before, "RETURNING is planned");
    for r in s.execute("UPDATE acc SET id = 1, n = 10 WHERE id = 4").await {
        r.unwrap();
    }
    // INSERT ... VALUES of literals (and bound parameters) skips planning its VALUES.
    let before = fast(&engine);
    assert_eq!(
        run(&mut s, "INSERT INTO acc VALUES (5, 'x', 50), (6, NULL, -60)").await.unwrap().tag_text(),
        "INSERT 0 2"
    );
    assert_eq!(
        run(&mut s, "INSERT INTO acc (n, id) VALUES (CAST(70 AS BIGINT), CAST('7' AS INTEGER))")
            .await
            .unwrap()
            .tag_text(),
        "INSERT 0 1"
    );
    assert_eq!(fast(&engine), before + 2);
    let out = run(&mut s, "SELECT id, region, n FROM acc WHERE id >= 5 ORDER BY id").await.unwrap();
    assert_eq!(text(out), ["id,region,n", "5,x,50", "6,NULL,-60", "7,NULL,70"]);
    let err = run(&mut s, "INSERT INTO acc VALUES (8, 'y', 1), (5, 'dup', 2)").await.unwrap_err();
    assert_eq!(err.code, "23505");
    let err = run(&mut s, "INSERT INTO acc VALUES (99999999999, 'big', 1)").await.unwrap_err();
    assert_eq!(err.code, "22003", "{err:?}");
    let before = fast(&engine);
    assert_eq!(run(&mut s, "INSERT INTO acc VALUES (11, 'e', 5 * 2)").await.unwrap().tag_text(), "INSERT 0 1");
    assert_eq!(fast(&engine), before, "an expression is planned");
    run(&mut s, "CREATE TABLE ev (id int, at timestamptz, day date)").await.unwrap();
    for r in s
        .execute(
            "BEGIN; INSERT INTO ev VALUES (1, CURRENT_TIMESTAMP, '2024-02-29'), (2, now(), NULL);
             SELECT count(*) FROM ev WHERE at = now() AND (day = DATE '2024-02-29' OR day IS NULL)",
        )
        .await
    {
        let out = r.unwrap();
        if let Output::Rows { .. } = out {
            assert_eq!(text(out), ["count", "2"]);
        }
    }
    run(&mut s, "COMMIT").await.unwrap();
    run(&mut s, "DELETE FROM acc WHERE id >= 5").await.unwrap();
    // Inside a transaction, its own writes are seen.
    for r in s.execute("BEGIN; UPDATE acc SET n = 21 WHERE id = 2").await {
        r.unwrap();
    }
    let out = s.execute("SELECT n FROM acc WHERE id = 2").await.pop().unwrap().unwrap();
    assert_eq!(text(out), ["n", "21"]);
    s.execute("ROLLBACK").await.pop().unwrap().unwrap();
    let out = s.execute("SELECT n FROM acc WHERE id = 2").await.pop().unwrap().unwrap();
    assert_eq!(text(out), ["n", "20"]);
}
