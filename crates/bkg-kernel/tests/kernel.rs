//! Kernel behaviour: durability, isolation, constraints, fault injection and a model test.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use bkg_kernel::testutil::{create_kv_table, kv_columns, kv_contents, kv_get, kv_row, table_id};
use bkg_kernel::vfs::FaultyVfs;
use bkg_kernel::wal::FsyncFailure;
use bkg_kernel::{Database, ErrorCode, IsolationLevel, OnConflict, Options, Value};
use rand::{Rng, SeedableRng};

const RR: IsolationLevel = IsolationLevel::RepeatableRead;

fn open(dir: &Path) -> Database {
    Database::open(Options::new(dir)).expect("open").0
}

fn open_faulty(dir: &Path, vfs: &FaultyVfs) -> Database {
    let mut o = Options::new(dir);
    o.vfs = Arc::new(vfs.clone());
    o.on_fsync_failure = FsyncFailure::Poison;
    Database::open(o).expect("open").0
}

fn setup(db: &Database) -> u64 {
    let mut t = db.begin(RR);
    let id = create_kv_table(&mut t, "kv").unwrap();
    t.commit_blocking().unwrap();
    id
}

fn put(db: &Database, table: u64, id: i64, v: i64) {
    let mut t = db.begin(RR);
    match kv_get(&t, table, id) {
        Some((rowid, _)) => {
            t.update(table, vec![(rowid, kv_row(id, v, "u"))]).unwrap();
        }
        None => {
            t.insert(table, vec![kv_row(id, v, "i")], OnConflict::Error).unwrap();
        }
    }
    t.commit_blocking().unwrap();
}

fn contents(db: &Database, table: u64) -> Vec<(i64, i64)> {
    kv_contents(&db.begin(RR), table)
}

#[test]
fn committed_data_survives_reopen_and_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let t = setup(&db);
    for i in 0..50 {
        put(&db, t, i, i * 10);
    }
    db.checkpoint().unwrap();
    for i in 25..75 {
        put(&db, t, i, i * 100);
    }
    let expected = contents(&db, t);
    db.close();
    drop(db);
    let db = open(dir.path());
    assert_eq!(contents(&db, t), expected);
    assert_eq!(expected.len(), 75);
    // A second checkpoint and reopen changes nothing.
    db.checkpoint().unwrap();
    db.close();
    let db = open(dir.path());
    assert_eq!(contents(&db, t), expected);
}

#[test]
fn rollback_leaves_no_trace() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let t = setup(&db);
    put(&db, t, 1, 1);
    let mut txn = db.begin(RR);
    txn.insert(t, vec![kv_row(2, 2, "x")], OnConflict::Error).unwrap();
    let (r, _) = kv_get(&txn, t, 1).unwrap();
    txn.delete(t, &[r]).unwrap();
    txn.rollback();
    assert_eq!(contents(&db, t), vec![(1, 1)]);
    db.close();
    let db = open(dir.path());
    assert_eq!(contents(&db, t), vec![(1, 1)]);
}

#[test]
fn long_reader_keeps_its_snapshot_while_writers_proceed() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let t = setup(&db);
    put(&db, t, 1, 1);
    let reader = db.begin(RR);
    assert_eq!(kv_contents(&reader, t), vec![(1, 1)]);
    put(&db, t, 1, 2);
    put(&db, t, 2, 2);
    assert_eq!(kv_contents(&reader, t), vec![(1, 1)], "repeatable read sees its snapshot");
    let mut rc = db.begin(IsolationLevel::ReadCommitted);
    assert_eq!(kv_contents(&rc, t), vec![(1, 2), (2, 2)]);
    put(&db, t, 3, 3);
    rc.statement_start();
    assert_eq!(kv_contents(&rc, t).len(), 3, "read committed sees new commits per statement");
    // Old versions stay while the reader lives, and go once it is gone.
    let before = db.store(t).unwrap().version_count();
    db.vacuum();
    assert_eq!(db.store(t).unwrap().version_count(), before);
    drop(reader);
    drop(rc);
    db.vacuum();
    assert_eq!(db.store(t).unwrap().version_count(), 3);
}

#[test]
fn writers_lock_rows_and_the_first_committer_wins() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let t = setup(&db);
    put(&db, t, 1, 0);
    let mut a = db.begin(RR);
    let mut b = db.begin(RR);
    let (ra, _) = kv_get(&a, t, 1).unwrap();
    let (rb, _) = kv_get(&b, t, 1).unwrap();
    a.update(t, vec![(ra, kv_row(1, 10, "a"))]).unwrap();
    // b meets a's row lock; once a committed, b's snapshot is too old for the row.
    let err = b.update(t, vec![(rb, kv_row(1, 20, "b"))]).unwrap_err();
    assert!(matches!(err, bkg_kernel::Error::LockWait { holder, .. } if holder == a.id()), "{err}");
    assert_eq!(err.code().sqlstate(), "55P03");
    assert_eq!(db.lock_stats().0, 1);
    a.commit_blocking().unwrap();
    assert_eq!(db.lock_stats().0, 0, "commit releases the row locks");
    let err = b.update(t, vec![(rb, kv_row(1, 20, "b"))]).unwrap_err();
    assert_eq!(err.code(), ErrorCode::SerializationFailure);
    assert_eq!(err.code().sqlstate(), "40001");
    b.rollback();
    assert_eq!(contents(&db, t), vec![(1, 10)]);
    // A writer that starts after the commit sees it and may update.
    let mut c = db.begin(RR);
    let (rc, v) = kv_get(&c, t, 1).unwrap();
    assert_eq!(v, 10);
    c.update(t, vec![(rc, kv_row(1, 30, "c"))]).unwrap();
    c.commit_blocking().unwrap();
    // Updating a row already changed by a committed transaction fails at once.
    let mut d = db.begin(RR);
    put(&db, t, 1, 40);
    let (rd, _) = kv_get(&d, t, 1).unwrap();
    let err = d.update(t, vec![(rd, kv_row(1, 50, "d"))]).unwrap_err();
    assert_eq!(err.code(), ErrorCode::SerializationFailure);
}

