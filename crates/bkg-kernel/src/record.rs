//! The payload of a WAL commit record and the change feed built from it.

use std::collections::HashMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::catalog::Catalog;
use crate::error::{Error, Result};
use crate::mvcc::BaseSegment;
use crate::value::Value;

/// Payload format version, first byte of every record payload. Version 2 carries the catalog as
/// JSON, so fields added to it later (with serde defaults) keep old records readable.
pub const RECORD_VERSION: u8 = 2;

/// Format of a record with column segments: `3`, the length (u64 LE) of a version-2 body whose
/// [`Op::InsertColumns`] carry no bytes, that body, then per `InsertColumns` op in order its
/// Arrow IPC stream, each preceded by its length (u64 LE). The streams are written straight
/// from the segments' buffers into the payload, so a bulk load is copied once, not twice.
pub const RECORD_VERSION_COLUMNS: u8 = 3;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Op {
    Insert {
        table: u64,
        rowid: u64,
        row: Vec<Value>,
    },
    Delete {
        table: u64,
        rowid: u64,
        old: Vec<Value>,
    },
    Update {
        table: u64,
        old_rowid: u64,
        new_rowid: u64,
        old: Vec<Value>,
        new: Vec<Value>,
    },
    /// Rows of a bulk insert, column by column: an Arrow IPC stream (see [`write_segment`]);
    /// empty inside a format-3 record, whose streams follow its body.
    InsertColumns {
        table: u64,
        #[serde(with = "byte_buf")]
        ipc: Vec<u8>,
    },
}

/// Appends the row groups of a column segment to `out` as an Arrow IPC stream: field 0 is
/// `__rowid`, the others are named by the physical column position they hold.
fn write_segment(seg: &BaseSegment, out: &mut Vec<u8>) -> Result<()> {
    let err = |e: arrow::error::ArrowError| Error::Internal(format!("encoding a column segment: {e}"));
    let Some(first) = seg.groups.first() else { return Ok(()) };
    let mut w = arrow::ipc::writer::StreamWriter::try_new(out, &first.schema()).map_err(err)?;
    for g in &seg.groups {
        w.write(g).map_err(err)?;
    }
    w.finish().map_err(err)
}

/// Decodes what [`write_segment`] wrote, as a segment whose rows have `xmin = ts`.
pub fn decode_segment(ipc: &[u8], ts: u64) -> Result<BaseSegment> {
    let err = |e: arrow::error::ArrowError| Error::Internal(format!("decoding a column segment: {e}"));
    let reader = arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(ipc), None).map_err(err)?;
    let schema = reader.schema();
    let mut columns = HashMap::new();
    for (i, f) in schema.fields().iter().enumerate().skip(1) {
        let pos: usize = f
            .name()
            .parse()
            .map_err(|_| Error::Internal(format!("column segment field {:?} is not a position", f.name())))?;
        columns.insert(pos, i);
    }
    let groups = reader.collect::<std::result::Result<Vec<_>, _>>().map_err(err)?;
    BaseSegment::new(ts, groups, columns, HashMap::new())
}

/// A byte vector as one length-prefixed run of bytes (serde's default is one element at a time).
mod byte_buf {
    use serde::{Deserializer, Serializer, de};

    pub fn serialize<S: Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(b)
    }

    struct Visitor;

    impl<'de> de::Visitor<'de> for Visitor {
        type Value = Vec<u8>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("bytes")
        }
        fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
            Ok(v.to_vec())
        }
        fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
            Ok(v)
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        d.deserialize_byte_buf(Visitor)
    }
}

/// One committed transaction.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CommitRecord {
    pub commit_ts: u64,
    /// Wall-clock time of the commit, milliseconds since the Unix epoch.
    pub wall_ms: u64,
    /// The whole catalog after the transaction, when it ran DDL.
    #[serde(with = "catalog_json")]
    pub catalog: Option<Catalog>,
    pub ops: Vec<Op>,
}

impl CommitRecord {
    pub fn encode(&self) -> Result<Vec<u8>> {
        // Sized up front: a bulk load's record runs to hundreds of MiB, and growing the buffer by
        // doubling copied it and touched fresh pages several times over.
        let size = bincode::serialized_size(self).map_err(|e| Error::Internal(format!("sizing a WAL record: {e}")))?;
        let mut out = Vec::with_capacity(1 + size as usize);
        out.push(RECORD_VERSION);
        bincode::serialize_into(&mut out, self).map_err(|e| Error::Internal(format!("encoding a WAL record: {e}")))?;
        #[cfg(debug_assertions)]
        self.check_decodes(&out, true);
        Ok(out)
    }

