//! Arrow values to PostgreSQL wire values (text and binary), and parameters back to SQL literals.

use bkg_kernel::value::PG_TYPE_METADATA_KEY;
use bytes::{BufMut, BytesMut};
use chrono::{DateTime, NaiveDate};
use datafusion::arrow::array::*;
use datafusion::arrow::datatypes::{DataType as A, Field, IntervalUnit, TimeUnit};
use pgwire::api::Type;

use crate::error::{SqlError, SqlResult, codes};

/// The PostgreSQL type for an Arrow field.
pub fn pg_type(field: &Field) -> Type {
    let tag = field.metadata().get(PG_TYPE_METADATA_KEY).map(|s| s.as_str());
    base_type(field.data_type(), tag)
}

fn base_type(dt: &A, tag: Option<&str>) -> Type {
    match dt {
        A::Boolean => Type::BOOL,
        A::Int8 | A::Int16 | A::UInt8 => Type::INT2,
        A::Int32 | A::UInt16 => Type::INT4,
        A::Int64 | A::UInt32 => Type::INT8,
        A::UInt64 | A::Decimal32(_, _) | A::Decimal64(_, _) | A::Decimal128(_, _) | A::Decimal256(_, _) => {
            Type::NUMERIC
        }
        A::Float16 | A::Float32 => Type::FLOAT4,
        A::Float64 => Type::FLOAT8,
        A::Utf8 | A::LargeUtf8 | A::Utf8View => match tag {
            Some("varchar") => Type::VARCHAR,
            Some("bpchar") => Type::BPCHAR,
            Some("uuid") => Type::UUID,
            Some("json") => Type::JSON,
            Some("jsonb") => Type::JSONB,
            _ => Type::TEXT,
        },
        A::Binary | A::LargeBinary | A::BinaryView | A::FixedSizeBinary(_) => Type::BYTEA,
        A::Date32 | A::Date64 => Type::DATE,
        A::Time32(_) | A::Time64(_) => Type::TIME,
        A::Timestamp(_, None) => Type::TIMESTAMP,
        A::Timestamp(_, Some(_)) => Type::TIMESTAMPTZ,
        A::Interval(_) | A::Duration(_) => Type::INTERVAL,
        A::List(f) | A::LargeList(f) | A::FixedSizeList(f, _) => {
            match base_type(f.data_type(), f.metadata().get(PG_TYPE_METADATA_KEY).map(|s| s.as_str())) {
                Type::VARCHAR => Type::VARCHAR_ARRAY,
                Type::BPCHAR => Type::BPCHAR_ARRAY,
                Type::UUID => Type::UUID_ARRAY,
                Type::JSON => Type::JSON_ARRAY,
                Type::JSONB => Type::JSONB_ARRAY,
                Type::TIME => Type::TIME_ARRAY,
                Type::INTERVAL => Type::INTERVAL_ARRAY,
                Type::BOOL => Type::BOOL_ARRAY,
                Type::INT2 => Type::INT2_ARRAY,
                Type::INT4 => Type::INT4_ARRAY,
                Type::INT8 => Type::INT8_ARRAY,
                Type::FLOAT4 => Type::FLOAT4_ARRAY,
                Type::FLOAT8 => Type::FLOAT8_ARRAY,
                Type::NUMERIC => Type::NUMERIC_ARRAY,
                Type::BYTEA => Type::BYTEA_ARRAY,
                Type::DATE => Type::DATE_ARRAY,
                Type::TIMESTAMP => Type::TIMESTAMP_ARRAY,
                Type::TIMESTAMPTZ => Type::TIMESTAMPTZ_ARRAY,
                _ => Type::TEXT_ARRAY,
            }
        }
        _ => Type::TEXT,
    }
}

/// Formats an f64 the way PostgreSQL's float8out does (shortest round-trip digits).
pub fn format_float(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "Infinity".into() } else { "-Infinity".into() };
    }
    if v == 0.0 {
        return if v.is_sign_negative() { "-0".into() } else { "0".into() };
    }
    let sci = format!("{v:e}");
    let (mantissa, exp) = sci.split_once('e').expect("{:e} has an exponent");
    let exp: i32 = exp.parse().expect("numeric exponent");
    if (-4..15).contains(&exp) {
        format!("{v}")
    } else {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exp.abs())
    }
}

