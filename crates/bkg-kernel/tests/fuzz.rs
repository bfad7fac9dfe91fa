//! Fuzz target `wal_record`, run inside the normal test suite for a bounded time.
//!
//! It feeds mutated bytes to the WAL's readers: [`CommitRecord::decode`] (a commit record's
//! payload, formats 2 and 3) and [`wal::read_wal`] (whole segments, over an in-memory [`Vfs`]:
//! frame parsing, CRC checks, the torn-tail search). Seeds are records encoded by the test
//! itself (Insert/Update/Delete/InsertColumns ops, with and without a catalog) and the files of
//! `testdata/fuzz/wal_record/` (`*.bin` record payloads, `*.seg` segments). Mutations (bit
//! flips, interesting bytes and integers, truncation, slice duplication, random insertions,
//! splicing of two inputs) come from a xorshift64 PRNG seeded with a constant, so a run is
//! deterministic. A panic fails the test and prints the input (hex and escaped), the seed and
//! the iteration; the input is also saved to `$TMPDIR/bkg-fuzz-wal_record-crash.{bin,seg}`, and
//! copying that file into `testdata/fuzz/wal_record/` replays it on every run. Decoded output is
//! checked to stay proportional to the input.
//!
//! Default budget: 20 000 iterations or 2 s, whichever comes first (split between the record
//! and the segment loops). Longer runs:
//!
//! ```text
//! BKG_FUZZ_SECS=60 cargo nextest run -p bkg-kernel --test fuzz
//! ```
//!
//! `BKG_FUZZ_SECS` alone lifts the iteration cap; `BKG_FUZZ_ITERS` sets it, `BKG_FUZZ_SEED`
//! changes the PRNG seed (decimal or `0x` hex), and `BKG_FUZZ_VERBOSE=1` prints each input
//! before it runs (for aborts, such as a stack overflow, that no test can catch).

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bkg_kernel::fuzzing::{Budget, Spec, corpus, run};
use bkg_kernel::record::{CommitRecord, Op};
use bkg_kernel::vfs::{Vfs, VfsFile};
use bkg_kernel::wal::{self, read_wal};
use bkg_kernel::{Catalog, Limits, Value};

// ---------------------------------------------------------------------------------------------
// The target.

/// Longest mutated record payload (a few hundred nested arrays at most: bincode has no depth
/// limit, and the seeds are small).
const RECORD_LEN_MAX: usize = 4096;
const SEGMENT_LEN_MAX: usize = 8192;
const WAL_DIR: &str = "wal";
/// First LSN of the second segment in two-segment runs (past any first segment's length).
const SECOND_SEGMENT_LSN: u64 = 1 << 20;

/// Read-only in-memory segment files for [`read_wal`] (which only lists and reads unless asked
/// to repair).
struct MemVfs {
    files: Vec<(PathBuf, Vec<u8>)>,
}

fn read_only() -> io::Error {
    io::Error::other("the fuzz VFS is read-only")
}

impl Vfs for MemVfs {
    fn create_dir_all(&self, _: &Path) -> io::Result<()> {
        Ok(())
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        let mut out: Vec<PathBuf> =
            self.files.iter().filter(|(p, _)| p.parent() == Some(dir)).map(|(p, _)| p.clone()).collect();
        out.sort();
        Ok(out)
    }
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        self.files
            .iter()
            .find(|(p, _)| p.as_path() == path)
            .map(|(_, b)| b.clone())
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
    }
    fn exists(&self, path: &Path) -> bool {
        self.files.iter().any(|(p, _)| p.as_path() == path)
    }
    fn open_append(&self, _: &Path) -> io::Result<Box<dyn VfsFile>> {
        Err(read_only())
    }
    fn create(&self, _: &Path) -> io::Result<Box<dyn VfsFile>> {
        Err(read_only())
    }
    fn rename(&self, _: &Path, _: &Path) -> io::Result<()> {
        Err(read_only())
    }
    fn remove_file(&self, _: &Path) -> io::Result<()> {
        Err(read_only())
    }
    fn remove_dir_all(&self, _: &Path) -> io::Result<()> {
        Err(read_only())
    }
    fn sync_dir(&self, _: &Path) -> io::Result<()> {
        Ok(())
    }
}

fn segment_header() -> Vec<u8> {
    let mut h = wal::SEGMENT_MAGIC.to_vec();
    h.extend_from_slice(&wal::SEGMENT_VERSION.to_le_bytes());
    let crc = crc32c::crc32c(&h);
    h.extend_from_slice(&crc.to_le_bytes());
    h
}

/// A segment holding `payloads`, each framed as the writer frames it.
fn segment(payloads: &[&[u8]]) -> Vec<u8> {
    let mut out = segment_header();
    for p in payloads {
        wal::frame(p, &mut out);
    }
    out
}

fn text(s: &str) -> Value {
    Value::Text(Arc::from(s))
}

