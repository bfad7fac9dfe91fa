//! The writer: appends events to the open segment, rotates by size, signs closed segments.

use std::collections::HashSet;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::json;

use crate::error::{AuditError, Result, io};
use crate::event::{Actor, Event, GENESIS, Line, Outcome, line_hash};
use crate::keys::{KeyInfo, SigningKey};
use crate::{FORMAT, SEGMENT_OPEN};

#[derive(Debug, Clone)]
pub struct LogOptions {
    /// A segment is closed and signed once it holds this many bytes.
    pub segment_bytes_max: u64,
}

impl Default for LogOptions {
    fn default() -> Self {
        LogOptions { segment_bytes_max: 16 << 20 }
    }
}

/// The audit directory's writer. One per directory (the server's); not shared across processes.
#[derive(Debug)]
pub struct AuditLog {
    dir: PathBuf,
    opts: LogOptions,
    key: SigningKey,
    /// Number of the open segment, or of the next one when `file` is `None`.
    segment: u64,
    file: Option<File>,
    size: u64,
    /// `seq` and hash of the last line written.
    seq: u64,
    head: String,
    /// Event ids of the open segment and of the one before it.
    recent: HashSet<String>,
    older: HashSet<String>,
    /// Set after a failed write: the files may end in a partial batch; nothing more is written
    /// until the log is opened again (which drops an incomplete last line).
    broken: bool,
}

/// `audit-000001.jsonl`.
pub(crate) fn segment_name(n: u64) -> String {
    format!("audit-{n:06}.jsonl")
}

pub(crate) fn sig_path(segment: &Path) -> PathBuf {
    let mut s = segment.as_os_str().to_owned();
    s.push(".sig");
    PathBuf::from(s)
}