fn format_f32(v: f32) -> String {
    if v.is_finite() && v != 0.0 {
        let sci = format!("{v:e}");
        let (mantissa, exp) = sci.split_once('e').expect("exponent");
        let exp: i32 = exp.parse().expect("numeric exponent");
        if (-4..7).contains(&exp) {
            return format!("{v}");
        }
        let sign = if exp < 0 { '-' } else { '+' };
        return format!("{mantissa}e{sign}{:02}", exp.abs());
    }
    format_float(v as f64)
}

pub fn format_decimal(v: i128, scale: i8) -> String {
    if scale <= 0 {
        let mut s = v.to_string();
        s.extend(std::iter::repeat_n('0', (-scale) as usize));
        return s;
    }
    let neg = v < 0;
    let digits = v.unsigned_abs().to_string();
    let scale = scale as usize;
    let (int, frac) = if digits.len() > scale {
        (digits[..digits.len() - scale].to_string(), digits[digits.len() - scale..].to_string())
    } else {
        ("0".to_string(), format!("{}{}", "0".repeat(scale - digits.len()), digits))
    };
    format!("{}{}.{}", if neg { "-" } else { "" }, int, frac)
}

fn trim_fraction(micros: u32) -> String {
    if micros == 0 {
        return String::new();
    }
    let s = format!(".{micros:06}");
    s.trim_end_matches('0').to_string()
}

fn format_time_micros(t: i64) -> String {
    let secs = t.div_euclid(1_000_000);
    let micros = t.rem_euclid(1_000_000) as u32;
    format!("{:02}:{:02}:{:02}{}", secs / 3600, (secs / 60) % 60, secs % 60, trim_fraction(micros))
}

fn format_timestamp_micros(t: i64, tz: bool) -> String {
    let secs = t.div_euclid(1_000_000);
    let micros = t.rem_euclid(1_000_000) as u32;
    match DateTime::from_timestamp(secs, micros * 1000) {
        Some(dt) => {
            let base = dt.naive_utc().format("%Y-%m-%d %H:%M:%S").to_string();
            format!("{base}{}{}", trim_fraction(micros), if tz { "+00" } else { "" })
        }
        None => t.to_string(),
    }
}

fn format_date(days: i32) -> String {
    NaiveDate::from_num_days_from_ce_opt(days + 719_163)
        .map(|d| d.format("%Y-%m-%d").to_string())
        .unwrap_or_else(|| days.to_string())
}

fn format_interval(months: i32, days: i32, nanos: i64) -> String {
    let mut parts = Vec::new();
    let (years, mons) = (months / 12, months % 12);
    let plural = |n: i64, unit: &str| {
        if n.abs() == 1 { format!("{n} {unit}") } else { format!("{n} {unit}s") }
    };
    if years != 0 {
        parts.push(plural(years as i64, "year"));
    }
    if mons != 0 {
        parts.push(plural(mons as i64, "mon"));
    }
    if days != 0 {
        parts.push(plural(days as i64, "day"));
    }
    let micros = nanos / 1000;
    if micros != 0 || parts.is_empty() {
        let neg = micros < 0;
        let m = micros.unsigned_abs() as i64;
        let t = format_time_micros(m);
        if micros != 0 || parts.is_empty() {
            parts.push(format!("{}{}", if neg { "-" } else { "" }, t));
        }
    }
    parts.join(" ")
}

fn quote_array_elem(s: &str) -> String {
    if s.is_empty()
        || s.eq_ignore_ascii_case("null")
        || s.chars().any(|c| matches!(c, ',' | '{' | '}' | '"' | '\\') || c.is_whitespace())
    {
        format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
    } else {
        s.to_string()
    }
}

