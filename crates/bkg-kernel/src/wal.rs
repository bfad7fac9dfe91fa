//! The row write-ahead log.
//!
//! ## Format
//! Segment files `wal/{first_lsn:020}.seg`. A segment starts with a 16-byte header:
//! magic `BKGWAL\r\n` (8 bytes), format version `u32` LE, CRC32C of the preceding 12 bytes `u32` LE.
//! Then records, each `len: u32 LE | crc: u32 LE | payload[len]`, where `crc` is CRC32C over the
//! four length bytes followed by the payload. A record's LSN is the segment's first LSN plus the
//! record's byte offset in the segment, so LSNs grow across segments.
//!
//! ## Writer
//! One thread owns the open segment. Committers send their encoded record and wait; the thread
//! takes every request that is queued (group commit), writes them with one `write`, calls
//! `fdatasync` once, advances the visibility watermark to the largest commit timestamp of the
//! batch, and only then acknowledges. A failed write (a full disk, say) truncates the segment back
//! to its last good length and fails the batch, so later commits can succeed once space is back.
//! A failed fsync is fatal: the page cache may have dropped the data, so nothing written since
//! the last good fsync can be trusted (the process aborts, or the log is poisoned in tests).
//!
//! ## Recovery
//! Segments are read in order. In the last segment a record that is short or fails its CRC is a
//! torn tail *if nothing valid follows it*; the segment is cut back to the last valid record. A
//! bad record anywhere else, or one followed by a valid record, is corruption and an error.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;

use tokio::sync::oneshot;

use crate::error::{Error, Result};
use crate::limits::Limits;
use crate::vfs::{Vfs, VfsFile};

pub const SEGMENT_MAGIC: &[u8; 8] = b"BKGWAL\r\n";
pub const SEGMENT_VERSION: u32 = 1;
pub const SEGMENT_HEADER_LEN: u64 = 16;
const RECORD_HEADER_LEN: usize = 8;

pub fn segment_path(dir: &Path, first_lsn: u64) -> PathBuf {
    dir.join(format!("{first_lsn:020}.seg"))
}

fn segment_header() -> [u8; 16] {
    let mut h = [0u8; 16];
    h[..8].copy_from_slice(SEGMENT_MAGIC);
    h[8..12].copy_from_slice(&SEGMENT_VERSION.to_le_bytes());
    let crc = crc32c::crc32c(&h[..12]);
    h[12..16].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Frames one payload as a WAL record.
pub fn frame(payload: &[u8], out: &mut Vec<u8>) {
    frame_header(payload, out);
    out.extend_from_slice(payload);
}

/// Appends the header of `payload`'s frame (length and checksum) to `out`.
fn frame_header(payload: &[u8], out: &mut Vec<u8>) {
    let len = (payload.len() as u32).to_le_bytes();
    let crc = crc32c::crc32c_append(crc32c::crc32c(&len), payload);
    out.extend_from_slice(&len);
    out.extend_from_slice(&crc.to_le_bytes());
}

/// Payloads of at least this size are written from their own buffer (see `write_batch`).
const DIRECT_WRITE_BYTES: usize = 1 << 20;

/// What to do when fsync fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncFailure {
    /// Abort the process (the server's choice: never carry on after a failed fsync).
    Abort,
    /// Refuse every later commit with an I/O error (for tests that must observe the failure).
    Poison,
}

#[derive(Debug, Default)]
pub struct WalStats {
    pub fsyncs: AtomicU64,
    pub records: AtomicU64,
    pub bytes: AtomicU64,
    pub batches: AtomicU64,
    /// Bytes written since the last checkpoint rotated the log.
    pub bytes_since_checkpoint: AtomicU64,
}

pub(crate) type AckSender = oneshot::Sender<Result<u64>>;
/// Undoes a commit's in-memory installation when its record could not be made durable. Run by
/// the writer before it handles anything else, so the watermark never passes an undone commit.
pub(crate) type Undo = Box<dyn FnOnce() + Send>;

pub(crate) enum WalRequest {
    Append {
        payload: Vec<u8>,
        commit_ts: u64,
        done: AckSender,
        undo: Option<Undo>,
    },
    /// Close the current segment and start a new one; answers the new segment's first LSN.
    Rotate {
        done: AckSender,
    },
    Shutdown {
        done: oneshot::Sender<()>,
    },
}

#[derive(Debug)]
pub struct SegmentInfo {
    pub first_lsn: u64,
    pub path: PathBuf,
    pub len: u64,
}