#[test]
fn unique_and_not_null_are_enforced() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let t = setup(&db);
    put(&db, t, 1, 1);
    let mut x = db.begin(RR);
    let err = x.insert(t, vec![kv_row(1, 2, "dup")], OnConflict::Error).unwrap_err();
    assert_eq!(err.code(), ErrorCode::UniqueViolation);
    let out = x.insert(t, vec![kv_row(1, 2, "dup"), kv_row(2, 2, "new")], OnConflict::Skip(None)).unwrap();
    assert_eq!(out.inserted.len(), 1);
    assert_eq!(out.conflicts.len(), 1);
    let err = x
        .insert(
            t,
            vec![vec![bkg_kernel::Value::Null, bkg_kernel::Value::Int64(1), bkg_kernel::Value::Null]],
            OnConflict::Error,
        )
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::NotNullViolation);
    x.rollback();
    // Two concurrent inserts of the same key: the second commit fails.
    let mut a = db.begin(RR);
    let mut b = db.begin(RR);
    a.insert(t, vec![kv_row(5, 1, "a")], OnConflict::Error).unwrap();
    b.insert(t, vec![kv_row(5, 2, "b")], OnConflict::Error).unwrap();
    a.commit_blocking().unwrap();
    assert_eq!(b.commit_blocking().unwrap_err().code(), ErrorCode::UniqueViolation);
    // Delete then re-insert the same key in one transaction is fine.
    let mut c = db.begin(RR);
    let (r, _) = kv_get(&c, t, 5).unwrap();
    c.delete(t, &[r]).unwrap();
    c.insert(t, vec![kv_row(5, 9, "again")], OnConflict::Error).unwrap();
    c.commit_blocking().unwrap();
    assert_eq!(contents(&db, t), vec![(1, 1), (5, 9)]);
}

#[test]
fn concurrent_committers_share_fsyncs() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let t = setup(&db);
    let threads = 8;
    let per = 40;
    let before = db.stats().wal_fsyncs;
    std::thread::scope(|s| {
        for th in 0..threads {
            let db = db.clone();
            s.spawn(move || {
                for i in 0..per {
                    let mut x = db.begin(RR);
                    x.insert(t, vec![kv_row((th * 1000 + i) as i64, 1, "g")], OnConflict::Error).unwrap();
                    x.commit_blocking().unwrap();
                }
            });
        }
    });
    let fsyncs = db.stats().wal_fsyncs - before;
    assert_eq!(contents(&db, t).len(), threads * per);
    assert!(fsyncs <= (threads * per) as u64, "at most one fsync per commit: {fsyncs}");
    db.close();
    assert_eq!(contents(&open(dir.path()), t).len(), threads * per);
}

fn last_segment(dir: &Path) -> std::path::PathBuf {
    let mut segs: Vec<_> = std::fs::read_dir(dir.join("wal")).unwrap().map(|e| e.unwrap().path()).collect();
    segs.sort();
    segs.pop().unwrap()
}

#[test]
fn torn_wal_tail_is_cut_back() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let t = setup(&db);
    for i in 0..10 {
        put(&db, t, i, i);
    }
    db.close();
    drop(db);
    let seg = last_segment(dir.path());
    let len = std::fs::metadata(&seg).unwrap().len();
    // Cut the last record in half, then append garbage.
    let f = std::fs::OpenOptions::new().write(true).open(&seg).unwrap();
    f.set_len(len - 20).unwrap();
    drop(f);
    let (db, info) = Database::open(Options::new(dir.path())).unwrap();
    assert!(info.torn_bytes_cut > 0);
    assert_eq!(contents(&db, t), (0..9).map(|i| (i, i)).collect::<Vec<_>>());
    // The log is usable afterwards and the repair is stable across another crash.
    put(&db, t, 100, 100);
    db.close();
    drop(db);
    assert_eq!(contents(&open(dir.path()), t).len(), 10);
}

#[test]
fn flipped_bit_in_the_middle_of_the_wal_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let t = setup(&db);
    for i in 0..10 {
        put(&db, t, i, i);
    }
    db.close();
    drop(db);
    let seg = last_segment(dir.path());
    let mut bytes = std::fs::read(&seg).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x10;
    std::fs::write(&seg, &bytes).unwrap();
    let err = Database::open(Options::new(dir.path())).unwrap_err();
    assert_eq!(err.code(), ErrorCode::Corruption, "{err}");
}

#[test]
fn flipped_bit_in_a_snapshot_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let t = setup(&db);
    for i in 0..10 {
        put(&db, t, i, i);
    }
    db.checkpoint().unwrap();
    db.close();
    drop(db);
    let snap = std::fs::read_dir(dir.path().join("snapshots")).unwrap().next().unwrap().unwrap().path();
    let file = std::fs::read_dir(&snap).unwrap().next().unwrap().unwrap().path();
    let mut bytes = std::fs::read(&file).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&file, &bytes).unwrap();
    let err = Database::open(Options::new(dir.path())).unwrap_err();
    assert_eq!(err.code(), ErrorCode::Corruption, "{err}");
}

#[test]
fn failed_fsync_acknowledges_nothing_further() {
    let dir = tempfile::tempdir().unwrap();
    let vfs = FaultyVfs::new();
    let db = open_faulty(dir.path(), &vfs);
    let t = setup(&db);
    put(&db, t, 1, 1);
    vfs.fail_sync_at(1);
    let mut x = db.begin(RR);
    x.insert(t, vec![kv_row(2, 2, "lost")], OnConflict::Error).unwrap();
    assert!(x.commit_blocking().is_err());
    let mut y = db.begin(RR);
    y.insert(t, vec![kv_row(3, 3, "refused")], OnConflict::Error).unwrap();
    assert!(y.commit_blocking().is_err(), "the log is unusable after a failed fsync");
    assert_eq!(contents(&db, t), vec![(1, 1)], "nothing unacknowledged is visible");
    db.close();
    drop(db);
    vfs.drop_unsynced().unwrap();
    assert_eq!(contents(&open(dir.path()), t), vec![(1, 1)]);
}

