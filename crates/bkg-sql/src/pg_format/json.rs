//! Values as JSON, the shapes PostgreSQL's `to_json` gives: what REST responses and realtime
//! events carry.

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::{DataType as A, Field};

use bkg_kernel::value::PG_TYPE_METADATA_KEY;

use super::{format_float, text_value};
use crate::error::SqlResult;

fn is_json_field(f: &Field) -> bool {
    matches!(f.metadata().get(PG_TYPE_METADATA_KEY).map(String::as_str), Some("json") | Some("jsonb"))
}

fn push_str(out: &mut String, s: &str) {
    out.push_str(&serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into()));
}

/// Appends element `i` of `arr` as JSON. `raw_json`: the value is JSON text, embedded as is.
pub fn json_value(arr: &dyn Array, i: usize, raw_json: bool, out: &mut String) -> SqlResult<()> {
    if arr.is_null(i) {
        out.push_str("null");
        return Ok(());
    }
    match arr.data_type() {
        A::Boolean => out.push_str(if arr.as_boolean().value(i) { "true" } else { "false" }),
        A::Int8 | A::Int16 | A::Int32 | A::Int64 | A::UInt8 | A::UInt16 | A::UInt32 | A::UInt64 => {
            out.push_str(&text_value(arr, i)?.unwrap_or_default())
        }
        A::Decimal128(_, _) | A::Decimal256(_, _) => out.push_str(&text_value(arr, i)?.unwrap_or_default()),
        A::Float32 | A::Float64 => {
            let v = match arr.data_type() {
                A::Float32 => arr.as_primitive::<datafusion::arrow::datatypes::Float32Type>().value(i) as f64,
                _ => arr.as_primitive::<datafusion::arrow::datatypes::Float64Type>().value(i),
            };
            if v.is_finite() {
                out.push_str(&text_value(arr, i)?.unwrap_or_else(|| format_float(v)));
            } else {
                push_str(out, &text_value(arr, i)?.unwrap_or_default());
            }
        }
        A::List(_) | A::LargeList(_) => {
            let (child, elem_json): (datafusion::arrow::array::ArrayRef, bool) = match arr.data_type() {
                A::List(f) => (arr.as_list::<i32>().value(i), is_json_field(f)),
                A::LargeList(f) => (arr.as_list::<i64>().value(i), is_json_field(f)),
                _ => unreachable!("matched above"),
            };
            out.push('[');
            for j in 0..child.len() {
                if j > 0 {
                    out.push(',');
                }
                json_value(child.as_ref(), j, elem_json, out)?;
            }
            out.push(']');
        }
        A::Timestamp(_, tz) => {
            let t = text_value(arr, i)?.unwrap_or_default();
            let mut t = t.replacen(' ', "T", 1);
            let b = t.as_bytes();
            if tz.is_some() && b.len() >= 3 && matches!(b[b.len() - 3], b'+' | b'-') {
                t.push_str(":00");
            }
            push_str(out, &t);
        }
        A::Utf8 | A::LargeUtf8 | A::Utf8View if raw_json => {
            let t = text_value(arr, i)?.unwrap_or_default();
            if serde_json::from_str::<serde::de::IgnoredAny>(&t).is_ok() {
                out.push_str(&t);
            } else {
                push_str(out, &t);
            }
        }
        _ => push_str(out, &text_value(arr, i)?.unwrap_or_default()),
    }
    Ok(())
}

/// Whether column `f` holds JSON text.
pub fn field_is_json(f: &Field) -> bool {
    is_json_field(f)
}

/// Appends row `row` of `batch` as a JSON object `{"column": value, ...}` (values as
/// [`json_value`] gives them): a row of a REST query result, a realtime record, a storage row.
pub fn row_object(batch: &RecordBatch, row: usize, out: &mut String) -> SqlResult<()> {
    out.push('{');
    for (j, f) in batch.schema().fields().iter().enumerate() {
        if j > 0 {
            out.push(',');
        }
        push_str(out, f.name());
        out.push(':');
        json_value(batch.column(j).as_ref(), row, is_json_field(f), out)?;
    }
    out.push('}');
    Ok(())
}
