//! Foreign keys.
//!
//! Checked twice. At the end of each write call, against what the transaction sees: a new or
//! changed referencing row needs its referenced row, and a removed referenced key must not be
//! referenced any more (or its referencing rows are deleted / set to NULL by `ON DELETE CASCADE`
//! / `SET NULL`, planned and locked before anything is written). And at commit, under the commit
//! lock, against the newest state: this catches the race where one transaction removes a key
//! while a concurrent one adds a row referencing it, which neither snapshot can see. The loser
//! of that race fails at COMMIT with 23503.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use crate::catalog::{Catalog, FkAction, ForeignKeyDef, TableDef};
use crate::db::{TableWrites, Transaction, render_value};
use crate::error::{Error, Result};
use crate::limits::CASCADE_DEPTH_MAX;
use crate::mvcc::{TableStore, index_key};
use crate::value::{Row, Value};

/// Writes a removal causes in referencing tables.
#[derive(Debug)]
pub(crate) enum FkWork {
    Delete(u64, Vec<u64>),
    SetNull(u64, Vec<(u64, Vec<Value>)>),
}

/// The unique index of `parent` on exactly `cols`.
fn parent_index(parent: &TableDef, cols: &[usize]) -> Option<u64> {
    parent.indexes.iter().find(|i| i.unique && i.columns == cols).map(|i| i.id)
}

fn key_values(row: &[Value], cols: &[usize], def: &TableDef) -> Option<Vec<Value>> {
    cols.iter()
        .map(|&c| {
            let v = row.get(c).unwrap_or(&def.columns[c].missing);
            (!v.is_null()).then(|| v.clone())
        })
        .collect()
}

fn describe(def: &TableDef, cols: &[usize], key: &[Value]) -> String {
    let names: Vec<&str> = cols.iter().map(|&c| def.columns[c].name.as_str()).collect();
    let vals: Vec<String> = key.iter().map(render_value).collect();
    format!("({})=({})", names.join(", "), vals.join(", "))
}

fn missing_parent(child: &TableDef, fk: &ForeignKeyDef, parent: &TableDef, key: &[Value]) -> Error {
    Error::ForeignKeyViolation {
        message: format!(
            "insert or update on table \"{}\" violates foreign key constraint \"{}\"",
            child.name, fk.name
        ),
        detail: format!("Key {} is not present in table \"{}\".", describe(child, &fk.columns, key), parent.name),
    }
}

fn still_referenced(parent: &TableDef, fk: &ForeignKeyDef, child: &TableDef, key: &[Value]) -> Error {
    Error::ForeignKeyViolation {
        message: format!(
            "update or delete on table \"{}\" violates foreign key constraint \"{}\" on table \"{}\"",
            parent.name, fk.name, child.name
        ),
        detail: format!(
            "Key {} is still referenced from table \"{}\".",
            describe(parent, &fk.ref_columns, key),
            child.name
        ),
    }
}

/// Foreign keys (with their table) that reference `table`.
fn referencing(cat: &Catalog, table: u64) -> Vec<(&TableDef, &ForeignKeyDef)> {
    cat.tables
        .values()
        .flat_map(|t| t.foreign_keys.iter().filter(|fk| fk.ref_table == table).map(move |fk| (t, fk)))
        .collect()
}

/// Columns of `table` that some foreign key references, sorted.
pub(crate) fn referenced_columns(cat: &Catalog, table: u64) -> Vec<usize> {
    let mut cols: Vec<usize> =
        referencing(cat, table).iter().flat_map(|(_, fk)| fk.ref_columns.iter().copied()).collect();
    cols.sort_unstable();
    cols.dedup();
    cols
}

pub(crate) fn is_referenced(cat: &Catalog, table: u64) -> bool {
    cat.tables.values().any(|t| t.foreign_keys.iter().any(|fk| fk.ref_table == table))
}

fn encode(key: &[Value]) -> Vec<u8> {
    let mut enc = Vec::new();
    for v in key {
        v.encode_key(&mut enc);
    }
    enc
}

