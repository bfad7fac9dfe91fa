//! Versioned row storage of one table.
//!
//! Each committed row version carries `xmin` (the commit timestamp that created it) and `xmax`
//! (the one that deleted it, 0 while live). A version is visible to a snapshot `read_ts` when
//! `xmin <= read_ts && (xmax == 0 || xmax > read_ts)`. Versions of a commit are installed before
//! its WAL record is durable, with timestamps above the visibility watermark, so no reader can
//! see them until the WAL writer advances the watermark after fsync. Hash indexes map the
//! encoded key of every indexed column set to the row ids of all versions carrying that key.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::RwLock;

use crate::catalog::TableDef;
use crate::value::{Row, Value};

/// `xmin` of a version whose commit failed to reach the WAL: never visible.
pub const ABORTED: u64 = u64::MAX;

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

#[derive(Debug)]
struct HashIndex {
    id: u64,
    columns: Vec<usize>,
    map: HashMap<Vec<u8>, Vec<u64>>,
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

#[derive(Debug, Default)]
struct TableData {
    versions: Vec<Version>,
    by_rowid: HashMap<u64, usize>,
    indexes: Vec<HashIndex>,
    dead: usize,
}

#[derive(Debug)]
pub struct TableStore {
    pub id: u64,
    data: RwLock<TableData>,
    pub row_count_estimate: AtomicU64,
}

impl TableStore {
    pub fn new(def: &TableDef) -> TableStore {
        let store =
            TableStore { id: def.id, data: RwLock::new(TableData::default()), row_count_estimate: AtomicU64::new(0) };
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
            let mut map: HashMap<Vec<u8>, Vec<u64>> = HashMap::new();
            for v in &d.versions {
                if let Some(k) = index_key(&v.row, &idx.columns, def) {
                    map.entry(k).or_default().push(v.rowid);
                }
            }
            d.indexes.push(HashIndex { id: idx.id, columns: idx.columns.clone(), map });
        }
        // Keep the order of the definition so positions match.
        let order: Vec<u64> = def.indexes.iter().map(|i| i.id).collect();
        d.indexes.sort_by_key(|i| order.iter().position(|&x| x == i.id));
    }

    /// Calls `f` for every version visible at `read_ts`.
    pub fn for_each_visible(&self, read_ts: u64, mut f: impl FnMut(u64, &Row)) {
        let d = self.data.read();
        for v in &d.versions {
            if v.visible_at(read_ts) {
                f(v.rowid, &v.row);
            }
        }
    }

    /// Versions carrying `key` in index `index_id` (any visibility).
    pub fn lookup(&self, index_id: u64, key: &[u8]) -> Vec<Version> {
        let d = self.data.read();
        let Some(idx) = d.indexes.iter().find(|i| i.id == index_id) else {
            return vec![];
        };
        match idx.map.get(key) {
            Some(ids) => ids.iter().filter_map(|r| d.by_rowid.get(r).map(|&s| d.versions[s].clone())).collect(),
            None => vec![],
        }
    }

    pub fn has_index(&self, index_id: u64) -> bool {
        self.data.read().indexes.iter().any(|i| i.id == index_id)
    }

    pub fn version(&self, rowid: u64) -> Option<Version> {
        let d = self.data.read();
        d.by_rowid.get(&rowid).map(|&s| d.versions[s].clone())
    }

    /// `xmax` of each row id (`None` if unknown), read under one lock.
    pub fn xmaxes(&self, rowids: impl Iterator<Item = u64>) -> Vec<(u64, Option<u64>)> {
        let d = self.data.read();
        rowids.map(|r| (r, d.by_rowid.get(&r).map(|&s| d.versions[s].xmax))).collect()
    }

    /// Installs a commit: new versions with `xmin = ts`, and `xmax = ts` on deleted ones.
    pub fn install(&self, def: &TableDef, inserts: &[(u64, Row)], deletes: &[u64], ts: u64) {
        let mut d = self.data.write();
        for &r in deletes {
            if let Some(&s) = d.by_rowid.get(&r) {
                d.versions[s].xmax = ts;
                d.dead += 1;
            }
        }
        for (rowid, row) in inserts {
            let slot = d.versions.len();
            d.versions.push(Version { rowid: *rowid, xmin: ts, xmax: 0, row: row.clone() });
            d.by_rowid.insert(*rowid, slot);
            for i in 0..d.indexes.len() {
                if let Some(k) = index_key(row, &d.indexes[i].columns, def) {
                    d.indexes[i].map.entry(k).or_default().push(*rowid);
                }
            }
        }
        let live = (d.versions.len() - d.dead) as u64;
        self.row_count_estimate.store(live, Ordering::Relaxed);
    }

    /// Reverts [`install`](Self::install) of commit `ts` whose record never became durable.
    pub fn undo(&self, inserts: &[u64], deletes: &[u64], ts: u64) {
        let mut d = self.data.write();
        for r in deletes {
            if let Some(&s) = d.by_rowid.get(r)
                && d.versions[s].xmax == ts
            {
                d.versions[s].xmax = 0;
                d.dead -= 1;
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
        let by_rowid: HashMap<u64, usize> = d.versions.iter().enumerate().map(|(s, v)| (v.rowid, s)).collect();
        d.by_rowid = by_rowid;
        let TableData { versions, indexes, .. } = &mut *d;
        for idx in indexes.iter_mut() {
            idx.map.clear();
            for v in versions.iter() {
                if let Some(k) = index_key(&v.row, &idx.columns, def) {
                    idx.map.entry(k).or_default().push(v.rowid);
                }
            }
        }
        removed
    }

    /// Number of versions held (live and dead), for metrics and tests.
    pub fn version_count(&self) -> usize {
        self.data.read().versions.len()
    }

    /// Largest integer in column `col` over every version (to resume identity sequences).
    pub fn max_int(&self, col: usize) -> Option<i64> {
        let d = self.data.read();
        d.versions
            .iter()
            .filter_map(|v| match v.row.get(col) {
                Some(Value::Int16(x)) => Some(*x as i64),
                Some(Value::Int32(x)) => Some(*x as i64),
                Some(Value::Int64(x)) => Some(*x),
                _ => None,
            })
            .max()
    }

    pub fn max_rowid(&self) -> Option<u64> {
        self.data.read().versions.iter().map(|v| v.rowid).max()
    }
}