#[test]
fn full_disk_fails_cleanly_and_writes_resume() {
    let dir = tempfile::tempdir().unwrap();
    let vfs = FaultyVfs::new();
    let db = open_faulty(dir.path(), &vfs);
    let t = setup(&db);
    put(&db, t, 1, 1);
    vfs.set_disk_full(true);
    let mut x = db.begin(RR);
    x.insert(t, vec![kv_row(2, 2, "nospace")], OnConflict::Error).unwrap();
    let err = x.commit_blocking().unwrap_err();
    assert_eq!(err.code(), ErrorCode::DiskFull, "{err}");
    assert_eq!(contents(&db, t), vec![(1, 1)]);
    vfs.set_disk_full(false);
    put(&db, t, 3, 3);
    assert_eq!(contents(&db, t), vec![(1, 1), (3, 3)]);
    db.close();
    drop(db);
    assert_eq!(contents(&open(dir.path()), t), vec![(1, 1), (3, 3)]);
}

#[test]
fn crash_at_each_step_of_a_checkpoint_leaves_old_or_new_state() {
    // Count the syncs and writes one checkpoint makes, then fail each of them in turn.
    for step in 1..=12u64 {
        for fail_sync in [true, false] {
            let dir = tempfile::tempdir().unwrap();
            let vfs = FaultyVfs::new();
            let db = open_faulty(dir.path(), &vfs);
            let t = setup(&db);
            for i in 0..20 {
                put(&db, t, i, i);
            }
            db.checkpoint().unwrap();
            for i in 10..30 {
                put(&db, t, i, -i);
            }
            let expected = contents(&db, t);
            if fail_sync {
                vfs.fail_sync_at(step);
            } else {
                vfs.fail_write_at(step);
            }
            let _ = db.checkpoint();
            db.close();
            drop(db);
            vfs.drop_unsynced().unwrap();
            let db = open(dir.path());
            assert_eq!(contents(&db, t), expected, "step {step} fail_sync={fail_sync}");
        }
    }
}

#[test]
fn change_feed_reports_commits_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let t = setup(&db);
    put(&db, t, 1, 1);
    put(&db, t, 1, 2);
    let mut x = db.begin(RR);
    let (r, _) = kv_get(&x, t, 1).unwrap();
    x.delete(t, &[r]).unwrap();
    x.commit_blocking().unwrap();
    let changes = db.changes_since(0, 100).unwrap();
    let kinds: Vec<_> = changes.iter().map(|c| c.kind).collect();
    use bkg_kernel::ChangeKind::*;
    assert_eq!(kinds, vec![Ddl, Insert, Update, Delete]);
    assert!(changes.windows(2).all(|w| w[0].lsn <= w[1].lsn && w[0].commit_ts <= w[1].commit_ts));
    assert_eq!(changes[2].table, "public.kv");
    assert!(changes[2].old.is_some() && changes[2].new.is_some());
    let later = db.changes_since(changes[3].lsn, 100).unwrap();
    assert_eq!(later.len(), 1);
}

#[test]
fn live_subscribers_get_each_visible_commit_once_in_order() {
    use bkg_kernel::ChangeKind::*;
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let t = setup(&db);
    let mut sub = db.subscribe();
    put(&db, t, 1, 1);
    put(&db, t, 1, 2);
    // A rolled-back transaction and a read-only one publish nothing.
    let mut gone = db.begin(RR);
    gone.insert(t, vec![kv_row(7, 7, "")], OnConflict::Error).unwrap();
    gone.rollback();
    db.begin(RR).commit_blocking().unwrap();
    let mut x = db.begin(RR);
    let (r, _) = kv_get(&x, t, 1).unwrap();
    x.delete(t, &[r]).unwrap();
    x.commit_blocking().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let mut got = Vec::new();
    for _ in 0..3 {
        got.extend(rt.block_on(sub.recv()).unwrap());
    }
    let kinds: Vec<_> = got.iter().map(|c| c.kind).collect();
    assert_eq!(kinds, vec![Insert, Update, Delete]);
    assert!(got.windows(2).all(|w| w[0].lsn < w[1].lsn && w[0].commit_ts < w[1].commit_ts));
    assert_eq!(got[1].table, "public.kv");
    assert_eq!(
        (&got[1].old.as_ref().unwrap()[1], &got[1].new.as_ref().unwrap()[1]),
        (&Value::Int64(1), &Value::Int64(2))
    );
    assert!(got[2].old.is_some() && got[2].new.is_none(), "a delete carries the old row");
    // The live feed and the WAL agree.
    let from_wal: Vec<_> = db.changes_since(got[0].lsn, 100).unwrap();
    assert_eq!(
        from_wal.iter().map(|c| (c.lsn, c.kind)).collect::<Vec<_>>(),
        got.iter().map(|c| (c.lsn, c.kind)).collect::<Vec<_>>()
    );
    // Nothing more until the next commit.
    let idle = rt.block_on(async { tokio::time::timeout(std::time::Duration::from_millis(50), sub.recv()).await });
    assert!(idle.is_err(), "no commit, no event");
}

#[test]
fn a_lagging_subscriber_resumes_from_the_wal_without_a_gap() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = Options::new(dir.path());
    opts.limits.feed_commits_max = 4;
    let (db, _) = Database::open(opts).unwrap();
    let t = setup(&db);
    let mut sub = db.subscribe();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    put(&db, t, 0, 0);
    let first = rt.block_on(sub.recv()).unwrap();
    for i in 1..20 {
        put(&db, t, i, i);
    }
    let resume = match rt.block_on(sub.recv()) {
        Err(bkg_kernel::FeedError::Lagged { resume_lsn }) => resume_lsn,
        other => panic!("expected a lag, got {:?}", other.map(|c| c.len())),
    };
    assert_eq!(resume, first[0].lsn + 1, "resume right after the last commit delivered");
    let rest = db.changes_since(resume, 1000).unwrap();
    let ids: Vec<i64> = rest
        .iter()
        .map(|c| match c.new.as_ref().unwrap()[0] {
            Value::Int64(id) => id,
            ref other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(ids, (1..20).collect::<Vec<_>>(), "every commit after the last one delivered, once");
}

#[test]
fn ddl_is_transactional() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let mut x = db.begin(RR);
    create_kv_table(&mut x, "gone").unwrap();
    x.rollback();
    assert!(db.catalog().find_table("public", "gone").is_none());
    let mut y = db.begin(RR);
    let id = create_kv_table(&mut y, "kept").unwrap();
    y.insert(id, vec![kv_row(1, 1, "in the same txn")], OnConflict::Error).unwrap();
    y.commit_blocking().unwrap();
    db.close();
    let db = open(dir.path());
    let t = table_id(&db.begin(RR), "kept").unwrap();
    assert_eq!(contents(&db, t), vec![(1, 1)]);
    // Concurrent DDL: the second committer loses.
    let mut a = db.begin(RR);
    let mut b = db.begin(RR);
    create_kv_table(&mut a, "a1").unwrap();
    create_kv_table(&mut b, "b1").unwrap();
    a.commit_blocking().unwrap();
    assert_eq!(b.commit_blocking().unwrap_err().code(), ErrorCode::SerializationFailure);
}

