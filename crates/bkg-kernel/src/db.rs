//! The database: recovery, transactions, commit, checkpoints and the change feed.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use arrow::array::{ArrayRef, RecordBatch, UInt64Array};
use arrow::datatypes::{DataType as ArrowType, Field, Schema};
use parking_lot::{Mutex, RwLock};

use crate::catalog::{Catalog, ColumnDefault, TableDef};
use crate::error::{Error, Result};
use crate::limits::Limits;
use crate::mvcc::{
    BaseSegment, Chunk, ScanSpec, TableStore, Version, columns_from_rows, encode_key, index_key, live, visible,
};
use crate::record::{self, Change, ChangeKind, CommitRecord, Op};
use crate::snapshot::{self, Manifest, SnapshotFile, SnapshotStore};
use crate::value::{Row, Value};
use crate::vfs::{Clock, StdVfs, SystemClock, Vfs};
use crate::wal::{self, FsyncFailure, WalRequest, WalStats, WalWriter, WriterState};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IsolationLevel {
    ReadCommitted,
    /// Snapshot isolation: one snapshot for the whole transaction (the default).
    #[default]
    RepeatableRead,
}

pub struct Options {
    pub dir: PathBuf,
    pub vfs: Arc<dyn Vfs>,
    pub clock: Arc<dyn Clock>,
    pub limits: Limits,
    pub on_fsync_failure: FsyncFailure,
    /// Where snapshot files go; `None` = the data directory's local file system.
    pub snapshot_store: Option<Arc<dyn object_store::ObjectStore>>,
}

impl Options {
    pub fn new(dir: impl Into<PathBuf>) -> Options {
        Options {
            dir: dir.into(),
            vfs: Arc::new(StdVfs),
            clock: Arc::new(SystemClock),
            limits: Limits::default(),
            on_fsync_failure: FsyncFailure::Abort,
            snapshot_store: None,
        }
    }
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct CheckpointInfo {
    pub checkpoint_ts: u64,
    pub wall_ms: u64,
    pub wal_start_lsn: u64,
    pub tables: usize,
    pub rows: u64,
    pub bytes: u64,
}

/// Takes the exclusive lock on `<dir>/LOCK` (released when the file is closed, also on a crash).
fn lock_data_dir(dir: &Path) -> Result<std::fs::File> {
    let path = dir.join("LOCK");
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| Error::io(&path, e))?;
    match f.try_lock() {
        Ok(()) => Ok(f),
        Err(std::fs::TryLockError::WouldBlock) => Err(Error::Io {
            path,
            source: std::io::Error::other("the data directory is in use by another bkg-db process"),
        }),
        Err(std::fs::TryLockError::Error(e)) => Err(Error::io(&path, e)),
    }
}

#[derive(Debug, Clone, Default)]
pub struct RecoveryInfo {
    pub checkpoint_ts: u64,
    pub records_replayed: u64,
    pub wal_bytes_read: u64,
    pub torn_bytes_cut: u64,
}

pub(crate) struct Shared {
    opts: Options,
    /// The exclusive lock on `<dir>/LOCK`, held while the database is open.
    dir_lock: Mutex<Option<std::fs::File>>,
    wal_dir: PathBuf,
    snapshots: SnapshotStore,
    /// Committed catalogs by commit timestamp (oldest first). A snapshot at `read_ts` uses the
    /// newest entry with `ts <= read_ts`; DDL appends before its fsync, invisible until then.
    catalogs: Arc<RwLock<Vec<(u64, Arc<Catalog>)>>>,
    stores: RwLock<HashMap<u64, Arc<TableStore>>>,
    /// Serialises commit validation and timestamp assignment.
    commit_lock: tokio::sync::Mutex<u64>,
    visible_ts: Arc<AtomicU64>,
    next_rowid: AtomicU64,
    next_txn_id: AtomicU64,
    sequences: Mutex<HashMap<(u64, usize), i64>>,
    /// read_ts -> number of snapshots pinned at it.
    active: Mutex<BTreeMap<u64, ActivePin>>,
    writer: WalWriter,
    pub(crate) wal_stats: Arc<WalStats>,
    poisoned: Arc<AtomicBool>,
    checkpoint_lock: Mutex<()>,
    last_checkpoint: Mutex<Option<CheckpointInfo>>,
    last_checkpoint_ms: AtomicU64,
    closed: AtomicBool,
    pub(crate) commits: AtomicU64,
    pub(crate) conflicts: AtomicU64,
    locks: RowLocks,
}

/// Row write locks. A transaction locks a row before it deletes or replaces it and keeps the
/// lock until it ends, so a second writer waits for the first instead of both racing to commit.
#[derive(Default)]
struct RowLocks {
    /// (table, rowid) -> holding transaction id.
    held: Mutex<HashMap<(u64, u64), u64>>,
    /// Waiting transaction -> the transaction it waits for (for deadlock detection).
    waits: Mutex<HashMap<u64, u64>>,
    released: tokio::sync::Notify,
    pub(crate) waited: AtomicU64,
    pub(crate) deadlocks: AtomicU64,
}

/// Removes a wait edge when the wait ends, also when the waiting future is dropped (cancel).
struct WaitEdge<'a> {
    locks: &'a RowLocks,
    waiter: u64,
}

impl Drop for WaitEdge<'_> {
    fn drop(&mut self) {
        self.locks.waits.lock().remove(&self.waiter);
    }
}

/// An open database. Cheap to clone; every clone shares the same state.
#[derive(Clone)]
pub struct Database {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database").field("dir", &self.shared.opts.dir).finish()
    }
}

fn manifest_path(dir: &Path) -> PathBuf {
    dir.join("MANIFEST")
}

impl Database {
    /// Opens (creating if needed) the database in `opts.dir` and recovers it.
    pub fn open(opts: Options) -> Result<(Database, RecoveryInfo)> {
        let vfs = opts.vfs.clone();
        let dir = opts.dir.clone();
        let wal_dir = dir.join("wal");
        let snap_dir = dir.join("snapshots");
        for d in [&dir, &wal_dir, &snap_dir] {
            vfs.create_dir_all(d).map_err(|e| Error::io(d, e))?;
        }
        // One process per data directory: a second one would interleave WAL writes.
        let dir_lock = lock_data_dir(&dir)?;
        let snapshots = match &opts.snapshot_store {
            Some(store) => SnapshotStore::remote(store.clone()),
            None => SnapshotStore::local(&dir)?,
        };
        let mut info = RecoveryInfo::default();
        // 1. The manifest and its snapshot files.
        let mpath = manifest_path(&dir);
        let (mut catalog, mut stores, checkpoint_ts, mut next_rowid, wal_start_lsn, manifest) = if vfs.exists(&mpath) {
            let buf = vfs.read(&mpath).map_err(|e| Error::io(&mpath, e))?;
            let m = snapshot::decode_manifest(&mpath, &buf)?;
            let mut stores = HashMap::new();
            for def in m.catalog.tables.values() {
                stores.insert(def.id, Arc::new(TableStore::new(def)));
            }
            for f in &m.files {
                let path = dir.join(&f.path);
                let bytes = snapshots.get(&f.path)?;
                if bytes.len() as u64 != f.bytes || crc32c::crc32c(&bytes) != f.crc32c {
                    return Err(Error::Corruption {
                        path,
                        offset: 0,
                        reason: "snapshot file does not match its manifest checksum".into(),
                    });
                }
                let def = m.catalog.table(f.table_id).ok_or_else(|| Error::Corruption {
                    path: mpath.clone(),
                    offset: 0,
                    reason: format!("manifest lists table {} that its catalog lacks", f.table_id),
                })?;
                let base = snapshot::read_base_segment(&f.path, def, bytes, m.checkpoint_ts)?;
                stores[&def.id].replace_base(def, base);
            }
            info.checkpoint_ts = m.checkpoint_ts;
            (m.catalog.clone(), stores, m.checkpoint_ts, m.next_rowid, m.wal_start_lsn, Some(m))
        } else {
            (Catalog::default(), HashMap::new(), 0, 1, 0, None)
        };
        // Leftovers of an interrupted checkpoint.
        let _ = vfs.remove_file(&dir.join("MANIFEST.tmp"));
        let listed = |p: &str| manifest.as_ref().is_some_and(|m| m.files.iter().any(|f| f.path == p));
        remove_stale_snapshots(vfs.as_ref(), &snapshots, &dir, &listed);
        // 2. Replay the WAL after the checkpoint.
        let contents = wal::read_wal(vfs.as_ref(), &wal_dir, &opts.limits, true)?;
        info.torn_bytes_cut = contents.truncated_bytes;
        let mut last_ts = checkpoint_ts;
        for (lsn, payload) in &contents.records {
            info.wal_bytes_read += payload.len() as u64 + 8;
            let rec = CommitRecord::decode(payload).map_err(|e| Error::Corruption {
                path: wal_dir.clone(),
                offset: *lsn,
                reason: e.to_string(),
            })?;
            if rec.commit_ts <= checkpoint_ts {
                continue;
            }
            if rec.commit_ts <= last_ts {
                return Err(Error::Corruption {
                    path: wal_dir.clone(),
                    offset: *lsn,
                    reason: format!("commit timestamp {} after {}", rec.commit_ts, last_ts),
                });
            }
            last_ts = rec.commit_ts;
            info.records_replayed += 1;
            if let Some(c) = &rec.catalog {
                catalog = c.clone();
                stores.retain(|id, _| catalog.tables.contains_key(id));
                for def in catalog.tables.values() {
                    stores.entry(def.id).or_insert_with(|| Arc::new(TableStore::new(def))).sync_indexes(def);
                }
            }
            apply_ops(&catalog, &stores, &rec.ops, rec.commit_ts, &mut next_rowid)?;
        }
        for s in stores.values() {
            if let Some(m) = s.max_rowid() {
                next_rowid = next_rowid.max(m + 1);
            }
        }
        // 3. The writer appends to the last segment, or starts one.
        let (file, seg_first_lsn, seg_len) = match contents.segments.last() {
            Some(seg) => {
                let f = vfs.open_append(&seg.path).map_err(|e| Error::io(&seg.path, e))?;
                (f, seg.first_lsn, seg.len)
            }
            None => {
                let f = wal::create_segment(vfs.as_ref(), &wal_dir, wal_start_lsn)?;
                (f, wal_start_lsn, wal::SEGMENT_HEADER_LEN)
            }
        };
        let visible_ts = Arc::new(AtomicU64::new(last_ts));
        let wal_stats = Arc::new(WalStats::default());
        let poisoned = Arc::new(AtomicBool::new(false));
        let writer = WalWriter::start(WriterState {
            vfs: vfs.clone(),
            dir: wal_dir.clone(),
            file,
            seg_first_lsn,
            seg_len,
            limits: opts.limits.clone(),
            visible_ts: visible_ts.clone(),
            stats: wal_stats.clone(),
            on_fsync_failure: opts.on_fsync_failure,
            poisoned: poisoned.clone(),
        })?;
        let now = opts.clock.now_ms();
        let last_checkpoint = manifest.as_ref().map(|m| CheckpointInfo {
            checkpoint_ts: m.checkpoint_ts,
            wall_ms: m.wall_ms,
            wal_start_lsn: m.wal_start_lsn,
            tables: m.files.len(),
            rows: m.files.iter().map(|f| f.rows).sum(),
            bytes: m.files.iter().map(|f| f.bytes).sum(),
        });
        let shared = Shared {
            wal_dir,
            snapshots,
            catalogs: Arc::new(RwLock::new(vec![(last_ts, Arc::new(catalog))])),
            stores: RwLock::new(stores),
            commit_lock: tokio::sync::Mutex::new(last_ts),
            visible_ts,
            next_rowid: AtomicU64::new(next_rowid),
            next_txn_id: AtomicU64::new(1),
            locks: RowLocks::default(),
            sequences: Mutex::new(HashMap::new()),
            active: Mutex::new(BTreeMap::new()),
            writer,
            wal_stats,
            poisoned,
            checkpoint_lock: Mutex::new(()),
            last_checkpoint: Mutex::new(last_checkpoint),
            last_checkpoint_ms: AtomicU64::new(now),
            closed: AtomicBool::new(false),
            commits: AtomicU64::new(0),
            conflicts: AtomicU64::new(0),
            opts,
            dir_lock: Mutex::new(Some(dir_lock)),
        };
        Ok((Database { shared: Arc::new(shared) }, info))
    }

