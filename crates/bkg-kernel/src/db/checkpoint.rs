//! Checkpoints: a Parquet snapshot of every table, a new MANIFEST, then WAL truncation.

use super::open::remove_stale_snapshots;
use super::*;

impl Database {
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
            info.files.push((def.id, rows, bytes.len() as u64));
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
        // §3.5 invariants 6 and 7: the manifest now on disk is this checkpoint's, before any
        // segment it covers is deleted.
        #[cfg(debug_assertions)]
        {
            let path = manifest_path(dir);
            let on_disk = vfs.read(&path).map_err(|e| Error::io(&path, e))?;
            let read_back = snapshot::decode_manifest(&path, &on_disk)?;
            debug_assert!(read_back.checkpoint_ts == ts && read_back.wal_start_lsn == wal_start_lsn);
        }
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
}