/// Random transactions, checkpoints and restarts against a BTreeMap model.
#[test]
fn model_random_transactions_and_restarts() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(0xb6d);
    let dir = tempfile::tempdir().unwrap();
    let mut db = open(dir.path());
    let t = setup(&db);
    let mut model: BTreeMap<i64, i64> = BTreeMap::new();
    for step in 0..400 {
        let mut x = db.begin(RR);
        let mut local = model.clone();
        let ops = rng.random_range(1..6);
        let mut ok = true;
        for _ in 0..ops {
            let k = rng.random_range(0..40);
            let v = rng.random_range(0..1000);
            match rng.random_range(0..4) {
                3 => {
                    // A bulk insert of a few keys, kept columnar.
                    let keys: Vec<i64> = (0..rng.random_range(1..4)).map(|i| (k + i * 7) % 40).collect();
                    let rows: Vec<(Option<i64>, i64)> = keys.iter().map(|&k| (Some(k), v)).collect();
                    match x.insert_columns(t, kv_columns(&rows, "b")) {
                        Ok(n) => {
                            assert_eq!(n, keys.len());
                            assert!(keys.iter().all(|k| !local.contains_key(k)));
                            local.extend(keys.iter().map(|&k| (k, v)));
                        }
                        Err(e) => {
                            assert_eq!(e.code(), ErrorCode::UniqueViolation);
                            assert!(keys.iter().any(|k| local.contains_key(k)));
                            ok = false;
                            break;
                        }
                    }
                }
                0 => match x.insert(t, vec![kv_row(k, v, "m")], OnConflict::Error) {
                    Ok(_) => {
                        assert!(!local.contains_key(&k));
                        local.insert(k, v);
                    }
                    Err(e) => {
                        assert_eq!(e.code(), ErrorCode::UniqueViolation);
                        assert!(local.contains_key(&k));
                        ok = false;
                        break;
                    }
                },
                1 => {
                    if let Some((r, _)) = kv_get(&x, t, k) {
                        x.update(t, vec![(r, kv_row(k, v, "u"))]).unwrap();
                        local.insert(k, v);
                    } else {
                        assert!(!local.contains_key(&k));
                    }
                }
                _ => {
                    if let Some((r, _)) = kv_get(&x, t, k) {
                        x.delete(t, &[r]).unwrap();
                        local.remove(&k);
                    }
                }
            }
        }
        if ok && rng.random_bool(0.85) {
            x.commit_blocking().unwrap();
            model = local;
        } else {
            x.rollback();
        }
        if step % 37 == 0 {
            db.checkpoint().unwrap();
        }
        if step % 53 == 0 {
            db.close();
            drop(db);
            db = open(dir.path());
        }
        let seen: BTreeMap<i64, i64> = contents(&db, t).into_iter().collect();
        assert_eq!(seen, model, "step {step}");
    }
}

#[test]
fn concurrent_update_of_the_same_key_is_a_serialization_failure() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let t = setup(&db);
    put(&db, t, 1, 0);
    // b reads the row before a's update is installed, then updates after a committed.
    let mut b = db.begin(RR);
    let (rb, _) = kv_get(&b, t, 1).unwrap();
    put(&db, t, 1, 10);
    let err = b.update(t, vec![(rb, kv_row(1, 20, "b"))]).unwrap_err();
    assert_eq!(err.code(), ErrorCode::SerializationFailure, "{err}");
}

/// (id, v) pairs read through the columnar scan, sorted by id.
fn columnar_contents(txn: &bkg_kernel::Transaction, table: u64) -> Vec<(i64, i64)> {
    use arrow::array::{Array, Int64Array};
    let chunks = txn.scan_columns(table, &[Some(0), Some(1)], None, usize::MAX).unwrap();
    let mut out = Vec::new();
    for (n, cols) in chunks {
        let ids = cols[0].as_any().downcast_ref::<Int64Array>().unwrap();
        let vs = cols[1].as_any().downcast_ref::<Int64Array>().unwrap();
        assert_eq!(ids.len(), n);
        for i in 0..n {
            out.push((ids.value(i), vs.value(i)));
        }
    }
    out.sort();
    out
}