    pub fn dir(&self) -> &Path {
        &self.shared.opts.dir
    }

    pub fn limits(&self) -> &Limits {
        &self.shared.opts.limits
    }

    /// The newest committed catalog.
    pub fn catalog(&self) -> Arc<Catalog> {
        catalog_at(&self.shared, self.visible_ts())
    }

    /// Highest commit timestamp whose WAL record is durable.
    pub fn visible_ts(&self) -> u64 {
        self.shared.visible_ts.load(Ordering::SeqCst)
    }

    pub fn store(&self, table_id: u64) -> Option<Arc<TableStore>> {
        self.shared.stores.read().get(&table_id).cloned()
    }

    pub fn last_checkpoint(&self) -> Option<CheckpointInfo> {
        self.shared.last_checkpoint.lock().clone()
    }

    pub fn stats(&self) -> DbStats {
        let s = &self.shared;
        let stores: Vec<Arc<TableStore>> = s.stores.read().values().cloned().collect();
        // One look at the pins (a guard held across the struct literal would deadlock).
        let (active_snapshots, oldest_since_ms, horizon) = {
            let active = s.active.lock();
            let count: usize = active.values().map(|p| p.count).sum();
            let since = active.values().map(|p| p.since_ms).min();
            (count, since, horizon_locked(&active, self.visible_ts()))
        };
        DbStats {
            commits: s.commits.load(Ordering::Relaxed),
            serialization_failures: s.conflicts.load(Ordering::Relaxed),
            wal_fsyncs: s.wal_stats.fsyncs.load(Ordering::Relaxed),
            wal_bytes: s.wal_stats.bytes.load(Ordering::Relaxed),
            wal_records: s.wal_stats.records.load(Ordering::Relaxed),
            wal_bytes_since_checkpoint: s.wal_stats.bytes_since_checkpoint.load(Ordering::Relaxed),
            visible_ts: self.visible_ts(),
            active_snapshots,
            oldest_snapshot_age_ms: oldest_since_ms.map(|t| s.opts.clock.now_ms().saturating_sub(t)),
            gc_horizon_lag: self.visible_ts().saturating_sub(horizon),
            row_versions: stores.iter().map(|t| t.version_count() as u64).sum(),
            bulk_rows: stores.iter().map(|t| t.bulk_rows() as u64).sum(),
        }
    }

    /// Starts a transaction.
    pub fn begin(&self, isolation: IsolationLevel) -> Transaction {
        let shared = self.shared.clone();
        let read_ts = pin(&shared, None);
        let catalog = catalog_at(&shared, read_ts);
        let mark = StatementMark::new(&shared, &catalog, false);
        Transaction {
            id: shared.next_txn_id.fetch_add(1, Ordering::Relaxed),
            base_catalog_version: catalog.version,
            catalog,
            shared,
            isolation,
            read_ts,
            ddl: false,
            writes: BTreeMap::new(),
            rows_written: 0,
            finished: false,
            locked: Vec::new(),
            fk_since: None,
            mark,
        }
    }

    /// Waits until `holder` no longer holds the lock on `(table, rowid)` (it committed or
    /// rolled back). Fails with [`Error::Deadlock`] when `holder` waits, directly or through
    /// others, for `waiter`, and with [`Error::LockTimeout`] after `timeout`.
    pub async fn wait_for_row_lock(
        &self,
        waiter: u64,
        (table, rowid, holder): (u64, u64, u64),
        timeout: Option<std::time::Duration>,
    ) -> Result<()> {
        let locks = &self.shared.locks;
        {
            let mut waits = locks.waits.lock();
            let mut at = holder;
            let mut chain = vec![holder];
            while let Some(&next) = waits.get(&at) {
                if next == waiter {
                    locks.deadlocks.fetch_add(1, Ordering::Relaxed);
                    return Err(Error::Deadlock {
                        detail: format!(
                            "transaction {waiter} waits for {}, which waits for transaction {waiter}",
                            chain
                                .iter()
                                .map(|t| format!("transaction {t}"))
                                .collect::<Vec<_>>()
                                .join(", which waits for ")
                        ),
                    });
                }
                if chain.len() > 10_000 {
                    break;
                }
                chain.push(next);
                at = next;
            }
            waits.insert(waiter, holder);
        }
        let _edge = WaitEdge { locks, waiter };
        locks.waited.fetch_add(1, Ordering::Relaxed);
        let deadline = timeout.map(|t| std::time::Instant::now() + t);
        loop {
            let released = locks.released.notified();
            if locks.held.lock().get(&(table, rowid)) != Some(&holder) {
                return Ok(());
            }
            // Re-check now and then as well, so a missed wake-up cannot stall a waiter.
            let mut wait = std::time::Duration::from_millis(250);
            if let Some(d) = deadline {
                let left = d.saturating_duration_since(std::time::Instant::now());
                if left.is_zero() {
                    return Err(Error::LockTimeout);
                }
                wait = wait.min(left);
            }
            let _ = tokio::time::timeout(wait, released).await;
        }
    }

    /// Row locks held now, and how many lock waits and deadlocks there were since start.
    pub fn lock_stats(&self) -> (usize, u64, u64) {
        let l = &self.shared.locks;
        (l.held.lock().len(), l.waited.load(Ordering::Relaxed), l.deadlocks.load(Ordering::Relaxed))
    }

    /// Oldest snapshot any transaction still reads at.
    pub fn gc_horizon(&self) -> u64 {
        horizon_locked(&self.shared.active.lock(), self.visible_ts())
    }

    /// Drops row versions no snapshot can see any more.
    pub fn vacuum(&self) -> usize {
        let horizon = self.gc_horizon();
        // Catalogs no snapshot can use any more go, and with them stores of dropped tables.
        {
            let mut cats = self.shared.catalogs.write();
            let keep_from = cats.iter().rposition(|(t, _)| *t <= horizon).unwrap_or(0);
            cats.drain(..keep_from);
            let mut stores = self.shared.stores.write();
            stores.retain(|id, _| cats.iter().any(|(_, c)| c.tables.contains_key(id)));
        }
        let catalog = self.catalog();
        let stores: Vec<Arc<TableStore>> = self.shared.stores.read().values().cloned().collect();
        stores.iter().filter_map(|s| catalog.table(s.id).map(|def| s.vacuum(horizon, def))).sum()
    }

