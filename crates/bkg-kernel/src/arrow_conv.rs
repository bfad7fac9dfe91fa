//! Conversions between kernel values and Arrow arrays, one place for snapshots and scans.

use std::sync::Arc;

use arrow::array::*;
use arrow::datatypes::{IntervalMonthDayNano, TimeUnit};

use crate::error::{Error, Result};
use crate::value::{DataType, Value};

fn mismatch(dt: &DataType, v: &Value) -> Error {
    Error::Internal(format!("value {v:?} does not fit column type {}", dt.pg_name()))
}

/// Builds one Arrow column of type `dt.arrow_type()` from values.
pub fn column_from_values<'a>(dt: &DataType, vals: impl Iterator<Item = &'a Value>) -> Result<ArrayRef> {
    macro_rules! prim {
        ($builder:ty, $($pat:pat => $e:expr),+) => {{
            let mut b = <$builder>::new();
            for v in vals {
                match v {
                    Value::Null => b.append_null(),
                    $($pat => b.append_value($e),)+
                    other => return Err(mismatch(dt, other)),
                }
            }
            Arc::new(b.finish()) as ArrayRef
        }};
    }
    Ok(match dt {
        DataType::Bool => prim!(BooleanBuilder, Value::Bool(x) => *x),
        DataType::Int16 => prim!(Int16Builder, Value::Int16(x) => *x),
        DataType::Int32 => prim!(Int32Builder, Value::Int32(x) => *x),
        DataType::Int64 => prim!(Int64Builder, Value::Int64(x) => *x),
        DataType::Float32 => prim!(Float32Builder, Value::Float32(x) => *x),
        DataType::Float64 => prim!(Float64Builder, Value::Float64(x) => *x),
        DataType::Numeric { precision, scale } => {
            let mut b = Decimal128Builder::new();
            for v in vals {
                match v {
                    Value::Null => b.append_null(),
                    Value::Decimal(x) => b.append_value(*x),
                    other => return Err(mismatch(dt, other)),
                }
            }
            Arc::new(
                b.finish().with_precision_and_scale(*precision, *scale).map_err(|e| Error::Internal(e.to_string()))?,
            )
        }
        DataType::Text
        | DataType::Varchar(_)
        | DataType::Char(_)
        | DataType::Uuid
        | DataType::Json
        | DataType::Jsonb => {
            let mut b = StringBuilder::new();
            for v in vals {
                match v {
                    Value::Null => b.append_null(),
                    Value::Text(s) => b.append_value(s),
                    other => return Err(mismatch(dt, other)),
                }
            }
            Arc::new(b.finish())
        }
        DataType::Bytea => prim!(BinaryBuilder, Value::Bytes(x) => &x[..]),
        DataType::Date => prim!(Date32Builder, Value::Date(x) => *x),
        DataType::Time => prim!(Time64MicrosecondBuilder, Value::Time(x) => *x),
        DataType::Timestamp => prim!(TimestampMicrosecondBuilder, Value::Timestamp(x) => *x),
        DataType::TimestampTz => {
            let mut b = TimestampMicrosecondBuilder::new().with_timezone("+00:00");
            for v in vals {
                match v {
                    Value::Null => b.append_null(),
                    Value::Timestamp(x) => b.append_value(*x),
                    other => return Err(mismatch(dt, other)),
                }
            }
            Arc::new(b.finish())
        }
        DataType::Interval => prim!(IntervalMonthDayNanoBuilder,
            Value::Interval { months, days, nanos } => IntervalMonthDayNano::new(*months, *days, *nanos)),
        DataType::Array(elem) => {
            let mut offsets = vec![0i32];
            let mut valid = Vec::new();
            let mut items: Vec<&Value> = Vec::new();
            for v in vals {
                match v {
                    Value::Null => valid.push(false),
                    Value::Array(xs) => {
                        valid.push(true);
                        items.extend(xs.iter());
                    }
                    other => return Err(mismatch(dt, other)),
                }
                offsets.push(i32::try_from(items.len()).map_err(|_| Error::Internal("array column too large".into()))?);
            }
            let child = column_from_values(elem, items.into_iter())?;
            let field = Arc::new(elem.arrow_field("item", true));
            Arc::new(
                ListArray::try_new(
                    field,
                    arrow::buffer::OffsetBuffer::new(offsets.into()),
                    child,
                    Some(arrow::buffer::NullBuffer::from(valid)),
                )
                .map_err(|e| Error::Internal(e.to_string()))?,
            )
        }
    })
}

/// Reads an Arrow column that already has type `dt.arrow_type()` into values.
pub fn values_from_column(dt: &DataType, col: &ArrayRef) -> Result<Vec<Value>> {
    let wrong = || Error::Internal(format!("column of Arrow type {} is not {}", col.data_type(), dt.pg_name()));
    macro_rules! prim {
        ($arr:ty, $ctor:expr) => {{
            let a = col.as_any().downcast_ref::<$arr>().ok_or_else(wrong)?;
            (0..a.len()).map(|i| if a.is_null(i) { Value::Null } else { $ctor(a.value(i)) }).collect()
        }};
    }
    Ok(match dt {
        DataType::Bool => prim!(BooleanArray, Value::Bool),
        DataType::Int16 => prim!(Int16Array, Value::Int16),
        DataType::Int32 => prim!(Int32Array, Value::Int32),
        DataType::Int64 => prim!(Int64Array, Value::Int64),
        DataType::Float32 => prim!(Float32Array, Value::Float32),
        DataType::Float64 => prim!(Float64Array, Value::Float64),
        DataType::Numeric { .. } => prim!(Decimal128Array, Value::Decimal),
        DataType::Text
        | DataType::Varchar(_)
        | DataType::Char(_)
        | DataType::Uuid
        | DataType::Json
        | DataType::Jsonb => {
            prim!(StringArray, |s: &str| Value::Text(Arc::from(s)))
        }
        DataType::Bytea => prim!(BinaryArray, |b: &[u8]| Value::Bytes(Arc::from(b))),
        DataType::Date => prim!(Date32Array, Value::Date),
        DataType::Time => prim!(Time64MicrosecondArray, Value::Time),
        DataType::Timestamp | DataType::TimestampTz => {
            let _ = TimeUnit::Microsecond;
            prim!(TimestampMicrosecondArray, Value::Timestamp)
        }
        DataType::Interval => prim!(IntervalMonthDayNanoArray, |v: IntervalMonthDayNano| {
            Value::Interval { months: v.months, days: v.days, nanos: v.nanoseconds }
        }),
        DataType::Array(elem) => {
            let a = col.as_any().downcast_ref::<ListArray>().ok_or_else(wrong)?;
            let mut out = Vec::with_capacity(a.len());
            for i in 0..a.len() {
                out.push(if a.is_null(i) {
                    Value::Null
                } else {
                    Value::Array(values_from_column(elem, &a.value(i))?.into())
                });
            }
            out
        }
    })
}
