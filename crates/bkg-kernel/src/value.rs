//! Column types and scalar values as the kernel stores them.
//!
//! Rows live in memory as `Vec<Value>` per version and on disk as Parquet columns; each
//! [`DataType`] has one Arrow representation ([`DataType::arrow_type`]) used by both.

use std::cmp::Ordering;
use std::sync::Arc;

use arrow::datatypes::{DataType as ArrowType, Field, IntervalUnit, TimeUnit};
use serde::{Deserialize, Serialize};

/// Field metadata key naming the PostgreSQL type of a column whose Arrow type is ambiguous
/// (uuid, json, jsonb, char(n), varchar(n) all travel as Utf8).
pub const PG_TYPE_METADATA_KEY: &str = "bkg.pg_type";

/// Field metadata key holding `n` of a `char(n)` column: its values are stored blank-padded to
/// `n`, and the planner pads string literals compared with it the same way.
pub const CHAR_LENGTH_METADATA_KEY: &str = "bkg.char_length";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DataType {
    Bool,
    Int16,
    Int32,
    Int64,
    Float32,
    Float64,
    /// numeric(precision, scale), stored as a 128-bit decimal.
    Numeric {
        precision: u8,
        scale: i8,
    },
    Text,
    Varchar(Option<u32>),
    Char(u32),
    Bytea,
    Date,
    Time,
    Timestamp,
    TimestampTz,
    Interval,
    Uuid,
    Json,
    Jsonb,
    /// A one-dimensional array (`int[]`, `text[]`, …) of a non-array element type.
    Array(Box<DataType>),
}

impl DataType {
    /// Default precision/scale for an unconstrained `numeric`.
    pub const NUMERIC_DEFAULT: DataType = DataType::Numeric { precision: 38, scale: 10 };

    pub fn arrow_type(&self) -> ArrowType {
        match self {
            DataType::Bool => ArrowType::Boolean,
            DataType::Int16 => ArrowType::Int16,
            DataType::Int32 => ArrowType::Int32,
            DataType::Int64 => ArrowType::Int64,
            DataType::Float32 => ArrowType::Float32,
            DataType::Float64 => ArrowType::Float64,
            DataType::Numeric { precision, scale } => ArrowType::Decimal128(*precision, *scale),
            DataType::Text
            | DataType::Varchar(_)
            | DataType::Char(_)
            | DataType::Uuid
            | DataType::Json
            | DataType::Jsonb => ArrowType::Utf8,
            DataType::Bytea => ArrowType::Binary,
            DataType::Date => ArrowType::Date32,
            DataType::Time => ArrowType::Time64(TimeUnit::Microsecond),
            DataType::Timestamp => ArrowType::Timestamp(TimeUnit::Microsecond, None),
            DataType::TimestampTz => ArrowType::Timestamp(TimeUnit::Microsecond, Some(Arc::from("+00:00"))),
            DataType::Interval => ArrowType::Interval(IntervalUnit::MonthDayNano),
            DataType::Array(elem) => ArrowType::List(Arc::new(elem.arrow_field("item", true))),
        }
    }

    /// The PostgreSQL type name (as `format_type` would print it).
    pub fn pg_name(&self) -> String {
        match self {
            DataType::Bool => "boolean".into(),
            DataType::Int16 => "smallint".into(),
            DataType::Int32 => "integer".into(),
            DataType::Int64 => "bigint".into(),
            DataType::Float32 => "real".into(),
            DataType::Float64 => "double precision".into(),
            DataType::Numeric { precision, scale } => format!("numeric({precision},{scale})"),
            DataType::Text => "text".into(),
            DataType::Varchar(None) => "character varying".into(),
            DataType::Varchar(Some(n)) => format!("character varying({n})"),
            DataType::Char(n) => format!("character({n})"),
            DataType::Bytea => "bytea".into(),
            DataType::Date => "date".into(),
            DataType::Time => "time without time zone".into(),
            DataType::Timestamp => "timestamp without time zone".into(),
            DataType::TimestampTz => "timestamp with time zone".into(),
            DataType::Interval => "interval".into(),
            DataType::Uuid => "uuid".into(),
            DataType::Json => "json".into(),
            DataType::Jsonb => "jsonb".into(),
            DataType::Array(elem) => format!("{}[]", elem.pg_name()),
        }
    }

