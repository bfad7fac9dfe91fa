//! The database: recovery ([`open`]), transactions ([`txn`], [`write`]), commit ([`commit`]),
//! checkpoints ([`checkpoint`]) and the change feed ([`feed`]).
//!
//! This module holds the shared state and the types the others work on; each submodule adds
//! the methods of one topic to [`Database`] or [`Transaction`].

mod checkpoint;
mod commit;
mod feed;

pub use feed::{ChangeSubscription, FeedError};
mod open;
mod txn;
mod write;

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
    /// Each table's snapshot file: (table id, rows, bytes).
    pub files: Vec<(u64, u64, u64)>,
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
    /// Live change-feed subscribers (see `feed.rs`).
    feed: tokio::sync::broadcast::Sender<wal::Committed>,
    feed_next_lsn: Arc<AtomicU64>,
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
            undo: Vec::new(),
            savepoints: 0,
            fresh: true,
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
    /// What statements did to writes of earlier statements (or to the store), oldest first:
    /// kept from the oldest open savepoint on, else only for the running statement.
    undo: Vec<StatementUndo>,
    /// Savepoints taken and not yet released.
    savepoints: usize,
    /// No statement ran yet: a REPEATABLE READ transaction takes its snapshot at its first
    /// statement, as PostgreSQL does, not at BEGIN.
    fresh: bool,
}

/// The outcome of [`Transaction::lock_row`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowLock {
    /// The transaction holds the row's lock (or wrote the row itself).
    Locked,
    /// The transaction deleted the row itself.
    Gone,
}

/// A point in a transaction that [`Transaction::rollback_to`] returns to (`SAVEPOINT`).
/// Taken between statements with [`Transaction::savepoint`]; given back with
/// [`Transaction::release_savepoint`].
#[derive(Debug, Clone)]
pub struct Savepoint {
    state: StatementMark,
    /// Row locks held when it was taken; locks taken after it are released by a rollback to it.
    locked: usize,
}

/// The state of a transaction's writes when its running statement (or a savepoint) started,
/// and where its entries in the transaction's undo log begin. Rows written after it need no
/// undo entry: row ids only grow, so every row created since has an id at or above
/// `first_rowid`.
#[derive(Debug, Clone)]
struct StatementMark {
    first_rowid: u64,
    rows_written: usize,
    fk_since: Option<u64>,
    catalog: Arc<Catalog>,
    base_catalog_version: u64,
    ddl: bool,
    undo_len: usize,
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
            undo_len: 0,
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
