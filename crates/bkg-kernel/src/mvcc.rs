//! Versioned row storage of one table: a columnar base plus in-memory versions.
//!
//! ## Base
//! The rows of the last checkpoint, as the Arrow row groups of its Parquet file (one
//! [`RecordBatch`] per row group, column 0 the row ids in ascending order), together with the
//! file's row-group statistics for pruning. Every base row was created at or before the
//! checkpoint (`xmin = base.ts`); a base row deleted later carries its own `xmax`, held beside the
//! immutable columns. Scans read the base column by column and never turn it into rows.
//!
//! ## Versions
//! Each version committed after the checkpoint carries `xmin` (the commit timestamp that created
//! it) and `xmax` (the one that deleted it, 0 while live). A version is visible to a snapshot
//! `read_ts` when `xmin <= read_ts && (xmax == 0 || xmax > read_ts)`. Versions of a commit are
//! installed before its WAL record is durable, with timestamps above the visibility watermark,
//! so no reader can see them until the WAL writer advances the watermark after fsync.
//!
//! Hash indexes map the encoded key of every indexed column set to the row ids of all rows
//! (base or version) carrying that key. Row ids never change, including when a checkpoint
//! replaces the base.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arrow::array::{Array, ArrayRef, BooleanArray, RecordBatch, UInt64Array};
use arrow::compute::filter;
use parking_lot::RwLock;

use crate::arrow_conv::{column_from_values, values_from_column};
use crate::catalog::TableDef;
use crate::error::{Error, Result};
use crate::value::{Row, Value};

/// Hash map for index keys and row ids: foldhash (seeded per process) instead of SipHash, which
/// cost a tenth of a bulk load.
pub(crate) type FastMap<K, V> = foldhash::HashMap<K, V>;

/// `xmin` of a version whose commit failed to reach the WAL: never visible.
pub const ABORTED: u64 = u64::MAX;

/// Rows per Arrow chunk built from in-memory versions.
pub const CHUNK_ROWS: usize = 8192;

#[derive(Debug, Clone)]
pub struct Version {
    pub rowid: u64,
    pub xmin: u64,
    pub xmax: u64,
    pub row: Row,
}

impl Version {
    #[inline]
    pub fn visible_at(&self, read_ts: u64) -> bool {
        self.xmin <= read_ts && (self.xmax == 0 || self.xmax > read_ts)
    }
    /// Live in the newest state (including commits still waiting for their fsync).
    #[inline]
    pub fn live(&self) -> bool {
        self.xmax == 0 && self.xmin != ABORTED
    }
}

/// Min/max/null-count statistics of one column over the base's row groups (one entry per group).
#[derive(Debug, Clone)]
pub struct ColumnStats {
    pub mins: ArrayRef,
    pub maxes: ArrayRef,
    pub null_counts: UInt64Array,
}

/// The checkpointed rows of a table, column-major, as read from its Parquet snapshot.
#[derive(Debug)]
pub struct BaseSegment {
    /// The checkpoint timestamp: `xmin` of every row here.
    pub ts: u64,
    /// One batch per Parquet row group; column 0 is `__rowid`, ascending across all groups.
    pub groups: Vec<RecordBatch>,
    /// Physical column position -> column index in the batches.
    pub columns: HashMap<usize, usize>,
    /// Statistics per physical column position, from the Parquet row-group metadata.
    pub stats: HashMap<usize, ColumnStats>,
    first_rowids: Vec<u64>,
}

impl BaseSegment {
    pub fn new(
        ts: u64,
        groups: Vec<RecordBatch>,
        columns: HashMap<usize, usize>,
        stats: HashMap<usize, ColumnStats>,
    ) -> Result<BaseSegment> {
        let mut first_rowids = Vec::with_capacity(groups.len());
        let mut last: Option<u64> = None;
        for g in &groups {
            let ids = rowid_array(g)?;
            if ids.null_count() > 0 {
                return Err(Error::Internal("snapshot row ids contain NULL".into()));
            }
            first_rowids.push(if ids.is_empty() { last.map_or(0, |l| l + 1) } else { ids.value(0) });
            for &r in ids.values() {
                if last.is_some_and(|l| l >= r) {
                    return Err(Error::Internal("snapshot row ids are not ascending".into()));
                }
                last = Some(r);
            }
        }
        Ok(BaseSegment { ts, groups, columns, stats, first_rowids })
    }

    pub fn rows(&self) -> usize {
        self.groups.iter().map(|g| g.num_rows()).sum()
    }

