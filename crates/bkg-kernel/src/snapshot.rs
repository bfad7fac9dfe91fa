//! Column snapshots (checkpoints) and the manifest.
//!
//! ## Layout
//! `snapshots/{checkpoint_ts:020}/t{table_id}.parquet`, stored through an `object_store` (the
//! data directory's local file system by default): the rows of one table visible at the
//! checkpoint, in ascending row-id order, ZSTD-compressed, with a `__rowid` column and one column
//! `c{position}` per live physical column, with row-group statistics. `MANIFEST`: magic `BKGMAN\r\n`, format version `u32` LE, CRC32C of the JSON
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

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, FixedSizeBinaryArray, FixedSizeBinaryBuilder, IntervalMonthDayNanoArray, RecordBatch, UInt64Array,
};
use arrow::compute::{concat_batches, sort_to_indices, take_record_batch};
use arrow::datatypes::{DataType as ArrowType, IntervalMonthDayNano};
use arrow::datatypes::{Field, Schema};
use bytes::Bytes;
use futures::TryStreamExt;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::statistics::StatisticsConverter;
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder};
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use serde::{Deserialize, Serialize};

use crate::catalog::{Catalog, TableDef};
use crate::error::{Error, Result};
use crate::mvcc::{BaseSegment, Chunk, ColumnStats};
use crate::util::block_on;
use crate::value::DataType;
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

/// The Arrow schema of a table's snapshot file: `__rowid`, then `c{position}` per live column.
/// Parquet has no type for Arrow's month-day-nanosecond interval, so interval columns are stored
/// as 16-byte fixed-size binaries (months i32, days i32, nanoseconds i64, little-endian).
pub fn snapshot_schema(def: &TableDef) -> Arc<Schema> {
    let mut fields = vec![Field::new("__rowid", ArrowType::UInt64, false)];
    for (pos, c) in def.live_columns() {
        fields.push(match c.data_type {
            DataType::Interval => Field::new(format!("c{pos}"), ArrowType::FixedSizeBinary(16), true),
            _ => c.data_type.arrow_field(&format!("c{pos}"), true),
        });
    }
    Arc::new(Schema::new(fields))
}

fn interval_to_file(col: &ArrayRef) -> Result<ArrayRef> {
    let a = col
        .as_any()
        .downcast_ref::<IntervalMonthDayNanoArray>()
        .ok_or_else(|| Error::Internal("interval column of another type".into()))?;
    let mut b = FixedSizeBinaryBuilder::with_capacity(a.len(), 16);
    for i in 0..a.len() {
        if a.is_null(i) {
            b.append_null();
        } else {
            let v = a.value(i);
            let mut bytes = [0u8; 16];
            bytes[..4].copy_from_slice(&v.months.to_le_bytes());
            bytes[4..8].copy_from_slice(&v.days.to_le_bytes());
            bytes[8..].copy_from_slice(&v.nanoseconds.to_le_bytes());
            b.append_value(bytes).map_err(|e| Error::Internal(format!("interval column: {e}")))?;
        }
    }
    Ok(Arc::new(b.finish()))
}

fn interval_from_file(col: &ArrayRef) -> Option<ArrayRef> {
    let a = col.as_any().downcast_ref::<FixedSizeBinaryArray>().filter(|a| a.value_length() == 16)?;
    let values = (0..a.len()).map(|i| {
        (!a.is_null(i)).then(|| {
            let b = a.value(i);
            let int = |r: std::ops::Range<usize>| i32::from_le_bytes(b[r].try_into().expect("4 bytes"));
            IntervalMonthDayNano::new(int(0..4), int(4..8), i64::from_le_bytes(b[8..16].try_into().expect("8 bytes")))
        })
    });
    Some(Arc::new(values.collect::<IntervalMonthDayNanoArray>()))
}

/// The columns a checkpoint reads for [`write_table_parquet`]: the row id, then every live column.
pub fn snapshot_columns(def: &TableDef) -> Vec<Option<usize>> {
    std::iter::once(None).chain(def.live_columns().map(|(pos, _)| Some(pos))).collect()
}

