//! Kernel benchmarks: commit throughput with 1, 8 and 64 concurrent committers (and the fsyncs
//! they needed), point lookup by primary key, full scan, snapshot write and WAL recovery.
//! Figures go into docs/benchmarks.md with the machine they ran on.

use std::time::{Duration, Instant};

use bkg_kernel::testutil::{create_kv_table, kv_row};
use bkg_kernel::value::Value;
use bkg_kernel::{Database, IsolationLevel, OnConflict, Options};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

const RR: IsolationLevel = IsolationLevel::RepeatableRead;

fn open(dir: &std::path::Path) -> Database {
    Database::open(Options::new(dir)).unwrap().0
}

fn setup(rows: i64) -> (tempfile::TempDir, Database, u64) {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let mut t = db.begin(RR);
    let id = create_kv_table(&mut t, "kv").unwrap();
    t.commit_blocking().unwrap();
    let mut next = 0;
    while next < rows {
        let mut t = db.begin(RR);
        let end = (next + 50_000).min(rows);
        t.insert(id, (next..end).map(|i| kv_row(i, i, "some text for the row")).collect(), OnConflict::Error).unwrap();
        t.commit_blocking().unwrap();
        next = end;
    }
    (dir, db, id)
}

fn commits(c: &mut Criterion) {
    let mut g = c.benchmark_group("commit");
    g.sample_size(10).measurement_time(Duration::from_secs(5));
    for threads in [1usize, 8, 64] {
        let per_thread = (512 / threads).max(8);
        g.throughput(Throughput::Elements((threads * per_thread) as u64));
        g.bench_with_input(BenchmarkId::new("committers", threads), &threads, |b, &threads| {
            let (_dir, db, t) = setup(0);
            let key = std::sync::atomic::AtomicI64::new(0);
            b.iter_custom(|iters| {
                let fsyncs = db.stats().wal_fsyncs;
                let start = Instant::now();
                for _ in 0..iters {
                    std::thread::scope(|s| {
                        for _ in 0..threads {
                            s.spawn(|| {
                                for _ in 0..per_thread {
                                    let k = key.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                                    let mut x = db.begin(RR);
                                    x.insert(t, vec![kv_row(k, k, "c")], OnConflict::Error).unwrap();
                                    x.commit_blocking().unwrap();
                                }
                            });
                        }
                    });
                }
                let elapsed = start.elapsed();
                let n = iters * (threads * per_thread) as u64;
                let f = db.stats().wal_fsyncs - fsyncs;
                eprintln!(
                    "committers={threads}: {:.0} commits/s, {:.0} fsyncs/s, {:.2} commits per fsync",
                    n as f64 / elapsed.as_secs_f64(),
                    f as f64 / elapsed.as_secs_f64(),
                    n as f64 / f.max(1) as f64
                );
                elapsed
            });
        });
    }
    g.finish();
}

fn reads(c: &mut Criterion) {
    let rows = 200_000i64;
    let (_dir, db, t) = setup(rows);
    let pk = db.catalog().table(t).unwrap().primary_key().unwrap().id;
    let mut g = c.benchmark_group("read");
    g.sample_size(20);
    // First over in-memory versions, then after a checkpoint over the columnar base read from
    // Parquet.
    for phase in ["in_memory_versions", "columnar_base"] {
        if phase == "columnar_base" {
            db.checkpoint().unwrap();
        }
        g.throughput(Throughput::Elements(1));
        g.bench_function(format!("point_lookup_pk_{phase}"), |b| {
            let txn = db.begin(RR);
            let mut k = 0i64;
            b.iter(|| {
                k = (k + 7919) % rows;
                let r = txn.lookup(t, pk, &[Value::Int64(k)]).unwrap();
                assert_eq!(r.len(), 1);
            });
        });
        g.throughput(Throughput::Elements(rows as u64));
        g.bench_function(format!("full_scan_200k_rows_{phase}"), |b| {
            let txn = db.begin(RR);
            let columns: Vec<Option<usize>> = vec![Some(0), Some(1), Some(2)];
            b.iter(|| {
                let chunks = txn.scan_columns(t, &columns, None, usize::MAX).unwrap();
                assert_eq!(chunks.iter().map(|c| c.0).sum::<usize>(), rows as usize);
            });
        });
    }
    g.finish();
}

fn snapshot_and_recovery(c: &mut Criterion) {
    let rows = 200_000i64;
    let (dir, db, t) = setup(rows);
    let def = db.catalog().table(t).unwrap().clone();
    let columns = bkg_kernel::snapshot::snapshot_columns(&def);
    let all = db.begin(RR).scan_columns(t, &columns, None, usize::MAX).unwrap();
    let bytes = bkg_kernel::snapshot::write_table_parquet(&def, all.clone(), 128 * 1024).unwrap().0.len();
    let raw_bytes: usize = rows as usize * (8 + 8 + 8 + 21);
    let mut g = c.benchmark_group("durability");
    g.sample_size(10);
    g.throughput(Throughput::Bytes(raw_bytes as u64));
    g.bench_function("snapshot_write_200k_rows", |b| {
        b.iter(|| bkg_kernel::snapshot::write_table_parquet(&def, all.clone(), 128 * 1024).unwrap());
    });
    eprintln!("snapshot of {rows} rows: {bytes} bytes of Parquet from about {raw_bytes} bytes of values");
    let wal_bytes = db.stats().wal_bytes;
    db.close();
    drop(db);
    g.throughput(Throughput::Bytes(wal_bytes));
    g.bench_function("recovery_replay_wal", |b| {
        b.iter(|| {
            let (db, info) = Database::open(Options::new(dir.path())).unwrap();
            assert!(info.records_replayed > 0);
            db.close();
        });
    });
    g.finish();
}

criterion_group!(benches, commits, reads, snapshot_and_recovery);
criterion_main!(benches);