    /// Debug builds decode every record they encode (invariant: what the WAL holds is what the
    /// reader will replay). A record without column segments must also encode back to the very
    /// same bytes.
    #[cfg(debug_assertions)]
    fn check_decodes(&self, encoded: &[u8], same_bytes: bool) {
        let back = CommitRecord::decode(encoded).expect("an encoded WAL record decodes");
        assert_eq!((back.commit_ts, back.wall_ms, back.ops.len()), (self.commit_ts, self.wall_ms, self.ops.len()));
        assert_eq!(back.catalog.is_some(), self.catalog.is_some());
        if same_bytes {
            let mut again = vec![RECORD_VERSION];
            bincode::serialize_into(&mut again, &back).expect("re-encoding a decoded WAL record");
            assert!(again == encoded, "a WAL record decodes to a different record");
        }
    }

    /// Encodes the record whose `InsertColumns` ops (empty) stand for `segments`, in order.
    pub fn encode_with_segments(&self, segments: &[Arc<BaseSegment>]) -> Result<Vec<u8>> {
        if segments.is_empty() {
            return self.encode();
        }
        let head = bincode::serialized_size(self).map_err(|e| Error::Internal(format!("sizing a WAL record: {e}")))?;
        let data: usize = segments
            .iter()
            .map(|s| s.groups.iter().map(|g| g.get_array_memory_size() + 1024).sum::<usize>() + 1024)
            .sum();
        let mut out = Vec::with_capacity(9 + head as usize + data);
        out.push(RECORD_VERSION_COLUMNS);
        out.extend_from_slice(&head.to_le_bytes());
        bincode::serialize_into(&mut out, self).map_err(|e| Error::Internal(format!("encoding a WAL record: {e}")))?;
        for seg in segments {
            let at = out.len();
            out.extend_from_slice(&[0; 8]);
            write_segment(seg, &mut out)?;
            let len = (out.len() - at - 8) as u64;
            out[at..at + 8].copy_from_slice(&len.to_le_bytes());
        }
        #[cfg(debug_assertions)]
        self.check_decodes(&out, false);
        Ok(out)
    }

    pub fn decode(buf: &[u8]) -> Result<CommitRecord> {
        match buf.first() {
            Some(&RECORD_VERSION_COLUMNS) => {
                let bad = || Error::Internal("a WAL record's column segments are cut short".into());
                let read_len = |at: usize| -> Result<usize> {
                    let b = buf.get(at..at + 8).ok_or_else(bad)?;
                    usize::try_from(u64::from_le_bytes(b.try_into().expect("8 bytes"))).map_err(|_| bad())
                };
                let head = read_len(1)?;
                let body = buf.get(9..9usize.checked_add(head).ok_or_else(bad)?).ok_or_else(bad)?;
                let mut rec: CommitRecord =
                    bincode::deserialize(body).map_err(|e| Error::Internal(format!("decoding a WAL record: {e}")))?;
                let mut at = 9 + head;
                for op in &mut rec.ops {
                    if let Op::InsertColumns { ipc, .. } = op {
                        let len = read_len(at)?;
                        at += 8;
                        *ipc = buf.get(at..at.checked_add(len).ok_or_else(bad)?).ok_or_else(bad)?.to_vec();
                        at += len;
                    }
                }
                Ok(rec)
            }
            Some(&RECORD_VERSION) => {
                bincode::deserialize(&buf[1..]).map_err(|e| Error::Internal(format!("decoding a WAL record: {e}")))
            }
            Some(1) => Err(Error::Internal(
                "WAL record of format 1 (bkg-db before roles were added): dump with the older binary and restore"
                    .into(),
            )),
            other => Err(Error::Internal(format!("unknown WAL record version {other:?}"))),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChangeKind {
    Insert,
    Update,
    Delete,
    Ddl,
}

/// One committed change, as the change feed hands it out.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Change {
    pub lsn: u64,
    pub commit_ts: u64,
    pub wall_ms: u64,
    pub table_id: u64,
    /// `schema.table` as of the commit (empty for DDL).
    pub table: String,
    pub kind: ChangeKind,
    pub old: Option<Vec<Value>>,
    pub new: Option<Vec<Value>>,
}

/// The catalog inside a record, as JSON bytes (schema-tolerant, unlike the rest of the record).
mod catalog_json {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::catalog::Catalog;

    pub fn serialize<S: Serializer>(c: &Option<Catalog>, s: S) -> Result<S::Ok, S::Error> {
        match c {
            Some(c) => {
                let bytes = serde_json::to_vec(c).map_err(serde::ser::Error::custom)?;
                s.serialize_some(&bytes)
            }
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Catalog>, D::Error> {
        let bytes: Option<Vec<u8>> = Option::deserialize(d)?;
        bytes.map(|b| serde_json::from_slice(&b).map_err(serde::de::Error::custom)).transpose()
    }
}