    /// Writes a column snapshot of every table and truncates the WAL it covers.
    pub fn checkpoint(&self) -> Result<CheckpointInfo> {
        let s = &self.shared;
        let _one = s.checkpoint_lock.lock();
        let vfs = s.opts.vfs.as_ref();
        // Cut the log: every commit up to `ts` is in the segments before `wal_start_lsn`.
        let (ts, wal_start_lsn, catalog, stores) = {
            let guard = s.commit_lock.blocking_lock();
            let (done, rx) = tokio::sync::oneshot::channel();
            s.writer.send(WalRequest::Rotate { done })?;
            let lsn = rx.blocking_recv().map_err(|_| Error::Internal("the WAL writer has stopped".into()))??;
            let ts = *guard;
            let stores = s.stores.read().clone();
            (ts, lsn, catalog_at(s, ts), stores)
        };
        let _pin = Pin::new(s.clone(), ts);
        let dir = &s.opts.dir;
        let rel_dir = format!("snapshots/{ts:020}");
        let snap_dir = dir.join(&rel_dir);
        if s.snapshots.is_local() {
            vfs.create_dir_all(&snap_dir).map_err(|e| Error::io(&snap_dir, e))?;
        }
        let mut files = Vec::new();
        let mut written = Vec::new();
        let mut info = CheckpointInfo { checkpoint_ts: ts, wal_start_lsn, ..Default::default() };
        for def in catalog.tables.values() {
            let Some(store) = stores.get(&def.id) else {
                continue;
            };
            let columns = snapshot::snapshot_columns(def);
            let spec = ScanSpec { read_ts: ts, columns: &columns, skip: None, prune: None, limit: usize::MAX };
            let chunks = store.scan_columns(def, &spec)?;
            let (bytes, rows) = snapshot::write_table_parquet(def, chunks, s.opts.limits.snapshot_row_group_rows)?;
            let rel = format!("{rel_dir}/t{}.parquet", def.id);
            let bytes = bytes::Bytes::from(bytes);
            s.snapshots.put(vfs, &rel, bytes.to_vec())?;
            info.tables += 1;
            info.rows += rows;
            info.bytes += bytes.len() as u64;
            files.push(SnapshotFile {
                table_id: def.id,
                path: rel.clone(),
                rows,
                bytes: bytes.len() as u64,
                crc32c: crc32c::crc32c(&bytes),
            });
            written.push((def.id, rel, bytes));
        }
        if s.snapshots.is_local() {
            vfs.sync_dir(&snap_dir).map_err(|e| Error::io(&snap_dir, e))?;
            vfs.sync_dir(&dir.join("snapshots")).map_err(|e| Error::io(dir, e))?;
        }
        info.wall_ms = s.opts.clock.now_ms();
        let manifest = Manifest {
            checkpoint_ts: ts,
            wall_ms: info.wall_ms,
            wal_start_lsn,
            next_rowid: s.next_rowid.load(Ordering::SeqCst),
            catalog: (*catalog).clone(),
            files,
        };
        let tmp = dir.join("MANIFEST.tmp");
        snapshot::write_durable(vfs, &tmp, &snapshot::encode_manifest(&manifest)?)?;
        vfs.rename(&tmp, &manifest_path(dir)).map_err(|e| Error::io(&tmp, e))?;
        vfs.sync_dir(dir).map_err(|e| Error::io(dir, e))?;
        // Only now may the covered log and older snapshots go.
        for (first, path) in wal::list_segments(vfs, &s.wal_dir)? {
            if first < wal_start_lsn {
                vfs.remove_file(&path).map_err(|e| Error::io(&path, e))?;
            }
        }
        vfs.sync_dir(&s.wal_dir).map_err(|e| Error::io(&s.wal_dir, e))?;
        let listed = |p: &str| manifest.files.iter().any(|f| f.path == p);
        remove_stale_snapshots(vfs, &s.snapshots, dir, &listed);
        *s.last_checkpoint.lock() = Some(info.clone());
        s.last_checkpoint_ms.store(info.wall_ms, Ordering::SeqCst);
        // The files just written become the tables' columnar base, once no snapshot older than
        // the checkpoint is in use (otherwise the in-memory versions stay until the next one).
        if self.gc_horizon() >= ts {
            for (table_id, rel, bytes) in written {
                if let (Some(def), Some(store)) = (catalog.table(table_id), stores.get(&table_id)) {
                    let base = snapshot::read_base_segment(&rel, def, bytes, ts)?;
                    store.replace_base(def, base);
                }
            }
        }
        drop(_pin);
        self.vacuum();
        tracing::info!(
            checkpoint_ts = ts,
            tables = info.tables,
            rows = info.rows,
            bytes = info.bytes,
            "checkpoint written"
        );
        Ok(info)
    }

    /// Runs a checkpoint if the WAL grew or enough time passed; returns whether it ran.
    pub fn maybe_checkpoint(&self) -> Result<bool> {
        let s = &self.shared;
        let bytes = s.wal_stats.bytes_since_checkpoint.load(Ordering::Relaxed);
        let age = s.opts.clock.now_ms().saturating_sub(s.last_checkpoint_ms.load(Ordering::Relaxed));
        if bytes >= s.opts.limits.checkpoint_wal_bytes || (bytes > 0 && age >= s.opts.limits.checkpoint_interval_ms) {
            self.checkpoint()?;
            return Ok(true);
        }
        Ok(false)
    }

    /// Committed changes with `lsn >= from_lsn`, in commit order, at most `limit` of them.
    /// Only changes still in the WAL (after the last checkpoint) are retained.
    pub fn changes_since(&self, from_lsn: u64, limit: usize) -> Result<Vec<Change>> {
        let s = &self.shared;
        let visible = self.visible_ts();
        let contents = wal::read_wal(s.opts.vfs.as_ref(), &s.wal_dir, &s.opts.limits, false)?;
        let catalog = self.catalog();
        let mut out = Vec::new();
        for (lsn, payload) in contents.records {
            if lsn < from_lsn {
                continue;
            }
            let rec = CommitRecord::decode(&payload)?;
            if rec.commit_ts > visible {
                break;
            }
            let name = |t: u64| {
                rec.catalog.as_ref().unwrap_or(&catalog).table(t).map(|d| d.qualified_name()).unwrap_or_default()
            };
            let mk = |table_id: u64, kind, old, new| Change {
                lsn,
                commit_ts: rec.commit_ts,
                wall_ms: rec.wall_ms,
                table_id,
                table: name(table_id),
                kind,
                old,
                new,
            };
            if rec.catalog.is_some() {
                out.push(mk(0, ChangeKind::Ddl, None, None));
            }
            for op in &rec.ops {
                out.push(match op {
                    Op::InsertColumns { table, ipc } => {
                        let def = rec.catalog.as_ref().unwrap_or(&catalog).table(*table);
                        let seg = record::decode_segment(ipc, rec.commit_ts)?;
                        for g in 0..seg.groups.len() {
                            for (_, row) in def.map(|d| seg.group_rows(d, g)).unwrap_or_default() {
                                out.push(mk(*table, ChangeKind::Insert, None, Some(row.to_vec())));
                            }
                        }
                        continue;
                    }
                    Op::Insert { table, row, .. } => mk(*table, ChangeKind::Insert, None, Some(row.clone())),
                    Op::Delete { table, old, .. } => mk(*table, ChangeKind::Delete, Some(old.clone()), None),
                    Op::Update { table, old, new, .. } => {
                        mk(*table, ChangeKind::Update, Some(old.clone()), Some(new.clone()))
                    }
                });
            }
            if out.len() >= limit {
                out.truncate(limit);
                break;
            }
        }
        Ok(out)
    }

    /// Stops the WAL writer after it has finished what is queued. Later commits fail.
    pub fn close(&self) {
        if !self.shared.closed.swap(true, Ordering::SeqCst) {
            self.shared.writer.shutdown();
        }
        // Another process (or a reopen in this one) may take the directory now.
        self.shared.dir_lock.lock().take();
    }

    /// Next value of an identity/serial column.
    pub fn next_identity(&self, table_id: u64, col: usize) -> i64 {
        let mut seqs = self.shared.sequences.lock();
        let next = seqs.entry((table_id, col)).or_insert_with(|| {
            let def = self.catalog().table(table_id).cloned();
            def.and_then(|d| self.store(table_id).and_then(|s| s.max_int(&d, col))).unwrap_or(0) + 1
        });
        let v = *next;
        *next += 1;
        v
    }
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct DbStats {
    pub commits: u64,
    pub serialization_failures: u64,
    pub wal_fsyncs: u64,
    pub wal_bytes: u64,
    pub wal_records: u64,
    pub wal_bytes_since_checkpoint: u64,
    pub visible_ts: u64,
    pub active_snapshots: usize,
    /// How long the oldest snapshot still held has been held (ms), if any is.
    pub oldest_snapshot_age_ms: Option<u64>,
    /// Commits newer than the oldest snapshot held: versions they replaced cannot be collected.
    pub gc_horizon_lag: u64,
    /// Row versions held in memory (inserted or updated since the checkpoint, one at a time).
    pub row_versions: u64,
    /// Rows of bulk inserts since the checkpoint, held as Arrow columns.
    pub bulk_rows: u64,
}

/// Removes snapshot files and directories the manifest does not list (best effort: leftovers
/// are retried at the next checkpoint or open).
fn remove_stale_snapshots(vfs: &dyn Vfs, snapshots: &SnapshotStore, dir: &Path, listed: &dyn Fn(&str) -> bool) {
    if snapshots.is_local() {
        let Ok(entries) = vfs.list(&dir.join("snapshots")) else {
            return;
        };
        for p in entries {
            // A checkpoint directory stays while it holds a listed file.
            let holds_listed = vfs
                .list(&p)
                .unwrap_or_default()
                .iter()
                .any(|f| f.strip_prefix(dir).ok().and_then(|r| r.to_str()).is_some_and(listed));
            if !holds_listed {
                let _ = vfs.remove_dir_all(&p);
            }
        }
    } else {
        let _ = snapshots.delete_unless("snapshots", listed);
    }
}

/// The column batches of one transaction's table as segments of `ts`: consecutive batches of
/// the same columns become the row groups of one segment.
fn merge_batches(batches: &[Arc<BaseSegment>], ts: u64) -> Result<Vec<Arc<BaseSegment>>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < batches.len() {
        let schema = batches[i].groups.first().map(|g| g.schema());
        let mut j = i + 1;
        while j < batches.len() && batches[j].groups.first().map(|g| g.schema()) == schema {
            j += 1;
        }
        let groups: Vec<_> = batches[i..j].iter().flat_map(|b| b.groups.iter().cloned()).collect();
        out.push(Arc::new(BaseSegment::new(ts, groups, batches[i].columns.clone(), HashMap::new())?));
        i = j;
    }
    Ok(out)
}