impl Transaction {
    /// Checks every row of `table` this transaction sees against its foreign key `name`
    /// (`ALTER TABLE … ADD FOREIGN KEY`): 23503 for the first row whose key is missing.
    pub fn validate_foreign_key(&self, table: u64, name: &str) -> Result<()> {
        let mut def =
            self.catalog().table(table).cloned().ok_or_else(|| Error::UndefinedTable(format!("oid {table}")))?;
        def.foreign_keys.retain(|fk| fk.name == name);
        let mut rows = Vec::new();
        self.scan(table, |_, r| rows.push(r.clone()));
        self.fk_check_rows(&def, rows.iter())
    }

    /// Rows just written to `def` must reference existing rows.
    pub(crate) fn fk_check_rows<'a>(&self, def: &TableDef, rows: impl Iterator<Item = &'a Row> + Clone) -> Result<()> {
        for fk in &def.foreign_keys {
            let Some(parent) = self.catalog().table(fk.ref_table) else { continue };
            let idx = parent_index(parent, &fk.ref_columns);
            let mut seen = HashSet::new();
            for row in rows.clone() {
                let Some(key) = key_values(row, &fk.columns, def) else { continue };
                if !seen.insert(encode(&key)) {
                    continue;
                }
                let found = match idx {
                    Some(i) => !self.lookup(parent.id, i, &key)?.is_empty(),
                    None => {
                        let want = encode(&key);
                        let mut hit = false;
                        self.scan(parent.id, |_, r| {
                            hit |= index_key(r, &fk.ref_columns, parent).as_deref() == Some(&want[..]);
                        });
                        hit
                    }
                };
                if !found {
                    return Err(missing_parent(def, fk, parent, &key));
                }
            }
        }
        Ok(())
    }

    /// Before `removed` rows of `table` lose their keys (`deleting`: the rows go away; else an
    /// update changes the keys): refuses when a referencing row remains, or plans (and locks)
    /// the cascade.
    pub(crate) fn fk_plan_removal(
        &mut self,
        table: u64,
        removed: &[(u64, Row)],
        deleting: bool,
        depth: usize,
    ) -> Result<Vec<FkWork>> {
        if depth > CASCADE_DEPTH_MAX {
            return Err(Error::ProgramLimit {
                what: "depth of cascading foreign key deletes".into(),
                limit: CASCADE_DEPTH_MAX as u64,
            });
        }
        let catalog = self.catalog().clone();
        let Some(parent) = catalog.table(table) else { return Ok(vec![]) };
        self.note_key_removal();
        let mut work = Vec::new();
        for (child, fk) in referencing(&catalog, table) {
            let keys: HashMap<Vec<u8>, Vec<Value>> = removed
                .iter()
                .filter_map(|(_, r)| key_values(r, &fk.ref_columns, parent))
                .map(|k| (encode(&k), k))
                .collect();
            if keys.is_empty() {
                continue;
            }
            let mut hits: Vec<(u64, Row, Vec<u8>)> = Vec::new();
            let removed_ids: HashSet<u64> = removed.iter().map(|(r, _)| *r).collect();
            self.scan(child.id, |rowid, row| {
                if child.id == table && removed_ids.contains(&rowid) {
                    return;
                }
                if let Some(k) = index_key(row, &fk.columns, child)
                    && keys.contains_key(&k)
                {
                    hits.push((rowid, row.clone(), k));
                }
            });
            if hits.is_empty() {
                continue;
            }
            let action = if deleting { fk.on_delete } else { FkAction::NoAction };
            match action {
                FkAction::NoAction | FkAction::Restrict => {
                    return Err(still_referenced(parent, fk, child, &keys[&hits[0].2]));
                }
                FkAction::Cascade => {
                    let ids: Vec<u64> = hits.iter().map(|(r, _, _)| *r).collect();
                    self.lock_for_fk(child.id, &ids)?;
                    let rows: Vec<(u64, Row)> = hits.into_iter().map(|(r, row, _)| (r, row)).collect();
                    if is_referenced(&catalog, child.id) {
                        work.extend(self.fk_plan_removal(child.id, &rows, true, depth + 1)?);
                    }
                    work.push(FkWork::Delete(child.id, ids));
                }
                FkAction::SetNull => {
                    let ids: Vec<u64> = hits.iter().map(|(r, _, _)| *r).collect();
                    self.lock_for_fk(child.id, &ids)?;
                    let changes = hits
                        .into_iter()
                        .map(|(r, row, _)| {
                            let mut v: Vec<Value> = row.to_vec();
                            for &c in &fk.columns {
                                v[c] = Value::Null;
                            }
                            (r, v)
                        })
                        .collect();
                    work.push(FkWork::SetNull(child.id, changes));
                }
            }
        }
        Ok(work)
    }
}

