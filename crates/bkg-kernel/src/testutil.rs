//! Helpers shared by the kernel's tests, its crash-test writer and its benchmarks.

use std::sync::Arc;

use crate::catalog::{ColumnDef, IndexDef, TableDef};
use crate::db::Transaction;
use crate::error::Result;
use crate::value::{DataType, Value};

pub fn col(name: &str, data_type: DataType, nullable: bool) -> ColumnDef {
    ColumnDef { name: name.into(), data_type, nullable, default: None, dropped: false, missing: Value::Null }
}

/// A table definition owned by the bootstrap superuser, with no indexes, grants or policies.
pub fn table_def(schema: &str, name: &str, columns: Vec<ColumnDef>) -> TableDef {
    TableDef {
        id: 0,
        schema: schema.into(),
        name: name.into(),
        columns,
        indexes: vec![],
        foreign_keys: vec![],
        owner: crate::acl::BOOTSTRAP_SUPERUSER,
        acl: vec![],
        row_security: false,
        force_row_security: false,
        policies: vec![],
        checks: vec![],
    }
}

/// Creates `public.<name>(id bigint primary key, v bigint, note text)` and returns its id.
pub fn create_kv_table(txn: &mut Transaction, name: &str) -> Result<u64> {
    let columns =
        vec![col("id", DataType::Int64, false), col("v", DataType::Int64, true), col("note", DataType::Text, true)];
    let mut def = table_def("public", name, columns);
    def.indexes = vec![IndexDef { id: 0, name: format!("{name}_pkey"), columns: vec![0], unique: true, primary: true }];
    Ok(txn.catalog_mut().create_table(def, false)?.expect("new table"))
}

pub fn kv_row(id: i64, v: i64, note: &str) -> Vec<Value> {
    vec![Value::Int64(id), Value::Int64(v), Value::Text(Arc::from(note))]
}

/// The columns of kv rows `(id, v, note)` for [`Transaction::insert_columns`].
pub fn kv_columns(rows: &[(Option<i64>, i64)], note: &str) -> Vec<Option<arrow::array::ArrayRef>> {
    use arrow::array::{ArrayRef, Int64Array, StringArray};
    let ids: ArrayRef = Arc::new(rows.iter().map(|r| r.0).collect::<Int64Array>());
    let vs: ArrayRef = Arc::new(rows.iter().map(|r| Some(r.1)).collect::<Int64Array>());
    let notes: ArrayRef = Arc::new(rows.iter().map(|_| Some(note)).collect::<StringArray>());
    vec![Some(ids), Some(vs), Some(notes)]
}

/// Looks up the kv table by name in the transaction's catalog.
pub fn table_id(txn: &Transaction, name: &str) -> Option<u64> {
    txn.catalog().find_table("public", name).map(|t| t.id)
}

/// All (id, v) pairs the transaction sees, sorted by id.
pub fn kv_contents(txn: &Transaction, table: u64) -> Vec<(i64, i64)> {
    let mut out = Vec::new();
    txn.scan(table, |_, row| {
        if let (Value::Int64(id), Value::Int64(v)) = (&row[0], &row[1]) {
            out.push((*id, *v));
        }
    });
    out.sort();
    out
}

/// Row id and value of key `id`.
pub fn kv_get(txn: &Transaction, table: u64, id: i64) -> Option<(u64, i64)> {
    let pk = txn.catalog().table(table)?.primary_key()?.id;
    let rows = txn.lookup(table, pk, &[Value::Int64(id)]).ok()?;
    rows.first().and_then(|(r, row)| match &row[1] {
        Value::Int64(v) => Some((*r, *v)),
        _ => None,
    })
}
