//! A transaction's statements, row locks and reads.

use super::*;

impl Transaction {
    pub fn read_ts(&self) -> u64 {
        self.read_ts
    }
    /// This transaction's id (the holder named in lock waits).
    pub fn id(&self) -> u64 {
        self.id
    }

    pub(super) fn release_locks(&mut self) {
        release_row_locks(&self.shared, self.id, std::mem::take(&mut self.locked));
    }

    /// Locks the rows of `table` this statement is about to delete or replace, and checks that
    /// none was changed by a transaction that committed after this one's snapshot. Runs before
    /// any of them is written, so a [`Error::LockWait`] or a conflict leaves nothing behind.
    pub(super) fn lock_rows(
        &mut self,
        table: u64,
        rowids: impl Iterator<Item = u64>,
        store: Option<&TableStore>,
    ) -> Result<()> {
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

    /// Called at each statement start: READ COMMITTED takes a new snapshot (and REPEATABLE READ
    /// its only one at the first statement), and the transaction's writes so far are marked as
    /// what [`Transaction::rollback_statement`] returns to.
    pub fn statement_start(&mut self) {
        let fresh = std::mem::replace(&mut self.fresh, false);
        if self.isolation == IsolationLevel::ReadCommitted || (fresh && !self.ddl && !self.has_writes()) {
            self.refresh_snapshot();
        }
        if self.savepoints == 0 {
            self.undo.clear();
        }
        self.mark = self.state_now();
    }

    fn refresh_snapshot(&mut self) {
        self.read_ts = pin(&self.shared, Some(self.read_ts));
        if !self.ddl {
            self.catalog = catalog_at(&self.shared, self.read_ts);
            self.base_catalog_version = self.catalog.version;
        }
    }

    /// The state of the writes now, as a statement or a savepoint starting here records it.
    fn state_now(&self) -> StatementMark {
        let mut mark = StatementMark::new(&self.shared, &self.catalog, self.ddl);
        mark.rows_written = self.rows_written;
        mark.fk_since = self.fk_since;
        mark.base_catalog_version = self.base_catalog_version;
        mark.undo_len = self.undo.len();
        mark
    }

    /// Undoes everything the running statement wrote (since the last
    /// [`statement_start`](Self::statement_start), or the transaction's start): the write set,
    /// the catalog and the counters are as they were before it. Row locks it took stay held
    /// until the transaction ends. This is what lets a failed statement be rerun (READ
    /// COMMITTED after a conflict or a lock wait) without a trace of its first run.
    pub fn rollback_statement(&mut self) {
        let mark = self.mark.clone();
        self.return_to(&mark);
    }

    /// Takes a savepoint here, between statements (`SAVEPOINT`). Until it is released, the
    /// transaction keeps what it needs to return to it.
    pub fn savepoint(&mut self) -> Savepoint {
        self.savepoints += 1;
        Savepoint { state: self.state_now(), locked: self.locked.len() }
    }

    /// Undoes everything written since `sp` was taken (`ROLLBACK TO SAVEPOINT`): writes,
    /// catalog changes and counters, and gives back the row locks taken since. `sp` stays
    /// valid; the snapshot does not change.
    pub fn rollback_to(&mut self, sp: &Savepoint) {
        self.return_to(&sp.state);
        self.mark = self.state_now();
        if self.locked.len() > sp.locked {
            let since = self.locked.split_off(sp.locked);
            release_row_locks(&self.shared, self.id, since);
        }
    }

    /// Forgets a savepoint (`RELEASE SAVEPOINT`, or one destroyed with an earlier one); its
    /// writes stay in the transaction.
    pub fn release_savepoint(&mut self, sp: Savepoint) {
        drop(sp);
        self.savepoints = self.savepoints.saturating_sub(1);
    }

    fn return_to(&mut self, mark: &StatementMark) {
        let first = mark.first_rowid;
        for w in self.writes.values_mut() {
            drop(w.inserts.split_off(&first));
            w.batches.retain(|seg| seg.rowids(0).values().first().is_some_and(|&r| r < first));
            for m in w.keys.values_mut() {
                m.retain(|_, r| *r < first);
            }
            w.updated_from.retain(|new, _| *new < first);
        }
        let undo = self.undo.split_off(mark.undo_len.min(self.undo.len()));
        for u in undo.into_iter().rev() {
            match u {
                StatementUndo::Deleted { table, rowid } => {
                    if let Some(w) = self.writes.get_mut(&table) {
                        w.deletes.remove(&rowid);
                    }
                }
                // A row written after the mark (by a later statement of a savepoint) is gone
                // with the other rows written since: nothing to bring back.
                StatementUndo::OwnRemoved { rowid, .. } if rowid >= first => {}
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
        self.rows_written = mark.rows_written;
        self.fk_since = mark.fk_since;
        self.catalog = mark.catalog.clone();
        self.base_catalog_version = mark.base_catalog_version;
        self.ddl = mark.ddl;
        self.writes.retain(|_, w| w.has_inserts() || !w.deletes.is_empty());
    }

    /// Locks one row a query selected (`SELECT … FOR UPDATE` and the other locking clauses),
    /// as UPDATE and DELETE lock the rows they change: [`Error::LockWait`] when another
    /// transaction holds it, a serialization failure when a transaction that committed after
    /// this one's snapshot changed or deleted it (READ COMMITTED reruns the statement), and
    /// [`RowLock::Gone`] when this snapshot does not see the row.
    pub fn lock_row(&mut self, table: u64, rowid: u64) -> Result<RowLock> {
        let store = self.store(table);
        if let Some(w) = self.writes.get(&table) {
            if w.deletes.contains_key(&rowid) {
                return Ok(RowLock::Gone);
            }
            if w.owns(rowid) {
                return Ok(RowLock::Locked);
            }
        }
        self.lock_rows(table, std::iter::once(rowid), store.as_deref())?;
        Ok(RowLock::Locked)
    }

    /// The catalog for DDL; the transaction now carries a private copy.
    pub fn catalog_mut(&mut self) -> &mut Catalog {
        self.ddl = true;
        Arc::make_mut(&mut self.catalog)
    }

    pub(super) fn table_def(&self, table: u64) -> Result<&TableDef> {
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

    pub(super) fn store(&self, table: u64) -> Option<Arc<TableStore>> {
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

    /// Column default definitions, for the SQL layer.
    pub fn column_default(&self, table: u64, col: usize) -> Option<&ColumnDefault> {
        self.catalog.table(table).and_then(|d| d.columns.get(col)).and_then(|c| c.default.as_ref())
    }
}