fn apply_ops(
    catalog: &Catalog,
    stores: &HashMap<u64, Arc<TableStore>>,
    ops: &[Op],
    ts: u64,
    next_rowid: &mut u64,
) -> Result<()> {
    type TableOps = (Vec<(u64, Row)>, Vec<u64>, Vec<Arc<BaseSegment>>);
    let mut per_table: BTreeMap<u64, TableOps> = BTreeMap::new();
    for op in ops {
        match op {
            Op::Insert { table, rowid, row } => {
                per_table.entry(*table).or_default().0.push((*rowid, Row::from(row.clone())));
                *next_rowid = (*next_rowid).max(rowid + 1);
            }
            Op::Delete { table, rowid, .. } => per_table.entry(*table).or_default().1.push(*rowid),
            Op::Update { table, old_rowid, new_rowid, new, .. } => {
                let e = per_table.entry(*table).or_default();
                e.1.push(*old_rowid);
                e.0.push((*new_rowid, Row::from(new.clone())));
                *next_rowid = (*next_rowid).max(new_rowid + 1);
            }
            Op::InsertColumns { table, ipc } => {
                let seg = record::decode_segment(ipc, ts)?;
                if let Some(last) = (0..seg.groups.len()).rev().find_map(|g| seg.rowids(g).values().last().copied()) {
                    *next_rowid = (*next_rowid).max(last + 1);
                }
                per_table.entry(*table).or_default().2.push(Arc::new(seg));
            }
        }
    }
    for (table, (ins, del, segs)) in per_table {
        if let (Some(def), Some(store)) = (catalog.table(table), stores.get(&table)) {
            // Replay: nobody reads yet, every version deleted before this commit is dead.
            store.install(def, &ins, &segs, &del, ts, ts - 1);
        }
    }
    Ok(())
}

fn catalog_at(shared: &Shared, ts: u64) -> Arc<Catalog> {
    let cats = shared.catalogs.read();
    cats.iter().rev().find(|(t, _)| *t <= ts).or(cats.first()).map(|(_, c)| c.clone()).expect("a catalog")
}

/// The holders of one snapshot timestamp.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ActivePin {
    count: usize,
    /// When the first of the current holders pinned it (clock ms).
    since_ms: u64,
}

fn pin(shared: &Shared, previous: Option<u64>) -> u64 {
    let mut active = shared.active.lock();
    if let Some(p) = previous {
        unpin_locked(&mut active, p);
    }
    let ts = shared.visible_ts.load(Ordering::SeqCst);
    pin_locked(shared, &mut active, ts);
    ts
}

/// The oldest snapshot pinned, or `visible` when none is.
fn horizon_locked(active: &BTreeMap<u64, ActivePin>, visible: u64) -> u64 {
    active.keys().next().copied().unwrap_or(visible)
}

fn pin_locked(shared: &Shared, active: &mut BTreeMap<u64, ActivePin>, ts: u64) {
    active.entry(ts).or_insert_with(|| ActivePin { count: 0, since_ms: shared.opts.clock.now_ms() }).count += 1;
}

fn unpin_locked(active: &mut BTreeMap<u64, ActivePin>, ts: u64) {
    if let Some(p) = active.get_mut(&ts) {
        p.count -= 1;
        if p.count == 0 {
            active.remove(&ts);
        }
    }
}

fn release_row_locks(shared: &Shared, txn: u64, locked: Vec<(u64, u64)>) {
    if locked.is_empty() {
        return;
    }
    {
        let mut held = shared.locks.held.lock();
        for k in locked {
            if held.get(&k) == Some(&txn) {
                held.remove(&k);
            }
        }
    }
    shared.locks.released.notify_waiters();
}

/// What a committing transaction holds until its commit is visible or has failed: its row
/// locks and its snapshot pin. It travels with the WAL request and is dropped by the WAL
/// writer after it published the commit (or undid it), so a commit whose caller stopped
/// waiting (a cancelled or timed-out COMMIT) still releases both at the right moment.
struct CommitHold {
    shared: Arc<Shared>,
    txn: u64,
    read_ts: u64,
    locked: Vec<(u64, u64)>,
}

impl Drop for CommitHold {
    fn drop(&mut self) {
        release_row_locks(&self.shared, self.txn, std::mem::take(&mut self.locked));
        unpin_locked(&mut self.shared.active.lock(), self.read_ts);
    }
}

/// Keeps versions visible at `ts` from being vacuumed while alive.
struct Pin {
    shared: Arc<Shared>,
    ts: u64,
}

impl Pin {
    fn new(shared: Arc<Shared>, ts: u64) -> Pin {
        pin_locked(&shared, &mut shared.active.lock(), ts);
        Pin { shared, ts }
    }
}

impl Drop for Pin {
    fn drop(&mut self) {
        unpin_locked(&mut self.shared.active.lock(), self.ts);
    }
}

/// The changes of one transaction to one table.
#[derive(Debug, Default, Clone)]
pub struct TableWrites {
    /// New versions written by this transaction.
    pub inserts: BTreeMap<u64, Row>,
    /// Committed versions this transaction deleted, with their old contents.
    pub deletes: BTreeMap<u64, Row>,
    /// new rowid -> old rowid, for updates (change feed).
    pub updated_from: HashMap<u64, u64>,
    /// Rows inserted column by column ([`Transaction::insert_columns`]), one group each.
    pub batches: Vec<Arc<BaseSegment>>,
    /// Unique keys of `inserts` and `batches`, per index id.
    keys: HashMap<u64, crate::mvcc::FastMap<Vec<u8>, u64>>,
}

impl TableWrites {
    /// (batch, row) of `rowid` among the column batches.
    fn batch_row(&self, rowid: u64) -> Option<(usize, usize)> {
        self.batches.iter().enumerate().find_map(|(b, seg)| seg.locate(rowid).map(|(_, i)| (b, i)))
    }

    /// Whether this transaction wrote the row `rowid`.
    fn owns(&self, rowid: u64) -> bool {
        self.inserts.contains_key(&rowid) || self.batch_row(rowid).is_some()
    }

    /// A row this transaction wrote.
    fn own_row(&self, def: &TableDef, rowid: u64) -> Option<Row> {
        if let Some(row) = self.inserts.get(&rowid) {
            return Some(row.clone());
        }
        self.batch_row(rowid).map(|(b, i)| self.batches[b].row(def, 0, i))
    }

    /// Calls `f` with every row this transaction wrote: row inserts, then column batches.
    pub(crate) fn for_each_own(&self, def: &TableDef, mut f: impl FnMut(u64, &Row)) {
        for (r, row) in &self.inserts {
            f(*r, row);
        }
        for seg in &self.batches {
            for (r, row) in seg.group_rows(def, 0) {
                f(r, &row);
            }
        }
    }

    /// Whether this transaction inserted rows into the table.
    pub fn has_inserts(&self) -> bool {
        !self.inserts.is_empty() || !self.batches.is_empty()
    }

    /// Turns the column batches into row inserts (before a row of them is deleted or updated).
    fn spill_batches(&mut self, def: &TableDef) {
        for seg in std::mem::take(&mut self.batches) {
            self.inserts.extend(seg.group_rows(def, 0));
        }
    }
}

/// What INSERT does when a unique key already exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnConflict {
    Error,
    /// Skip the row (ON CONFLICT DO NOTHING); `Some(index id)` limits it to one constraint.
    Skip(Option<u64>),
}

/// Result of an insert: rows written and rows skipped because of a conflict.
#[derive(Debug, Default)]
pub struct InsertOutcome {
    pub inserted: Vec<(u64, Row)>,
    /// (input position, rowid and row of the existing version it collided with)
    pub conflicts: Vec<(usize, u64, Row)>,
}

#[derive(Debug, Clone, Copy)]
pub struct CommitInfo {
    /// 0 for a read-only transaction.
    pub commit_ts: u64,
    pub lsn: u64,
}

pub struct Transaction {
    shared: Arc<Shared>,
    pub id: u64,
    isolation: IsolationLevel,
    read_ts: u64,
    catalog: Arc<Catalog>,
    base_catalog_version: u64,
    ddl: bool,
    writes: BTreeMap<u64, TableWrites>,
    rows_written: usize,
    finished: bool,
    /// Row locks this transaction holds.
    locked: Vec<(u64, u64)>,
    /// Oldest snapshot a statement removed referenced keys with (checked again at commit).
    fk_since: Option<u64>,
    /// Where the running statement started, for [`Transaction::rollback_statement`].
    mark: StatementMark,
}

/// The state of a transaction's writes when its running statement started, and what that
/// statement did to writes of earlier statements. Rows the statement writes need no entry:
/// row ids only grow, so every row it creates has an id at or above `first_rowid`.
#[derive(Debug)]
struct StatementMark {
    first_rowid: u64,
    rows_written: usize,
    fk_since: Option<u64>,
    catalog: Arc<Catalog>,
    base_catalog_version: u64,
    ddl: bool,
    undo: Vec<StatementUndo>,
}

/// A change the running statement made to what earlier statements (or the store) had.
#[derive(Debug)]
enum StatementUndo {
    /// A committed version it deleted.
    Deleted { table: u64, rowid: u64 },
    /// A row an earlier statement of this transaction wrote, which it deleted or replaced.
    OwnRemoved { table: u64, rowid: u64, row: Row, updated_from: Option<u64>, keys: Vec<(u64, Vec<u8>)> },
}

impl StatementMark {
    fn new(shared: &Shared, catalog: &Arc<Catalog>, ddl: bool) -> StatementMark {
        StatementMark {
            first_rowid: shared.next_rowid.load(Ordering::SeqCst),
            rows_written: 0,
            fk_since: None,
            catalog: catalog.clone(),
            base_catalog_version: catalog.version,
            ddl,
            undo: Vec::new(),
        }
    }
}

impl Drop for Transaction {
    fn drop(&mut self) {
        if !self.finished {
            unpin_locked(&mut self.shared.active.lock(), self.read_ts);
        }
        self.release_locks();
    }
}

impl std::fmt::Debug for Transaction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transaction").field("id", &self.id).field("read_ts", &self.read_ts).finish()
    }
}

impl Transaction {
    pub fn read_ts(&self) -> u64 {
        self.read_ts
    }
    /// This transaction's id (the holder named in lock waits).
    pub fn id(&self) -> u64 {
        self.id
    }

    fn release_locks(&mut self) {
        release_row_locks(&self.shared, self.id, std::mem::take(&mut self.locked));
    }