/// Text form of row `i` of `arr`; `None` for NULL.
pub fn text_value(arr: &dyn Array, i: usize) -> SqlResult<Option<String>> {
    if arr.is_null(i) {
        return Ok(None);
    }
    macro_rules! get {
        ($t:ty) => {
            arr.as_any().downcast_ref::<$t>().expect("type checked").value(i)
        };
    }
    let s = match arr.data_type() {
        A::Boolean => (if get!(BooleanArray) { "t" } else { "f" }).to_string(),
        A::Int8 => get!(Int8Array).to_string(),
        A::Int16 => get!(Int16Array).to_string(),
        A::Int32 => get!(Int32Array).to_string(),
        A::Int64 => get!(Int64Array).to_string(),
        A::UInt8 => get!(UInt8Array).to_string(),
        A::UInt16 => get!(UInt16Array).to_string(),
        A::UInt32 => get!(UInt32Array).to_string(),
        A::UInt64 => get!(UInt64Array).to_string(),
        A::Float32 => format_f32(get!(Float32Array)),
        A::Float64 => format_float(get!(Float64Array)),
        A::Decimal128(_, s) => format_decimal(get!(Decimal128Array), *s),
        A::Utf8 => get!(StringArray).to_string(),
        A::LargeUtf8 => get!(LargeStringArray).to_string(),
        A::Utf8View => get!(StringViewArray).to_string(),
        A::Binary => hex_bytea(get!(BinaryArray)),
        A::LargeBinary => hex_bytea(get!(LargeBinaryArray)),
        A::BinaryView => hex_bytea(get!(BinaryViewArray)),
        A::FixedSizeBinary(_) => hex_bytea(get!(FixedSizeBinaryArray)),
        A::Date32 => format_date(get!(Date32Array)),
        A::Date64 => format_date((get!(Date64Array) / 86_400_000) as i32),
        A::Time64(TimeUnit::Microsecond) => format_time_micros(get!(Time64MicrosecondArray)),
        A::Time64(TimeUnit::Nanosecond) => format_time_micros(get!(Time64NanosecondArray) / 1000),
        A::Time32(TimeUnit::Second) => format_time_micros(get!(Time32SecondArray) as i64 * 1_000_000),
        A::Time32(TimeUnit::Millisecond) => format_time_micros(get!(Time32MillisecondArray) as i64 * 1000),
        A::Timestamp(unit, tz) => {
            let micros = match unit {
                TimeUnit::Second => get!(TimestampSecondArray) * 1_000_000,
                TimeUnit::Millisecond => get!(TimestampMillisecondArray) * 1000,
                TimeUnit::Microsecond => get!(TimestampMicrosecondArray),
                TimeUnit::Nanosecond => get!(TimestampNanosecondArray).div_euclid(1000),
            };
            format_timestamp_micros(micros, tz.is_some())
        }
        A::Interval(IntervalUnit::MonthDayNano) => {
            let v = get!(IntervalMonthDayNanoArray);
            format_interval(v.months, v.days, v.nanoseconds)
        }
        A::Interval(IntervalUnit::DayTime) => {
            let v = get!(IntervalDayTimeArray);
            format_interval(0, v.days, v.milliseconds as i64 * 1_000_000)
        }
        A::Interval(IntervalUnit::YearMonth) => format_interval(get!(IntervalYearMonthArray), 0, 0),
        A::Duration(TimeUnit::Microsecond) => format_interval(0, 0, get!(DurationMicrosecondArray) * 1000),
        A::Duration(TimeUnit::Nanosecond) => format_interval(0, 0, get!(DurationNanosecondArray)),
        A::List(_) => {
            let l = arr.as_any().downcast_ref::<ListArray>().expect("list");
            list_text(&l.value(i))?
        }
        A::LargeList(_) => {
            let l = arr.as_any().downcast_ref::<LargeListArray>().expect("list");
            list_text(&l.value(i))?
        }
        A::Null => return Ok(None),
        _ => {
            let fmt = datafusion::arrow::util::display::ArrayFormatter::try_new(arr, &Default::default())?;
            fmt.value(i).to_string()
        }
    };
    Ok(Some(s))
}

fn list_text(values: &ArrayRef) -> SqlResult<String> {
    let mut parts = Vec::with_capacity(values.len());
    // As PostgreSQL: any element whose text has a space, comma, brace, quote or backslash (a
    // timestamp, say) is quoted, whatever its type.
    for j in 0..values.len() {
        parts.push(match text_value(values.as_ref(), j)? {
            None => "NULL".to_string(),
            Some(s) => quote_array_elem(&s),
        });
    }
    Ok(format!("{{{}}}", parts.join(",")))
}