#[test]
fn checkpoint_turns_rows_into_a_columnar_base() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = Options::new(dir.path());
    opts.limits.snapshot_row_group_rows = 100;
    let db = Database::open(opts).unwrap().0;
    let t = setup(&db);
    let mut x = db.begin(RR);
    x.insert(t, (0..1000).map(|i| kv_row(i, i, "base")).collect(), OnConflict::Error).unwrap();
    x.commit_blocking().unwrap();
    // A reader older than the checkpoint keeps the in-memory versions alive.
    let old = db.begin(RR);
    put(&db, t, 5, -5);
    db.checkpoint().unwrap();
    assert_eq!(db.store(t).unwrap().base_rows(), 0, "an older snapshot is still in use");
    assert_eq!(kv_get(&old, t, 5).unwrap().1, 5);
    assert_eq!(columnar_contents(&old, t).len(), 1000);
    drop(old);
    db.checkpoint().unwrap();
    let store = db.store(t).unwrap();
    assert_eq!(store.base_rows(), 1000);
    assert_eq!(store.version_count(), 0);
    // A reader from before these writes keeps seeing the base rows they change.
    let before = db.begin(RR);
    put(&db, t, 7, 70);
    put(&db, t, 1000, 1000);
    let mut d = db.begin(RR);
    let (r, _) = kv_get(&d, t, 3).unwrap();
    d.delete(t, &[r]).unwrap();
    d.commit_blocking().unwrap();
    let mut expected: Vec<(i64, i64)> = (0..=1000)
        .filter(|&i| i != 3)
        .map(|i| {
            (
                i,
                if i == 5 {
                    -5
                } else if i == 7 {
                    70
                } else {
                    i
                },
            )
        })
        .collect();
    assert_eq!(contents(&db, t), expected);
    assert_eq!(columnar_contents(&db.begin(RR), t), expected);
    assert_eq!(kv_get(&before, t, 7).unwrap().1, 7);
    assert!(kv_get(&before, t, 3).is_some() && kv_get(&before, t, 1000).is_none());
    // A base row deleted by a concurrent transaction is a conflict.
    let mut a = db.begin(RR);
    let mut b = db.begin(RR);
    let (ra, _) = kv_get(&a, t, 9).unwrap();
    let (rb, _) = kv_get(&b, t, 9).unwrap();
    a.update(t, vec![(ra, kv_row(9, 90, "a"))]).unwrap();
    // b finds a's row lock: it must wait (here: time out), and nothing of its call is written.
    let key = match b.delete(t, &[rb]).unwrap_err() {
        bkg_kernel::Error::LockWait { table, rowid, holder } => (table, rowid, holder),
        other => panic!("expected a lock wait, got {other}"),
    };
    assert_eq!(key, (t, rb, a.id()));
    let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    let waited = rt.block_on(db.wait_for_row_lock(b.id(), key, Some(std::time::Duration::from_millis(50))));
    assert_eq!(waited.unwrap_err().code(), ErrorCode::LockNotAvailable);
    assert!(!b.has_writes());
    a.commit_blocking().unwrap();
    rt.block_on(db.wait_for_row_lock(b.id(), key, None)).unwrap();
    // a committed a newer version: b's retry is a serialization failure (REPEATABLE READ).
    assert_eq!(b.delete(t, &[rb]).unwrap_err().code(), ErrorCode::SerializationFailure);
    drop(b);
    // The primary key still covers base rows.
    let mut dup = db.begin(RR);
    let err = dup.insert(t, vec![kv_row(42, 0, "dup")], OnConflict::Error).unwrap_err();
    assert_eq!(err.code(), ErrorCode::UniqueViolation);
    drop(dup);
    expected.iter_mut().find(|(k, _)| *k == 9).unwrap().1 = 90;
    // Pruning: groups whose statistics rule them out are skipped; later versions never are.
    let prune = |base: &bkg_kernel::mvcc::BaseSegment| -> Vec<bool> {
        use arrow::array::{Array, Int64Array};
        let s = &base.stats[&0];
        // For `id < 100`: a group can match only if its minimum is below 100.
        let mins = s.mins.as_any().downcast_ref::<Int64Array>().unwrap();
        (0..mins.len()).map(|g| mins.value(g) < 100).collect()
    };
    let chunks = db.begin(RR).scan_columns(t, &[Some(0)], Some(&prune), usize::MAX).unwrap();
    let mut ids = Vec::new();
    for (_, cols) in &chunks {
        use arrow::array::{Array, Int64Array};
        ids.extend(cols[0].as_any().downcast_ref::<Int64Array>().unwrap().values().iter().copied());
    }
    ids.sort();
    assert!(ids.len() < 500, "most row groups were pruned: {} rows read", ids.len());
    assert!((0..100).filter(|&i| i != 3).all(|i| ids.binary_search(&i).is_ok()), "no matching row lost");
    assert!(ids.binary_search(&3).is_err());
    assert!(ids.binary_search(&1000).is_ok(), "rows committed after the checkpoint are never pruned");
    // Checkpoint, reopen: the same rows, now all in the new base.
    db.checkpoint().unwrap();
    assert_eq!(db.store(t).unwrap().base_rows(), 1000);
    db.close();
    drop(db);
    let db = open(dir.path());
    assert_eq!(contents(&db, t), expected);
    assert_eq!(columnar_contents(&db.begin(RR), t), expected);
    assert_eq!(db.store(t).unwrap().version_count(), 0);
}

/// A child table whose `v` references `p(id)`.
fn parent_and_child(db: &Database, on_delete: bkg_kernel::FkAction) -> (u64, u64) {
    let mut t = db.begin(RR);
    let p = create_kv_table(&mut t, "p").unwrap();
    let c = create_kv_table(&mut t, "c").unwrap();
    t.catalog_mut().table_mut(c).unwrap().foreign_keys.push(bkg_kernel::ForeignKeyDef {
        name: "c_v_fkey".into(),
        columns: vec![1],
        ref_table: p,
        ref_columns: vec![0],
        on_delete,
    });
    t.commit_blocking().unwrap();
    for id in 1..=3 {
        put(db, p, id, 0);
    }
    (p, c)
}

#[test]
fn foreign_keys_hold_across_concurrent_transactions() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let (p, c) = parent_and_child(&db, bkg_kernel::FkAction::NoAction);
    let fk = |e: bkg_kernel::Error| assert_eq!(e.code(), ErrorCode::ForeignKeyViolation, "{e}");
    // Statement-time checks.
    let mut t = db.begin(RR);
    fk(t.insert(c, vec![kv_row(10, 99, "orphan")], OnConflict::Error).unwrap_err());
    drop(t);
    put(&db, c, 10, 1);
    let mut t = db.begin(RR);
    let (row1, _) = kv_get(&t, p, 1).unwrap();
    fk(t.delete(p, &[row1]).unwrap_err());
    drop(t);

    // The delete commits first: the insert of a row referencing the deleted key fails at COMMIT.
    let mut del = db.begin(RR);
    let mut ins = db.begin(RR);
    let (row2, _) = kv_get(&del, p, 2).unwrap();
    assert_eq!(del.delete(p, &[row2]).unwrap(), 1);
    ins.insert(c, vec![kv_row(11, 2, "racy")], OnConflict::Error).unwrap();
    del.commit_blocking().unwrap();
    fk(ins.commit_blocking().unwrap_err());

    // The insert commits first: the delete of the key it references fails at COMMIT.
    let mut del = db.begin(RR);
    let mut ins = db.begin(RR);
    let (row3, _) = kv_get(&del, p, 3).unwrap();
    assert_eq!(del.delete(p, &[row3]).unwrap(), 1);
    ins.insert(c, vec![kv_row(12, 3, "first")], OnConflict::Error).unwrap();
    ins.commit_blocking().unwrap();
    fk(del.commit_blocking().unwrap_err());
    // A snapshot that still sees a referencing row deleted since refuses too (PostgreSQL checks
    // with the newest snapshot and would allow it; stricter, never wrong).
    let mut del = db.begin(RR);
    let (row3, _) = kv_get(&del, p, 3).unwrap();
    let mut ins = db.begin(RR);
    let (child12, _) = kv_get(&ins, c, 12).unwrap();
    ins.delete(c, &[child12]).unwrap();
    ins.commit_blocking().unwrap();
    fk(del.delete(p, &[row3]).unwrap_err());
    drop(del);
    assert_eq!(contents(&db, c), vec![(10, 1)]);
}