    /// Locks the rows of `table` this statement is about to delete or replace, and checks that
    /// none was changed by a transaction that committed after this one's snapshot. Runs before
    /// any of them is written, so a [`Error::LockWait`] or a conflict leaves nothing behind.
    fn lock_rows(&mut self, table: u64, rowids: impl Iterator<Item = u64>, store: Option<&TableStore>) -> Result<()> {
        let catalog = self.catalog.clone();
        let def = catalog.table(table).ok_or_else(|| Error::UndefinedTable(format!("oid {table}")))?;
        let Some(store) = store else { return Ok(()) };
        for rowid in rowids {
            if let Some(w) = self.writes.get(&table)
                && (w.owns(rowid) || w.deletes.contains_key(&rowid))
            {
                continue;
            }
            {
                let mut held = self.shared.locks.held.lock();
                match held.get(&(table, rowid)) {
                    Some(&h) if h == self.id => {}
                    Some(&holder) => return Err(Error::LockWait { table, rowid, holder }),
                    None => {
                        held.insert((table, rowid), self.id);
                        self.locked.push((table, rowid));
                    }
                }
            }
            // With the lock held, no commit can change the row under us any more.
            if let Some(v) = store.version(def, rowid)
                && v.visible_at(self.read_ts)
                && v.xmax != 0
            {
                self.shared.conflicts.fetch_add(1, Ordering::Relaxed);
                return Err(Error::SerializationFailure {
                    detail: format!("row {rowid} was changed by a transaction that committed after this one started"),
                });
            }
        }
        Ok(())
    }
    pub fn isolation(&self) -> IsolationLevel {
        self.isolation
    }
    pub fn set_isolation(&mut self, iso: IsolationLevel) {
        self.isolation = iso;
    }
    pub fn catalog(&self) -> &Arc<Catalog> {
        &self.catalog
    }
    /// True once this transaction changed the catalog (its catalog is a private copy).
    pub fn ran_ddl(&self) -> bool {
        self.ddl
    }
    pub fn has_writes(&self) -> bool {
        self.ddl || self.writes.values().any(|w| w.has_inserts() || !w.deletes.is_empty())
    }
    pub fn writes(&self, table: u64) -> Option<&TableWrites> {
        self.writes.get(&table)
    }

    /// Called at each statement start: READ COMMITTED takes a new snapshot, and the
    /// transaction's writes so far are marked as what [`Transaction::rollback_statement`]
    /// returns to.
    pub fn statement_start(&mut self) {
        if self.isolation == IsolationLevel::ReadCommitted {
            self.read_ts = pin(&self.shared, Some(self.read_ts));
            if !self.ddl {
                self.catalog = catalog_at(&self.shared, self.read_ts);
                self.base_catalog_version = self.catalog.version;
            }
        }
        let mut mark = StatementMark::new(&self.shared, &self.catalog, self.ddl);
        mark.rows_written = self.rows_written;
        mark.fk_since = self.fk_since;
        mark.base_catalog_version = self.base_catalog_version;
        self.mark = mark;
    }

    /// Undoes everything the running statement wrote (since the last
    /// [`statement_start`](Self::statement_start), or the transaction's start): the write set,
    /// the catalog and the counters are as they were before it. Row locks it took stay held
    /// until the transaction ends. This is what lets a failed statement be rerun (READ
    /// COMMITTED after a conflict or a lock wait) without a trace of its first run.
    pub fn rollback_statement(&mut self) {
        let first = self.mark.first_rowid;
        for w in self.writes.values_mut() {
            drop(w.inserts.split_off(&first));
            w.batches.retain(|seg| seg.rowids(0).values().first().is_some_and(|&r| r < first));
            for m in w.keys.values_mut() {
                m.retain(|_, r| *r < first);
            }
            w.updated_from.retain(|new, _| *new < first);
        }
        for u in std::mem::take(&mut self.mark.undo).into_iter().rev() {
            match u {
                StatementUndo::Deleted { table, rowid } => {
                    if let Some(w) = self.writes.get_mut(&table) {
                        w.deletes.remove(&rowid);
                    }
                }
                StatementUndo::OwnRemoved { table, rowid, row, updated_from, keys } => {
                    let w = self.writes.entry(table).or_default();
                    for (idx, k) in keys {
                        w.keys.entry(idx).or_default().insert(k, rowid);
                    }
                    if let Some(old) = updated_from {
                        w.updated_from.insert(rowid, old);
                    }
                    w.inserts.insert(rowid, row);
                }
            }
        }
        self.rows_written = self.mark.rows_written;
        self.fk_since = self.mark.fk_since;
        self.catalog = self.mark.catalog.clone();
        self.base_catalog_version = self.mark.base_catalog_version;
        self.ddl = self.mark.ddl;
        self.writes.retain(|_, w| w.has_inserts() || !w.deletes.is_empty());
    }

    /// The catalog for DDL; the transaction now carries a private copy.
    pub fn catalog_mut(&mut self) -> &mut Catalog {
        self.ddl = true;
        Arc::make_mut(&mut self.catalog)
    }

    fn table_def(&self, table: u64) -> Result<&TableDef> {
        self.catalog.table(table).ok_or_else(|| Error::UndefinedTable(format!("oid {table}")))
    }

    /// Calls `f` with every row of `table` this transaction sees.
    pub fn scan(&self, table: u64, mut f: impl FnMut(u64, &Row)) {
        let w = self.writes.get(&table);
        if let Some(store) = self.shared.stores.read().get(&table).cloned()
            && let Some(def) = self.catalog.table(table)
        {
            match w {
                Some(w) if !w.deletes.is_empty() => store.for_each_visible(def, self.read_ts, |r, row| {
                    if !w.deletes.contains_key(&r) {
                        f(r, row)
                    }
                }),
                _ => store.for_each_visible(def, self.read_ts, &mut f),
            }
        }
        if let (Some(w), Some(def)) = (w, self.catalog.table(table)) {
            w.for_each_own(def, f);
        }
    }

    /// The rows of `table` this transaction sees, column by column: `columns` are physical
    /// positions (`None` = the row id); `prune` may rule out row groups of the columnar base
    /// from their statistics; at most `limit` rows.
    pub fn scan_columns(
        &self,
        table: u64,
        columns: &[Option<usize>],
        prune: Option<&(dyn Fn(&crate::mvcc::BaseSegment) -> Vec<bool> + Sync)>,
        limit: usize,
    ) -> Result<Vec<Chunk>> {
        let def = self.table_def(table)?;
        let w = self.writes.get(&table);
        let skip = |r: u64| w.is_some_and(|w| w.deletes.contains_key(&r));
        let mut out = match self.store(table) {
            Some(store) => {
                let spec = ScanSpec {
                    read_ts: self.read_ts,
                    columns,
                    skip: if w.is_some_and(|w| !w.deletes.is_empty()) { Some(&skip) } else { None },
                    prune,
                    limit,
                };
                store.scan_columns(def, &spec)?
            }
            None => Vec::new(),
        };
        let left = limit.saturating_sub(out.iter().map(|c| c.0).sum());
        if let Some(w) = w
            && left > 0
            && !w.inserts.is_empty()
        {
            let rows: Vec<(u64, Row)> = w.inserts.iter().take(left).map(|(r, row)| (*r, row.clone())).collect();
            for chunk in rows.chunks(crate::mvcc::CHUNK_ROWS) {
                out.push((chunk.len(), columns_from_rows(def, columns, chunk)?));
            }
        }
        if let Some(w) = w {
            let mut left = limit.saturating_sub(out.iter().map(|c| c.0).sum());
            for seg in &w.batches {
                if left == 0 {
                    break;
                }
                let n = seg.rows().min(left);
                let cols = crate::mvcc::segment_columns(def, seg, 0, columns)?;
                out.push((n, cols.into_iter().map(|c| c.slice(0, n)).collect()));
                left -= n;
            }
        }
        Ok(out)
    }

    /// Rows whose key on index `index_id` equals `key` (values in index column order).
    pub fn lookup(&self, table: u64, index_id: u64, key: &[Value]) -> Result<Vec<(u64, Row)>> {
        let def = self.table_def(table)?;
        let idx = def
            .indexes
            .iter()
            .find(|i| i.id == index_id)
            .ok_or_else(|| Error::Internal(format!("index {index_id} not found")))?;
        let Some(enc) = encode_key(key) else { return Ok(vec![]) };
        let w = self.writes.get(&table);
        let mut out = Vec::new();
        if let Some(store) = self.store(table)
            && store.has_index(index_id)
        {
            for v in store.lookup(def, index_id, &enc) {
                if v.visible_at(self.read_ts) && !w.is_some_and(|w| w.deletes.contains_key(&v.rowid)) {
                    out.push((v.rowid, v.row));
                }
            }
        } else {
            // Index created in this transaction: fall back to a scan.
            self.scan(table, |r, row| {
                if index_key(row, &idx.columns, def).as_deref() == Some(&enc[..]) {
                    out.push((r, row.clone()));
                }
            });
            return Ok(out);
        }
        if let Some(w) = w {
            for (r, row) in &w.inserts {
                if index_key(row, &idx.columns, def).as_deref() == Some(&enc[..]) {
                    out.push((*r, row.clone()));
                }
            }
            // Column batches: a unique key is one probe of the write set's keys (a transaction
            // that loads a parent table and then its children looks up every parent key);
            // other indexes compare the batches' key columns.
            match w.keys.get(&index_id) {
                Some(keys) => {
                    if let Some(&r) = keys.get(&enc)
                        && let Some((b, i)) = w.batch_row(r)
                    {
                        out.push((r, w.batches[b].row(def, 0, i)));
                    }
                }
                None => {
                    for seg in &w.batches {
                        let keys = crate::mvcc::segment_keys(seg, def, 0, &idx.columns);
                        for (i, k) in keys.iter().enumerate() {
                            if k.as_deref() == Some(&enc[..]) {
                                out.push((seg.rowids(0).value(i), seg.row(def, 0, i)));
                            }
                        }
                    }
                }
            }
        }
        Ok(out)
    }

    fn store(&self, table: u64) -> Option<Arc<TableStore>> {
        self.shared.stores.read().get(&table).cloned()
    }