    fn rowids(&self, g: usize) -> &UInt64Array {
        rowid_array(&self.groups[g]).expect("checked in BaseSegment::new")
    }

    /// (group, row) of `rowid`, if it is in the base.
    fn locate(&self, rowid: u64) -> Option<(usize, usize)> {
        let g = self.first_rowids.partition_point(|&f| f <= rowid).checked_sub(1)?;
        let ids = self.rowids(g).values();
        ids.binary_search(&rowid).ok().map(|i| (g, i))
    }

    /// The column of physical position `pos` in group `g`, or `None` if the base predates it.
    fn column(&self, g: usize, pos: usize) -> Option<&ArrayRef> {
        self.columns.get(&pos).map(|&c| self.groups[g].column(c))
    }

    /// Row `i` of group `g` at the table's full physical width.
    fn row(&self, def: &TableDef, g: usize, i: usize) -> Row {
        let mut out = Vec::with_capacity(def.columns.len());
        for (pos, c) in def.columns.iter().enumerate() {
            let v = if c.dropped {
                Value::Null
            } else {
                match self.column(g, pos) {
                    Some(col) => values_from_column(&c.data_type, &col.slice(i, 1))
                        .ok()
                        .and_then(|mut v| v.pop())
                        .unwrap_or(Value::Null),
                    None => c.missing.clone(),
                }
            };
            out.push(v);
        }
        Row::from(out)
    }

    /// Values of physical column `pos` in group `g` (the default for a column added later).
    fn values(&self, def: &TableDef, g: usize, pos: usize) -> Vec<Value> {
        let c = &def.columns[pos];
        match self.column(g, pos) {
            Some(col) => values_from_column(&c.data_type, col).unwrap_or_else(|_| vec![Value::Null; col.len()]),
            None => vec![c.missing.clone(); self.groups[g].num_rows()],
        }
    }
}

fn rowid_array(batch: &RecordBatch) -> Result<&UInt64Array> {
    batch
        .columns()
        .first()
        .and_then(|c| c.as_any().downcast_ref::<UInt64Array>())
        .ok_or_else(|| Error::Internal("snapshot batch lacks a UInt64 __rowid column".into()))
}

#[derive(Debug)]
struct HashIndex {
    id: u64,
    columns: Vec<usize>,
    map: FastMap<Vec<u8>, Vec<u64>>,
}

/// Encodes the key of `row` on `columns`; `None` if any key column is NULL (NULLs never collide).
pub fn index_key(row: &[Value], columns: &[usize], def: &TableDef) -> Option<Vec<u8>> {
    let mut key = Vec::with_capacity(16);
    for &c in columns {
        let v = row.get(c).unwrap_or(&def.columns[c].missing);
        if v.is_null() {
            return None;
        }
        v.encode_key(&mut key);
    }
    Some(key)
}

#[derive(Debug, Clone, Copy)]
enum Loc {
    Base(usize, usize),
    Delta(usize),
}

#[derive(Debug, Default)]
struct TableData {
    base: Option<Arc<BaseSegment>>,
    /// `xmax` of every base row, per group.
    base_xmax: Vec<Vec<u64>>,
    base_dead: usize,
    versions: Vec<Version>,
    by_rowid: FastMap<u64, usize>,
    indexes: Vec<HashIndex>,
    dead: usize,
}

impl TableData {
    fn locate(&self, rowid: u64) -> Option<Loc> {
        if let Some(&s) = self.by_rowid.get(&rowid) {
            return Some(Loc::Delta(s));
        }
        self.base.as_ref()?.locate(rowid).map(|(g, i)| Loc::Base(g, i))
    }

    fn version(&self, def: &TableDef, loc: Loc) -> Version {
        match loc {
            Loc::Delta(s) => self.versions[s].clone(),
            Loc::Base(g, i) => {
                let base = self.base.as_ref().expect("located in the base");
                Version {
                    rowid: base.rowids(g).value(i),
                    xmin: base.ts,
                    xmax: self.base_xmax[g][i],
                    row: base.row(def, g, i),
                }
            }
        }
    }

    fn xmax(&self, loc: Loc) -> u64 {
        match loc {
            Loc::Delta(s) => self.versions[s].xmax,
            Loc::Base(g, i) => self.base_xmax[g][i],
        }
    }

