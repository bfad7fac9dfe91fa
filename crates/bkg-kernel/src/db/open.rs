//! Opening a data directory: its lock, the manifest and snapshot files, WAL replay.

use super::*;

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

/// What the last checkpoint left: its catalog, its tables' columnar bases and where the WAL
/// after it starts. Empty for a new data directory.
struct Loaded {
    catalog: Catalog,
    stores: HashMap<u64, Arc<TableStore>>,
    checkpoint_ts: u64,
    next_rowid: u64,
    wal_start_lsn: u64,
    manifest: Option<Manifest>,
}

/// Reads the MANIFEST and the snapshot files it lists, checking each against its checksum.
fn load_checkpoint(vfs: &dyn Vfs, dir: &Path, snapshots: &SnapshotStore) -> Result<Loaded> {
    let mpath = manifest_path(dir);
    if !vfs.exists(&mpath) {
        return Ok(Loaded {
            catalog: Catalog::default(),
            stores: HashMap::new(),
            checkpoint_ts: 0,
            next_rowid: 1,
            wal_start_lsn: 0,
            manifest: None,
        });
    }
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
    Ok(Loaded {
        catalog: m.catalog.clone(),
        stores,
        checkpoint_ts: m.checkpoint_ts,
        next_rowid: m.next_rowid,
        wal_start_lsn: m.wal_start_lsn,
        manifest: Some(m),
    })
}

/// Applies the WAL records committed after the checkpoint to `loaded`, in commit order; returns
/// the last commit timestamp (the checkpoint's when the WAL adds nothing).
fn replay_wal(
    wal_dir: &Path,
    contents: &wal::WalContents,
    loaded: &mut Loaded,
    info: &mut RecoveryInfo,
) -> Result<u64> {
    let mut last_ts = loaded.checkpoint_ts;
    for (lsn, payload) in &contents.records {
        info.wal_bytes_read += payload.len() as u64 + 8;
        let corrupt = |reason: String| Error::Corruption { path: wal_dir.to_path_buf(), offset: *lsn, reason };
        let rec = CommitRecord::decode(payload).map_err(|e| corrupt(e.to_string()))?;
        if rec.commit_ts <= loaded.checkpoint_ts {
            continue;
        }
        if rec.commit_ts <= last_ts {
            return Err(corrupt(format!("commit timestamp {} after {}", rec.commit_ts, last_ts)));
        }
        last_ts = rec.commit_ts;
        info.records_replayed += 1;
        if let Some(c) = &rec.catalog {
            loaded.catalog = c.clone();
            let catalog = &loaded.catalog;
            loaded.stores.retain(|id, _| catalog.tables.contains_key(id));
            for def in catalog.tables.values() {
                loaded.stores.entry(def.id).or_insert_with(|| Arc::new(TableStore::new(def))).sync_indexes(def);
            }
        }
        apply_ops(&loaded.catalog, &loaded.stores, &rec.ops, rec.commit_ts, &mut loaded.next_rowid)?;
    }
    for s in loaded.stores.values() {
        if let Some(m) = s.max_rowid() {
            loaded.next_rowid = loaded.next_rowid.max(m + 1);
        }
    }
    Ok(last_ts)
}

impl Database {
    /// Opens (creating if needed) the database in `opts.dir` and recovers it: the last
    /// checkpoint, then the WAL after it; the WAL writer then appends after the last record.
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
        // 1. The manifest and its snapshot files.
        let mut loaded = load_checkpoint(vfs.as_ref(), &dir, &snapshots)?;
        let mut info = RecoveryInfo { checkpoint_ts: loaded.checkpoint_ts, ..Default::default() };
        // Leftovers of an interrupted checkpoint.
        let _ = vfs.remove_file(&dir.join("MANIFEST.tmp"));
        let listed = |p: &str| loaded.manifest.as_ref().is_some_and(|m| m.files.iter().any(|f| f.path == p));
        remove_stale_snapshots(vfs.as_ref(), &snapshots, &dir, &listed);
        // 2. Replay the WAL after the checkpoint.
        let contents = wal::read_wal(vfs.as_ref(), &wal_dir, &opts.limits, true)?;
        info.torn_bytes_cut = contents.truncated_bytes;
        let last_ts = replay_wal(&wal_dir, &contents, &mut loaded, &mut info)?;
        // 3. The writer appends to the last segment, or starts one.
        let (file, seg_first_lsn, seg_len) = match contents.segments.last() {
            Some(seg) => {
                let f = vfs.open_append(&seg.path).map_err(|e| Error::io(&seg.path, e))?;
                (f, seg.first_lsn, seg.len)
            }
            None => {
                let f = wal::create_segment(vfs.as_ref(), &wal_dir, loaded.wal_start_lsn)?;
                (f, loaded.wal_start_lsn, wal::SEGMENT_HEADER_LEN)
            }
        };
        let visible_ts = Arc::new(AtomicU64::new(last_ts));
        let wal_stats = Arc::new(WalStats::default());
        let poisoned = Arc::new(AtomicBool::new(false));
        let (feed, _) = tokio::sync::broadcast::channel(opts.limits.feed_commits_max.max(1));
        let feed_next_lsn = Arc::new(AtomicU64::new(seg_first_lsn + seg_len));
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
            feed: feed.clone(),
            feed_next_lsn: feed_next_lsn.clone(),
        })?;
        let now = opts.clock.now_ms();
        let last_checkpoint = loaded.manifest.as_ref().map(|m| CheckpointInfo {
            checkpoint_ts: m.checkpoint_ts,
            wall_ms: m.wall_ms,
            wal_start_lsn: m.wal_start_lsn,
            tables: m.files.len(),
            rows: m.files.iter().map(|f| f.rows).sum(),
            bytes: m.files.iter().map(|f| f.bytes).sum(),
            files: m.files.iter().map(|f| (f.table_id, f.rows, f.bytes)).collect(),
        });
        let shared = Shared {
            wal_dir,
            snapshots,
            catalogs: Arc::new(RwLock::new(vec![(last_ts, Arc::new(loaded.catalog))])),
            stores: RwLock::new(loaded.stores),
            commit_lock: tokio::sync::Mutex::new(last_ts),
            visible_ts,
            next_rowid: AtomicU64::new(loaded.next_rowid),
            next_txn_id: AtomicU64::new(1),
            locks: RowLocks::default(),
            sequences: Mutex::new(HashMap::new()),
            active: Mutex::new(BTreeMap::new()),
            writer,
            feed,
            feed_next_lsn,
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
}

/// Removes snapshot files and directories the manifest does not list (best effort: leftovers
/// are retried at the next checkpoint or open).
pub(super) fn remove_stale_snapshots(
    vfs: &dyn Vfs,
    snapshots: &SnapshotStore,
    dir: &Path,
    listed: &dyn Fn(&str) -> bool,
) {
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