    /// Short name stored in field metadata when the Arrow type alone is ambiguous.
    pub fn metadata_tag(&self) -> Option<&'static str> {
        match self {
            DataType::Varchar(_) => Some("varchar"),
            DataType::Char(_) => Some("bpchar"),
            DataType::Uuid => Some("uuid"),
            DataType::Json => Some("json"),
            DataType::Jsonb => Some("jsonb"),
            _ => None,
        }
    }

    pub fn arrow_field(&self, name: &str, nullable: bool) -> Field {
        let field = Field::new(name, self.arrow_type(), nullable);
        let mut metadata = std::collections::HashMap::new();
        if let Some(tag) = self.metadata_tag() {
            metadata.insert(PG_TYPE_METADATA_KEY.to_string(), tag.to_string());
        }
        if let DataType::Char(n) = self {
            metadata.insert(CHAR_LENGTH_METADATA_KEY.to_string(), n.to_string());
        }
        if metadata.is_empty() { field } else { field.with_metadata(metadata) }
    }
}

/// One scalar. `Text` is shared so that copying rows between versions is cheap.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Value {
    Null,
    Bool(bool),
    Int16(i16),
    Int32(i32),
    Int64(i64),
    Float32(f32),
    Float64(f64),
    Decimal(i128),
    Text(Arc<str>),
    Bytes(Arc<[u8]>),
    /// Days since 1970-01-01.
    Date(i32),
    /// Microseconds since midnight.
    Time(i64),
    /// Microseconds since 1970-01-01 00:00:00 (UTC for timestamptz).
    Timestamp(i64),
    Interval {
        months: i32,
        days: i32,
        nanos: i64,
    },
    /// The elements of a one-dimensional array (each may be `Null`).
    Array(Arc<[Value]>),
}

impl Value {
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// Canonical byte encoding used as a key in unique indexes. Two values compare equal under
    /// SQL `=` (for the same column type) exactly when their encodings are equal.
    pub fn encode_key(&self, out: &mut Vec<u8>) {
        match self {
            Value::Null => out.push(0),
            Value::Bool(b) => out.extend_from_slice(&[1, *b as u8]),
            Value::Int16(v) => {
                out.push(2);
                out.extend_from_slice(&(*v as i64).to_be_bytes())
            }
            Value::Int32(v) => {
                out.push(2);
                out.extend_from_slice(&(*v as i64).to_be_bytes())
            }
            Value::Int64(v) => {
                out.push(2);
                out.extend_from_slice(&v.to_be_bytes())
            }
            Value::Float32(v) => {
                out.push(3);
                out.extend_from_slice(&canonical_f64(*v as f64).to_be_bytes())
            }
            Value::Float64(v) => {
                out.push(3);
                out.extend_from_slice(&canonical_f64(*v).to_be_bytes())
            }
            Value::Decimal(v) => {
                out.push(4);
                out.extend_from_slice(&v.to_be_bytes())
            }
            Value::Text(s) => {
                out.push(5);
                out.extend_from_slice(&(s.len() as u32).to_be_bytes());
                out.extend_from_slice(s.as_bytes())
            }
            Value::Bytes(b) => {
                out.push(6);
                out.extend_from_slice(&(b.len() as u32).to_be_bytes());
                out.extend_from_slice(b)
            }
            Value::Date(v) => {
                out.push(7);
                out.extend_from_slice(&v.to_be_bytes())
            }
            Value::Time(v) => {
                out.push(8);
                out.extend_from_slice(&v.to_be_bytes())
            }
            Value::Timestamp(v) => {
                out.push(9);
                out.extend_from_slice(&v.to_be_bytes())
            }
            Value::Interval { months, days, nanos } => {
                out.push(10);
                out.extend_from_slice(&months.to_be_bytes());
                out.extend_from_slice(&days.to_be_bytes());
                out.extend_from_slice(&nanos.to_be_bytes())
            }
            Value::Array(items) => {
                out.push(11);
                out.extend_from_slice(&(items.len() as u32).to_be_bytes());
                for v in items.iter() {
                    v.encode_key(out);
                }
            }
        }
    }

    /// Total order used by tests and models; NULL sorts last as in PostgreSQL.
    pub fn total_cmp(&self, other: &Value) -> Ordering {
        let mut a = Vec::new();
        let mut b = Vec::new();
        match (self.is_null(), other.is_null()) {
            (true, true) => Ordering::Equal,
            (true, false) => Ordering::Greater,
            (false, true) => Ordering::Less,
            (false, false) => {
                self.encode_key(&mut a);
                other.encode_key(&mut b);
                a.cmp(&b)
            }
        }
    }
}

fn canonical_f64(v: f64) -> u64 {
    if v == 0.0 {
        0.0f64.to_bits()
    } else if v.is_nan() {
        f64::NAN.to_bits()
    } else {
        v.to_bits()
    }
}

impl PartialEq for Value {
    fn eq(&self, other: &Value) -> bool {
        self.total_cmp(other) == Ordering::Equal
    }
}

/// A row: one value per physical column of its table (see [`crate::catalog::TableDef`]).
pub type Row = Arc<[Value]>;
