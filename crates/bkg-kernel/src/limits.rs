//! Every limit of the kernel in one place, with units last in the names.

#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest single WAL record (one transaction's changes). The record's length field is 32
    /// bits, so this stays below 4 GiB.
    pub wal_record_bytes_max: u64,
    /// A segment is closed and a new one started once it grows past this.
    pub wal_segment_bytes_max: u64,
    /// Commits waiting for the writer; committers block (backpressure) beyond it.
    pub wal_queue_len_max: usize,
    /// Bytes the writer coalesces into one write + fsync.
    pub wal_batch_bytes_max: usize,
    /// Checkpoint once this many WAL bytes were written since the last one.
    pub checkpoint_wal_bytes: u64,
    /// Checkpoint once this much time passed since the last one, if anything was written.
    pub checkpoint_interval_ms: u64,
    /// Rows per Parquet row group in snapshots.
    pub snapshot_row_group_rows: usize,
    /// Rows one transaction may write before it is refused.
    pub txn_rows_max: usize,
    /// Commits buffered for live change-feed subscribers; one that falls further behind is told
    /// to resume from the WAL.
    pub feed_commits_max: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            wal_record_bytes_max: 3 << 30,
            wal_segment_bytes_max: 64 << 20,
            wal_queue_len_max: 4096,
            wal_batch_bytes_max: 8 << 20,
            checkpoint_wal_bytes: 256 << 20,
            checkpoint_interval_ms: 5 * 60 * 1000,
            snapshot_row_group_rows: 128 * 1024,
            txn_rows_max: 50_000_000,
            feed_commits_max: 4096,
        }
    }
}

/// Deepest chain of cascading deletes.
pub const CASCADE_DEPTH_MAX: usize = 32;

const _: () = assert!(CASCADE_DEPTH_MAX >= 1);