fn hex_bytea(b: &[u8]) -> String {
    let mut s = String::with_capacity(2 + b.len() * 2);
    s.push_str("\\x");
    for x in b {
        s.push_str(&format!("{x:02x}"));
    }
    s
}

const PG_EPOCH_DAYS: i32 = 10_957;
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;

/// PostgreSQL binary NUMERIC encoding of an unscaled decimal.
fn numeric_binary(v: i128, scale: i8, out: &mut BytesMut) {
    let text = format_decimal(v, scale);
    numeric_binary_from_text(&text, out);
}

fn numeric_binary_from_text(text: &str, out: &mut BytesMut) {
    let neg = text.starts_with('-');
    let t = text.trim_start_matches('-');
    let (int, frac) = t.split_once('.').unwrap_or((t, ""));
    let dscale = frac.len() as i16;
    let int = int.trim_start_matches('0');
    // Pad to groups of 4 digits around the decimal point.
    let int_pad = (4 - int.len() % 4) % 4;
    let int_digits = format!("{}{}", "0".repeat(int_pad), int);
    let frac_pad = (4 - frac.len() % 4) % 4;
    let frac_digits = format!("{}{}", frac, "0".repeat(frac_pad));
    let mut groups: Vec<i16> = Vec::new();
    for c in int_digits.as_bytes().chunks(4).chain(frac_digits.as_bytes().chunks(4)) {
        groups.push(std::str::from_utf8(c).expect("ascii").parse().expect("digits"));
    }
    let mut weight = (int_digits.len() / 4) as i16 - 1;
    while groups.first() == Some(&0) {
        groups.remove(0);
        weight -= 1;
    }
    while groups.last() == Some(&0) {
        groups.pop();
    }
    if groups.is_empty() {
        weight = 0;
    }
    out.put_i16(groups.len() as i16);
    out.put_i16(weight);
    out.put_u16(if neg && !groups.is_empty() { 0x4000 } else { 0 });
    out.put_i16(dscale);
    for g in groups {
        out.put_i16(g);
    }
}

/// Binary form of row `i` of `arr` for PostgreSQL type `ty`.
/// The element type of a PostgreSQL array type (`int4[]` → `int4`).
pub fn array_elem(ty: &Type) -> Option<Type> {
    let oid = ty.oid() as i64;
    let elem = crate::sql::pg_catalog::TYPES.iter().find(|t| t.3 == oid && t.3 != 0)?.0;
    Type::from_oid(elem as u32)
}

/// PostgreSQL's binary array format, one dimension: ndim, has-nulls flag, element oid, then
/// (length, lower bound 1) and each element as length-prefixed binary (-1 for NULL).
fn array_binary(values: &dyn Array, elem: &Type, out: &mut BytesMut) -> SqlResult<()> {
    let n = values.len();
    out.put_i32(if n == 0 { 0 } else { 1 });
    out.put_i32((0..n).any(|j| values.is_null(j)) as i32);
    out.put_u32(elem.oid());
    if n > 0 {
        out.put_i32(n as i32);
        out.put_i32(1);
    }
    for j in 0..n {
        let mut v = BytesMut::new();
        if binary_value(values, j, elem, &mut v)? {
            out.put_i32(v.len() as i32);
            out.put_slice(&v);
        } else {
            out.put_i32(-1);
        }
    }
    Ok(())
}

