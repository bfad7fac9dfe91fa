//! Commit: validation, the WAL record, installing versions, handing over to the WAL writer.

use super::*;

impl Transaction {
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

    /// The serialization failure a conflict at commit reports (and counts).
    fn conflict(&self, detail: String) -> Error {
        self.shared.conflicts.fetch_add(1, Ordering::Relaxed);
        Error::SerializationFailure { detail }
    }

    /// The catalog this commit publishes, if it ran DDL. Fails when a concurrent commit changed
    /// the catalog under DDL, or changed a table this transaction wrote.
    fn check_catalog(&self, current: &Catalog) -> Result<Option<Catalog>> {
        if self.ddl {
            if current.version != self.base_catalog_version {
                return Err(self.conflict("the catalog was changed by a concurrent transaction".into()));
            }
            let mut c = (*self.catalog).clone();
            c.version = current.version + 1;
            return Ok(Some(c));
        }
        if current.version != self.base_catalog_version {
            for t in self.writes.keys() {
                let same = match (current.table(*t), self.catalog.table(*t)) {
                    (Some(a), Some(b)) => bincode::serialize(a).ok() == bincode::serialize(b).ok(),
                    _ => false,
                };
                if !same {
                    return Err(self.conflict(format!("table {t} was altered or dropped by a concurrent transaction")));
                }
            }
        }
        Ok(None)
    }

    /// Checks the writes against everything committed (or committing) so far: first committer
    /// wins on deleted rows, and unique keys stay unique. Runs under the commit lock.
    fn validate(&self, catalog: &Catalog, stores: &HashMap<u64, Arc<TableStore>>) -> Result<()> {
        for (t, w) in &self.writes {
            let (Some(def), Some(store)) = (catalog.table(*t), stores.get(t)) else {
                continue;
            };
            for (r, xmax) in store.xmaxes(w.deletes.keys().copied()) {
                if xmax.is_some_and(|x| x != 0) {
                    return Err(self.conflict(format!("row {r} of {} was changed concurrently", def.name)));
                }
            }
            for idx in def.indexes.iter().filter(|i| i.unique) {
                if !store.has_index(idx.id) {
                    continue;
                }
                // Keys of every row written (rows and column batches), checked under one lock.
                if let Some(keys) = w.keys.get(&idx.id) {
                    let keys: Vec<(&Vec<u8>, u64)> = keys.iter().map(|(k, r)| (k, *r)).collect();
                    let hit =
                        store.first_key_hit(idx.id, keys.iter().map(|(k, _)| Some(k.as_slice())), |r, xmin, xmax| {
                            live(xmin, xmax) && !w.deletes.contains_key(&r)
                        });
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
        crate::fk::validate_at_commit(catalog, stores, &self.writes, self.fk_since)
    }

    /// The WAL operations of this transaction's writes at `ts`, and its column batches merged
    /// into segments (per table, and in record order).
    fn build_ops(&self, catalog: &Catalog, ts: u64) -> Result<(Vec<Op>, Segments, Vec<Arc<BaseSegment>>)> {
        let mut ops = Vec::new();
        let mut segments: Segments = HashMap::new();
        let mut record_segments: Vec<Arc<BaseSegment>> = Vec::new();
        for (t, w) in &self.writes {
            if catalog.table(*t).is_none() {
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
        Ok((ops, segments, record_segments))
    }

    /// Installs the writes as versions with xmin/xmax = `ts`, invisible until the watermark
    /// reaches `ts`. Returns the stores created for new tables and what to undo on failure.
    fn install(
        &self,
        catalog: &Catalog,
        stores: &HashMap<u64, Arc<TableStore>>,
        segments: &Segments,
        ts: u64,
    ) -> (HashMap<u64, Arc<TableStore>>, Installed) {
        let shared = &self.shared;
        let horizon = {
            let active = shared.active.lock();
            let visible = shared.visible_ts.load(Ordering::SeqCst);
            active.keys().next().copied().unwrap_or(visible).min(visible)
        };
        let mut new_stores: HashMap<u64, Arc<TableStore>> = HashMap::new();
        let mut installed: Installed = Vec::new();
        for (t, w) in &self.writes {
            let Some(def) = catalog.table(*t) else {
                continue;
            };
            let store = match stores.get(t) {
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
        let new_catalog = self.check_catalog(&current)?;
        let final_catalog = new_catalog.clone().map(Arc::new).unwrap_or_else(|| current.clone());
        let stores_now = shared.stores.read().clone();
        self.validate(&final_catalog, &stores_now)?;
        let ts = *guard + 1;
        // §3.5 invariant 2: versions installed at `ts` stay invisible until the WAL writer moves
        // the watermark to `ts` after their fsync.
        debug_assert!(shared.visible_ts.load(Ordering::SeqCst) < ts, "commit {ts} at or below the watermark");
        let (ops, segments, record_segments) = self.build_ops(&final_catalog, ts)?;
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
        let install = || self.install(&final_catalog, &stores_now, &segments, ts);
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
        let undo_list = installed;
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
}

/// Column batches merged into segments, per table.
type Segments = HashMap<u64, Vec<Arc<BaseSegment>>>;
/// Per store: the rowids installed and the rowids deleted, for undo.
type Installed = Vec<(Arc<TableStore>, Vec<u64>, Vec<u64>)>;

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
