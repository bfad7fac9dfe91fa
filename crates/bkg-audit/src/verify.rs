//! Offline verification: the chain across all segments, each segment's opening line, and the
//! signature of every closed segment. Stops at the first bad place and names it.

use std::path::Path;

use crate::error::{AuditError, Result, io};
use crate::event::{GENESIS, Line, line_hash};
use crate::keys::{PUBLIC_KEYS_DIR, key_id_of_pem, verify_blob};
use crate::log::{segments, sig_path};
use crate::{FORMAT, SEGMENT_OPEN};

/// What a successful verification saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub segments: usize,
    /// Signed (closed) segments among them.
    pub signed: usize,
    pub lines: u64,
    /// `seq` and hash of the last line: record them elsewhere to detect later removal of whole
    /// newest segments, which no chain can show.
    pub head_seq: u64,
    pub head_hash: String,
    /// The newest segment when it is still open (not signed yet).
    pub open_segment: Option<String>,
    /// The segment the log starts at, when older ones were archived (its `prev` is trusted).
    pub starts_at: u64,
}

struct Chain {
    seq: u64,
    prev: String,
}

fn tampered(file: &str, line: usize, reason: impl Into<String>) -> AuditError {
    AuditError::Tampered { file: file.to_string(), line, reason: reason.into() }
}

/// Verifies the audit directory. `pinned` are PEM public keys held elsewhere: when given, every
/// signature must be by one of them; otherwise by the keys published in the directory.
pub fn verify(dir: &Path, pinned: &[String]) -> Result<Report> {
    let segs = segments(dir)?;
    let mut report = Report {
        segments: segs.len(),
        signed: 0,
        lines: 0,
        head_seq: 0,
        head_hash: GENESIS.to_string(),
        open_segment: None,
        starts_at: segs.first().map_or(1, |s| s.0),
    };
    let mut chain: Option<Chain> = None;
    for (i, (n, path)) in segs.iter().enumerate() {
        let name = path.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
        if i > 0 && segs[i - 1].0 + 1 != *n {
            return Err(tampered(&name, 0, format!("segment {} is missing", segs[i - 1].0 + 1)));
        }
        let bytes = std::fs::read(path).map_err(io(path))?;
        let key_id = check_segment(&name, *n, &bytes, &mut chain, &mut report)?;
        let sp = sig_path(path);
        if sp.exists() {
            let sig = std::fs::read_to_string(&sp).map_err(io(&sp))?;
            let key = public_key(dir, pinned, &key_id).map_err(|r| tampered(&name, 1, r))?;
            if !verify_blob(&key, &bytes, &sig) {
                return Err(tampered(&name, 0, format!("the segment's signature does not verify with key {key_id}")));
            }
            report.signed += 1;
        } else if i + 1 < segs.len() {
            return Err(tampered(&name, 0, "a closed segment has no signature"));
        } else {
            report.open_segment = Some(name);
        }
    }
    if let Some(c) = chain {
        report.head_seq = c.seq;
        report.head_hash = c.prev;
    }
    Ok(report)
}

/// Checks one segment's lines against the chain; returns the key id its first line names.
fn check_segment(name: &str, n: u64, bytes: &[u8], chain: &mut Option<Chain>, report: &mut Report) -> Result<String> {
    if bytes.is_empty() {
        return Err(tampered(name, 1, "the segment is empty"));
    }
    let lines: Vec<&[u8]> = bytes.split(|b| *b == b'\n').collect();
    // A file ending in a newline splits into its lines and one empty tail.
    let (tail, lines) = lines.split_last().expect("at least one element");
    if !tail.is_empty() {
        return Err(tampered(name, lines.len() + 1, "the last line is incomplete (cut, or a crash while writing)"));
    }
    let mut key_id = String::new();
    for (i, raw) in lines.iter().enumerate() {
        let no = i + 1;
        let line: Line =
            serde_json::from_slice(raw).map_err(|e| tampered(name, no, format!("not an audit line: {e}")))?;
        let expected = chain.get_or_insert_with(|| Chain { seq: line.seq.saturating_sub(1), prev: line.prev.clone() });
        if line.prev != expected.prev {
            return Err(tampered(
                name,
                no,
                "prev is not the hash of the line before: a line was changed, removed or moved",
            ));
        }
        if line.seq != expected.seq + 1 {
            return Err(tampered(name, no, format!("seq {} where {} was expected", line.seq, expected.seq + 1)));
        }
        if no == 1 {
            key_id = check_opening(name, n, &line)?;
            if report.lines == 0 && n == 1 && line.prev != GENESIS {
                return Err(tampered(name, 1, "the first segment does not start the chain"));
            }
        } else if line.event.action == SEGMENT_OPEN {
            return Err(tampered(name, no, "a segment opening inside a segment"));
        }
        expected.seq = line.seq;
        expected.prev = line_hash(raw);
        report.lines += 1;
    }
    Ok(key_id)
}

fn check_opening(name: &str, n: u64, line: &Line) -> Result<String> {
    let d = &line.event.detail;
    if line.event.action != SEGMENT_OPEN {
        return Err(tampered(name, 1, "the segment does not open with audit.segment_open"));
    }
    if d.get("format").and_then(|v| v.as_str()) != Some(FORMAT) {
        return Err(tampered(name, 1, format!("unknown format {} (this build reads {FORMAT})", d["format"])));
    }
    if d.get("segment").and_then(|v| v.as_u64()) != Some(n) {
        return Err(tampered(
            name,
            1,
            format!("the file holds segment {}, not {n}: segments were renamed", d["segment"]),
        ));
    }
    d.get("key_id")
        .and_then(|v| v.as_str())
        .map(str::to_string)
        .ok_or_else(|| tampered(name, 1, "the segment names no signing key"))
}

/// The PEM public key with this id: one of the pinned keys, or the directory's.
fn public_key(dir: &Path, pinned: &[String], key_id: &str) -> std::result::Result<String, String> {
    if !pinned.is_empty() {
        return pinned
            .iter()
            .find(|p| key_id_of_pem(p).as_deref() == Some(key_id))
            .cloned()
            .ok_or_else(|| format!("signed by key {key_id}, which is not among the given keys"));
    }
    let path = dir.join(PUBLIC_KEYS_DIR).join(format!("{key_id}.pem"));
    let pem =
        std::fs::read_to_string(&path).map_err(|_| format!("the public key {key_id} is not in {PUBLIC_KEYS_DIR}/"))?;
    if key_id_of_pem(&pem).as_deref() != Some(key_id) {
        return Err(format!("{PUBLIC_KEYS_DIR}/{key_id}.pem holds another key"));
    }
    Ok(pem)
}
