//! The change feed: committed changes read back from the WAL, in commit order.

use super::*;

impl Database {
    /// Only changes still in the WAL (after the last checkpoint) are retained.
    pub fn changes_since(&self, from_lsn: u64, limit: usize) -> Result<Vec<Change>> {
        let s = &self.shared;
        let visible = self.visible_ts();
        let contents = wal::read_wal(s.opts.vfs.as_ref(), &s.wal_dir, &s.opts.limits, false)?;
        let catalog = self.catalog();
        let mut out = Vec::new();
        for (lsn, payload) in contents.records {
            if lsn < from_lsn {
                continue;
            }
            let rec = CommitRecord::decode(&payload)?;
            if rec.commit_ts > visible {
                break;
            }
            let name = |t: u64| {
                rec.catalog.as_ref().unwrap_or(&catalog).table(t).map(|d| d.qualified_name()).unwrap_or_default()
            };
            let mk = |table_id: u64, kind, old, new| Change {
                lsn,
                commit_ts: rec.commit_ts,
                wall_ms: rec.wall_ms,
                table_id,
                table: name(table_id),
                kind,
                old,
                new,
            };
            if rec.catalog.is_some() {
                out.push(mk(0, ChangeKind::Ddl, None, None));
            }
            for op in &rec.ops {
                out.push(match op {
                    Op::InsertColumns { table, ipc } => {
                        let def = rec.catalog.as_ref().unwrap_or(&catalog).table(*table);
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
                    Op::Update { table, old, new, .. } => {
                        mk(*table, ChangeKind::Update, Some(old.clone()), Some(new.clone()))
                    }
                });
            }
            if out.len() >= limit {
                out.truncate(limit);
                break;
            }
        }
        Ok(out)
    }
}
