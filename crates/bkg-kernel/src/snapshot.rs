//! Column snapshots (checkpoints) and the manifest.
//!
//! ## Layout
//! `snapshots/{checkpoint_ts:020}/t{table_id}.parquet`: the rows of one table visible at the
//! checkpoint, ZSTD-compressed, with a `__rowid` column and one column `c{position}` per live
//! physical column. `MANIFEST`: magic `BKGMAN\r\n`, format version `u32` LE, CRC32C of the JSON
//! body `u32` LE, then the JSON body ([`Manifest`]), which lists every snapshot file with its size
//! and CRC32C.
//!
//! ## Invariants
//! 1. A manifest names only files that were fsynced, together with their directory, before it.
//! 2. The manifest is replaced by write-temp, fsync, rename, fsync-directory: a crash leaves the
//!    old or the new one, never a mix.
//! 3. WAL segments are removed only after the manifest that covers them is durable; replay skips
//!    records with `commit_ts <= checkpoint_ts`.
//! 4. Files are verified against the manifest's CRC before use; a mismatch is a refusal to open.

use std::path::Path;
use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, UInt64Array};
use arrow::datatypes::{Field, Schema};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use serde::{Deserialize, Serialize};

use crate::arrow_conv::{column_from_values, values_from_column};
use crate::catalog::{Catalog, TableDef};
use crate::error::{Error, Result};
use crate::value::{Row, Value};
use crate::vfs::Vfs;

pub const MANIFEST_MAGIC: &[u8; 8] = b"BKGMAN\r\n";
pub const MANIFEST_VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SnapshotFile {
    pub table_id: u64,
    /// Path relative to the data directory.
    pub path: String,
    pub rows: u64,
    pub bytes: u64,
    pub crc32c: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub checkpoint_ts: u64,
    pub wall_ms: u64,
    /// First LSN of the WAL that is not covered by this checkpoint.
    pub wal_start_lsn: u64,
    pub next_rowid: u64,
    pub catalog: Catalog,
    pub files: Vec<SnapshotFile>,
}

pub fn encode_manifest(m: &Manifest) -> Result<Vec<u8>> {
    let body = serde_json::to_vec(m).map_err(|e| Error::Internal(format!("encoding the manifest: {e}")))?;
    let mut out = Vec::with_capacity(body.len() + 16);
    out.extend_from_slice(MANIFEST_MAGIC);
    out.extend_from_slice(&MANIFEST_VERSION.to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(&body).to_le_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

pub fn decode_manifest(path: &Path, buf: &[u8]) -> Result<Manifest> {
    let corrupt =
        |offset: u64, reason: &str| Error::Corruption { path: path.to_path_buf(), offset, reason: reason.into() };
    if buf.len() < 16 || &buf[..8] != MANIFEST_MAGIC {
        return Err(corrupt(0, "bad manifest magic"));
    }
    let version = u32::from_le_bytes(buf[8..12].try_into().expect("4 bytes"));
    if version != MANIFEST_VERSION {
        return Err(corrupt(8, &format!("unknown manifest version {version}")));
    }
    let crc = u32::from_le_bytes(buf[12..16].try_into().expect("4 bytes"));
    if crc32c::crc32c(&buf[16..]) != crc {
        return Err(corrupt(16, "manifest CRC mismatch"));
    }
    serde_json::from_slice(&buf[16..]).map_err(|e| corrupt(16, &format!("manifest body: {e}")))
}

fn snapshot_schema(def: &TableDef) -> Arc<Schema> {
    let mut fields = vec![Field::new("__rowid", arrow::datatypes::DataType::UInt64, false)];
    for (pos, c) in def.live_columns() {
        fields.push(c.data_type.arrow_field(&format!("c{pos}"), true));
    }
    Arc::new(Schema::new(fields))
}

/// Encodes the given rows of a table as a Parquet file.
pub fn write_table_parquet(def: &TableDef, rows: &[(u64, Row)], row_group_rows: usize) -> Result<Vec<u8>> {
    let schema = snapshot_schema(def);
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).expect("valid level")))
        .set_max_row_group_row_count(Some(row_group_rows.max(1)))
        .build();
    let mut buf = Vec::new();
    let perr = |e: parquet::errors::ParquetError| Error::Internal(format!("writing a snapshot: {e}"));
    let mut writer = ArrowWriter::try_new(&mut buf, schema.clone(), Some(props)).map_err(perr)?;
    for chunk in rows.chunks(row_group_rows.max(1)) {
        let mut cols: Vec<ArrayRef> = vec![Arc::new(UInt64Array::from_iter_values(chunk.iter().map(|r| r.0)))];
        for (pos, c) in def.live_columns() {
            let vals = chunk.iter().map(|(_, row)| row.get(pos).unwrap_or(&c.missing));
            cols.push(column_from_values(&c.data_type, vals)?);
        }
        let batch =
            RecordBatch::try_new(schema.clone(), cols).map_err(|e| Error::Internal(format!("snapshot batch: {e}")))?;
        writer.write(&batch).map_err(perr)?;
    }
    writer.close().map_err(perr)?;
    Ok(buf)
}

/// Decodes a snapshot file back into rows of the table's full physical width.
pub fn read_table_parquet(path: &Path, def: &TableDef, bytes: Vec<u8>) -> Result<Vec<(u64, Row)>> {
    let corrupt = |reason: String| Error::Corruption { path: path.to_path_buf(), offset: 0, reason };
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(bytes))
        .map_err(|e| corrupt(format!("{e}")))?
        .build()
        .map_err(|e| corrupt(format!("{e}")))?;
    let mut out = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| corrupt(format!("{e}")))?;
        let rowids = batch
            .column(0)
            .as_any()
            .downcast_ref::<UInt64Array>()
            .ok_or_else(|| corrupt("__rowid is not UInt64".into()))?;
        let mut cols: Vec<Option<Vec<Value>>> = vec![None; def.columns.len()];
        for (pos, c) in def.live_columns() {
            let idx =
                batch.schema().index_of(&format!("c{pos}")).map_err(|_| corrupt(format!("column c{pos} missing")))?;
            cols[pos] = Some(values_from_column(&c.data_type, batch.column(idx))?);
        }
        for i in 0..batch.num_rows() {
            let row: Vec<Value> =
                cols.iter().map(|c| c.as_ref().map(|v| v[i].clone()).unwrap_or(Value::Null)).collect();
            out.push((rowids.value(i), Row::from(row)));
        }
    }
    Ok(out)
}

/// Writes `bytes` to `path` and makes it durable (file data only; the caller syncs the directory).
pub fn write_durable(vfs: &dyn Vfs, path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = vfs.create(path).map_err(|e| Error::io(path, e))?;
    f.write_all(bytes).map_err(|e| Error::io(path, e))?;
    f.sync_data().map_err(|e| Error::io(path, e))?;
    Ok(())
}
