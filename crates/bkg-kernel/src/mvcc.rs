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

/// A row with these `xmin`/`xmax` is visible to a snapshot at `read_ts`.
#[inline]
pub fn visible(xmin: u64, xmax: u64, read_ts: u64) -> bool {
    xmin <= read_ts && (xmax == 0 || xmax > read_ts)
}

/// A row with these `xmin`/`xmax` is live in the newest state (including commits still waiting
/// for their fsync).
#[inline]
pub fn live(xmin: u64, xmax: u64) -> bool {
    xmax == 0 && xmin != ABORTED
}

impl Version {
    #[inline]
    pub fn visible_at(&self, read_ts: u64) -> bool {
        visible(self.xmin, self.xmax, read_ts)
    }
    /// Live in the newest state (including commits still waiting for their fsync).
    #[inline]
    pub fn live(&self) -> bool {
        live(self.xmin, self.xmax)
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

    pub fn rowids(&self, g: usize) -> &UInt64Array {
        rowid_array(&self.groups[g]).expect("checked in BaseSegment::new")
    }

    /// (group, row) of `rowid`, if it is in the base.
    pub(crate) fn locate(&self, rowid: u64) -> Option<(usize, usize)> {
        let g = self.first_rowids.partition_point(|&f| f <= rowid).checked_sub(1)?;
        let ids = self.rowids(g).values();
        ids.binary_search(&rowid).ok().map(|i| (g, i))
    }

    /// The column of physical position `pos` in group `g`, or `None` if the base predates it.
    fn column(&self, g: usize, pos: usize) -> Option<&ArrayRef> {
        self.columns.get(&pos).map(|&c| self.groups[g].column(c))
    }

    /// Row `i` of group `g` at the table's full physical width.
    pub(crate) fn row(&self, def: &TableDef, g: usize, i: usize) -> Row {
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

    /// Every row of group `g` with its row id, at the table's full physical width.
    pub(crate) fn group_rows(&self, def: &TableDef, g: usize) -> Vec<(u64, Row)> {
        let ids = self.rowids(g);
        let cols: Vec<Vec<Value>> = (0..def.columns.len())
            .map(|p| if def.columns[p].dropped { vec![Value::Null; ids.len()] } else { self.values(def, g, p) })
            .collect();
        (0..ids.len()).map(|i| (ids.value(i), cols.iter().map(|c| c[i].clone()).collect::<Row>())).collect()
    }

    /// Values of physical column `pos` in group `g` (the default for a column added later).
    pub(crate) fn values(&self, def: &TableDef, g: usize, pos: usize) -> Vec<Value> {
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

/// Encodes a key from its values in index column order; `None` if any is NULL (NULLs never
/// collide).
pub fn encode_key<'a>(values: impl IntoIterator<Item = &'a Value>) -> Option<Vec<u8>> {
    let mut key = Vec::with_capacity(16);
    for v in values {
        if v.is_null() {
            return None;
        }
        v.encode_key(&mut key);
    }
    Some(key)
}

/// Encodes the key of `row` on `columns` (see [`encode_key`]).
pub fn index_key(row: &[Value], columns: &[usize], def: &TableDef) -> Option<Vec<u8>> {
    encode_key(columns.iter().map(|&c| row.get(c).unwrap_or(&def.columns[c].missing)))
}

/// Encodes the keys of every row of group `g` of `seg` on `columns` (`None` where a key column
/// is NULL), reading only the key columns.
pub fn segment_keys(seg: &BaseSegment, def: &TableDef, g: usize, columns: &[usize]) -> Vec<Option<Vec<u8>>> {
    let cols: Vec<Vec<Value>> = columns.iter().map(|&c| seg.values(def, g, c)).collect();
    (0..seg.groups[g].num_rows()).map(|i| encode_key(cols.iter().map(|c| &c[i]))).collect()
}

/// Columnar rows of a table: the checkpoint base, or the rows one bulk insert committed after it.
#[derive(Debug)]
struct Seg {
    /// `xmin` of every row: the checkpoint timestamp for the base, the commit's for a bulk
    /// insert ([`ABORTED`] once its commit failed).
    xmin: u64,
    data: Arc<BaseSegment>,
    /// `xmax` of every row, per group.
    xmax: Vec<Vec<u64>>,
    /// Lowest and highest row id (`lo > hi` when empty).
    lo: u64,
    hi: u64,
    /// The checkpoint base (as opposed to a bulk insert since).
    checkpoint: bool,
}

impl Seg {
    fn new(data: Arc<BaseSegment>, xmin: u64, xmax: Vec<Vec<u64>>, checkpoint: bool) -> Seg {
        let lo = data.first_rowids.first().copied().unwrap_or(1);
        let hi = data
            .groups
            .iter()
            .rev()
            .find_map(|g| rowid_array(g).ok().and_then(|ids| ids.values().last().copied()))
            .unwrap_or(0);
        Seg { xmin, data, xmax, lo, hi, checkpoint }
    }

    fn rows(&self) -> usize {
        self.data.rows()
    }

    fn dead(&self) -> usize {
        self.xmax.iter().flatten().filter(|&&x| x != 0).count()
    }
}

#[derive(Debug, Clone, Copy)]
enum Loc {
    /// (segment, group, row)
    Seg(usize, usize, usize),
    Delta(usize),
}

#[derive(Debug, Default)]
struct TableData {
    /// The checkpoint base (first, if there is one), then bulk inserts in commit order.
    segs: Vec<Seg>,
    /// Segment rows with an `xmax`.
    seg_dead: usize,
    /// Segments whose commit failed (dropped by the next vacuum).
    aborted_segs: usize,
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
        self.segs.iter().enumerate().find_map(|(s, seg)| {
            if rowid < seg.lo || rowid > seg.hi {
                return None;
            }
            seg.data.locate(rowid).map(|(g, i)| Loc::Seg(s, g, i))
        })
    }

    fn version(&self, def: &TableDef, loc: Loc) -> Version {
        match loc {
            Loc::Delta(s) => self.versions[s].clone(),
            Loc::Seg(s, g, i) => {
                let seg = &self.segs[s];
                Version {
                    rowid: seg.data.rowids(g).value(i),
                    xmin: seg.xmin,
                    xmax: seg.xmax[g][i],
                    row: seg.data.row(def, g, i),
                }
            }
        }
    }

    fn xmin(&self, loc: Loc) -> u64 {
        match loc {
            Loc::Delta(s) => self.versions[s].xmin,
            Loc::Seg(s, ..) => self.segs[s].xmin,
        }
    }

    fn xmax(&self, loc: Loc) -> u64 {
        match loc {
            Loc::Delta(s) => self.versions[s].xmax,
            Loc::Seg(s, g, i) => self.segs[s].xmax[g][i],
        }
    }

    fn xmax_mut(&mut self, loc: Loc) -> &mut u64 {
        match loc {
            Loc::Delta(s) => &mut self.versions[s].xmax,
            Loc::Seg(s, g, i) => &mut self.segs[s].xmax[g][i],
        }
    }

    /// Builds the map of one index over segment rows kept by `keep_seg` (given their `xmax`)
    /// and all versions.
    fn build_index(
        &self,
        def: &TableDef,
        columns: &[usize],
        keep_seg: impl Fn(u64) -> bool,
    ) -> FastMap<Vec<u8>, Vec<u64>> {
        let mut map: FastMap<Vec<u8>, Vec<u64>> = FastMap::default();
        for seg in self.segs.iter().filter(|s| s.xmin != ABORTED) {
            for g in 0..seg.data.groups.len() {
                let keys = segment_keys(&seg.data, def, g, columns);
                let ids = seg.data.rowids(g);
                for (i, k) in keys.into_iter().enumerate() {
                    if let Some(k) = k
                        && keep_seg(seg.xmax[g][i])
                    {
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

    fn rebuild_indexes(&mut self, def: &TableDef, keep_seg: impl Fn(u64) -> bool + Copy) {
        let maps: Vec<_> = self.indexes.iter().map(|i| self.build_index(def, &i.columns, keep_seg)).collect();
        for (idx, map) in self.indexes.iter_mut().zip(maps) {
            idx.map = map;
        }
    }

    /// Adds `rowid` under `key` to index `i`. A key's list that grows past a few entries first
    /// drops row ids no snapshot at or after `horizon` can see.
    fn index_insert(&mut self, i: usize, key: Vec<u8>, rowid: u64, horizon: u64) {
        match self.indexes[i].map.get_mut(&key) {
            None => {
                self.indexes[i].map.insert(key, vec![rowid]);
                return;
            }
            Some(ids) if ids.len() < 4 => {
                ids.push(rowid);
                return;
            }
            Some(_) => {}
        }
        let mut ids = self.indexes[i].map.remove(&key).unwrap_or_default();
        ids.retain(|r| {
            self.locate(*r).is_some_and(|loc| {
                let x = self.xmax(loc);
                x == 0 || x > horizon
            })
        });
        ids.push(rowid);
        self.indexes[i].map.insert(key, ids);
    }

    fn live_estimate(&self) -> u64 {
        let segs: usize = self.segs.iter().filter(|s| s.xmin != ABORTED).map(|s| s.rows()).sum();
        (segs + self.versions.len()).saturating_sub(self.seg_dead + self.dead) as u64
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

/// The columns of group `g` of `seg` that `columns` asks for (`None` = row ids), at full length.
pub fn segment_columns(
    def: &TableDef,
    seg: &BaseSegment,
    g: usize,
    columns: &[Option<usize>],
) -> Result<Vec<ArrayRef>> {
    let n = seg.groups[g].num_rows();
    columns
        .iter()
        .map(|c| match c {
            None => Ok(seg.groups[g].column(0).clone()),
            Some(pos) => match seg.column(g, *pos) {
                Some(col) => Ok(col.clone()),
                None => {
                    let c = &def.columns[*pos];
                    column_from_values(&c.data_type, std::iter::repeat_n(&c.missing, n))
                }
            },
        })
        .collect()
}

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
    /// snapshot older than `base.ts` is still in use: versions and bulk inserts committed at or
    /// before it are either in `base` or invisible to every remaining reader, and are dropped.
    pub fn replace_base(&self, def: &TableDef, base: BaseSegment) {
        let mut d = self.data.write();
        let ts = base.ts;
        // Deletions committed (or pending) after the checkpoint carry over to the new base.
        let mut deleted: FastMap<u64, u64> = FastMap::default();
        for seg in &d.segs {
            for (g, xs) in seg.xmax.iter().enumerate() {
                for (i, &x) in xs.iter().enumerate() {
                    if x > ts {
                        deleted.insert(seg.data.rowids(g).value(i), x);
                    }
                }
            }
        }
        for v in d.versions.iter().filter(|v| v.xmax > ts) {
            deleted.insert(v.rowid, v.xmax);
        }
        let mut xmax = Vec::with_capacity(base.groups.len());
        for g in 0..base.groups.len() {
            let ids = base.rowids(g);
            xmax.push(if deleted.is_empty() {
                vec![0; ids.len()]
            } else {
                ids.values().iter().map(|r| deleted.get(r).copied().unwrap_or(0)).collect()
            });
        }
        let rows_before = d.segs.iter().map(|s| s.rows()).sum::<usize>() + d.versions.len();
        d.versions.retain(|v| v.xmin > ts && v.xmin != ABORTED);
        d.by_rowid = d.versions.iter().enumerate().map(|(s, v)| (v.rowid, s)).collect();
        d.dead = d.versions.iter().filter(|v| v.xmax != 0).count();
        let kept: Vec<Seg> = std::mem::take(&mut d.segs)
            .into_iter()
            .filter(|s| !s.checkpoint && s.xmin > ts && s.xmin != ABORTED)
            .collect();
        let mut segs = vec![Seg::new(Arc::new(base), ts, xmax, true)];
        segs.extend(kept);
        d.segs = segs;
        d.seg_dead = d.segs.iter().map(|s| s.dead()).sum();
        d.aborted_segs = 0;
        // The new base holds the rows live at `ts`, the kept versions and bulk inserts those
        // written after it, all of them row ids the store already had; if as many remain as
        // there were, no row id left and the index maps (keyed to row ids, not locations) are
        // still exact. A bulk load with checkpoints in between then never rebuilds its indexes.
        let rows_after = d.segs.iter().map(|s| s.rows()).sum::<usize>() + d.versions.len();
        if rows_after != rows_before {
            d.rebuild_indexes(def, |_| true);
        }
        self.row_count_estimate.store(d.live_estimate(), Ordering::Relaxed);
    }

    /// Calls `f` for every row visible at `read_ts`, as rows (segment rows are converted).
    pub fn for_each_visible(&self, def: &TableDef, read_ts: u64, mut f: impl FnMut(u64, &Row)) {
        let d = self.data.read();
        for seg in d.segs.iter().filter(|s| s.xmin <= read_ts) {
            for g in 0..seg.data.groups.len() {
                let ids = seg.data.rowids(g);
                for i in 0..ids.len() {
                    let x = seg.xmax[g][i];
                    if x == 0 || x > read_ts {
                        f(ids.value(i), &seg.data.row(def, g, i));
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
        for seg in d.segs.iter().filter(|s| s.xmin > since && s.xmin != ABORTED) {
            for g in 0..seg.data.groups.len() {
                let ids = seg.data.rowids(g);
                for i in 0..ids.len() {
                    if seg.xmax[g][i] == 0 {
                        f(ids.value(i), &seg.data.row(def, g, i));
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

    /// Reads the rows visible at `spec.read_ts` column by column: segment row groups (after
    /// pruning) filtered by visibility, then the in-memory versions.
    pub fn scan_columns(&self, def: &TableDef, spec: &ScanSpec<'_>) -> Result<Vec<Chunk>> {
        // Under the lock: which segment rows are visible, and the visible versions.
        type Masks = Vec<Option<BooleanArray>>;
        let (segs, rows) = {
            let d = self.data.read();
            let mut segs: Vec<(Arc<BaseSegment>, Masks)> = Vec::new();
            for seg in d.segs.iter().filter(|s| s.xmin <= spec.read_ts) {
                let base = &seg.data;
                let keep = spec.prune.filter(|_| !base.stats.is_empty()).map(|p| p(base));
                let mut masks: Masks = Vec::with_capacity(base.groups.len());
                for g in 0..base.groups.len() {
                    if keep.as_ref().is_some_and(|k| !k.get(g).copied().unwrap_or(true)) {
                        self.groups_pruned.fetch_add(1, Ordering::Relaxed);
                        masks.push(None);
                        continue;
                    }
                    let ids = base.rowids(g).values();
                    let xs = &seg.xmax[g];
                    let mask: BooleanArray = (0..ids.len())
                        .map(|i| Some((xs[i] == 0 || xs[i] > spec.read_ts) && !spec.skip.is_some_and(|s| s(ids[i]))))
                        .collect();
                    masks.push(Some(mask));
                }
                segs.push((base.clone(), masks));
            }
            let mut rows: Vec<(u64, Row)> = Vec::new();
            for v in &d.versions {
                if v.visible_at(spec.read_ts) && !spec.skip.is_some_and(|s| s(v.rowid)) {
                    rows.push((v.rowid, v.row.clone()));
                }
            }
            (segs, rows)
        };
        let mut out: Vec<Chunk> = Vec::new();
        let mut left = spec.limit;
        for (base, masks) in &segs {
            for (g, mask) in masks.iter().enumerate() {
                if left == 0 {
                    break;
                }
                let Some(mask) = mask else { continue };
                let visible = mask.true_count();
                if visible == 0 {
                    continue;
                }
                let mut cols = segment_columns(def, base, g, spec.columns)?;
                if visible != mask.len() {
                    cols = cols.iter().map(|c| filter(c, mask).map_err(arrow_err)).collect::<Result<_>>()?;
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

    /// The first of `keys` (in order) that a row in index `index_id` carries and `hit` accepts,
    /// given that row's id, `xmin` and `xmax`: its position in `keys` and the row id. One lock
    /// for all keys, and no row is built.
    pub fn first_key_hit<'k>(
        &self,
        index_id: u64,
        keys: impl Iterator<Item = Option<&'k [u8]>>,
        hit: impl Fn(u64, u64, u64) -> bool,
    ) -> Option<(usize, u64)> {
        let d = self.data.read();
        let idx = d.indexes.iter().find(|i| i.id == index_id)?;
        if idx.map.is_empty() {
            return None;
        }
        for (pos, key) in keys.enumerate() {
            let Some(ids) = key.and_then(|k| idx.map.get(k)) else { continue };
            for &r in ids {
                if let Some(loc) = d.locate(r)
                    && hit(r, d.xmin(loc), d.xmax(loc))
                {
                    return Some((pos, r));
                }
            }
        }
        None
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

    /// Installs a commit: new versions with `xmin = ts`, new column segments (bulk inserts)
    /// with `xmin = ts`, and `xmax = ts` on deleted rows.
    ///
    /// `horizon` is the oldest snapshot anyone may still read at: an index entry that gets a new
    /// row id also drops the row ids of versions deleted at or before it (no snapshot sees them),
    /// so a hot key's list stays short between vacuums instead of growing with every update.
    pub fn install(
        &self,
        def: &TableDef,
        inserts: &[(u64, Row)],
        segments: &[Arc<BaseSegment>],
        deletes: &[u64],
        ts: u64,
        horizon: u64,
    ) {
        // Keys of the segments' rows are encoded before the lock is taken.
        let index_columns: Vec<Vec<usize>> = self.data.read().indexes.iter().map(|i| i.columns.clone()).collect();
        type GroupKeys = Vec<Vec<Option<Vec<u8>>>>; // per index, per row
        let seg_keys: Vec<Vec<GroupKeys>> = segments
            .iter()
            .map(|s| {
                (0..s.groups.len())
                    .map(|g| index_columns.iter().map(|cols| segment_keys(s, def, g, cols)).collect())
                    .collect()
            })
            .collect();
        let mut d = self.data.write();
        for &r in deletes {
            if let Some(loc) = d.locate(r) {
                *d.xmax_mut(loc) = ts;
                match loc {
                    Loc::Delta(_) => d.dead += 1,
                    Loc::Seg(..) => d.seg_dead += 1,
                }
            }
        }
        d.versions.reserve(inserts.len());
        d.by_rowid.reserve(inserts.len());
        let seg_rows: usize = segments.iter().map(|s| s.rows()).sum();
        for idx in &mut d.indexes {
            idx.map.reserve(inserts.len() + seg_rows);
        }
        let nidx = d.indexes.len().min(index_columns.len());
        for (seg, keys) in segments.iter().zip(seg_keys) {
            // The segment goes in first: pruning a key's list must find the rows it holds.
            let xmax = seg.groups.iter().map(|g| vec![0; g.num_rows()]).collect();
            d.segs.push(Seg::new(seg.clone(), ts, xmax, false));
            for (g, per_index) in keys.into_iter().enumerate() {
                let ids = seg.rowids(g).values().clone();
                for (i, keys) in per_index.into_iter().enumerate().take(nidx) {
                    for (row, key) in keys.into_iter().enumerate() {
                        if let Some(key) = key {
                            d.index_insert(i, key, ids[row], horizon);
                        }
                    }
                }
            }
        }
        for (rowid, row) in inserts {
            let slot = d.versions.len();
            d.versions.push(Version { rowid: *rowid, xmin: ts, xmax: 0, row: row.clone() });
            d.by_rowid.insert(*rowid, slot);
            for i in 0..d.indexes.len() {
                if let Some(k) = index_key(row, &d.indexes[i].columns, def) {
                    d.index_insert(i, k, *rowid, horizon);
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
                    Loc::Seg(..) => d.seg_dead -= 1,
                }
            }
        }
        for r in inserts {
            if let Some(&s) = d.by_rowid.get(r) {
                d.versions[s].xmin = ABORTED;
                d.dead += 1;
            }
        }
        let mut aborted = 0;
        for seg in d.segs.iter_mut().filter(|s| !s.checkpoint && s.xmin == ts) {
            seg.xmin = ABORTED;
            aborted += 1;
        }
        d.aborted_segs += aborted;
        self.row_count_estimate.store(d.live_estimate(), Ordering::Relaxed);
    }

    /// Drops versions no snapshot at or after `horizon` can see, and bulk inserts whose commit
    /// failed. Returns how many versions were dropped. Dead segment rows stay until the next
    /// checkpoint replaces the base.
    pub fn vacuum(&self, horizon: u64, def: &TableDef) -> usize {
        let mut d = self.data.write();
        if d.dead == 0 && d.aborted_segs == 0 {
            return 0;
        }
        let before = d.versions.len();
        d.versions.retain(|v| v.xmin != ABORTED && (v.xmax == 0 || v.xmax > horizon));
        let removed = before - d.versions.len();
        let segs_before = d.segs.len();
        d.segs.retain(|s| s.xmin != ABORTED);
        d.aborted_segs = 0;
        if removed == 0 && segs_before == d.segs.len() {
            return 0;
        }
        d.seg_dead = d.segs.iter().map(|s| s.dead()).sum();
        d.dead = d.versions.iter().filter(|v| v.xmax != 0).count();
        d.by_rowid = d.versions.iter().enumerate().map(|(s, v)| (v.rowid, s)).collect();
        d.rebuild_indexes(def, |x| x == 0 || x > horizon);
        removed
    }

    /// Number of in-memory versions held (live and dead), for metrics and tests.
    pub fn version_count(&self) -> usize {
        self.data.read().versions.len()
    }

    /// Number of rows in the checkpoint base.
    pub fn base_rows(&self) -> usize {
        self.data.read().segs.iter().filter(|s| s.checkpoint).map(|s| s.rows()).sum()
    }

    /// Number of rows in column segments of bulk inserts since the checkpoint.
    pub fn bulk_rows(&self) -> usize {
        self.data.read().segs.iter().filter(|s| !s.checkpoint && s.xmin != ABORTED).map(|s| s.rows()).sum()
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
        for seg in &d.segs {
            for g in 0..seg.data.groups.len() {
                max = max.max(seg.data.values(def, g, col).iter().filter_map(as_int).max());
            }
        }
        max
    }

    pub fn max_rowid(&self) -> Option<u64> {
        let d = self.data.read();
        let seg_max = d.segs.iter().filter(|s| s.lo <= s.hi).map(|s| s.hi).max();
        d.versions.iter().map(|v| v.rowid).max().max(seg_max)
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