/// Records as the kernel writes them, covering every op and value kind.
fn records() -> Vec<CommitRecord> {
    let wall_ms = 1_700_000_000_000;
    let every_value = vec![
        Value::Null,
        Value::Bool(true),
        Value::Int16(-7),
        Value::Int32(i32::MIN),
        Value::Int64(i64::MAX),
        Value::Float32(1.5),
        Value::Float64(f64::NAN),
        Value::Decimal(-1_234_500),
        text("ünïcødé 'quoted' \\ \u{1F600}"),
        Value::Bytes(Arc::from(&b"\x00\xff\xde\xad"[..])),
        Value::Date(19_000),
        Value::Time(43_200_000_000),
        Value::Timestamp(1_700_000_000_000_000),
        Value::Interval { months: 14, days: 3, nanos: 3_600_000_000_000 },
        Value::Array(Arc::from(vec![Value::Int32(1), Value::Null, Value::Array(Arc::from(vec![text("x")]))])),
    ];
    vec![
        CommitRecord {
            commit_ts: 1,
            wall_ms,
            catalog: None,
            ops: vec![Op::Insert { table: 16384, rowid: 1, row: vec![Value::Int64(1), text("alice"), Value::Null] }],
        },
        CommitRecord {
            commit_ts: 2,
            wall_ms,
            catalog: None,
            ops: vec![
                Op::Update {
                    table: 16384,
                    old_rowid: 1,
                    new_rowid: 2,
                    old: vec![Value::Int64(1), text("alice"), Value::Null],
                    new: vec![Value::Int64(1), text("alice b."), Value::Int32(42)],
                },
                Op::Delete { table: 16385, rowid: 9, old: vec![Value::Int64(9), Value::Bool(false)] },
            ],
        },
        CommitRecord {
            commit_ts: 3,
            wall_ms,
            catalog: None,
            ops: vec![Op::Insert { table: 16386, rowid: 7, row: every_value }],
        },
        CommitRecord {
            commit_ts: 4,
            wall_ms,
            catalog: None,
            ops: vec![
                Op::InsertColumns { table: 16384, ipc: b"ARROW1\x00\x00not really arrow".to_vec() },
                Op::Delete { table: 16384, rowid: 2, old: vec![] },
            ],
        },
        CommitRecord { commit_ts: 5, wall_ms, catalog: Some(Catalog::default()), ops: vec![] },
        CommitRecord { commit_ts: 6, wall_ms: 0, catalog: None, ops: vec![] },
    ]
}

/// `rec` in format 3 (as `encode_with_segments` writes it): its `InsertColumns` bytes moved out
/// of the body, after it, each preceded by its length.
fn encode_v3(rec: &CommitRecord) -> Vec<u8> {
    let mut head = rec.clone();
    let mut streams = Vec::new();
    for op in &mut head.ops {
        if let Op::InsertColumns { ipc, .. } = op {
            streams.push(std::mem::take(ipc));
        }
    }
    let v2 = head.encode().expect("encoding a record");
    let body = &v2[1..];
    let mut out = vec![bkg_kernel::record::RECORD_VERSION_COLUMNS];
    out.extend_from_slice(&(body.len() as u64).to_le_bytes());
    out.extend_from_slice(body);
    for s in streams {
        out.extend_from_slice(&(s.len() as u64).to_le_bytes());
        out.extend_from_slice(&s);
    }
    out
}

/// Values and bytes of text in `v`, recursively.
fn value_size(v: &Value, nodes: &mut usize, bytes: &mut usize) {
    *nodes += 1;
    match v {
        Value::Text(s) => *bytes += s.len(),
        Value::Bytes(b) => *bytes += b.len(),
        Value::Array(a) => a.iter().for_each(|x| value_size(x, nodes, bytes)),
        _ => {}
    }
}

/// Decodes one record payload. What decodes stays within the input's size (every op and value
/// takes at least its 4-byte tag; every string and byte run is copied from the input once), and
/// re-encodes into something that decodes again.
fn check_record(buf: &[u8]) -> bool {
    let Ok(rec) = CommitRecord::decode(buf) else {
        return false;
    };
    let (mut nodes, mut bytes) = (rec.ops.len(), 0usize);
    for op in &rec.ops {
        match op {
            Op::Insert { row, .. } => row.iter().for_each(|v| value_size(v, &mut nodes, &mut bytes)),
            Op::Delete { old, .. } => old.iter().for_each(|v| value_size(v, &mut nodes, &mut bytes)),
            Op::Update { old, new, .. } => {
                old.iter().chain(new.iter()).for_each(|v| value_size(v, &mut nodes, &mut bytes))
            }
            Op::InsertColumns { ipc, .. } => bytes += ipc.len(),
        }
    }
    assert!(nodes <= buf.len(), "{} input bytes decoded to {nodes} ops and values", buf.len());
    assert!(bytes <= buf.len(), "{} input bytes decoded to {bytes} bytes of text and data", buf.len());
    let again = rec.encode().expect("a decoded record re-encodes");
    let back = CommitRecord::decode(&again).expect("a re-encoded record decodes");
    assert_eq!(back.ops.len(), rec.ops.len(), "ops lost in a re-encoding");
    assert_eq!((back.commit_ts, back.wall_ms), (rec.commit_ts, rec.wall_ms));
    true
}

