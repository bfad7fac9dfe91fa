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
    let t = engine.db.catalog().find_table("public", "events").unwrap().id;
    let store = engine.db.store(t).unwrap();
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