pub fn binary_value(arr: &dyn Array, i: usize, ty: &Type, out: &mut BytesMut) -> SqlResult<bool> {
    if arr.is_null(i) {
        return Ok(false);
    }
    macro_rules! get {
        ($t:ty) => {
            arr.as_any().downcast_ref::<$t>().expect("type checked").value(i)
        };
    }
    match arr.data_type() {
        A::Boolean => out.put_u8(get!(BooleanArray) as u8),
        A::Int8 => out.put_i16(get!(Int8Array) as i16),
        A::Int16 => out.put_i16(get!(Int16Array)),
        A::UInt8 => out.put_i16(get!(UInt8Array) as i16),
        A::Int32 => out.put_i32(get!(Int32Array)),
        A::UInt16 => out.put_i32(get!(UInt16Array) as i32),
        A::Int64 => out.put_i64(get!(Int64Array)),
        A::UInt32 => out.put_i64(get!(UInt32Array) as i64),
        A::UInt64 => numeric_binary_from_text(&get!(UInt64Array).to_string(), out),
        A::Float32 => out.put_f32(get!(Float32Array)),
        A::Float64 => out.put_f64(get!(Float64Array)),
        A::Decimal128(_, s) => numeric_binary(get!(Decimal128Array), *s, out),
        A::Date32 => out.put_i32(get!(Date32Array) - PG_EPOCH_DAYS),
        A::Time64(TimeUnit::Microsecond) => out.put_i64(get!(Time64MicrosecondArray)),
        A::Timestamp(TimeUnit::Microsecond, _) => out.put_i64(get!(TimestampMicrosecondArray) - PG_EPOCH_MICROS),
        A::Timestamp(TimeUnit::Nanosecond, _) => {
            out.put_i64(get!(TimestampNanosecondArray).div_euclid(1000) - PG_EPOCH_MICROS)
        }
        A::Timestamp(TimeUnit::Millisecond, _) => out.put_i64(get!(TimestampMillisecondArray) * 1000 - PG_EPOCH_MICROS),
        A::Timestamp(TimeUnit::Second, _) => out.put_i64(get!(TimestampSecondArray) * 1_000_000 - PG_EPOCH_MICROS),
        A::Interval(IntervalUnit::MonthDayNano) => {
            let v = get!(IntervalMonthDayNanoArray);
            out.put_i64(v.nanoseconds / 1000);
            out.put_i32(v.days);
            out.put_i32(v.months);
        }
        A::List(_) => {
            let l = arr.as_any().downcast_ref::<ListArray>().expect("list");
            let elem = array_elem(ty).unwrap_or(Type::TEXT);
            array_binary(l.value(i).as_ref(), &elem, out)?;
        }
        A::Binary | A::LargeBinary | A::BinaryView | A::FixedSizeBinary(_) => {
            let text = text_value(arr, i)?.unwrap_or_default();
            let bytes: Vec<u8> =
                (2..text.len()).step_by(2).map(|j| u8::from_str_radix(&text[j..j + 2], 16).unwrap_or(0)).collect();
            out.put_slice(&bytes);
        }
        _ => {
            let text = text_value(arr, i)?.unwrap_or_default();
            if *ty == Type::UUID {
                let hex: String = text.chars().filter(|c| *c != '-').collect();
                for j in (0..32).step_by(2) {
                    out.put_u8(u8::from_str_radix(hex.get(j..j + 2).unwrap_or("00"), 16).unwrap_or(0));
                }
            } else if *ty == Type::JSONB {
                out.put_u8(1);
                out.put_slice(text.as_bytes());
            } else if matches!(*ty, Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::JSON | Type::NAME) {
                out.put_slice(text.as_bytes());
            } else {
                return Err(SqlError::new(
                    codes::FEATURE_NOT_SUPPORTED,
                    format!("binary output of type {ty} is not supported"),
                ));
            }
        }
    }
    Ok(true)
}

/// The SQL type name used to cast a parameter of the given type.
pub fn cast_name(ty: &Type) -> Option<&'static str> {
    Some(match *ty {
        Type::BOOL => "BOOLEAN",
        Type::INT2 => "SMALLINT",
        Type::INT4 => "INTEGER",
        Type::INT8 => "BIGINT",
        Type::FLOAT4 => "REAL",
        Type::FLOAT8 => "DOUBLE PRECISION",
        Type::NUMERIC => "DECIMAL(38,10)",
        Type::DATE => "DATE",
        Type::TIME => "TIME",
        Type::TIMESTAMP => "TIMESTAMP",
        Type::TIMESTAMPTZ => "TIMESTAMPTZ",
        Type::INTERVAL => "INTERVAL",
        Type::BYTEA => "BYTEA",
        _ => return None,
    })
}