#[test]
fn on_delete_cascade_and_set_null() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let (p, c) = parent_and_child(&db, bkg_kernel::FkAction::Cascade);
    put(&db, c, 10, 1);
    put(&db, c, 11, 1);
    put(&db, c, 12, 2);
    let mut t = db.begin(RR);
    let (row1, _) = kv_get(&t, p, 1).unwrap();
    assert_eq!(t.delete(p, &[row1]).unwrap(), 1);
    t.commit_blocking().unwrap();
    assert_eq!(contents(&db, c), vec![(12, 2)]);
}

#[test]
fn one_process_per_data_directory() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let Err(err) = Database::open(Options::new(dir.path())) else { panic!("a second open must fail") };
    assert!(err.to_string().contains("in use by another bkg-db process"), "{err}");
    db.close();
    let db2 = open(dir.path());
    db2.close();
}

/// The size trigger counts WAL bytes across segment rotations: with 64 KiB segments and a
/// 256 KiB trigger, a megabyte of commits makes `maybe_checkpoint` run, which resets the count.
#[test]
fn wal_size_triggers_a_checkpoint_across_segments() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = Options::new(dir.path());
    o.limits.wal_segment_bytes_max = 64 << 10;
    o.limits.checkpoint_wal_bytes = 256 << 10;
    let db = Database::open(o).expect("open").0;
    let table = setup(&db);
    let mut id = 0;
    while db.stats().wal_bytes_since_checkpoint < 1 << 20 {
        let mut t = db.begin(RR);
        let rows = (0..100).map(|i| kv_row(id + i, i, &"x".repeat(100))).collect();
        t.insert(table, rows, OnConflict::Error).unwrap();
        t.commit_blocking().unwrap();
        id += 100;
    }
    let segments = std::fs::read_dir(dir.path().join("wal")).unwrap().count();
    assert!(segments > 4, "{segments} segments: rotation happened several times");
    assert!(db.maybe_checkpoint().unwrap(), "a megabyte of WAL is past the 256 KiB trigger");
    assert_eq!(db.stats().wal_bytes_since_checkpoint, 0);
    assert!(!db.maybe_checkpoint().unwrap(), "nothing written since");
    assert_eq!(contents(&db, table).len(), id as usize);
}

#[test]
fn bulk_inserts_stay_columnar_through_commit_recovery_and_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let t = setup(&db);
    put(&db, t, -1, -1);
    let rows = |from: i64, to: i64| -> Vec<(Option<i64>, i64)> { (from..to).map(|i| (Some(i), i * 2)).collect() };
    let mut x = db.begin(RR);
    assert_eq!(x.insert_columns(t, kv_columns(&rows(0, 6000), "a")).unwrap(), 6000);
    assert_eq!(x.insert_columns(t, kv_columns(&rows(6000, 10_000), "b")).unwrap(), 4000);
    // The transaction sees its batches through every read path, other transactions do not.
    assert_eq!(columnar_contents(&x, t).len(), 10_001);
    assert_eq!(kv_contents(&x, t).len(), 10_001);
    assert_eq!(kv_get(&x, t, 7000).map(|(_, v)| v), Some(14_000));
    assert_eq!(contents(&db, t).len(), 1);
    // Duplicates: inside a batch, against the transaction's own rows and against the store.
    let dup = |x: &mut bkg_kernel::Transaction, rows: Vec<(Option<i64>, i64)>| {
        let err = x.insert_columns(t, kv_columns(&rows, "d")).unwrap_err();
        assert_eq!(err.code(), ErrorCode::UniqueViolation, "{err}");
    };
    dup(&mut x, vec![(Some(20_000), 0), (Some(20_000), 1)]);
    dup(&mut x, vec![(Some(20_001), 0), (Some(9999), 1)]);
    dup(&mut x, vec![(Some(-1), 0)]);
    let err = x.insert(t, vec![kv_row(5, 0, "r")], OnConflict::Error).unwrap_err();
    assert_eq!(err.code(), ErrorCode::UniqueViolation);
    let err = x.insert_columns(t, kv_columns(&[(None, 1)], "n")).unwrap_err();
    assert_eq!(err.code(), ErrorCode::NotNullViolation);
    x.commit_blocking().unwrap();
    let store = db.store(t).unwrap();
    assert_eq!((store.bulk_rows(), store.version_count()), (10_000, 1));
    let expected: Vec<(i64, i64)> = std::iter::once((-1, -1)).chain((0..10_000).map(|i| (i, i * 2))).collect();
    assert_eq!(contents(&db, t), expected);
    assert_eq!(columnar_contents(&db.begin(RR), t), expected);
    let feed = db.changes_since(0, 100_000).unwrap();
    assert_eq!(feed.iter().filter(|c| c.kind == bkg_kernel::ChangeKind::Insert).count(), 10_001);
    // A committed key collides, from either path.
    let mut y = db.begin(RR);
    dup(&mut y, vec![(Some(10_000), 0), (Some(42), 0)]);
    drop(y);
    let mut y = db.begin(RR);
    assert_eq!(
        y.insert(t, vec![kv_row(42, 0, "r")], OnConflict::Error).unwrap_err().code(),
        ErrorCode::UniqueViolation
    );
    drop(y);
    // Updating and deleting bulk rows, committed and not yet committed.
    let mut z = db.begin(RR);
    z.insert_columns(t, kv_columns(&rows(10_000, 10_010), "c")).unwrap();
    let (r, _) = kv_get(&z, t, 10_005).unwrap();
    z.delete(t, &[r]).unwrap();
    let (r, _) = kv_get(&z, t, 42).unwrap();
    z.update(t, vec![(r, kv_row(42, -42, "u"))]).unwrap();
    let (r, _) = kv_get(&z, t, 43).unwrap();
    z.delete(t, &[r]).unwrap();
    z.commit_blocking().unwrap();
    let mut expected: BTreeMap<i64, i64> = expected.into_iter().collect();
    expected.extend((10_000..10_010).map(|i| (i, i * 2)));
    expected.remove(&10_005);
    expected.remove(&43);
    expected.insert(42, -42);
    let expected: Vec<(i64, i64)> = expected.into_iter().collect();
    assert_eq!(contents(&db, t), expected);
    // Recovery replays the column batches from the WAL; a checkpoint folds them into the base.
    db.close();
    drop(db);
    let db = open(dir.path());
    assert_eq!(contents(&db, t), expected);
    assert_eq!(columnar_contents(&db.begin(RR), t), expected);
    assert_eq!(db.store(t).unwrap().bulk_rows(), 10_000);
    db.checkpoint().unwrap();
    let store = db.store(t).unwrap();
    assert_eq!((store.bulk_rows(), store.base_rows()), (0, expected.len()));
    let mut y = db.begin(RR);
    assert_eq!(
        y.insert(t, vec![kv_row(9000, 0, "r")], OnConflict::Error).unwrap_err().code(),
        ErrorCode::UniqueViolation
    );
    drop(y);
    db.close();
    drop(db);
    let db = open(dir.path());
    assert_eq!(contents(&db, t), expected);
}