/// Encodes the chunks of a table (columns as in [`snapshot_columns`]) as a Parquet file whose
/// rows are in ascending row-id order. Returns the file and its row count.
pub fn write_table_parquet(def: &TableDef, chunks: Vec<Chunk>, row_group_rows: usize) -> Result<(Vec<u8>, u64)> {
    let schema = snapshot_schema(def);
    let aerr = |e: arrow::error::ArrowError| Error::Internal(format!("snapshot batch: {e}"));
    let intervals: Vec<usize> = snapshot_columns(def)
        .iter()
        .enumerate()
        .filter(|(_, c)| c.is_some_and(|p| matches!(def.columns[p].data_type, DataType::Interval)))
        .map(|(i, _)| i)
        .collect();
    let mut batches = Vec::with_capacity(chunks.len());
    for (_, mut cols) in chunks {
        for &i in &intervals {
            cols[i] = interval_to_file(&cols[i])?;
        }
        batches.push(RecordBatch::try_new(schema.clone(), cols).map_err(aerr)?);
    }
    let mut last: Option<u64> = None;
    let mut sorted = true;
    for b in &batches {
        let ids = b.column(0).as_any().downcast_ref::<UInt64Array>().expect("row id column");
        for &r in ids.values() {
            sorted &= last.is_none_or(|l| l < r);
            last = Some(r);
        }
    }
    if !sorted {
        // Row ids are allocated at insert time, so a transaction that committed late can hold
        // a smaller one than rows committed before it.
        let all = concat_batches(&schema, &batches).map_err(aerr)?;
        let order = sort_to_indices(all.column(0), None, None).map_err(aerr)?;
        batches = vec![take_record_batch(&all, &order).map_err(aerr)?];
    }
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).expect("valid level")))
        .set_max_row_group_row_count(Some(row_group_rows.max(1)))
        .build();
    let mut buf = Vec::new();
    let perr = |e: parquet::errors::ParquetError| Error::Internal(format!("writing a snapshot: {e}"));
    let mut writer = ArrowWriter::try_new(&mut buf, schema.clone(), Some(props)).map_err(perr)?;
    let mut rows = 0u64;
    for b in &batches {
        rows += b.num_rows() as u64;
        writer.write(b).map_err(perr)?;
    }
    writer.close().map_err(perr)?;
    Ok((buf, rows))
}

/// Decodes a snapshot file into the columnar base of a table: one batch per row group, with
/// the row-group statistics of every live column for pruning.
pub fn read_base_segment(path: &str, def: &TableDef, bytes: Bytes, ts: u64) -> Result<BaseSegment> {
    let corrupt = |reason: String| Error::Corruption { path: path.into(), offset: 0, reason };
    let meta = ArrowReaderMetadata::load(&bytes, ArrowReaderOptions::new()).map_err(|e| corrupt(format!("{e}")))?;
    let schema = meta.schema().clone();
    let mut columns = HashMap::new();
    if schema.fields().first().map(|f| f.data_type()) != Some(&ArrowType::UInt64) {
        return Err(corrupt("the first column is not a UInt64 __rowid".into()));
    }
    let expected = snapshot_schema(def);
    // The in-memory schema: intervals decoded back from their 16-byte file form.
    let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    let mut intervals = Vec::new();
    for (pos, c) in def.live_columns() {
        let name = format!("c{pos}");
        let idx = schema.index_of(&name).map_err(|_| corrupt(format!("column {name} missing")))?;
        let want = expected.field_with_name(&name).map_err(|e| corrupt(e.to_string()))?;
        if schema.field(idx).data_type() != want.data_type() {
            return Err(corrupt(format!("column {name} has type {}", schema.field(idx).data_type())));
        }
        if matches!(c.data_type, DataType::Interval) {
            intervals.push(idx);
            fields[idx] = c.data_type.arrow_field(&name, true);
        }
        columns.insert(pos, idx);
    }
    let memory_schema = Arc::new(Schema::new(fields));
    let md = meta.metadata().clone();
    let mut groups = Vec::with_capacity(md.num_row_groups());
    for g in 0..md.num_row_groups() {
        let rows = md.row_group(g).num_rows().max(1) as usize;
        let reader = ParquetRecordBatchReaderBuilder::new_with_metadata(bytes.clone(), meta.clone())
            .with_row_groups(vec![g])
            .with_batch_size(rows)
            .build()
            .map_err(|e| corrupt(format!("{e}")))?;
        let parts: Vec<RecordBatch> =
            reader.collect::<std::result::Result<_, _>>().map_err(|e| corrupt(format!("{e}")))?;
        let group = concat_batches(&schema, &parts).map_err(|e| corrupt(format!("{e}")))?;
        let mut cols = group.columns().to_vec();
        for &i in &intervals {
            cols[i] = interval_from_file(&cols[i]).ok_or_else(|| corrupt("bad interval column".into()))?;
        }
        groups.push(RecordBatch::try_new(memory_schema.clone(), cols).map_err(|e| corrupt(format!("{e}")))?);
    }
    let mut stats = HashMap::new();
    for &pos in columns.keys() {
        if matches!(def.columns[pos].data_type, DataType::Interval | DataType::Array(_)) {
            continue;
        }
        let Ok(conv) = StatisticsConverter::try_new(&format!("c{pos}"), &schema, meta.parquet_schema()) else {
            continue;
        };
        let (Ok(mins), Ok(maxes), Ok(null_counts)) = (
            conv.row_group_mins(md.row_groups().iter()),
            conv.row_group_maxes(md.row_groups().iter()),
            conv.row_group_null_counts(md.row_groups().iter()),
        ) else {
            continue;
        };
        stats.insert(pos, ColumnStats { mins, maxes, null_counts });
    }
    BaseSegment::new(ts, groups, columns, stats).map_err(|e| corrupt(e.to_string()))
}