fn sql_string(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Turns one bound parameter into SQL literal text, checking it against its declared type.
pub fn param_literal(value: Option<&[u8]>, ty: &Type, binary: bool) -> SqlResult<String> {
    let Some(raw) = value else {
        return Ok("NULL".into());
    };
    let bad = |what: &str| {
        SqlError::new(
            codes::INVALID_TEXT_REPRESENTATION,
            format!("invalid binary value for parameter of type {}: {what}", ty.name()),
        )
    };
    if let Some(elem) = array_elem(ty) {
        return array_param(raw, ty, &elem, binary);
    }
    if !binary {
        let text = std::str::from_utf8(raw)
            .map_err(|_| SqlError::new("22021", "invalid byte sequence for encoding \"UTF8\""))?;
        return Ok(match *ty {
            Type::BOOL | Type::INT2 | Type::INT4 | Type::INT8 | Type::FLOAT4 | Type::FLOAT8 | Type::NUMERIC => {
                let t = text.trim();
                let ok = match *ty {
                    Type::BOOL => ["t", "f", "true", "false", "1", "0", "yes", "no", "on", "off"]
                        .contains(&t.to_lowercase().as_str()),
                    Type::INT2 => t.parse::<i16>().is_ok(),
                    Type::INT4 => t.parse::<i32>().is_ok(),
                    Type::INT8 => t.parse::<i64>().is_ok(),
                    _ => {
                        t.parse::<f64>().is_ok()
                            || ["nan", "infinity", "-infinity"].contains(&t.to_lowercase().as_str())
                    }
                };
                if !ok {
                    return Err(SqlError::new(
                        codes::INVALID_TEXT_REPRESENTATION,
                        format!("invalid input syntax for type {}: \"{text}\"", ty.name()),
                    ));
                }
                format!("CAST({} AS {})", sql_string(t), cast_name(ty).expect("numeric"))
            }
            Type::BYTEA => format!("decode({}, 'hex')", sql_string(text.trim_start_matches("\\x"))),
            _ => match cast_name(ty) {
                Some(c) => format!("CAST({} AS {c})", sql_string(text)),
                None => sql_string(text),
            },
        });
    }
    let be = |n: usize| -> SqlResult<&[u8]> {
        if raw.len() == n { Ok(raw) } else { Err(bad(&format!("expected {n} bytes, got {}", raw.len()))) }
    };
    Ok(match *ty {
        Type::BOOL => format!("{}", be(1)?[0] != 0),
        Type::INT2 => format!("CAST({} AS SMALLINT)", i16::from_be_bytes(be(2)?.try_into().expect("2"))),
        Type::INT4 => format!("CAST({} AS INTEGER)", i32::from_be_bytes(be(4)?.try_into().expect("4"))),
        Type::INT8 => format!("CAST({} AS BIGINT)", i64::from_be_bytes(be(8)?.try_into().expect("8"))),
        Type::FLOAT4 => format!("CAST('{}' AS REAL)", f32::from_be_bytes(be(4)?.try_into().expect("4"))),
        Type::FLOAT8 => format!("CAST('{}' AS DOUBLE PRECISION)", f64::from_be_bytes(be(8)?.try_into().expect("8"))),
        Type::DATE => format!(
            "CAST('{}' AS DATE)",
            format_date(i32::from_be_bytes(be(4)?.try_into().expect("4")) + PG_EPOCH_DAYS)
        ),
        Type::TIMESTAMP => format!(
            "CAST('{}' AS TIMESTAMP)",
            format_timestamp_micros(i64::from_be_bytes(be(8)?.try_into().expect("8")) + PG_EPOCH_MICROS, false)
        ),
        Type::TIMESTAMPTZ => format!(
            "CAST('{}' AS TIMESTAMPTZ)",
            format_timestamp_micros(i64::from_be_bytes(be(8)?.try_into().expect("8")) + PG_EPOCH_MICROS, true)
        ),
        Type::TIME => {
            format!("CAST('{}' AS TIME)", format_time_micros(i64::from_be_bytes(be(8)?.try_into().expect("8"))))
        }
        Type::BYTEA => format!("decode('{}', 'hex')", raw.iter().map(|b| format!("{b:02x}")).collect::<String>()),
        Type::UUID => {
            let h: String = be(16)?.iter().map(|b| format!("{b:02x}")).collect();
            format!("'{}-{}-{}-{}-{}'", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
        }
        Type::JSONB => {
            let body = raw.get(1..).ok_or_else(|| bad("empty jsonb"))?;
            sql_string(std::str::from_utf8(body).map_err(|_| bad("not UTF-8"))?)
        }
        Type::NUMERIC => {
            format!("CAST('{}' AS DECIMAL(38,10))", numeric_from_binary(raw).ok_or_else(|| bad("malformed numeric"))?)
        }
        _ => sql_string(std::str::from_utf8(raw).map_err(|_| bad("not UTF-8"))?),
    })
}

/// A key parameter of a cached point plan as a kernel value of the key column's type
/// (integers and text, the types point plans take), checked as PostgreSQL would.
pub fn param_value(
    raw: Option<&[u8]>,
    ty: &Type,
    binary: bool,
    dt: &bkg_kernel::DataType,
) -> SqlResult<bkg_kernel::Value> {
    use bkg_kernel::{DataType as D, Value as V};
    let Some(raw) = raw else { return Ok(V::Null) };
    let out_of_range =
        || SqlError::new(codes::NUMERIC_VALUE_OUT_OF_RANGE, format!("value out of range for type {}", dt.pg_name()));
    match dt {
        D::Int16 | D::Int32 | D::Int64 => {
            let n: i64 = if binary && matches!(*ty, Type::INT2 | Type::INT4 | Type::INT8) {
                match raw.len() {
                    2 => i16::from_be_bytes(raw.try_into().expect("2")) as i64,
                    4 => i32::from_be_bytes(raw.try_into().expect("4")) as i64,
                    8 => i64::from_be_bytes(raw.try_into().expect("8")),
                    n => {
                        return Err(SqlError::new(
                            codes::INVALID_TEXT_REPRESENTATION,
                            format!("invalid binary value for parameter of type {}: {n} bytes", ty.name()),
                        ));
                    }
                }
            } else {
                let text = std::str::from_utf8(raw).unwrap_or_default().trim();
                text.parse().map_err(|_| {
                    SqlError::new(
                        codes::INVALID_TEXT_REPRESENTATION,
                        format!("invalid input syntax for type {}: \"{text}\"", dt.pg_name()),
                    )
                })?
            };
            Ok(match dt {
                D::Int16 => V::Int16(i16::try_from(n).map_err(|_| out_of_range())?),
                D::Int32 => V::Int32(i32::try_from(n).map_err(|_| out_of_range())?),
                _ => V::Int64(n),
            })
        }
        _ => {
            let text = std::str::from_utf8(raw)
                .map_err(|_| SqlError::new("22021", "invalid byte sequence for encoding \"UTF8\""))?;
            Ok(V::Text(std::sync::Arc::from(text)))
        }
    }
}

/// An array parameter as `CAST(ARRAY[…] AS elem[])`, each element checked as a parameter of
/// the element type. Text form `{1,2,NULL}`; binary form with one dimension (or none).
fn array_param(raw: &[u8], ty: &Type, elem: &Type, binary: bool) -> SqlResult<String> {
    let bad = |what: &str| {
        SqlError::new(
            codes::INVALID_TEXT_REPRESENTATION,
            format!("invalid binary value for parameter of type {}: {what}", ty.name()),
        )
    };
    let mut items = Vec::new();
    if binary {
        let mut at = 0usize;
        let mut take = |n: usize| -> SqlResult<&[u8]> {
            let s = raw.get(at..at + n).ok_or_else(|| bad("truncated array"))?;
            at += n;
            Ok(s)
        };
        let i32_of = |b: &[u8]| i32::from_be_bytes(b.try_into().expect("4 bytes"));
        let ndim = i32_of(take(4)?);
        let _has_null = take(4)?;
        let _elem_oid = take(4)?;
        let len = match ndim {
            0 => 0,
            1 => {
                let n = i32_of(take(4)?);
                let _lower = take(4)?;
                usize::try_from(n).map_err(|_| bad("negative length"))?
            }
            _ => return Err(SqlError::unsupported("multidimensional arrays")),
        };
        if len > raw.len() {
            return Err(bad("length beyond the message"));
        }
        for _ in 0..len {
            let n = i32_of(take(4)?);
            items.push(if n < 0 { None } else { Some(take(n as usize)?.to_vec()) });
        }
    } else {
        let text = std::str::from_utf8(raw)
            .map_err(|_| SqlError::new("22021", "invalid byte sequence for encoding \"UTF8\""))?;
        items = crate::sql::types::parse_pg_array(text)?.into_iter().map(|x| x.map(String::into_bytes)).collect();
    }
    let elems: Vec<String> =
        items.iter().map(|x| param_literal(x.as_deref(), elem, binary)).collect::<SqlResult<_>>()?;
    let elem_sql = match *elem {
        Type::NUMERIC => "DECIMAL(38,10)",
        _ => cast_name(elem).unwrap_or("TEXT"),
    };
    Ok(format!("CAST(ARRAY[{}] AS {elem_sql}[])", elems.join(", ")))
}

fn numeric_from_binary(raw: &[u8]) -> Option<String> {
    if raw.len() < 8 {
        return None;
    }
    let rd = |i: usize| i16::from_be_bytes([raw[i], raw[i + 1]]);
    let ndigits = rd(0) as usize;
    let weight = rd(2) as i32;
    let sign = u16::from_be_bytes([raw[4], raw[5]]);
    let dscale = rd(6) as usize;
    if raw.len() != 8 + ndigits * 2 {
        return None;
    }
    if sign == 0xC000 {
        return Some("NaN".into());
    }
    let digits: Vec<i16> = (0..ndigits).map(|k| rd(8 + 2 * k)).collect();
    let mut int = String::new();
    let mut frac = String::new();
    for (k, d) in digits.iter().enumerate() {
        let pos = weight - k as i32;
        if pos >= 0 {
            int.push_str(&format!("{d:04}"));
        } else {
            while (frac.len() as i32) < (-pos - 1) * 4 {
                frac.push_str("0000");
            }
            frac.push_str(&format!("{d:04}"));
        }
    }
    if weight >= 0 {
        let have = digits.len() as i32;
        for _ in have..=weight {
            int.push_str("0000");
        }
    }
    let int = int.trim_start_matches('0');
    let int = if int.is_empty() { "0" } else { int };
    let mut frac: String = frac.chars().take(dscale).collect();
    while frac.len() < dscale {
        frac.push('0');
    }
    let neg = if sign == 0x4000 { "-" } else { "" };
    Some(if dscale > 0 { format!("{neg}{int}.{frac}") } else { format!("{neg}{int}") })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_print_like_postgres() {
        assert_eq!(format_float(0.5), "0.5");
        assert_eq!(format_float(1e20), "1e+20");
        assert_eq!(format_float(123456.0), "123456");
        assert_eq!(format_float(1.5e-7), "1.5e-07");
        assert_eq!(format_float(f64::INFINITY), "Infinity");
    }

    #[test]
    fn decimals_print_with_their_scale() {
        assert_eq!(format_decimal(12345, 2), "123.45");
        assert_eq!(format_decimal(-5, 3), "-0.005");
        assert_eq!(format_decimal(7, 0), "7");
    }

    #[test]
    fn numeric_binary_round_trips() {
        for text in ["0", "1", "-1.5", "12345.6789", "0.0001", "10000", "99999999.99"] {
            let mut b = BytesMut::new();
            numeric_binary_from_text(text, &mut b);
            let back = numeric_from_binary(&b).unwrap();
            assert_eq!(back.parse::<f64>().unwrap(), text.parse::<f64>().unwrap(), "{text} -> {back}");
        }
    }

    #[test]
    fn intervals_print_like_postgres() {
        assert_eq!(format_interval(14, 3, 3_600_000_000_000), "1 year 2 mons 3 days 01:00:00");
        assert_eq!(format_interval(0, 0, 0), "00:00:00");
    }
}