/// Result of reading the log at startup.
pub struct WalContents {
    pub segments: Vec<SegmentInfo>,
    /// (lsn, payload) of every valid record, in order.
    pub records: Vec<(u64, Vec<u8>)>,
    /// Bytes cut off a torn tail, if any.
    pub truncated_bytes: u64,
}

pub fn list_segments(vfs: &dyn Vfs, dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    for p in vfs.list(dir).map_err(|e| Error::io(dir, e))? {
        let Some(name) = p.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if let Some(num) = name.strip_suffix(".seg")
            && let Ok(lsn) = num.parse::<u64>()
        {
            out.push((lsn, p));
        }
    }
    out.sort();
    Ok(out)
}

enum Parsed {
    Record { len: usize },
    Bad(String),
}

fn parse_at(buf: &[u8], off: usize, max_record: u64) -> Parsed {
    if buf.len() - off < RECORD_HEADER_LEN {
        return Parsed::Bad(format!("record header cut short ({} bytes)", buf.len() - off));
    }
    let len = u32::from_le_bytes(buf[off..off + 4].try_into().expect("4 bytes")) as usize;
    let crc = u32::from_le_bytes(buf[off + 4..off + 8].try_into().expect("4 bytes"));
    if len as u64 > max_record {
        return Parsed::Bad(format!("record length {len} exceeds the limit {max_record}"));
    }
    let start = off + RECORD_HEADER_LEN;
    if buf.len() - start < len {
        return Parsed::Bad(format!("record of {len} bytes cut short at {}", buf.len() - start));
    }
    let actual = crc32c::crc32c_append(crc32c::crc32c(&buf[off..off + 4]), &buf[start..start + len]);
    if actual != crc {
        return Parsed::Bad(format!("CRC mismatch (stored {crc:#010x}, computed {actual:#010x})"));
    }
    Parsed::Record { len }
}

/// Reads every segment. With `repair`, a torn tail of the last segment is truncated away.
pub fn read_wal(vfs: &dyn Vfs, dir: &Path, limits: &Limits, repair: bool) -> Result<WalContents> {
    let listed = list_segments(vfs, dir)?;
    let mut segments = Vec::new();
    let mut records = Vec::new();
    let mut truncated_bytes = 0;
    let n = listed.len();
    for (i, (first_lsn, path)) in listed.into_iter().enumerate() {
        let last = i + 1 == n;
        let buf = vfs.read(&path).map_err(|e| Error::io(&path, e))?;
        let corrupt = |offset: u64, reason: String| Error::Corruption { path: path.clone(), offset, reason };
        if (buf.len() as u64) < SEGMENT_HEADER_LEN || buf[..16] != segment_header() {
            if last && (buf.len() as u64) < SEGMENT_HEADER_LEN && segment_header().starts_with(&buf) {
                // Created but the header never fully reached the disk: start it afresh.
                if repair {
                    let mut f = vfs.create(&path).map_err(|e| Error::io(&path, e))?;
                    f.write_all(&segment_header()).map_err(|e| Error::io(&path, e))?;
                    f.sync_data().map_err(|e| Error::io(&path, e))?;
                }
                truncated_bytes += buf.len() as u64;
                segments.push(SegmentInfo { first_lsn, path, len: SEGMENT_HEADER_LEN });
                continue;
            }
            return Err(corrupt(0, "bad segment header (magic, version or CRC)".into()));
        }
        let mut off = SEGMENT_HEADER_LEN as usize;
        while off < buf.len() {
            match parse_at(&buf, off, limits.wal_record_bytes_max) {
                Parsed::Record { len } => {
                    let start = off + RECORD_HEADER_LEN;
                    records.push((first_lsn + off as u64, buf[start..start + len].to_vec()));
                    off = start + len;
                }
                Parsed::Bad(reason) => {
                    if !last {
                        return Err(corrupt(off as u64, reason));
                    }
                    // A torn tail has nothing valid after it. If the bad record's own length
                    // points at a valid record, the damage is in the middle: refuse.
                    if buf.len() - off >= RECORD_HEADER_LEN {
                        let len = u32::from_le_bytes(buf[off..off + 4].try_into().expect("4 bytes")) as usize;
                        let next = off + RECORD_HEADER_LEN + len;
                        if next < buf.len()
                            && matches!(parse_at(&buf, next, limits.wal_record_bytes_max), Parsed::Record { .. })
                        {
                            return Err(corrupt(off as u64, format!("{reason}; valid records follow")));
                        }
                    }
                    tracing::warn!(segment = %path.display(), offset = off, %reason, cut_bytes = buf.len() - off, "WAL torn tail cut back");
                    truncated_bytes += (buf.len() - off) as u64;
                    if repair {
                        let mut f = vfs.open_append(&path).map_err(|e| Error::io(&path, e))?;
                        f.set_len(off as u64).map_err(|e| Error::io(&path, e))?;
                        f.sync_data().map_err(|e| Error::io(&path, e))?;
                    }
                    break;
                }
            }
        }
        segments.push(SegmentInfo { first_lsn, path, len: off.min(buf.len()) as u64 });
    }
    Ok(WalContents { segments, records, truncated_bytes })
}