    fn xmax_mut(&mut self, loc: Loc) -> &mut u64 {
        match loc {
            Loc::Delta(s) => &mut self.versions[s].xmax,
            Loc::Base(g, i) => &mut self.base_xmax[g][i],
        }
    }

    /// Builds the map of one index over base rows kept by `keep_base` and versions kept by
    /// `keep_version`.
    fn build_index(
        &self,
        def: &TableDef,
        columns: &[usize],
        keep_base: impl Fn(u64) -> bool,
    ) -> FastMap<Vec<u8>, Vec<u64>> {
        let mut map: FastMap<Vec<u8>, Vec<u64>> = FastMap::default();
        if let Some(base) = &self.base {
            for g in 0..base.groups.len() {
                let cols: Vec<(usize, Vec<Value>)> = columns.iter().map(|&c| (c, base.values(def, g, c))).collect();
                let ids = base.rowids(g);
                let mut row = vec![Value::Null; def.columns.len()];
                for i in 0..ids.len() {
                    if !keep_base(self.base_xmax[g][i]) {
                        continue;
                    }
                    for (c, vals) in &cols {
                        row[*c] = vals[i].clone();
                    }
                    if let Some(k) = index_key(&row, columns, def) {
                        map.entry(k).or_default().push(ids.value(i));
                    }
                }
            }
        }
        for v in &self.versions {
            if let Some(k) = index_key(&v.row, columns, def) {
                map.entry(k).or_default().push(v.rowid);
            }
        }
        map
    }

    fn rebuild_indexes(&mut self, def: &TableDef, keep_base: impl Fn(u64) -> bool + Copy) {
        let maps: Vec<_> = self.indexes.iter().map(|i| self.build_index(def, &i.columns, keep_base)).collect();
        for (idx, map) in self.indexes.iter_mut().zip(maps) {
            idx.map = map;
        }
    }

    fn live_estimate(&self) -> u64 {
        let base = self.base.as_ref().map_or(0, |b| b.rows());
        (base + self.versions.len()).saturating_sub(self.base_dead + self.dead) as u64
    }
}

/// What [`TableStore::scan_columns`] reads.
pub struct ScanSpec<'a> {
    pub read_ts: u64,
    /// Physical column positions to return; `None` stands for the row id (UInt64).
    pub columns: &'a [Option<usize>],
    /// Row ids to leave out (deleted by the reading transaction itself).
    pub skip: Option<&'a (dyn Fn(u64) -> bool + Sync)>,
    /// Which base row groups may hold matching rows (`false` = skip the group).
    pub prune: Option<&'a (dyn Fn(&BaseSegment) -> Vec<bool> + Sync)>,
    /// Stop after this many rows.
    pub limit: usize,
}

/// A chunk of a scan: its row count and one array per requested column.
pub type Chunk = (usize, Vec<ArrayRef>);

#[derive(Debug)]
pub struct TableStore {
    pub id: u64,
    data: RwLock<TableData>,
    pub row_count_estimate: AtomicU64,
    pub groups_pruned: AtomicU64,
}

impl TableStore {
    pub fn new(def: &TableDef) -> TableStore {
        let store = TableStore {
            id: def.id,
            data: RwLock::new(TableData::default()),
            row_count_estimate: AtomicU64::new(0),
            groups_pruned: AtomicU64::new(0),
        };
        store.sync_indexes(def);
        store
    }

    /// Makes the store's indexes match the definition (after CREATE/DROP INDEX).
    pub fn sync_indexes(&self, def: &TableDef) {
        let mut d = self.data.write();
        d.indexes.retain(|i| def.indexes.iter().any(|x| x.id == i.id));
        for idx in &def.indexes {
            if d.indexes.iter().any(|i| i.id == idx.id) {
                continue;
            }
            let map = d.build_index(def, &idx.columns, |_| true);
            d.indexes.push(HashIndex { id: idx.id, columns: idx.columns.clone(), map });
        }
        // Keep the order of the definition so positions match.
        let order: Vec<u64> = def.indexes.iter().map(|i| i.id).collect();
        d.indexes.sort_by_key(|i| order.iter().position(|&x| x == i.id));
    }