/// Where snapshot files live: an object store, the data directory's local file system by
/// default. On the local file system every file is fsynced through the [`Vfs`] after it is put,
/// because the object store itself does not.
#[derive(Debug, Clone)]
pub struct SnapshotStore {
    store: Arc<dyn ObjectStore>,
    /// The data directory, when `store` is the local file system rooted there.
    local_root: Option<PathBuf>,
}

fn os_err(path: &str, e: object_store::Error) -> Error {
    Error::io(Path::new(path), std::io::Error::other(e.to_string()))
}

impl SnapshotStore {
    /// The local file system under `dir` (which must exist).
    pub fn local(dir: &Path) -> Result<SnapshotStore> {
        let fs = LocalFileSystem::new_with_prefix(dir)
            .map_err(|e| os_err(&dir.display().to_string(), e))?
            .with_automatic_cleanup(true);
        Ok(SnapshotStore { store: Arc::new(fs), local_root: Some(dir.to_path_buf()) })
    }

    /// Any object store (for example an S3 bucket); a successful put is taken as durable.
    pub fn remote(store: Arc<dyn ObjectStore>) -> SnapshotStore {
        SnapshotStore { store, local_root: None }
    }

    pub fn is_local(&self) -> bool {
        self.local_root.is_some()
    }

    /// Stores `bytes` at `rel` and makes the object durable (on the local file system: the
    /// file's data; the caller syncs the directories).
    pub fn put(&self, vfs: &dyn Vfs, rel: &str, bytes: Vec<u8>) -> Result<()> {
        let loc = ObjectPath::from(rel);
        block_on(self.store.put(&loc, PutPayload::from(bytes))).map_err(|e| os_err(rel, e))?;
        if let Some(root) = &self.local_root {
            let path = root.join(rel);
            let mut f = vfs.open_append(&path).map_err(|e| Error::io(&path, e))?;
            f.sync_data().map_err(|e| Error::io(&path, e))?;
        }
        Ok(())
    }

    pub fn get(&self, rel: &str) -> Result<Bytes> {
        let loc = ObjectPath::from(rel);
        block_on(async { self.store.get(&loc).await?.bytes().await }).map_err(|e| os_err(rel, e))
    }

    /// Deletes every object under `prefix` that `keep` rejects.
    pub fn delete_unless(&self, prefix: &str, keep: impl Fn(&str) -> bool) -> Result<()> {
        let loc = ObjectPath::from(prefix);
        let objects: Vec<object_store::ObjectMeta> =
            block_on(self.store.list(Some(&loc)).try_collect()).map_err(|e| os_err(prefix, e))?;
        for o in objects {
            if !keep(o.location.as_ref()) {
                block_on(self.store.delete(&o.location)).map_err(|e| os_err(o.location.as_ref(), e))?;
            }
        }
        Ok(())
    }
}

/// Writes `bytes` to `path` and makes it durable (file data only; the caller syncs the directory).
pub fn write_durable(vfs: &dyn Vfs, path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = vfs.create(path).map_err(|e| Error::io(path, e))?;
    f.write_all(bytes).map_err(|e| Error::io(path, e))?;
    f.sync_data().map_err(|e| Error::io(path, e))?;
    Ok(())
}
