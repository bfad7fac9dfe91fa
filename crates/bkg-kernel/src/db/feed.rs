//! The change feed: committed changes in commit order, each with its commit LSN and timestamp;
//! UPDATE and DELETE carry the whole old row.
//!
//! Two ways to read it: [`Database::changes_since`] reads them back from the WAL (only what is
//! still there, after the last checkpoint), and [`Database::subscribe`] hands each commit to a
//! live subscriber as the WAL writer makes it visible. A subscriber that falls more than
//! [`Limits::feed_commits_max`] commits behind is told where to resume
//! ([`FeedError::Lagged`]) and can catch up from the WAL with `changes_since`.

use super::*;

/// Why a [`ChangeSubscription`] yields no more changes.
#[derive(Debug)]
pub enum FeedError {
    /// The subscriber fell behind and commits were dropped for it. Every commit with an LSN at
    /// or after `resume_lsn` that it has not seen is still readable with
    /// [`Database::changes_since`] until the next checkpoint.
    Lagged { resume_lsn: u64 },
    /// The database was closed.
    Closed,
    /// A record could not be decoded (a bug: the writer encoded it moments ago).
    Decode(Error),
}

/// A live subscription to committed changes (see the module documentation).
pub struct ChangeSubscription {
    rx: tokio::sync::broadcast::Receiver<wal::Committed>,
    shared: Arc<Shared>,
    /// The LSN after the last commit delivered (where a lagging subscriber resumes).
    resume_lsn: u64,
}

impl ChangeSubscription {
    /// The LSN of the next commit this subscription can deliver: every commit before it (that
    /// is still in the WAL) is for `changes_since`, every one from it on comes from `recv`.
    pub fn next_lsn(&self) -> u64 {
        self.resume_lsn
    }

    /// The changes of the next commit, in commit order; DDL commits give one
    /// [`ChangeKind::Ddl`] change first. Waits for the next commit.
    pub async fn recv(&mut self) -> std::result::Result<Vec<Change>, FeedError> {
        use tokio::sync::broadcast::error::RecvError;
        match self.rx.recv().await {
            Ok(c) => {
                let rec = CommitRecord::decode(&c.payload).map_err(FeedError::Decode)?;
                let catalog = catalog_at(&self.shared, rec.commit_ts);
                self.resume_lsn = c.lsn + 1;
                record_changes(c.lsn, &rec, &catalog).map_err(FeedError::Decode)
            }
            Err(RecvError::Lagged(_)) => Err(FeedError::Lagged { resume_lsn: self.resume_lsn }),
            Err(RecvError::Closed) => Err(FeedError::Closed),
        }
    }
}

impl Database {
    /// Subscribes to every commit made visible from now on.
    pub fn subscribe(&self) -> ChangeSubscription {
        let s = &self.shared;
        let rx = s.feed.subscribe();
        // Read after subscribing: a commit published in between is then either received or at
        // or after `resume_lsn`, never lost to a subscriber that lags.
        let resume_lsn = s.feed_next_lsn.load(Ordering::SeqCst);
        ChangeSubscription { rx, shared: s.clone(), resume_lsn }
    }

    /// The catalog in force at commit timestamp `ts` of a change from the feed (table names,
    /// columns and policies as the change was committed under). For a timestamp older than the
    /// oldest catalog still kept, the oldest one.
    pub fn catalog_at(&self, ts: u64) -> Arc<Catalog> {
        catalog_at(&self.shared, ts)
    }

    /// Committed changes with `lsn >= from_lsn`, in commit order, at most `limit` of them.
    /// Only changes still in the WAL (after the last checkpoint) are retained.
    pub fn changes_since(&self, from_lsn: u64, limit: usize) -> Result<Vec<Change>> {
        let s = &self.shared;
        let visible = self.visible_ts();
        let contents = wal::read_wal(s.opts.vfs.as_ref(), &s.wal_dir, &s.opts.limits, false)?;
        let mut out = Vec::new();
        for (lsn, payload) in contents.records {
            if lsn < from_lsn {
                continue;
            }
            let rec = CommitRecord::decode(&payload)?;
            if rec.commit_ts > visible {
                break;
            }
            out.extend(record_changes(lsn, &rec, &catalog_at(s, rec.commit_ts))?);
            if out.len() >= limit {
                out.truncate(limit);
                break;
            }
        }
        Ok(out)
    }
}

/// The changes of one commit record at `lsn`. Table names come from the record's own catalog
/// (DDL) or `catalog`, the one in force at the commit.
fn record_changes(lsn: u64, rec: &CommitRecord, catalog: &Catalog) -> Result<Vec<Change>> {
    let catalog = rec.catalog.as_ref().unwrap_or(catalog);
    let mk = |table_id: u64, kind, old, new| Change {
        lsn,
        commit_ts: rec.commit_ts,
        wall_ms: rec.wall_ms,
        table_id,
        table: catalog.table(table_id).map(|d| d.qualified_name()).unwrap_or_default(),
        kind,
        old,
        new,
    };
    let mut out = Vec::new();
    if rec.catalog.is_some() {
        out.push(mk(0, ChangeKind::Ddl, None, None));
    }
    for op in &rec.ops {
        out.push(match op {
            Op::InsertColumns { table, ipc } => {
                let def = catalog.table(*table);
                let seg = record::decode_segment(ipc, rec.commit_ts)?;
                for g in 0..seg.groups.len() {
                    for (_, row) in def.map(|d| seg.group_rows(d, g)).unwrap_or_default() {
                        out.push(mk(*table, ChangeKind::Insert, None, Some(row.to_vec())));
                    }
                }
                continue;
            }
            Op::Insert { table, row, .. } => mk(*table, ChangeKind::Insert, None, Some(row.clone())),
            Op::Delete { table, old, .. } => mk(*table, ChangeKind::Delete, Some(old.clone()), None),
            Op::Update { table, old, new, .. } => mk(*table, ChangeKind::Update, Some(old.clone()), Some(new.clone())),
        });
    }
    Ok(out)
}
