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
//! torn tail *if no valid record starts at any later offset of the segment*; the segment is cut
//! back to the last valid record. A bad record anywhere else, or one followed by a valid record
//! (wherever its own, possibly damaged, length field points), is corruption and an error: the
//! records after it were acknowledged, and cutting them away would lose commits silently. See
//! `find_record_after` for how the rest of the segment is searched in linear time.

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

fn le_u32(buf: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(buf[at..at + 4].try_into().expect("4 bytes"))
}

/// Where a record with a valid checksum starts after the bad record at `bad`, if anywhere in the
/// rest of `buf` (a whole segment). `None` means the bytes from `bad` on are a torn final write.
///
/// A torn write is the one place a bad record may legitimately stand: the writer only appends
/// whole records and fsyncs before acknowledging, so a crash can only leave a prefix of the last
/// (unacknowledged) batch, possibly followed by zeros where the file grew but the data never
/// reached the disk. Nothing stale can stand after it either: a segment is created empty
/// (`O_TRUNC`) under a name no earlier segment had (its first LSN, which only grows), is never
/// preallocated or recycled, and is only ever appended to or cut back with `set_len`. So a valid
/// record past the bad one was written after it, by this log, and acknowledged once its batch was
/// synced: the bad record is damage (in its payload, its checksum, or its length field, which is
/// why the bad record's length cannot be trusted to find the next record and every later offset
/// is tried).
///
/// The search is linear in the size of the tail. Checking a candidate offset naively costs its
/// length (one CRC over the payload), and in a torn tail nearly every offset can hold a
/// plausible length (small integers and Arrow offsets are common in payloads), so trying every
/// offset would be quadratic: hours for a torn multi-GB bulk-load record. Instead:
/// - a candidate is considered only if its length is within the record limit and fits in the
///   bytes left (free to check; most offsets of random-looking data fail it);
/// - its checksum is computed in constant time from running CRCs of the tail (see [`TailScan`]):
///   at most 2 × 255 bytes of CRC and four GF(2) multiplications per candidate, after one CRC
///   pass over the tail and `tail / 64` bytes of memory;
/// - the search stops at the first valid record.
///
/// Every doubt falls on the side of refusing, which loses nothing and says where to look: a
/// candidate matches by chance with probability 2^-32; a crash that put a later page of the last
/// (unacknowledged) batch on disk but not an earlier one, or a file system that shows stale
/// blocks after a crash, also reads as damage, since records carry no batch boundary to tell.
fn find_record_after(buf: &[u8], bad: usize, max_record: u64) -> Option<usize> {
    let end = buf.len();
    // The usual damage, a flipped bit in a payload or checksum, leaves the length intact: look
    // where it points first, at the cost of one record.
    if end - bad >= RECORD_HEADER_LEN
        && let Some(next) = bad.checked_add(RECORD_HEADER_LEN + le_u32(buf, bad) as usize)
        && next < end
        && matches!(parse_at(buf, next, max_record), Parsed::Record { .. })
    {
        return Some(next);
    }
    let first = bad + 1;
    if end < first + RECORD_HEADER_LEN {
        return None;
    }
    let scan = TailScan::new(buf, bad);
    for at in first..=end - RECORD_HEADER_LEN {
        let len = le_u32(buf, at) as usize;
        if len as u64 > max_record || len > end - at - RECORD_HEADER_LEN {
            continue;
        }
        // The direct check confirms the (equivalent) fast one; it runs once, on a match.
        if scan.crc_matches(at, len) && matches!(parse_at(buf, at, max_record), Parsed::Record { .. }) {
            return Some(at);
        }
    }
    None
}

/// CRC32C's polynomial in the bit-reflected form the `crc32c` crate (and zlib) compute with.
const CRC32C_POLY_REFLECTED: u32 = 0x82F6_3B78;

/// a(x)·b(x) mod P(x) for 32-bit CRC32C values in reflected bit order (bit 31 is x^0); zlib's
/// `multmodp`. A CRC register followed by n zero bytes is the register times x^(8n) mod P.
fn crc_mul(a: u32, mut b: u32) -> u32 {
    let mut p = 0;
    for i in 0..32 {
        if a & (1u32 << (31 - i)) != 0 {
            p ^= b;
        }
        b = if b & 1 != 0 { (b >> 1) ^ CRC32C_POLY_REFLECTED } else { b >> 1 };
    }
    p
}

/// Bytes between stored running CRCs of a [`TailScan`].
const TAIL_SCAN_STRIDE: usize = 256;
/// Records up to this long are checked directly: cheaper than the arithmetic.
const TAIL_SCAN_DIRECT_BYTES: usize = 64;