/// Reads `files` (first LSN, bytes) as the WAL directory. Checks that the records found lie
/// within the input, in LSN order, one segment info per file, and decodes each record.
fn check_wal(files: &[(u64, &[u8])], limits: &Limits) -> bool {
    let vfs = MemVfs {
        files: files.iter().map(|(lsn, b)| (wal::segment_path(Path::new(WAL_DIR), *lsn), b.to_vec())).collect(),
    };
    let total: usize = files.iter().map(|(_, b)| b.len()).sum();
    let Ok(w) = read_wal(&vfs, Path::new(WAL_DIR), limits, false) else {
        return false;
    };
    let payload: usize = w.records.iter().map(|(_, p)| p.len() + 8).sum();
    assert!(payload <= total, "{total} segment bytes gave {payload} bytes of framed records");
    assert!(w.records.windows(2).all(|r| r[0].0 < r[1].0), "record LSNs out of order");
    assert!(w.truncated_bytes <= total as u64, "{} bytes cut from {total}", w.truncated_bytes);
    assert_eq!(w.segments.len(), files.len(), "one segment info per segment file");
    for (_, p) in &w.records {
        check_record(p);
    }
    true
}

#[test]
fn wal_record() {
    let budget = Budget::from_env();
    let files = corpus("wal_record");
    let recs = records();

    // Record payloads: the test's records in formats 2 and 3, and the corpus's *.bin files.
    let mut record_seeds: Vec<(String, Vec<u8>)> = Vec::new();
    for (i, r) in recs.iter().enumerate() {
        record_seeds.push((format!("record {i} (format 2)"), r.encode().expect("encoding a record")));
        if r.ops.iter().any(|op| matches!(op, Op::InsertColumns { .. })) {
            record_seeds.push((format!("record {i} (format 3)"), encode_v3(r)));
        }
    }
    for (label, payload) in &record_seeds {
        if let Err(e) = CommitRecord::decode(payload) {
            panic!("seed {label} does not decode: {e}");
        }
    }
    record_seeds.extend(files.iter().filter(|(f, _)| f.ends_with(".bin")).cloned());

    // Framed in a segment, any payload reads back as it was.
    let header = segment_header();
    let mut record_target = |input: &[u8]| -> bool {
        let accepted = check_record(input);
        let seg = segment(&[input]);
        let w = read_wal(
            &MemVfs { files: vec![(wal::segment_path(Path::new(WAL_DIR), 0), seg)] },
            Path::new(WAL_DIR),
            &Limits::default(),
            false,
        )
        .expect("a segment of one framed record reads");
        assert_eq!(w.records.len(), 1);
        assert_eq!(w.records[0].0, header.len() as u64, "the record's LSN is its offset");
        assert_eq!(w.records[0].1, input, "the framed payload reads back unchanged");
        accepted
    };
    let spec = Spec { name: "wal_record", ext: "bin", max_len: RECORD_LEN_MAX, tokens: &[] };
    run(&spec, &budget.share(2), &record_seeds, &mut record_target);

    // Whole segments: the test's records framed (whole, torn, zero-filled, damaged), and the
    // corpus's *.seg files.
    let payloads: Vec<Vec<u8>> = recs.iter().map(|r| r.encode().expect("encoding a record")).collect();
    let all: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
    let full = segment(&all);
    let mut segment_seeds: Vec<(String, Vec<u8>)> = vec![
        ("every record".into(), full.clone()),
        ("one record".into(), segment(&all[..1])),
        ("empty".into(), segment(&[])),
    ];
    let one_frame_len = segment(&all[..1]).len() - header.len();
    let mut torn = full.clone();
    torn.truncate(full.len() - 3);
    segment_seeds.push(("torn tail".into(), torn));
    let mut zeros = segment(&all[..2]);
    zeros.extend_from_slice(&[0; 100]);
    segment_seeds.push(("zero-filled tail".into(), zeros));
    let mut damaged = full.clone();
    damaged[header.len() + one_frame_len / 2] ^= 0x04;
    segment_seeds.push(("damage before valid records".into(), damaged));
    segment_seeds.extend(files.iter().filter(|(f, _)| f.ends_with(".seg")).cloned());

    let small = Limits { wal_record_bytes_max: 256, ..Limits::default() };
    let mut segment_target = |input: &[u8]| -> bool {
        // Alone (the last segment: a bad record may be a torn tail), with a small record limit,
        // and before a valid segment (not the last: a bad record is corruption).
        let accepted = check_wal(&[(0, input)], &Limits::default());
        check_wal(&[(0, input)], &small);
        check_wal(&[(0, input), (SECOND_SEGMENT_LSN, full.as_slice())], &Limits::default());
        accepted
    };
    let spec = Spec { name: "wal_record", ext: "seg", max_len: SEGMENT_LEN_MAX, tokens: &[] };
    run(&spec, &budget.share(2), &segment_seeds, &mut segment_target);
}