    /// Installs `base` as the checkpointed rows of the table. The caller guarantees that no
    /// snapshot older than `base.ts` is still in use: versions created at or before it are
    /// either in `base` or invisible to every remaining reader, and are dropped.
    pub fn replace_base(&self, def: &TableDef, base: BaseSegment) {
        let mut d = self.data.write();
        let ts = base.ts;
        let mut xmax = Vec::with_capacity(base.groups.len());
        let mut base_dead = 0;
        for g in 0..base.groups.len() {
            let ids = base.rowids(g);
            let mut col = Vec::with_capacity(ids.len());
            for &r in ids.values() {
                // Deletions committed (or pending) after the checkpoint carry over.
                let x = d.locate(r).map_or(0, |loc| d.xmax(loc));
                let x = if x != 0 && x <= ts { 0 } else { x };
                base_dead += usize::from(x != 0);
                col.push(x);
            }
            xmax.push(col);
        }
        let rows_before = d.base.as_ref().map_or(0, |b| b.rows()) + d.versions.len();
        d.versions.retain(|v| v.xmin > ts && v.xmin != ABORTED);
        d.by_rowid = d.versions.iter().enumerate().map(|(s, v)| (v.rowid, s)).collect();
        d.dead = d.versions.iter().filter(|v| v.xmax != 0).count();
        // The new base holds the rows live at `ts` and the kept versions those written after it,
        // all of them row ids the store already had; if as many remain as there were, no row id
        // left and the index maps (keyed to row ids, not locations) are still exact. A bulk load
        // with checkpoints in between then never rebuilds its indexes.
        let rows_after = base.rows() + d.versions.len();
        d.base = Some(Arc::new(base));
        d.base_xmax = xmax;
        d.base_dead = base_dead;
        if rows_after != rows_before {
            d.rebuild_indexes(def, |_| true);
        }
        self.row_count_estimate.store(d.live_estimate(), Ordering::Relaxed);
    }

    /// Calls `f` for every row visible at `read_ts`, as rows (base rows are converted).
    pub fn for_each_visible(&self, def: &TableDef, read_ts: u64, mut f: impl FnMut(u64, &Row)) {
        let d = self.data.read();
        if let Some(base) = &d.base
            && base.ts <= read_ts
        {
            for g in 0..base.groups.len() {
                let ids = base.rowids(g);
                for i in 0..ids.len() {
                    let x = d.base_xmax[g][i];
                    if x == 0 || x > read_ts {
                        f(ids.value(i), &base.row(def, g, i));
                    }
                }
            }
        }
        for v in &d.versions {
            if v.visible_at(read_ts) {
                f(v.rowid, &v.row);
            }
        }
    }

    /// Calls `f` for every live row (in the newest state, commits still waiting for their fsync
    /// included) that was committed after `since`.
    pub fn for_each_live_since(&self, def: &TableDef, since: u64, mut f: impl FnMut(u64, &Row)) {
        let d = self.data.read();
        if let Some(base) = &d.base
            && base.ts > since
        {
            for g in 0..base.groups.len() {
                let ids = base.rowids(g);
                for i in 0..ids.len() {
                    if d.base_xmax[g][i] == 0 {
                        f(ids.value(i), &base.row(def, g, i));
                    }
                }
            }
        }
        for v in &d.versions {
            if v.xmin > since && v.live() {
                f(v.rowid, &v.row);
            }
        }
    }

