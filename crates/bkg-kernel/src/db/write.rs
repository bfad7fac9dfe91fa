//! A transaction's writes: insert, bulk insert, delete, update, truncate, rollback.

use super::*;

impl Transaction {
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

    pub(super) fn unique_violation(def: &TableDef, index_id: u64, row: &[Value]) -> Error {
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
                self.undo.push(StatementUndo::OwnRemoved { table, rowid, row: row.clone(), updated_from, keys });
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
        self.undo.push(StatementUndo::Deleted { table, rowid });
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
}