    /// The row with id `rowid` as this transaction sees it.
    pub fn row(&self, table: u64, rowid: u64) -> Option<Row> {
        let w = self.writes.get(&table);
        let def = self.catalog.table(table)?;
        if let Some(row) = w.and_then(|w| w.own_row(def, rowid)) {
            return Some(row);
        }
        if w.is_some_and(|w| w.deletes.contains_key(&rowid)) {
            return None;
        }
        self.store(table)?.version(def, rowid).filter(|v| v.visible_at(self.read_ts)).map(|v| v.row)
    }

    /// Finds an existing row colliding with `row` on a unique index, seen from this transaction.
    /// Versions committed after our snapshot and still live collide too (they would win).
    fn find_conflict(
        &self,
        def: &TableDef,
        store: Option<&TableStore>,
        row: &[Value],
        only: Option<u64>,
    ) -> Result<Option<(u64, u64, Row, bool)>> {
        let w = self.writes.get(&def.id);
        for idx in def.indexes.iter().filter(|i| i.unique && only.is_none_or(|o| o == i.id)) {
            let Some(key) = index_key(row, &idx.columns, def) else {
                continue;
            };
            if let Some(w) = w
                && let Some(&r) = w.keys.get(&idx.id).and_then(|m| m.get(&key))
            {
                let row = w.own_row(def, r).ok_or_else(|| Error::Internal(format!("own row {r} not found")))?;
                return Ok(Some((idx.id, r, row, true)));
            }
            if let Some(store) = store {
                if store.has_index(idx.id) {
                    for v in store.lookup(def, idx.id, &key) {
                        if w.is_some_and(|w| w.deletes.contains_key(&v.rowid)) {
                            continue;
                        }
                        if v.visible_at(self.read_ts) || (v.live() && v.xmin > self.read_ts) {
                            return Ok(Some((idx.id, v.rowid, v.row.clone(), v.visible_at(self.read_ts))));
                        }
                    }
                } else {
                    let mut hit = None;
                    store.for_each_visible(def, self.read_ts, |r, existing| {
                        if hit.is_none()
                            && !w.is_some_and(|w| w.deletes.contains_key(&r))
                            && index_key(existing, &idx.columns, def).as_deref() == Some(&key[..])
                        {
                            hit = Some((idx.id, r, existing.clone(), true));
                        }
                    });
                    if hit.is_some() {
                        return Ok(hit);
                    }
                }
            }
        }
        Ok(None)
    }

    fn unique_violation(def: &TableDef, index_id: u64, row: &[Value]) -> Error {
        let idx = def.indexes.iter().find(|i| i.id == index_id);
        let (name, cols) = match idx {
            Some(i) => (i.name.clone(), i.columns.clone()),
            None => (format!("index {index_id}"), vec![]),
        };
        let names: Vec<&str> = cols.iter().map(|&c| def.columns[c].name.as_str()).collect();
        let vals: Vec<String> = cols.iter().map(|&c| render_value(row.get(c).unwrap_or(&Value::Null))).collect();
        Error::UniqueViolation {
            constraint: name,
            detail: format!("Key ({})=({}) already exists.", names.join(", "), vals.join(", ")),
        }
    }

    fn check_row(&self, def: &TableDef, row: &[Value]) -> Result<()> {
        if row.len() != def.columns.len() {
            return Err(Error::Internal(format!(
                "row has {} values, table {} has {} columns",
                row.len(),
                def.name,
                def.columns.len()
            )));
        }
        for (c, v) in def.columns.iter().zip(row) {
            if !c.dropped && !c.nullable && v.is_null() {
                return Err(Error::NotNullViolation { table: def.name.clone(), column: c.name.clone() });
            }
        }
        Ok(())
    }

    fn count_rows(&mut self, n: usize) -> Result<()> {
        self.rows_written += n;
        let max = self.shared.opts.limits.txn_rows_max;
        if self.rows_written > max {
            return Err(Error::ProgramLimit { what: "rows written by one transaction".into(), limit: max as u64 });
        }
        Ok(())
    }

    fn add_insert(&mut self, table: u64, rowid: u64, row: Row) {
        let def = self.catalog.table(table).expect("checked by caller");
        let w = self.writes.entry(table).or_default();
        for idx in def.indexes.iter().filter(|i| i.unique) {
            if let Some(k) = index_key(&row, &idx.columns, def) {
                w.keys.entry(idx.id).or_default().insert(k, rowid);
            }
        }
        w.inserts.insert(rowid, row);
    }

    /// Inserts full physical rows.
    pub fn insert(&mut self, table: u64, rows: Vec<Vec<Value>>, on_conflict: OnConflict) -> Result<InsertOutcome> {
        let def = self.table_def(table)?.clone();
        let store = self.store(table);
        self.count_rows(rows.len())?;
        let mut out = InsertOutcome::default();
        for (i, row) in rows.into_iter().enumerate() {
            self.check_row(&def, &row)?;
            // The arbiter index of ON CONFLICT is looked at first, as PostgreSQL's speculative
            // insertion does: a row that also collides on another index takes the conflict path.
            let arbiter = match on_conflict {
                OnConflict::Skip(Some(only)) => self.find_conflict(&def, store.as_deref(), &row, Some(only))?,
                _ => None,
            };
            let conflict = match arbiter {
                Some(c) => Some(c),
                None => self.find_conflict(&def, store.as_deref(), &row, None)?,
            };
            if let Some((index_id, rowid, existing, visible)) = conflict {
                match on_conflict {
                    OnConflict::Skip(only) if only.is_none_or(|o| o == index_id) => {
                        if !visible {
                            self.shared.conflicts.fetch_add(1, Ordering::Relaxed);
                            return Err(Error::SerializationFailure {
                                detail: "a concurrent transaction inserted a conflicting row".into(),
                            });
                        }
                        out.conflicts.push((i, rowid, existing));
                        continue;
                    }
                    _ => return Err(Self::unique_violation(&def, index_id, &row)),
                }
            }
            let rowid = self.shared.next_rowid.fetch_add(1, Ordering::Relaxed);
            let row = Row::from(row);
            self.add_insert(table, rowid, row.clone());
            out.inserted.push((rowid, row));
        }
        if !def.foreign_keys.is_empty() {
            self.fk_check_rows(&def, out.inserted.iter().map(|(_, r)| r))?;
        }
        Ok(out)
    }