/// The segments of an audit directory, oldest first.
pub(crate) fn segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(io(dir)(e)),
    };
    for entry in entries {
        let entry = entry.map_err(io(dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(n) = name.strip_prefix("audit-").and_then(|s| s.strip_suffix(".jsonl"))
            && let Ok(n) = n.parse::<u64>()
        {
            out.push((n, entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

impl AuditLog {
    /// Opens (creating) the audit directory: loads or creates the signing key, finds the end
    /// of the chain, and drops an incomplete last line left by a crash.
    pub fn open(dir: &Path, opts: LogOptions) -> Result<AuditLog> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let key = SigningKey::load_or_create(dir)?;
        let mut log = AuditLog {
            dir: dir.to_path_buf(),
            opts,
            key,
            segment: 1,
            file: None,
            size: 0,
            seq: 0,
            head: GENESIS.to_string(),
            recent: HashSet::new(),
            older: HashSet::new(),
            broken: false,
        };
        let segs = segments(dir)?;
        if let Some((n, path)) = segs.last() {
            if segs.len() > 1 {
                let (_, before) = &segs[segs.len() - 2];
                log.older = log.scan(before, false)?;
            }
            log.recent = log.scan(path, true)?;
            if sig_path(path).exists() {
                log.segment = n + 1;
                log.older = std::mem::take(&mut log.recent);
            } else {
                log.segment = *n;
                let f = std::fs::OpenOptions::new().append(true).open(path).map_err(io(path))?;
                log.size = f.metadata().map_err(io(path))?.len();
                log.file = Some(f);
            }
        }
        Ok(log)
    }

    /// The ids of a segment; for the newest one also the end of the chain, after cutting an
    /// incomplete last line.
    fn scan(&mut self, path: &Path, newest: bool) -> Result<HashSet<String>> {
        let mut bytes = std::fs::read(path).map_err(io(path))?;
        let complete = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        if newest && complete < bytes.len() && !sig_path(path).exists() {
            // A crash in the middle of a write: the batch was never acknowledged.
            let f = std::fs::OpenOptions::new().write(true).open(path).map_err(io(path))?;
            f.set_len(complete as u64).map_err(io(path))?;
            f.sync_all().map_err(io(path))?;
            bytes.truncate(complete);
        }
        let mut ids = HashSet::new();
        let file = path.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
        for (i, raw) in bytes[..complete].split(|b| *b == b'\n').filter(|l| !l.is_empty()).enumerate() {
            let line: Line = serde_json::from_slice(raw).map_err(|e| AuditError::Tampered {
                file: file.clone(),
                line: i + 1,
                reason: format!(
                    "not an audit line ({e}); run `bkg-db audit verify`, and move the segment aside to start"
                ),
            })?;
            if newest {
                self.seq = line.seq;
                self.head = line_hash(raw);
            }
            ids.insert(line.event.id);
        }
        Ok(ids)
    }

    /// The public key signing segments now.
    pub fn public_key(&self) -> &KeyInfo {
        &self.key.info
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `seq` and hash of the last line written.
    pub fn head(&self) -> (u64, &str) {
        (self.seq, &self.head)
    }

    /// Appends the events not written before, fsyncs, and returns how many it wrote.
    pub fn append(&mut self, events: &[Event]) -> Result<usize> {
        if self.broken {
            return Err(AuditError::Invalid("an earlier write to the audit log failed; restart the server".into()));
        }
        let r = self.append_inner(events);
        if r.is_err() {
            self.broken = true;
        }
        r
    }

    fn append_inner(&mut self, events: &[Event]) -> Result<usize> {
        let mut buf = Vec::new();
        let mut written = 0;
        for ev in events {
            if self.recent.contains(&ev.id) || self.older.contains(&ev.id) {
                continue;
            }
            if self.file.is_none() {
                self.start_segment(&mut buf)?;
            }
            self.push_line(&mut buf, ev.clone())?;
            written += 1;
            if self.size + buf.len() as u64 >= self.opts.segment_bytes_max {
                self.flush(&mut buf)?;
                self.close_segment()?;
            }
        }
        self.flush(&mut buf)?;
        Ok(written)
    }

    fn start_segment(&mut self, buf: &mut Vec<u8>) -> Result<()> {
        let path = self.dir.join(segment_name(self.segment));
        let f = std::fs::OpenOptions::new().create_new(true).append(true).open(&path).map_err(io(&path))?;
        sync_dir(&self.dir)?;
        self.file = Some(f);
        self.size = 0;
        self.older = std::mem::take(&mut self.recent);
        let actor = Actor { role: "bkg-db".into(), ..Actor::default() };
        let open = Event::new(actor, SEGMENT_OPEN, &segment_name(self.segment), Outcome::Success)
            .with_detail(json!({ "format": FORMAT, "segment": self.segment, "key_id": self.key.info.key_id }));
        self.push_line(buf, open)
    }

    fn push_line(&mut self, buf: &mut Vec<u8>, event: Event) -> Result<()> {
        let id = event.id.clone();
        let line = Line { seq: self.seq + 1, event, prev: self.head.clone() };
        let bytes = serde_json::to_vec(&line).map_err(|e| AuditError::Invalid(format!("encoding an event: {e}")))?;
        self.seq += 1;
        self.head = line_hash(&bytes);
        buf.extend_from_slice(&bytes);
        buf.push(b'\n');
        self.recent.insert(id);
        Ok(())
    }

    fn flush(&mut self, buf: &mut Vec<u8>) -> Result<()> {
        if buf.is_empty() {
            return Ok(());
        }
        let path = self.dir.join(segment_name(self.segment));
        let f = self.file.as_mut().ok_or_else(|| AuditError::Invalid("no open segment".into()))?;
        f.write_all(buf).map_err(io(&path))?;
        f.sync_data().map_err(io(&path))?;
        self.size += buf.len() as u64;
        buf.clear();
        Ok(())
    }

    /// Signs the open segment and closes it; the next event opens a new one.
    fn close_segment(&mut self) -> Result<PathBuf> {
        let path = self.dir.join(segment_name(self.segment));
        if let Some(f) = self.file.take() {
            f.sync_all().map_err(io(&path))?;
        }
        let bytes = std::fs::read(&path).map_err(io(&path))?;
        let sig = self.key.sign(&bytes)?;
        let sp = sig_path(&path);
        let tmp = sp.with_extension("sig.tmp");
        {
            let mut f = File::create(&tmp).map_err(io(&tmp))?;
            f.write_all(sig.as_bytes()).map_err(io(&tmp))?;
            f.write_all(b"\n").map_err(io(&tmp))?;
            f.sync_all().map_err(io(&tmp))?;
        }
        std::fs::rename(&tmp, &sp).map_err(io(&sp))?;
        sync_dir(&self.dir)?;
        self.segment += 1;
        self.size = 0;
        Ok(path)
    }

    /// Closes and signs the open segment now ("sign on demand"); `None` when no segment is
    /// open (every line is already in a signed segment).
    pub fn seal(&mut self) -> Result<Option<PathBuf>> {
        if self.broken {
            return Err(AuditError::Invalid("an earlier write to the audit log failed; restart the server".into()));
        }
        if self.file.is_none() {
            return Ok(None);
        }
        self.close_segment().map(Some)
    }

    /// Seals the open segment with the current key, then replaces the key; the next segment
    /// is signed by the new one. Old public keys stay in `keys/`.
    pub fn rotate_key(&mut self) -> Result<KeyInfo> {
        self.seal()?;
        self.key = SigningKey::create(&self.dir)?;
        Ok(self.key.info.clone())
    }
}

fn sync_dir(dir: &Path) -> Result<()> {
    #[cfg(unix)]
    File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))?;
    Ok(())
}