/// The commit-time check (see the module comment), against the newest state in `stores`.
/// `since`: the oldest snapshot a statement of this transaction removed referenced keys with.
pub(crate) fn validate_at_commit(
    cat: &Catalog,
    stores: &HashMap<u64, Arc<TableStore>>,
    writes: &BTreeMap<u64, TableWrites>,
    since: Option<u64>,
) -> Result<()> {
    let own_keys = |table: u64, cols: &[usize]| -> HashSet<Vec<u8>> {
        let (Some(def), Some(w)) = (cat.table(table), writes.get(&table)) else { return HashSet::new() };
        let mut keys = HashSet::new();
        w.for_each_own(def, |_, r| keys.extend(index_key(r, cols, def)));
        keys
    };
    // Referencing rows we wrote: their keys must still exist.
    for (t, w) in writes {
        let Some(def) = cat.table(*t) else { continue };
        if def.foreign_keys.is_empty() || !w.has_inserts() {
            continue;
        }
        for fk in &def.foreign_keys {
            let Some(parent) = cat.table(fk.ref_table) else { continue };
            let ours = own_keys(parent.id, &fk.ref_columns);
            let deleted = writes.get(&parent.id).map(|w| &w.deletes);
            let idx = parent_index(parent, &fk.ref_columns);
            let store = stores.get(&parent.id);
            let mut ok: HashSet<Vec<u8>> = HashSet::new();
            let mut rows = Vec::new();
            w.for_each_own(def, |_, r| rows.push(r.clone()));
            for row in &rows {
                let Some(key) = index_key(row, &fk.columns, def) else { continue };
                if ok.contains(&key) || ours.contains(&key) {
                    continue;
                }
                let live = match (store, idx) {
                    (Some(s), Some(i)) if s.has_index(i) => s
                        .lookup(parent, i, &key)
                        .iter()
                        .any(|v| v.live() && !deleted.is_some_and(|d| d.contains_key(&v.rowid))),
                    // No index on the store yet (created by a concurrent DDL): the
                    // statement-time check stands.
                    _ => true,
                };
                if !live {
                    let vals = key_values(row, &fk.columns, def).unwrap_or_default();
                    return Err(missing_parent(def, fk, parent, &vals));
                }
                ok.insert(key);
            }
        }
    }
    // Referenced keys we removed: no row committed concurrently may reference them.
    let Some(since) = since else { return Ok(()) };
    for (t, w) in writes {
        let Some(parent) = cat.table(*t) else { continue };
        if w.deletes.is_empty() || !is_referenced(cat, *t) {
            continue;
        }
        for (child, fk) in referencing(cat, *t) {
            let kept = own_keys(*t, &fk.ref_columns);
            let removed: HashMap<Vec<u8>, Vec<Value>> = w
                .deletes
                .values()
                .filter_map(|r| key_values(r, &fk.ref_columns, parent))
                .map(|k| (encode(&k), k))
                .filter(|(e, _)| !kept.contains(e))
                .collect();
            if removed.is_empty() {
                continue;
            }
            let Some(store) = stores.get(&child.id) else { continue };
            let child_deleted = writes.get(&child.id).map(|w| &w.deletes);
            let mut clash = None;
            store.for_each_live_since(child, since, |rowid, row| {
                if clash.is_none()
                    && !child_deleted.is_some_and(|d| d.contains_key(&rowid))
                    && let Some(k) = index_key(row, &fk.columns, child)
                    && let Some(v) = removed.get(&k)
                {
                    clash = Some(v.clone());
                }
            });
            if let Some(key) = clash {
                return Err(still_referenced(parent, fk, child, &key));
            }
        }
    }
    Ok(())
}