/// Handle to the writer thread.
pub(crate) struct WalWriter {
    tx: mpsc::SyncSender<WalRequest>,
    thread: parking_lot::Mutex<Option<std::thread::JoinHandle<()>>>,
}

pub(crate) struct WriterState {
    pub vfs: Arc<dyn Vfs>,
    pub dir: PathBuf,
    pub file: Box<dyn VfsFile>,
    pub seg_first_lsn: u64,
    pub seg_len: u64,
    pub limits: Limits,
    pub visible_ts: Arc<AtomicU64>,
    pub stats: Arc<WalStats>,
    pub on_fsync_failure: FsyncFailure,
    pub poisoned: Arc<AtomicBool>,
}

impl WalWriter {
    /// Opens (or creates) the segment to append to and starts the writer thread.
    pub fn start(st: WriterState) -> Result<WalWriter> {
        let (tx, rx) = mpsc::sync_channel::<WalRequest>(st.limits.wal_queue_len_max);
        let thread = std::thread::Builder::new()
            .name("bkg-wal-writer".into())
            .spawn(move || writer_loop(st, rx))
            .map_err(|e| Error::Internal(format!("cannot start the WAL writer: {e}")))?;
        Ok(WalWriter { tx, thread: parking_lot::Mutex::new(Some(thread)) })
    }

    pub fn send(&self, req: WalRequest) -> Result<()> {
        self.tx.send(req).map_err(|_| Error::Internal("the WAL writer has stopped".into()))
    }

    pub fn shutdown(&self) {
        let (done, rx) = oneshot::channel();
        if self.tx.send(WalRequest::Shutdown { done }).is_ok() {
            let _ = rx.blocking_recv();
        }
        if let Some(t) = self.thread.lock().take() {
            let _ = t.join();
        }
    }
}

/// Creates a new segment file with its header, durable together with its directory entry.
pub(crate) fn create_segment(vfs: &dyn Vfs, dir: &Path, first_lsn: u64) -> Result<Box<dyn VfsFile>> {
    let path = segment_path(dir, first_lsn);
    let mut f = vfs.create(&path).map_err(|e| Error::io(&path, e))?;
    f.write_all(&segment_header()).map_err(|e| Error::io(&path, e))?;
    f.sync_data().map_err(|e| Error::io(&path, e))?;
    vfs.sync_dir(dir).map_err(|e| Error::io(dir, e))?;
    Ok(f)
}

fn fatal_fsync(st: &WriterState, err: &std::io::Error) {
    tracing::error!(error = %err, dir = %st.dir.display(), "fsync of the WAL failed; data since the last good fsync cannot be trusted");
    match st.on_fsync_failure {
        FsyncFailure::Abort => std::process::abort(),
        FsyncFailure::Poison => st.poisoned.store(true, Ordering::SeqCst),
    }
}