    /// Reads the rows visible at `spec.read_ts` column by column: base row groups (after
    /// pruning) filtered by visibility, then the in-memory versions.
    pub fn scan_columns(&self, def: &TableDef, spec: &ScanSpec<'_>) -> Result<Vec<Chunk>> {
        // Under the lock: which base rows are visible, and the visible versions.
        let (base, masks, rows) = {
            let d = self.data.read();
            let mut masks: Vec<Option<BooleanArray>> = Vec::new();
            let base = d.base.clone().filter(|b| b.ts <= spec.read_ts);
            if let Some(base) = &base {
                let keep = spec.prune.map(|p| p(base));
                for g in 0..base.groups.len() {
                    if keep.as_ref().is_some_and(|k| !k.get(g).copied().unwrap_or(true)) {
                        self.groups_pruned.fetch_add(1, Ordering::Relaxed);
                        masks.push(None);
                        continue;
                    }
                    let ids = base.rowids(g).values();
                    let xs = &d.base_xmax[g];
                    let mask: BooleanArray = (0..ids.len())
                        .map(|i| Some((xs[i] == 0 || xs[i] > spec.read_ts) && !spec.skip.is_some_and(|s| s(ids[i]))))
                        .collect();
                    masks.push(Some(mask));
                }
            }
            let mut rows: Vec<(u64, Row)> = Vec::new();
            for v in &d.versions {
                if v.visible_at(spec.read_ts) && !spec.skip.is_some_and(|s| s(v.rowid)) {
                    rows.push((v.rowid, v.row.clone()));
                }
            }
            (base, masks, rows)
        };
        let mut out: Vec<Chunk> = Vec::new();
        let mut left = spec.limit;
        if let Some(base) = &base {
            for (g, mask) in masks.iter().enumerate() {
                if left == 0 {
                    break;
                }
                let Some(mask) = mask else { continue };
                let visible = mask.true_count();
                if visible == 0 {
                    continue;
                }
                let all = visible == mask.len();
                let mut cols = Vec::with_capacity(spec.columns.len());
                for c in spec.columns {
                    let col: ArrayRef = match c {
                        None => base.groups[g].column(0).clone(),
                        Some(pos) => match base.column(g, *pos) {
                            Some(col) => col.clone(),
                            None => {
                                let c = &def.columns[*pos];
                                column_from_values(&c.data_type, std::iter::repeat_n(&c.missing, mask.len()))?
                            }
                        },
                    };
                    cols.push(if all { col } else { filter(&col, mask).map_err(arrow_err)? });
                }
                let (n, cols) = truncate_chunk(visible, cols, left);
                left -= n;
                out.push((n, cols));
            }
        }
        for chunk in rows.chunks(CHUNK_ROWS) {
            if left == 0 {
                break;
            }
            let chunk = &chunk[..chunk.len().min(left)];
            left -= chunk.len();
            out.push((chunk.len(), columns_from_rows(def, spec.columns, chunk)?));
        }
        Ok(out)
    }

    /// Versions carrying `key` in index `index_id` (any visibility).
    pub fn lookup(&self, def: &TableDef, index_id: u64, key: &[u8]) -> Vec<Version> {
        let d = self.data.read();
        let Some(idx) = d.indexes.iter().find(|i| i.id == index_id) else {
            return vec![];
        };
        match idx.map.get(key) {
            Some(ids) => ids.iter().filter_map(|&r| d.locate(r).map(|loc| d.version(def, loc))).collect(),
            None => vec![],
        }
    }

    pub fn has_index(&self, index_id: u64) -> bool {
        self.data.read().indexes.iter().any(|i| i.id == index_id)
    }

    pub fn version(&self, def: &TableDef, rowid: u64) -> Option<Version> {
        let d = self.data.read();
        d.locate(rowid).map(|loc| d.version(def, loc))
    }

    /// `xmax` of each row id (`None` if unknown), read under one lock.
    pub fn xmaxes(&self, rowids: impl Iterator<Item = u64>) -> Vec<(u64, Option<u64>)> {
        let d = self.data.read();
        rowids.map(|r| (r, d.locate(r).map(|loc| d.xmax(loc)))).collect()
    }

    /// Installs a commit: new versions with `xmin = ts`, and `xmax = ts` on deleted ones.
    ///
    /// `horizon` is the oldest snapshot anyone may still read at: an index entry that gets a new
    /// row id also drops the row ids of versions deleted at or before it (no snapshot sees them),
    /// so a hot key's list stays short between vacuums instead of growing with every update.
    pub fn install(&self, def: &TableDef, inserts: &[(u64, Row)], deletes: &[u64], ts: u64, horizon: u64) {
        let mut d = self.data.write();
        for &r in deletes {
            if let Some(loc) = d.locate(r) {
                *d.xmax_mut(loc) = ts;
                match loc {
                    Loc::Delta(_) => d.dead += 1,
                    Loc::Base(..) => d.base_dead += 1,
                }
            }
        }
        d.versions.reserve(inserts.len());
        d.by_rowid.reserve(inserts.len());
        for idx in &mut d.indexes {
            idx.map.reserve(inserts.len());
        }
        for (rowid, row) in inserts {
            let slot = d.versions.len();
            d.versions.push(Version { rowid: *rowid, xmin: ts, xmax: 0, row: row.clone() });
            d.by_rowid.insert(*rowid, slot);
            for i in 0..d.indexes.len() {
                if let Some(k) = index_key(row, &d.indexes[i].columns, def) {
                    match d.indexes[i].map.get_mut(&k) {
                        None => {
                            d.indexes[i].map.insert(k, vec![*rowid]);
                            continue;
                        }
                        Some(ids) if ids.len() < 4 => {
                            ids.push(*rowid);
                            continue;
                        }
                        Some(_) => {}
                    }
                    let mut ids = d.indexes[i].map.remove(&k).unwrap_or_default();
                    if ids.len() >= 4 {
                        ids.retain(|r| {
                            d.locate(*r).is_some_and(|loc| {
                                let x = d.xmax(loc);
                                x == 0 || x > horizon
                            })
                        });
                    }
                    ids.push(*rowid);
                    d.indexes[i].map.insert(k, ids);
                }
            }
        }
        self.row_count_estimate.store(d.live_estimate(), Ordering::Relaxed);
    }