/// The race of an UPDATE of a row's key with a concurrent INSERT of the same key: the
/// update meets the new key as a conflict; a READ COMMITTED rerun after rolling the
/// statement back must find the row again (and now fail with a unique violation), never
/// report it gone and commit its deletion.
#[test]
fn a_statement_rolled_back_leaves_the_write_set_as_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let t = setup(&db);
    put(&db, t, 1, 1);
    put(&db, t, 2, 2);
    let mut rc = db.begin(IsolationLevel::ReadCommitted);
    // An earlier statement's writes: an insert, an update and a delete.
    rc.insert(t, vec![kv_row(10, 10, "own")], OnConflict::Error).unwrap();
    let (r2, _) = kv_get(&rc, t, 2).unwrap();
    rc.update(t, vec![(r2, kv_row(2, 20, "own"))]).unwrap();
    let before = kv_contents(&rc, t);
    rc.statement_start();
    let (r1, _) = kv_get(&rc, t, 1).unwrap();
    let (r10, _) = kv_get(&rc, t, 10).unwrap();
    let (r2b, _) = kv_get(&rc, t, 2).unwrap();
    // Another transaction inserts key 5 after the statement's snapshot.
    put(&db, t, 5, 5);
    // One statement: deletes the own row 10, updates the own row 2 again, then changes key
    // 1 to 5 — which collides.
    rc.delete(t, &[r10]).unwrap();
    rc.update(t, vec![(r2b, kv_row(2, 200, "again"))]).unwrap();
    rc.insert(t, vec![kv_row(11, 11, "new")], OnConflict::Error).unwrap();
    let err = rc.update(t, vec![(r1, kv_row(5, 1, "moved"))]).unwrap_err();
    assert_eq!(err.code(), ErrorCode::SerializationFailure, "{err}");
    rc.rollback_statement();
    assert_eq!(before, vec![(1, 1), (2, 20), (10, 10)]);
    assert_eq!(kv_contents(&rc, t), before);
    // Keys of the own rows are back: key 10 is taken, key 11 free again.
    assert!(rc.insert(t, vec![kv_row(10, 0, "dup")], OnConflict::Error).is_err());
    rc.statement_start();
    rc.insert(t, vec![kv_row(11, 11, "new")], OnConflict::Error).unwrap();
    // The rerun on a fresh snapshot: row 1 is there and key 5 is a duplicate.
    rc.statement_start();
    let (r1, _) = kv_get(&rc, t, 1).expect("row 1 still visible to its transaction");
    let err = rc.update(t, vec![(r1, kv_row(5, 1, "moved"))]).unwrap_err();
    assert_eq!(err.code(), ErrorCode::UniqueViolation, "{err}");
    rc.rollback_statement();
    rc.commit_blocking().unwrap();
    assert_eq!(contents(&db, t), vec![(1, 1), (2, 20), (5, 5), (10, 10), (11, 11)]);
    db.close();
    drop(db);
    let db = open(dir.path());
    assert_eq!(contents(&db, t), vec![(1, 1), (2, 20), (5, 5), (10, 10), (11, 11)]);
}

/// A commit future dropped while it waits for the WAL (a cancelled or timed-out COMMIT) still
/// commits, and releases its snapshot pin and row locks: the GC horizon moves on.
#[test]
fn a_commit_whose_caller_stops_waiting_still_commits_and_releases_its_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let t = setup(&db);
    put(&db, t, 1, 1);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    for i in 0..50 {
        let mut txn = db.begin(RR);
        let (r, _) = kv_get(&txn, t, 1).unwrap();
        // Row 1 is locked by this commit until it is visible; the next ones insert.
        if i == 0 {
            txn.update(t, vec![(r, kv_row(1, 149, "c"))]).unwrap();
        } else {
            txn.insert(t, vec![kv_row(100 + i, i, "c")], OnConflict::Error).unwrap();
        }
        // Poll the commit once (it reaches the WAL writer), then drop it.
        rt.block_on(async {
            let mut fut = std::pin::pin!(txn.commit());
            let _ = futures::poll!(fut.as_mut());
        });
    }
    // Every dropped commit became durable and visible in order, and nothing stays pinned.
    for _ in 0..200 {
        if db.stats().active_snapshots == 0 && db.lock_stats().0 == 0 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(db.stats().active_snapshots, 0, "a dropped commit left its snapshot pinned");
    assert_eq!(db.lock_stats().0, 0, "a dropped commit left row locks held");
    assert_eq!(db.gc_horizon(), db.visible_ts());
    let expected: Vec<(i64, i64)> = std::iter::once((1, 149)).chain((1..50).map(|i| (100 + i, i))).collect();
    assert_eq!(contents(&db, t), expected);
    db.close();
    drop(db);
    let db = open(dir.path());
    assert_eq!(contents(&db, t), expected);
}

/// What a workload under fault injection was told: pairs of rows committed together, each
/// acknowledged or not.
struct FaultRun {
    acknowledged: Vec<[(i64, i64); 2]>,
    unacknowledged: Vec<[(i64, i64); 2]>,
}