fn writer_loop(mut st: WriterState, rx: mpsc::Receiver<WalRequest>) {
    let mut pending: Option<WalRequest> = None;
    loop {
        let req = match pending.take() {
            Some(r) => r,
            None => match rx.recv() {
                Ok(r) => r,
                Err(_) => return,
            },
        };
        match req {
            WalRequest::Shutdown { done } => {
                let _ = done.send(());
                return;
            }
            WalRequest::Rotate { done } => {
                // A checkpoint cuts the log here: what follows is not covered by it.
                let r = rotate(&mut st);
                if r.is_ok() {
                    st.stats.bytes_since_checkpoint.store(0, Ordering::SeqCst);
                }
                let _ = done.send(r);
            }
            WalRequest::Append { payload, commit_ts, done, undo } => {
                let mut batch = vec![(payload, commit_ts, done, undo)];
                let mut bytes = batch[0].0.len();
                while bytes < st.limits.wal_batch_bytes_max {
                    match rx.try_recv() {
                        Ok(WalRequest::Append { payload, commit_ts, done, undo }) => {
                            bytes += payload.len();
                            batch.push((payload, commit_ts, done, undo));
                        }
                        Ok(other) => {
                            pending = Some(other);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                write_batch(&mut st, batch);
                if st.seg_len >= st.limits.wal_segment_bytes_max
                    && let Err(e) = rotate(&mut st)
                {
                    tracing::error!(error = %e, "WAL segment rotation failed; continuing in the current segment");
                }
            }
        }
    }
}

fn rotate(st: &mut WriterState) -> Result<u64> {
    let next = st.seg_first_lsn + st.seg_len;
    let f = create_segment(st.vfs.as_ref(), &st.dir, next)?;
    st.file = f;
    st.seg_first_lsn = next;
    st.seg_len = SEGMENT_HEADER_LEN;
    Ok(next)
}

type Batch = Vec<(Vec<u8>, u64, AckSender, Option<Undo>)>;

fn fail_batch(batch: Batch, err: impl Fn() -> Error) {
    for (_, _, done, undo) in batch {
        if let Some(undo) = undo {
            undo();
        }
        let _ = done.send(Err(err()));
    }
}

fn write_batch(st: &mut WriterState, batch: Batch) {
    if st.poisoned.load(Ordering::SeqCst) {
        let dir = st.dir.clone();
        fail_batch(batch, || Error::Io {
            path: dir.clone(),
            source: std::io::Error::other("the WAL is unusable after a failed fsync"),
        });
        return;
    }
    // Records are framed into one buffer and written with one call, except large payloads (a
    // bulk load), written from where they are instead of being copied once more.
    let mut lsns = Vec::with_capacity(batch.len());
    let mut max_ts = 0;
    let mut buf = Vec::with_capacity(
        batch.iter().map(|b| if b.0.len() >= DIRECT_WRITE_BYTES { 0 } else { b.0.len() } + RECORD_HEADER_LEN).sum(),
    );
    let mut written = 0u64;
    let mut write = |st: &mut WriterState| -> std::io::Result<()> {
        for (payload, ts, _, _) in &batch {
            lsns.push(st.seg_first_lsn + st.seg_len + written + buf.len() as u64);
            max_ts = max_ts.max(*ts);
            if payload.len() < DIRECT_WRITE_BYTES {
                frame(payload, &mut buf);
                continue;
            }
            frame_header(payload, &mut buf);
            st.file.write_all(&buf)?;
            st.file.write_all(payload)?;
            written += (buf.len() + payload.len()) as u64;
            buf.clear();
        }
        if !buf.is_empty() {
            st.file.write_all(&buf)?;
            written += buf.len() as u64;
        }
        Ok(())
    };
    let path = segment_path(&st.dir, st.seg_first_lsn);
    if let Err(e) = write(st) {
        // Cut the partial write away so the log stays a sequence of whole records.
        if let Err(e2) = st.file.set_len(st.seg_len) {
            tracing::error!(error = %e2, "cannot truncate the WAL after a failed write");
            fatal_fsync(st, &e2);
        }
        tracing::warn!(error = %e, "WAL write failed; the batch is refused");
        fail_batch(batch, || Error::io(&path, clone_io_error(&e)));
        return;
    }
    if let Err(e) = st.file.sync_data() {
        fatal_fsync(st, &e);
        fail_batch(batch, || Error::Io {
            path: path.clone(),
            source: std::io::Error::other(format!("fsync failed: {e}")),
        });
        return;
    }
    st.seg_len += written;
    st.stats.fsyncs.fetch_add(1, Ordering::Relaxed);
    st.stats.batches.fetch_add(1, Ordering::Relaxed);
    st.stats.records.fetch_add(batch.len() as u64, Ordering::Relaxed);
    st.stats.bytes.fetch_add(written, Ordering::Relaxed);
    st.stats.bytes_since_checkpoint.fetch_add(written, Ordering::Relaxed);
    st.visible_ts.fetch_max(max_ts, Ordering::SeqCst);
    for ((_, _, done, _), lsn) in batch.into_iter().zip(lsns) {
        let _ = done.send(Ok(lsn));
    }
}

fn clone_io_error(e: &std::io::Error) -> std::io::Error {
    match e.raw_os_error() {
        Some(code) => std::io::Error::from_raw_os_error(code),
        None => std::io::Error::new(e.kind(), e.to_string()),
    }
}