/// The CRC32C of a record at any offset of a segment's tail in constant time.
///
/// CRC32C (with its initial and final inversion) satisfies
/// `crc(A ‖ B) = shift(crc(A), |B|) ⊕ crc(B)`, where `shift(v, n)` appends n zero bytes to the
/// register, a GF(2)-linear map: v·x^(8n) mod P (this is `crc32c::crc32c_combine`). With
/// `Q(i) = crc(buf[base..i])`, a payload `buf[s..e]` has `crc = Q(e) ⊕ shift(Q(s), e - s)`, so a
/// record (whose CRC covers its 4 length bytes `len`, then the payload) has
/// `crc(len ‖ payload) = shift(crc(len) ⊕ Q(s), e - s) ⊕ Q(e)`.
/// `Q` is kept every [`TAIL_SCAN_STRIDE`] bytes and finished from the nearest one on demand.
struct TailScan<'a> {
    buf: &'a [u8],
    base: usize,
    /// `running[k]` is `Q(base + k * TAIL_SCAN_STRIDE)`.
    running: Vec<u32>,
    /// `zeros[j][b]` is x^(8·b·256^j) mod P: the shift by `b << (8 * j)` zero bytes.
    zeros: [[u32; 256]; 4],
}

impl<'a> TailScan<'a> {
    fn new(buf: &'a [u8], base: usize) -> TailScan<'a> {
        let mut running = Vec::with_capacity((buf.len() - base) / TAIL_SCAN_STRIDE + 1);
        let mut crc = 0;
        running.push(crc);
        let mut at = base;
        while at + TAIL_SCAN_STRIDE <= buf.len() {
            crc = crc32c::crc32c_append(crc, &buf[at..at + TAIL_SCAN_STRIDE]);
            running.push(crc);
            at += TAIL_SCAN_STRIDE;
        }
        // x^(2^k) for k = 0..32, by squaring x (1 << 30 in reflected order; 1 << 31 is 1).
        let mut x2n = [0u32; 32];
        x2n[0] = 1 << 30;
        for k in 1..32 {
            x2n[k] = crc_mul(x2n[k - 1], x2n[k - 1]);
        }
        let mut zeros = [[0u32; 256]; 4];
        for (j, row) in zeros.iter_mut().enumerate() {
            // One step is 256^j bytes: x^(8·256^j) = x^(2^(3 + 8j)).
            let step = x2n[3 + 8 * j];
            row[0] = 1 << 31;
            for b in 1..256 {
                row[b] = crc_mul(row[b - 1], step);
            }
        }
        TailScan { buf, base, running, zeros }
    }

    /// `Q(i)`, the CRC32C of `buf[base..i]`.
    fn prefix(&self, i: usize) -> u32 {
        let k = (i - self.base) / TAIL_SCAN_STRIDE;
        let from = self.base + k * TAIL_SCAN_STRIDE;
        crc32c::crc32c_append(self.running[k], &self.buf[from..i])
    }

    /// `v` followed by `n` zero bytes (`n` is a record length, below 2^32).
    fn shift(&self, mut v: u32, n: usize) -> u32 {
        debug_assert!(n as u64 <= u64::from(u32::MAX));
        for (j, row) in self.zeros.iter().enumerate() {
            let b = (n >> (8 * j)) & 0xff;
            if b != 0 {
                v = crc_mul(row[b], v);
            }
        }
        v
    }

    /// Whether the checksum stored at `at + 4` matches the record of `len` payload bytes at `at`
    /// (`at > base`, and the payload fits in `buf`).
    fn crc_matches(&self, at: usize, len: usize) -> bool {
        let stored = le_u32(self.buf, at + 4);
        let head = crc32c::crc32c(&self.buf[at..at + 4]);
        let start = at + RECORD_HEADER_LEN;
        let actual = if len <= TAIL_SCAN_DIRECT_BYTES {
            crc32c::crc32c_append(head, &self.buf[start..start + len])
        } else {
            self.shift(head ^ self.prefix(start), len) ^ self.prefix(start + len)
        };
        actual == stored
    }
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
                    // A torn final write has nothing valid after it. A valid record at any later
                    // offset means the damage is in the middle of acknowledged records (the bad
                    // record's own length field may be the damaged part, so it cannot be trusted
                    // to find the next record): refuse, and leave the file as it is.
                    if let Some(next) = find_record_after(&buf, off, limits.wal_record_bytes_max) {
                        return Err(corrupt(
                            off as u64,
                            format!(
                                "{reason}; a valid record follows at offset {next}, so this is damage inside \
                                 the log, not a torn final write"
                            ),
                        ));
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
    /// Live subscribers of the change feed (`Database::subscribe`).
    pub feed: tokio::sync::broadcast::Sender<Committed>,
    /// The LSN after the last commit published to `feed`.
    pub feed_next_lsn: Arc<AtomicU64>,
}

/// A commit as the WAL writer publishes it to live subscribers, once visible: its LSN and its
/// record, shared (subscribers decode what they need).
#[derive(Clone)]
pub(crate) struct Committed {
    pub lsn: u64,
    pub payload: Arc<Vec<u8>>,
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
    // docs/bkg-db.md §3.5, invariant 3: WAL order is commit-timestamp order, and nothing in the
    // batch is older than what is already visible.
    #[cfg(debug_assertions)]
    {
        let mut last = st.visible_ts.load(Ordering::SeqCst);
        for (_, ts, _, _) in batch.iter().filter(|b| b.1 > 0) {
            debug_assert!(*ts > last, "WAL record of commit {ts} queued after commit {last}");
            last = *ts;
        }
    }
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
    // §3.5 invariant 4: what was written is exactly the batch's records, whole.
    debug_assert_eq!(
        written,
        batch.iter().map(|b| (b.0.len() + RECORD_HEADER_LEN) as u64).sum::<u64>(),
        "WAL batch written partially"
    );
    st.seg_len += written;
    st.stats.fsyncs.fetch_add(1, Ordering::Relaxed);
    st.stats.batches.fetch_add(1, Ordering::Relaxed);
    st.stats.records.fetch_add(batch.len() as u64, Ordering::Relaxed);
    st.stats.bytes.fetch_add(written, Ordering::Relaxed);
    st.stats.bytes_since_checkpoint.fetch_add(written, Ordering::Relaxed);
    // §3.5 invariants 1 and 2: the watermark moves only here, after the fsync above succeeded.
    st.visible_ts.fetch_max(max_ts, Ordering::SeqCst);
    let publish = st.feed.receiver_count() > 0;
    for ((payload, ts, done, undo), lsn) in batch.into_iter().zip(lsns) {
        // The undo is not needed; dropping it releases what the commit held before the
        // committer hears of it.
        drop(undo);
        if publish && ts > 0 {
            // A subscriber that lags loses the oldest commits and is told where to resume.
            let _ = st.feed.send(Committed { lsn, payload: Arc::new(payload) });
            st.feed_next_lsn.store(lsn + 1, Ordering::SeqCst);
        }
        let _ = done.send(Ok(lsn));
    }
}

fn clone_io_error(e: &std::io::Error) -> std::io::Error {
    match e.raw_os_error() {
        Some(code) => std::io::Error::from_raw_os_error(code),
        None => std::io::Error::new(e.kind(), e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vfs::StdVfs;

    /// Deterministic noise (xorshift64), so a failure reproduces.
    fn noise(seed: u64, n: usize) -> Vec<u8> {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect()
    }

    fn payloads(sizes: &[usize]) -> Vec<Vec<u8>> {
        sizes.iter().enumerate().map(|(i, &n)| noise(i as u64 + 1, n)).collect()
    }

    /// A segment holding `payloads`, and the offset of each record in it.
    fn segment(payloads: &[Vec<u8>]) -> (Vec<u8>, Vec<usize>) {
        let mut buf = segment_header().to_vec();
        let mut offsets = Vec::new();
        for p in payloads {
            offsets.push(buf.len());
            frame(p, &mut buf);
        }
        (buf, offsets)
    }

    /// Payloads of the intact first segment `write_log` writes.
    fn first_payloads() -> Vec<Vec<u8>> {
        vec![noise(101, 40), noise(102, 60)]
    }

    /// Writes an intact first segment, then `last` as the last segment; returns the last
    /// segment's path and first LSN.
    fn write_log(dir: &Path, last: &[u8]) -> (PathBuf, u64) {
        let (first, _) = segment(&first_payloads());
        std::fs::write(segment_path(dir, 0), &first).unwrap();
        let lsn = first.len() as u64;
        let path = segment_path(dir, lsn);
        std::fs::write(&path, last).unwrap();
        (path, lsn)
    }

    fn read(dir: &Path, repair: bool) -> Result<WalContents> {
        read_wal(&StdVfs, dir, &Limits::default(), repair)
    }

    /// Reading the log fails, with or without repair, naming the segment and the bad record's
    /// offset, and leaves the segment untouched.
    fn assert_refused(dir: &Path, path: &Path, offset: usize) {
        let before = std::fs::read(path).unwrap();
        for repair in [false, true] {
            let err = match read(dir, repair) {
                Ok(c) => panic!(
                    "read {} records (cut {} bytes) instead of refusing the damage at {offset}",
                    c.records.len(),
                    c.truncated_bytes
                ),
                Err(e) => e,
            };
            let text = err.to_string();
            match &err {
                Error::Corruption { path: p, offset: o, .. } => {
                    assert_eq!(p.as_path(), path, "{text}");
                    assert_eq!(*o, offset as u64, "{text}");
                }
                other => panic!("expected a corruption error, got {other}"),
            }
            assert!(text.contains(&path.display().to_string()), "{text}");
            assert!(text.contains(&format!("offset {offset}")), "{text}");
            assert!(std::fs::read(path).unwrap() == before, "the segment was modified (repair {repair})");
        }
    }

    /// Reads (and repairs) the log and checks it holds the first segment's records, then
    /// `expected` of the last segment at `offsets`, and that `cut` bytes were cut.
    fn assert_cut(dir: &Path, path: &Path, lsn: u64, expected: &[Vec<u8>], offsets: &[usize], cut: u64) {
        let mut want: Vec<(u64, Vec<u8>)> = Vec::new();
        let (_, first_offsets) = segment(&first_payloads());
        for (p, off) in first_payloads().into_iter().zip(first_offsets) {
            want.push((off as u64, p));
        }
        for (p, off) in expected.iter().zip(offsets) {
            want.push((lsn + *off as u64, p.clone()));
        }
        let keep = offsets.get(expected.len()).copied().unwrap_or(SEGMENT_HEADER_LEN as usize) as u64;
        let len_before = std::fs::metadata(path).unwrap().len();
        // Without repair the file stays as it is.
        let c = read(dir, false).unwrap();
        assert!(c.records == want);
        assert_eq!(c.truncated_bytes, cut);
        assert_eq!(std::fs::metadata(path).unwrap().len(), len_before);
        // With repair the tail goes, and the log is whole afterwards.
        let c = read(dir, true).unwrap();
        assert!(c.records == want);
        assert_eq!(c.truncated_bytes, cut);
        assert_eq!(c.segments.last().unwrap().len, keep);
        assert_eq!(std::fs::metadata(path).unwrap().len(), keep);
        let c = read(dir, true).unwrap();
        assert!(c.records == want);
        assert_eq!(c.truncated_bytes, 0);
    }

    const SIZES: [usize; 7] = [100, 5000, 300, 4000, 200, 64, 2000];

    #[test]
    fn damaged_length_of_a_middle_record_is_refused_not_cut() {
        let (good, offsets) = segment(&payloads(&SIZES));
        // Lengths a flipped bit or a bad sector could leave: past the end of the segment, over
        // the record limit, a little long (pointing into the next record), a little short, zero.
        // The old check followed the damaged length and took each of these for a torn tail.
        let damaged: [(usize, u32); 7] = [
            (2, 300 ^ (1 << 30)),
            (2, u32::MAX),
            (2, 300 ^ 0x10),
            (2, 300 ^ 0x04),
            (2, 0),
            (1, 5000 ^ (1 << 20)),
            (0, 100 ^ 0x80),
        ];
        for (record, len) in damaged {
            let dir = tempfile::tempdir().unwrap();
            let mut bytes = good.clone();
            let at = offsets[record];
            bytes[at..at + 4].copy_from_slice(&len.to_le_bytes());
            let (path, _) = write_log(dir.path(), &bytes);
            assert_refused(dir.path(), &path, at);
        }
    }

    #[test]
    fn damaged_checksum_or_payload_of_a_middle_record_is_refused() {
        let (good, offsets) = segment(&payloads(&SIZES));
        // A flipped bit in the checksum, in a payload, and in the second-to-last record.
        for (record, byte) in [(2, 4), (2, 8 + 150), (1, 8 + 4999), (5, 8)] {
            let dir = tempfile::tempdir().unwrap();
            let mut bytes = good.clone();
            bytes[offsets[record] + byte] ^= 0x20;
            let (path, _) = write_log(dir.path(), &bytes);
            assert_refused(dir.path(), &path, offsets[record]);
        }
    }

    #[test]
    fn torn_last_record_is_cut() {
        let p = payloads(&SIZES);
        let (good, offsets) = segment(&p);
        let last = *offsets.last().unwrap();
        // Cut in the header, just after it, and in the middle of the payload.
        for keep in [last + 3, last + RECORD_HEADER_LEN, last + RECORD_HEADER_LEN + 1000, good.len() - 1] {
            let dir = tempfile::tempdir().unwrap();
            let (path, lsn) = write_log(dir.path(), &good[..keep]);
            assert_cut(dir.path(), &path, lsn, &p[..p.len() - 1], &offsets, (keep - last) as u64);
        }
    }

    #[test]
    fn torn_tail_followed_by_zeros_is_cut() {
        let p = payloads(&SIZES);
        let (good, offsets) = segment(&p);
        let last = *offsets.last().unwrap();
        // A file that grew but whose data never reached the disk reads back as zeros: after a
        // partly written record, after a whole header, and after the last whole record.
        for (keep, zeros) in [(last + RECORD_HEADER_LEN + 500, 4096), (last + RECORD_HEADER_LEN, 2000), (last, 8192)] {
            let dir = tempfile::tempdir().unwrap();
            let mut bytes = good[..keep].to_vec();
            bytes.resize(keep + zeros, 0);
            let (path, lsn) = write_log(dir.path(), &bytes);
            assert_cut(dir.path(), &path, lsn, &p[..p.len() - 1], &offsets, (keep + zeros - last) as u64);
        }
        // A segment of nothing but zeros after its header.
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = segment_header().to_vec();
        bytes.resize(16 + 10_000, 0);
        let (path, lsn) = write_log(dir.path(), &bytes);
        assert_cut(dir.path(), &path, lsn, &[], &[], 10_000);
    }

    #[test]
    fn damaged_first_record_of_the_last_segment_is_refused() {
        // A flipped bit in the third length byte of the record right after the segment header
        // (3000 becomes 68536, past the end); the records after it are short and empty ones.
        let (good, offsets) = segment(&payloads(&[3000, 10, 0, 700]));
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = good.clone();
        bytes[offsets[0] + 2] ^= 0x01;
        let (path, _) = write_log(dir.path(), &bytes);
        assert_refused(dir.path(), &path, offsets[0]);
    }

    #[test]
    fn torn_record_of_small_integers_is_cut() {
        // Payloads are mostly small integers (bincode, Arrow offsets), so nearly every offset of
        // a torn record holds a plausible length; each must be checked and found wanting.
        let ints: Vec<u8> = (0..6000u64).flat_map(|i| (i * 37 % 5000).to_le_bytes()).collect();
        let p = vec![noise(1, 100), noise(2, 200), ints];
        let (good, offsets) = segment(&p);
        let last = offsets[2];
        let keep = last + RECORD_HEADER_LEN + 30_000;
        let dir = tempfile::tempdir().unwrap();
        let (path, lsn) = write_log(dir.path(), &good[..keep]);
        assert_cut(dir.path(), &path, lsn, &p[..2], &offsets, (keep - last) as u64);
    }

    #[test]
    fn tail_scan_checksums_match_a_direct_check_at_every_offset() {
        // Records of every size class (empty, direct, just past the direct limit, several
        // strides, many strides) embedded in noise at uneven offsets.
        let mut buf = noise(7, 333);
        let mut embedded = Vec::new();
        for (i, n) in [0usize, 1, 63, 64, 65, 255, 256, 257, 300, 70_000, 5].into_iter().enumerate() {
            embedded.push(buf.len());
            frame(&noise(1000 + i as u64, n), &mut buf);
            buf.extend_from_slice(&noise(2000 + i as u64, 1 + 37 * i));
        }
        let max = Limits::default().wal_record_bytes_max;
        for base in [0, 5, 333] {
            let scan = TailScan::new(&buf, base);
            let mut found = Vec::new();
            for at in base + 1..=buf.len() - RECORD_HEADER_LEN {
                let len = le_u32(&buf, at) as usize;
                if len > buf.len() - at - RECORD_HEADER_LEN {
                    continue;
                }
                let direct = matches!(parse_at(&buf, at, max), Parsed::Record { .. });
                assert_eq!(scan.crc_matches(at, len), direct, "offset {at}, base {base}, length {len}");
                if direct {
                    found.push(at);
                }
            }
            let want: Vec<usize> = embedded.iter().copied().filter(|&o| o > base).collect();
            assert_eq!(found, want, "base {base}");
            // The scan finds the first of them after a bad offset, whatever that offset holds.
            assert_eq!(find_record_after(&buf, base, max), want.first().copied());
        }
        // The shift is the zero-byte operator `crc32c_combine` applies.
        let scan = TailScan::new(&buf, 0);
        for (v, n) in [
            (0x1234_5678u32, 1usize),
            (0xFFFF_FFFF, 255),
            (1, 256),
            (0xDEAD_BEEF, 65_537),
            (7, 3 << 30),
            (0x8000_0001, u32::MAX as usize),
        ] {
            assert_eq!(scan.shift(v, n), crc32c::crc32c_combine(v, 0, n), "shift {v:#x} by {n}");
        }
    }
}