/// Eight two-row commits with a checkpoint in the middle; every failure is taken as an answer.
fn fault_workload(db: &Database, t: u64) -> FaultRun {
    let mut run = FaultRun { acknowledged: vec![], unacknowledged: vec![] };
    for i in 0..8i64 {
        if i == 4 {
            let _ = db.checkpoint();
        }
        let pair = [(100 + 2 * i, i), (101 + 2 * i, -i)];
        let mut txn = db.begin(RR);
        let rows = pair.iter().map(|(id, v)| kv_row(*id, *v, "f")).collect();
        let ok = txn.insert(t, rows, OnConflict::Error).is_ok() && txn.commit_blocking().is_ok();
        if ok { run.acknowledged.push(pair) } else { run.unacknowledged.push(pair) }
    }
    run
}

/// After a restart: every acknowledged commit is there, and every other one is there whole or
/// not at all.
fn check_after_restart(got: &[(i64, i64)], base: &[(i64, i64)], run: &FaultRun, what: &str) {
    for (id, v) in base {
        assert!(got.contains(&(*id, *v)), "{what}: committed before the faults, ({id}, {v}) is gone");
    }
    for pair in &run.acknowledged {
        for r in pair {
            assert!(got.contains(r), "{what}: acknowledged {r:?} is gone");
        }
    }
    for pair in &run.unacknowledged {
        let present = pair.iter().filter(|r| got.contains(r)).count();
        assert!(present == 0 || present == 2, "{what}: half of an unacknowledged commit is visible: {pair:?}");
    }
    let known = base.len() + 2 * run.acknowledged.len() + 2 * run.unacknowledged.len();
    assert!(got.len() <= known, "{what}: rows nobody wrote: {got:?}");
}

/// Every write, fsync and rename the kernel makes during commits and a checkpoint fails in
/// turn (then the power goes: unsynced bytes are dropped); after each, the restart keeps every
/// acknowledged commit and shows no unacknowledged one in part. Then every write, fsync and
/// rename of a recovery that has a torn tail to repair fails in turn: the open fails cleanly
/// or succeeds, and the next open finds the same data.
#[test]
fn every_io_failure_point_keeps_acknowledged_commits() {
    let prepare = |dir: &Path, vfs: &FaultyVfs| -> (Database, u64, Vec<(i64, i64)>) {
        let db = open_faulty(dir, vfs);
        let t = setup(&db);
        for i in 0..10 {
            put(&db, t, i, i);
        }
        let base = contents(&db, t);
        (db, t, base)
    };
    // How many operations of each kind the workload makes with no fault.
    let dir = tempfile::tempdir().unwrap();
    let vfs = FaultyVfs::new();
    let (db, t, _) = prepare(dir.path(), &vfs);
    let before = vfs.counts();
    let run = fault_workload(&db, t);
    assert!(run.unacknowledged.is_empty());
    let after = vfs.counts();
    let totals = [after.0 - before.0, after.1 - before.1, after.2 - before.2];
    assert!(totals.iter().all(|n| *n > 0), "the workload writes, syncs and renames: {totals:?}");
    drop(db);

    for (kind, total) in ["write", "sync", "rename"].into_iter().zip(totals) {
        for n in 1..=total {
            let dir = tempfile::tempdir().unwrap();
            let vfs = FaultyVfs::new();
            let (db, t, base) = prepare(dir.path(), &vfs);
            match kind {
                "write" => vfs.fail_write_at(n),
                "sync" => vfs.fail_sync_at(n),
                _ => vfs.fail_rename_at(n),
            }
            let run = fault_workload(&db, t);
            let what = format!("{kind} {n} of {total}");
            // Nothing unacknowledged is visible before the restart either.
            let live = contents(&db, t);
            for pair in &run.unacknowledged {
                assert!(pair.iter().all(|r| !live.contains(r)), "{what}: unacknowledged {pair:?} is visible");
            }
            db.close();
            drop(db);
            vfs.drop_unsynced().unwrap();
            let db = open(dir.path());
            check_after_restart(&contents(&db, t), &base, &run, &what);
        }
    }

    // Recovery under faults: a crash state with a torn tail, then each operation of its repair.
    let crashed = tempfile::tempdir().unwrap();
    let vfs = FaultyVfs::new();
    let (db, t, base) = prepare(crashed.path(), &vfs);
    let run = fault_workload(&db, t);
    db.close();
    drop(db);
    let seg = last_segment(crashed.path());
    let len = std::fs::metadata(&seg).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&seg).unwrap().set_len(len - 3).unwrap();
    let probe_dir = tempfile::tempdir().unwrap();
    copy_dir(crashed.path(), probe_dir.path());
    let probe = FaultyVfs::new();
    let mut o = Options::new(probe_dir.path());
    o.vfs = Arc::new(probe.clone());
    let (db, info) = Database::open(o).expect("recovery without faults");
    assert!(info.torn_bytes_cut > 0, "the probe repaired a torn tail");
    drop(db);
    let totals = probe.counts();
    let expected_last = run.acknowledged.last().copied().expect("commits");
    for (kind, total) in ["write", "sync", "rename"].into_iter().zip([totals.0, totals.1, totals.2]) {
        for n in 1..=total {
            let dir = tempfile::tempdir().unwrap();
            copy_dir(crashed.path(), dir.path());
            let vfs = FaultyVfs::new();
            match kind {
                "write" => vfs.fail_write_at(n),
                "sync" => vfs.fail_sync_at(n),
                _ => vfs.fail_rename_at(n),
            }
            let mut o = Options::new(dir.path());
            o.vfs = Arc::new(vfs.clone());
            o.on_fsync_failure = bkg_kernel::wal::FsyncFailure::Poison;
            let what = format!("recovery {kind} {n} of {total}");
            if let Ok((db, _)) = Database::open(o) {
                db.close();
            }
            vfs.drop_unsynced().unwrap();
            let db = open(dir.path());
            let got = contents(&db, t);
            // The last acknowledged commit lost one byte of its record: it is the torn tail.
            let mut trimmed = FaultRun { acknowledged: run.acknowledged.clone(), unacknowledged: vec![] };
            trimmed.acknowledged.retain(|p| *p != expected_last);
            trimmed.unacknowledged.push(expected_last);
            check_after_restart(&got, &base, &trimmed, &what);
        }
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else if e.file_name() != "LOCK" && e.file_name() != "lock" {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}