    /// Reverts [`install`](Self::install) of commit `ts` whose record never became durable.
    pub fn undo(&self, inserts: &[u64], deletes: &[u64], ts: u64) {
        let mut d = self.data.write();
        for &r in deletes {
            if let Some(loc) = d.locate(r)
                && d.xmax(loc) == ts
            {
                *d.xmax_mut(loc) = 0;
                match loc {
                    Loc::Delta(_) => d.dead -= 1,
                    Loc::Base(..) => d.base_dead -= 1,
                }
            }
        }
        for r in inserts {
            if let Some(&s) = d.by_rowid.get(r) {
                d.versions[s].xmin = ABORTED;
                d.dead += 1;
            }
        }
    }

    /// Drops versions no snapshot at or after `horizon` can see. Returns how many were dropped.
    /// Dead base rows stay until the next checkpoint replaces the base.
    pub fn vacuum(&self, horizon: u64, def: &TableDef) -> usize {
        let mut d = self.data.write();
        if d.dead == 0 {
            return 0;
        }
        let before = d.versions.len();
        d.versions.retain(|v| v.xmin != ABORTED && (v.xmax == 0 || v.xmax > horizon));
        let removed = before - d.versions.len();
        if removed == 0 {
            return 0;
        }
        d.dead = d.versions.iter().filter(|v| v.xmax != 0).count();
        d.by_rowid = d.versions.iter().enumerate().map(|(s, v)| (v.rowid, s)).collect();
        d.rebuild_indexes(def, |x| x == 0 || x > horizon);
        removed
    }

    /// Number of in-memory versions held (live and dead), for metrics and tests.
    pub fn version_count(&self) -> usize {
        self.data.read().versions.len()
    }

    /// Number of rows in the columnar base.
    pub fn base_rows(&self) -> usize {
        self.data.read().base.as_ref().map_or(0, |b| b.rows())
    }

    /// Largest integer in column `col` over every row (to resume identity sequences).
    pub fn max_int(&self, def: &TableDef, col: usize) -> Option<i64> {
        let d = self.data.read();
        let as_int = |v: &Value| match v {
            Value::Int16(x) => Some(*x as i64),
            Value::Int32(x) => Some(*x as i64),
            Value::Int64(x) => Some(*x),
            _ => None,
        };
        let mut max = d.versions.iter().filter_map(|v| v.row.get(col).and_then(as_int)).max();
        if let Some(base) = &d.base {
            for g in 0..base.groups.len() {
                max = max.max(base.values(def, g, col).iter().filter_map(as_int).max());
            }
        }
        max
    }

    pub fn max_rowid(&self) -> Option<u64> {
        let d = self.data.read();
        let base_max = d.base.as_ref().and_then(|b| {
            b.groups.iter().rev().find_map(|g| rowid_array(g).ok().and_then(|ids| ids.values().last().copied()))
        });
        d.versions.iter().map(|v| v.rowid).max().max(base_max)
    }
}

fn arrow_err(e: arrow::error::ArrowError) -> Error {
    Error::Internal(format!("scan: {e}"))
}

fn truncate_chunk(n: usize, cols: Vec<ArrayRef>, limit: usize) -> (usize, Vec<ArrayRef>) {
    if n <= limit {
        return (n, cols);
    }
    (limit, cols.into_iter().map(|c| c.slice(0, limit)).collect())
}

/// Builds one array per requested column (`None` = row id) from rows of the table.
pub fn columns_from_rows(def: &TableDef, columns: &[Option<usize>], rows: &[(u64, Row)]) -> Result<Vec<ArrayRef>> {
    columns
        .iter()
        .map(|c| match c {
            Some(pos) => {
                let col = &def.columns[*pos];
                column_from_values(&col.data_type, rows.iter().map(|(_, r)| r.get(*pos).unwrap_or(&col.missing)))
            }
            None => Ok(Arc::new(UInt64Array::from_iter_values(rows.iter().map(|(r, _)| *r))) as ArrayRef),
        })
        .collect()
}