    /// Inserts rows given column by column and keeps them columnar up to the store: the path of
    /// bulk loads, which builds no per-row values. `columns[pos]` holds physical column `pos`
    /// as `def.columns[pos].data_type.arrow_type()` (`None` for dropped columns), all of one
    /// length. Enforces NOT NULL and unique keys (a duplicate is an error); foreign keys are
    /// the caller's to check. Returns the number of rows.
    pub fn insert_columns(&mut self, table: u64, columns: Vec<Option<ArrayRef>>) -> Result<usize> {
        let def = self.table_def(table)?.clone();
        if columns.len() != def.columns.len() {
            return Err(Error::Internal(format!(
                "{} columns given, table {} has {}",
                columns.len(),
                def.name,
                def.columns.len()
            )));
        }
        let n = columns.iter().flatten().next().map_or(0, |c| c.len());
        let mut fields = vec![Field::new("__rowid", ArrowType::UInt64, false)];
        let mut arrays: Vec<ArrayRef> = Vec::with_capacity(columns.len() + 1);
        let mut positions = HashMap::new();
        for (pos, (c, col)) in def.columns.iter().zip(columns).enumerate() {
            if c.dropped {
                continue;
            }
            let col = col.ok_or_else(|| Error::Internal(format!("no values for column {}", c.name)))?;
            let want = c.data_type.arrow_type();
            if col.len() != n || col.data_type() != &want {
                return Err(Error::Internal(format!(
                    "column {} given as {} values of {}, expected {n} of {want}",
                    c.name,
                    col.len(),
                    col.data_type()
                )));
            }
            if !c.nullable && col.null_count() > 0 {
                return Err(Error::NotNullViolation { table: def.name.clone(), column: c.name.clone() });
            }
            positions.insert(pos, fields.len());
            fields.push(Field::new(pos.to_string(), want, true));
            arrays.push(col);
        }
        if n == 0 {
            return Ok(0);
        }
        self.count_rows(n)?;
        let first = self.shared.next_rowid.fetch_add(n as u64, Ordering::Relaxed);
        arrays.insert(0, Arc::new(UInt64Array::from_iter_values(first..first + n as u64)));
        let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)
            .map_err(|e| Error::Internal(format!("column batch: {e}")))?;
        let seg = BaseSegment::new(self.read_ts, vec![batch], positions, HashMap::new())?;
        // Unique keys: against each other, this transaction's rows and the store, before any
        // of them is recorded.
        let store = self.store(table);
        let w = self.writes.get(&table);
        let read_ts = self.read_ts;
        let mut new_keys: Vec<(u64, Vec<Option<Vec<u8>>>)> = Vec::new();
        for idx in def.indexes.iter().filter(|i| i.unique) {
            let keys = crate::mvcc::segment_keys(&seg, &def, 0, &idx.columns);
            let own = w.and_then(|w| w.keys.get(&idx.id));
            let mut seen: crate::mvcc::FastMap<&[u8], ()> = crate::mvcc::FastMap::default();
            seen.reserve(n);
            for (i, k) in keys.iter().enumerate() {
                if let Some(k) = k
                    && (seen.insert(k, ()).is_some() || own.is_some_and(|o| o.contains_key(k)))
                {
                    return Err(Self::unique_violation(&def, idx.id, &seg.row(&def, 0, i)));
                }
            }
            let deleted = |r: u64| w.is_some_and(|w| w.deletes.contains_key(&r));
            let hit = match &store {
                Some(store) if store.has_index(idx.id) => {
                    // As find_conflict: visible, or live and committed after the snapshot.
                    store.first_key_hit(idx.id, keys.iter().map(|k| k.as_deref()), |r, xmin, xmax| {
                        !deleted(r) && (visible(xmin, xmax, read_ts) || (live(xmin, xmax) && xmin > read_ts))
                    })
                }
                Some(store) => {
                    // An index this transaction created: compare with every visible row.
                    let mut hit = None;
                    store.for_each_visible(&def, read_ts, |r, row| {
                        if hit.is_none()
                            && !deleted(r)
                            && let Some(k) = index_key(row, &idx.columns, &def)
                            && let Some(i) =
                                seen.get(k.as_slice()).and(keys.iter().position(|x| x.as_ref() == Some(&k)))
                        {
                            hit = Some((i, r));
                        }
                    });
                    hit
                }
                None => None,
            };
            if let Some((i, _)) = hit {
                return Err(Self::unique_violation(&def, idx.id, &seg.row(&def, 0, i)));
            }
            new_keys.push((idx.id, keys));
        }
        let w = self.writes.entry(table).or_default();
        for (id, keys) in new_keys {
            let m = w.keys.entry(id).or_default();
            m.reserve(n);
            for (i, k) in keys.into_iter().enumerate() {
                if let Some(k) = k {
                    m.insert(k, first + i as u64);
                }
            }
        }
        w.batches.push(Arc::new(seg));
        Ok(n)
    }

    /// Records that a statement removes referenced keys (see [`crate::fk`]).
    pub(crate) fn note_key_removal(&mut self) {
        self.fk_since = Some(self.fk_since.map_or(self.read_ts, |s| s.min(self.read_ts)));
    }

    /// Locks rows a cascading foreign key action will change.
    pub(crate) fn lock_for_fk(&mut self, table: u64, rowids: &[u64]) -> Result<()> {
        let store = self.store(table);
        self.lock_rows(table, rowids.iter().copied(), store.as_deref())
    }

    /// Carries out cascading foreign key actions planned before the triggering write.
    fn apply_fk_work(&mut self, work: Vec<crate::fk::FkWork>) -> Result<()> {
        for w in work {
            match w {
                crate::fk::FkWork::Delete(t, ids) => {
                    let store = self.store(t);
                    self.count_rows(ids.len())?;
                    for r in ids {
                        self.delete_one(t, r, store.as_deref())?;
                    }
                }
                crate::fk::FkWork::SetNull(t, changes) => {
                    self.update(t, changes)?;
                }
            }
        }
        Ok(())
    }

    fn delete_one(&mut self, table: u64, rowid: u64, store: Option<&TableStore>) -> Result<Option<Row>> {
        let catalog = self.catalog.clone();
        let def = catalog.table(table).ok_or_else(|| Error::UndefinedTable(format!("oid {table}")))?;
        let w = self.writes.entry(table).or_default();
        if !w.batches.is_empty() {
            w.spill_batches(def);
        }
        if let Some(row) = w.inserts.remove(&rowid) {
            let mut keys = Vec::new();
            for idx in def.indexes.iter().filter(|i| i.unique) {
                if let Some(k) = index_key(&row, &idx.columns, def)
                    && let Some(m) = w.keys.get_mut(&idx.id)
                    && m.get(&k) == Some(&rowid)
                {
                    m.remove(&k);
                    keys.push((idx.id, k));
                }
            }
            // Updating a row this transaction already updated: the original stays deleted.
            let updated_from = w.updated_from.remove(&rowid);
            if rowid < self.mark.first_rowid {
                self.mark.undo.push(StatementUndo::OwnRemoved { table, rowid, row: row.clone(), updated_from, keys });
            }
            return Ok(Some(row));
        }
        if w.deletes.contains_key(&rowid) {
            return Ok(None);
        }
        let Some(v) = store.and_then(|s| s.version(def, rowid)) else {
            return Ok(None);
        };
        if !v.visible_at(self.read_ts) {
            return Ok(None);
        }
        if v.xmax != 0 {
            self.shared.conflicts.fetch_add(1, Ordering::Relaxed);
            return Err(Error::SerializationFailure {
                detail: format!("row {rowid} was changed by a transaction that committed after this one started"),
            });
        }
        w.deletes.insert(rowid, v.row.clone());
        self.mark.undo.push(StatementUndo::Deleted { table, rowid });
        Ok(Some(v.row))
    }

    /// Deletes rows by id; returns how many were deleted.
    pub fn delete(&mut self, table: u64, rowids: &[u64]) -> Result<usize> {
        self.table_def(table)?;
        let store = self.store(table);
        self.lock_rows(table, rowids.iter().copied(), store.as_deref())?;
        self.count_rows(rowids.len())?;
        // Referencing rows are checked (or their cascade planned and locked) before any write.
        let work = if crate::fk::is_referenced(&self.catalog, table) {
            let removed: Vec<(u64, Row)> =
                rowids.iter().filter_map(|&r| self.row(table, r).map(|row| (r, row))).collect();
            self.fk_plan_removal(table, &removed, true, 0)?
        } else {
            vec![]
        };
        let mut n = 0;
        for &r in rowids {
            if self.delete_one(table, r, store.as_deref())?.is_some() {
                n += 1;
            }
        }
        self.apply_fk_work(work)?;
        Ok(n)
    }

    /// Replaces rows: `(old rowid, new full row)`. Returns the new versions.
    pub fn update(&mut self, table: u64, changes: Vec<(u64, Vec<Value>)>) -> Result<Vec<(u64, Row)>> {
        let def = self.table_def(table)?.clone();
        let store = self.store(table);
        self.lock_rows(table, changes.iter().map(|(r, _)| *r), store.as_deref())?;
        self.count_rows(changes.len())?;
        // Foreign keys: referenced keys an update changes must not be referenced (ON UPDATE NO
        // ACTION); referencing columns it changes must point at existing rows (checked below).
        let referenced_cols = crate::fk::referenced_columns(&self.catalog, table);
        let fk_cols: Vec<usize> = def.foreign_keys.iter().flat_map(|fk| fk.columns.iter().copied()).collect();
        let mut fk_changed: HashSet<usize> = HashSet::new();
        if !referenced_cols.is_empty() || !fk_cols.is_empty() {
            let mut removed = Vec::new();
            for (i, (old, new)) in changes.iter().enumerate() {
                let Some(old_row) = self.row(table, *old) else { continue };
                let differs = |cols: &[usize]| cols.iter().any(|&c| old_row.get(c) != new.get(c));
                if differs(&referenced_cols) {
                    removed.push((*old, old_row.clone()));
                }
                if differs(&fk_cols) {
                    fk_changed.insert(i);
                }
            }
            if !removed.is_empty() {
                self.fk_plan_removal(table, &removed, false, 0)?;
            }
        }
        let mut out = Vec::with_capacity(changes.len());
        let mut to_check = Vec::new();
        for (i, (old, row)) in changes.into_iter().enumerate() {
            self.check_row(&def, &row)?;
            let Some(_) = self.delete_one(table, old, store.as_deref())? else {
                continue;
            };
            if let Some((index_id, _, _, visible)) = self.find_conflict(&def, store.as_deref(), &row, None)? {
                if !visible {
                    // A transaction that committed after our snapshot wrote this key, typically
                    // by updating the same row: a write-write conflict, not a duplicate.
                    self.shared.conflicts.fetch_add(1, Ordering::Relaxed);
                    return Err(Error::SerializationFailure {
                        detail: "the key was changed by a transaction that committed after this one started".into(),
                    });
                }
                return Err(Self::unique_violation(&def, index_id, &row));
            }
            let rowid = self.shared.next_rowid.fetch_add(1, Ordering::Relaxed);
            let row = Row::from(row);
            self.add_insert(table, rowid, row.clone());
            let w = self.writes.get_mut(&table).expect("just written");
            if w.deletes.contains_key(&old) {
                w.updated_from.insert(rowid, old);
            }
            if fk_changed.contains(&i) {
                to_check.push(out.len());
            }
            out.push((rowid, row));
        }
        if !to_check.is_empty() {
            self.fk_check_rows(&def, to_check.iter().map(|&j| &out[j].1))?;
        }
        Ok(out)
    }

    /// Deletes every row this transaction sees in `table`.
    pub fn truncate(&mut self, table: u64) -> Result<usize> {
        let mut ids = Vec::new();
        self.scan(table, |r, _| ids.push(r));
        self.delete(table, &ids)
    }

    /// Next identity value (non-transactional, like a PostgreSQL sequence).
    pub fn next_identity(&self, table: u64, col: usize) -> i64 {
        Database { shared: self.shared.clone() }.next_identity(table, col)
    }

    pub fn rollback(mut self) {
        self.release_locks();
        self.finished = true;
        unpin_locked(&mut self.shared.active.lock(), self.read_ts);
    }

    /// Commits from synchronous code.
    pub fn commit_blocking(self) -> Result<CommitInfo> {
        crate::util::block_on(self.commit())
    }

    /// Commits: validates, writes the WAL record, waits for its fsync, then makes it visible.
    ///
    /// Cancel safety: dropping the future before the record is handed to the WAL writer
    /// rolls the transaction back (its `Drop`). Once handed over, the commit goes on without
    /// the caller: it becomes durable and visible (or fails and is undone), and its locks and
    /// snapshot pin are released then, by the writer; the caller just does not learn the
    /// outcome. Callers that must report the outcome run the future to completion.
    pub async fn commit(mut self) -> Result<CommitInfo> {
        let shared = self.shared.clone();
        let result = self.commit_inner().await;
        // A commit that never reached the writer (read-only, or refused) releases here.
        self.release_locks();
        if !self.finished {
            self.finished = true;
            unpin_locked(&mut shared.active.lock(), self.read_ts);
        }
        if matches!(result, Ok(CommitInfo { commit_ts, .. }) if commit_ts > 0) {
            shared.commits.fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    async fn commit_inner(&mut self) -> Result<CommitInfo> {
        let shared = self.shared.clone();
        if !self.has_writes() {
            return Ok(CommitInfo { commit_ts: 0, lsn: 0 });
        }
        if shared.closed.load(Ordering::SeqCst) || shared.poisoned.load(Ordering::SeqCst) {
            return Err(Error::Io {
                path: shared.wal_dir.clone(),
                source: std::io::Error::other("the database is closed"),
            });
        }
        let mut guard = shared.commit_lock.lock().await;
        // The newest catalog, including one of a DDL commit still waiting for its fsync.
        let current = shared.catalogs.read().last().map(|(_, c)| c.clone()).expect("a catalog");
        let serialization = |detail: String| {
            shared.conflicts.fetch_add(1, Ordering::Relaxed);
            Error::SerializationFailure { detail }
        };
        let new_catalog = if self.ddl {
            if current.version != self.base_catalog_version {
                return Err(serialization("the catalog was changed by a concurrent transaction".into()));
            }
            let mut c = (*self.catalog).clone();
            c.version = current.version + 1;
            Some(c)
        } else {
            if current.version != self.base_catalog_version {
                for t in self.writes.keys() {
                    let same = match (current.table(*t), self.catalog.table(*t)) {
                        (Some(a), Some(b)) => bincode::serialize(a).ok() == bincode::serialize(b).ok(),
                        _ => false,
                    };
                    if !same {
                        return Err(serialization(format!(
                            "table {t} was altered or dropped by a concurrent transaction"
                        )));
                    }
                }
            }
            None
        };
        let final_catalog = new_catalog.clone().map(Arc::new).unwrap_or_else(|| current.clone());
        let stores_now = shared.stores.read().clone();
        // Validate against everything committed (or committing) so far.
        for (t, w) in &self.writes {
            let Some(def) = final_catalog.table(*t) else {
                continue;
            };
            let store = stores_now.get(t);
            if let Some(store) = store {
                for (r, xmax) in store.xmaxes(w.deletes.keys().copied()) {
                    if xmax.is_some_and(|x| x != 0) {
                        return Err(serialization(format!("row {r} of {} was changed concurrently", def.name)));
                    }
                }
                for idx in def.indexes.iter().filter(|i| i.unique) {
                    if !store.has_index(idx.id) {
                        continue;
                    }
                    // Keys of every row written (rows and column batches), checked under one lock.
                    if let Some(keys) = w.keys.get(&idx.id) {
                        let keys: Vec<(&Vec<u8>, u64)> = keys.iter().map(|(k, r)| (k, *r)).collect();
                        let hit = store.first_key_hit(
                            idx.id,
                            keys.iter().map(|(k, _)| Some(k.as_slice())),
                            |r, xmin, xmax| live(xmin, xmax) && !w.deletes.contains_key(&r),
                        );
                        if let Some((i, _)) = hit {
                            let row = w.own_row(def, keys[i].1).unwrap_or_else(|| Row::from(Vec::new()));
                            return Err(Self::unique_violation(def, idx.id, &row));
                        }
                        continue;
                    }
                    for row in w.inserts.values() {
                        let Some(key) = index_key(row, &idx.columns, def) else {
                            continue;
                        };
                        let clash = store
                            .lookup(def, idx.id, &key)
                            .into_iter()
                            .any(|v: Version| v.live() && !w.deletes.contains_key(&v.rowid));
                        if clash {
                            return Err(Self::unique_violation(def, idx.id, row));
                        }
                    }
                }
            }
        }
        crate::fk::validate_at_commit(&final_catalog, &stores_now, &self.writes, self.fk_since)?;
        let ts = *guard + 1;
        // Build the record.
        let mut ops = Vec::new();
        let mut segments: HashMap<u64, Vec<Arc<BaseSegment>>> = HashMap::new();
        let mut record_segments: Vec<Arc<BaseSegment>> = Vec::new();
        for (t, w) in &self.writes {
            if final_catalog.table(*t).is_none() {
                continue;
            }
            let moved: HashSet<u64> = w.updated_from.values().copied().collect();
            for (r, old) in &w.deletes {
                if !moved.contains(r) {
                    ops.push(Op::Delete { table: *t, rowid: *r, old: old.to_vec() });
                }
            }
            for (r, row) in &w.inserts {
                match w.updated_from.get(r).and_then(|o| w.deletes.get(o).map(|old| (o, old))) {
                    Some((o, old)) => ops.push(Op::Update {
                        table: *t,
                        old_rowid: *o,
                        new_rowid: *r,
                        old: old.to_vec(),
                        new: row.to_vec(),
                    }),
                    None => ops.push(Op::Insert { table: *t, rowid: *r, row: row.to_vec() }),
                }
            }
            let segs = merge_batches(&w.batches, ts)?;
            for seg in &segs {
                // The bytes are written from the segment when the record is encoded.
                ops.push(Op::InsertColumns { table: *t, ipc: Vec::new() });
                record_segments.push(seg.clone());
            }
            segments.insert(*t, segs);
        }
        let record =
            CommitRecord { commit_ts: ts, wall_ms: shared.opts.clock.now_ms(), catalog: new_catalog.clone(), ops };
        let max = shared.opts.limits.wal_record_bytes_max;
        let encode = || -> Result<Vec<u8>> {
            let payload = record.encode_with_segments(&record_segments)?;
            if payload.len() as u64 > max {
                return Err(Error::ProgramLimit {
                    what: format!("transaction record of {} bytes", payload.len()),
                    limit: max,
                });
            }
            Ok(payload)
        };
        // Install with xmin/xmax = ts: invisible until the watermark reaches ts.
        let horizon = {
            let active = shared.active.lock();
            let visible = shared.visible_ts.load(Ordering::SeqCst);
            active.keys().next().copied().unwrap_or(visible).min(visible)
        };
        type Installed = Vec<(Arc<TableStore>, Vec<u64>, Vec<u64>)>;
        let install = || -> (HashMap<u64, Arc<TableStore>>, Installed) {
            let mut new_stores: HashMap<u64, Arc<TableStore>> = HashMap::new();
            let mut installed: Installed = Vec::new();
            for (t, w) in &self.writes {
                let Some(def) = final_catalog.table(*t) else {
                    continue;
                };
                let store = match stores_now.get(t) {
                    Some(s) => s.clone(),
                    None => new_stores.entry(*t).or_insert_with(|| Arc::new(TableStore::new(def))).clone(),
                };
                let ins: Vec<(u64, Row)> = w.inserts.iter().map(|(r, row)| (*r, row.clone())).collect();
                let del: Vec<u64> = w.deletes.keys().copied().collect();
                let segs = segments.get(t).map(Vec::as_slice).unwrap_or_default();
                store.install(def, &ins, segs, &del, ts, horizon);
                installed.push((store, ins.into_iter().map(|(r, _)| r).collect(), del));
            }
            (new_stores, installed)
        };
        let (payload, (new_stores, installed)) = if record_segments.is_empty() {
            let payload = encode()?;
            (payload, install())
        } else {
            // A bulk load: its record is encoded on another thread while its segments and index
            // entries are installed.
            let (payload, done) = std::thread::scope(|scope| {
                let encoding = scope.spawn(encode);
                let done = install();
                let payload =
                    encoding.join().unwrap_or_else(|_| Err(Error::Internal("encoding a WAL record failed".into())));
                (payload, done)
            });
            match payload {
                Ok(p) => (p, done),
                Err(e) => {
                    for (store, ins, del) in &done.1 {
                        store.undo(ins, del, ts);
                    }
                    return Err(e);
                }
            }
        };
        // DDL: stores of new tables and new indexes exist before the catalog that names them,
        // and the catalog is published at `ts`, invisible until the watermark reaches it.
        let published = new_catalog.is_some();
        if let Some(cat) = new_catalog {
            let cat = Arc::new(cat);
            {
                let mut stores = shared.stores.write();
                for (id, st) in new_stores {
                    stores.insert(id, st);
                }
                for def in cat.tables.values() {
                    stores.entry(def.id).or_insert_with(|| Arc::new(TableStore::new(def))).sync_indexes(def);
                }
            }
            shared.catalogs.write().push((ts, cat));
        }
        let undo_list = installed.clone();
        let catalogs = shared.catalogs.clone();
        // From here the WAL writer holds the locks and the pin (see `commit`).
        let hold = CommitHold {
            shared: shared.clone(),
            txn: self.id,
            read_ts: self.read_ts,
            locked: std::mem::take(&mut self.locked),
        };
        self.finished = true;
        let undo: wal::Undo = Box::new(move || {
            for (store, ins, del) in undo_list {
                store.undo(&ins, &del, ts);
            }
            if published {
                catalogs.write().retain(|(t, _)| *t != ts);
            }
            drop(hold);
        });
        let (done, rx) = tokio::sync::oneshot::channel();
        shared.writer.send(WalRequest::Append { payload, commit_ts: ts, done, undo: Some(undo) })?;
        *guard = ts;
        drop(guard);
        let lsn = rx.await.map_err(|_| Error::Internal("the WAL writer has stopped".into()))??;
        Ok(CommitInfo { commit_ts: ts, lsn })
    }

    /// Column default definitions, for the SQL layer.
    pub fn column_default(&self, table: u64, col: usize) -> Option<&ColumnDefault> {
        self.catalog.table(table).and_then(|d| d.columns.get(col)).and_then(|c| c.default.as_ref())
    }
}

/// Renders a value for error details, as PostgreSQL would print it.
pub fn render_value(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => {
            if *b {
                "t".into()
            } else {
                "f".into()
            }
        }
        Value::Int16(x) => x.to_string(),
        Value::Int32(x) => x.to_string(),
        Value::Int64(x) => x.to_string(),
        Value::Float32(x) => x.to_string(),
        Value::Float64(x) => x.to_string(),
        Value::Decimal(x) => x.to_string(),
        Value::Text(s) => s.to_string(),
        Value::Bytes(b) => format!("\\x{}", b.iter().map(|x| format!("{x:02x}")).collect::<String>()),
        Value::Date(d) => d.to_string(),
        Value::Time(t) => t.to_string(),
        Value::Timestamp(t) => t.to_string(),
        Value::Interval { months, days, nanos } => format!("{months} mons {days} days {nanos} ns"),
        Value::Array(items) => format!("{{{}}}", items.iter().map(render_value).collect::<Vec<_>>().join(",")),
    }
}
