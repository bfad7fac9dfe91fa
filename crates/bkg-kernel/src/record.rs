//! The payload of a WAL commit record and the change feed built from it.

use serde::{Deserialize, Serialize};

use crate::catalog::Catalog;
use crate::error::{Error, Result};
use crate::value::Value;

/// Payload format version, first byte of every record payload. Version 2 carries the catalog as
/// JSON, so fields added to it later (with serde defaults) keep old records readable.
pub const RECORD_VERSION: u8 = 2;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Op {
    Insert { table: u64, rowid: u64, row: Vec<Value> },
    Delete { table: u64, rowid: u64, old: Vec<Value> },
    Update { table: u64, old_rowid: u64, new_rowid: u64, old: Vec<Value>, new: Vec<Value> },
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
        Ok(out)
    }

    pub fn decode(buf: &[u8]) -> Result<CommitRecord> {
        match buf.first() {
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
