//! Arrow values to PostgreSQL wire values (text and binary output), and parameters back to SQL
//! literals: text parameters in [`params`], binary ones (read as PostgreSQL's receive functions
//! read them) in [`binary`].

mod binary;
pub mod json;
mod params;

use binary::*;
pub use params::*;

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
    days.checked_add(719_163)
        .and_then(NaiveDate::from_num_days_from_ce_opt)
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
    let elem = crate::pg_catalog::TYPES.iter().find(|t| t.3 == oid && t.3 != 0)?.0;
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use bkg_kernel::{DataType as D, Value as V};

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

    /// A binary NUMERIC on its own, as a Bind parameter would be read.
    fn numeric_from_binary(raw: &[u8]) -> SqlResult<String> {
        let mut r = Reader::new(raw);
        let text = numeric_text(&mut r)?;
        if !r.is_empty() {
            return Err(trailing_data(None));
        }
        Ok(text)
    }

    /// An external NUMERIC with the given header fields (ndigits as claimed, not as given).
    fn numeric(ndigits: u16, weight: i16, sign: u16, dscale: u16, digits: &[i16]) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&ndigits.to_be_bytes());
        b.extend_from_slice(&weight.to_be_bytes());
        b.extend_from_slice(&sign.to_be_bytes());
        b.extend_from_slice(&dscale.to_be_bytes());
        for d in digits {
            b.extend_from_slice(&d.to_be_bytes());
        }
        b
    }

    /// A binary array: ndim, flags, element oid, (length, lower bound) per dimension, elements.
    pub(crate) fn array(ndim: i32, flags: i32, oid: u32, dims: &[(i32, i32)], elems: &[Option<&[u8]>]) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&ndim.to_be_bytes());
        b.extend_from_slice(&flags.to_be_bytes());
        b.extend_from_slice(&oid.to_be_bytes());
        for (len, lower) in dims {
            b.extend_from_slice(&len.to_be_bytes());
            b.extend_from_slice(&lower.to_be_bytes());
        }
        for e in elems {
            match e {
                None => b.extend_from_slice(&(-1i32).to_be_bytes()),
                Some(v) => {
                    b.extend_from_slice(&(v.len() as i32).to_be_bytes());
                    b.extend_from_slice(v);
                }
            }
        }
        b
    }

    fn bin(raw: &[u8], ty: &Type) -> SqlResult<String> {
        param_literal(Some(raw), ty, true)
    }

    fn code_of(r: SqlResult<String>) -> &'static str {
        match r {
            Ok(s) => panic!("expected an error, got {s}"),
            Err(e) => e.code.code(),
        }
    }

    fn encoded(text: &str) -> Vec<u8> {
        let mut b = BytesMut::new();
        numeric_binary_from_text(text, &mut b);
        b.to_vec()
    }

    #[test]
    fn numeric_binary_round_trips() {
        for text in ["0", "1", "-1.5", "12345.6789", "0.0001", "10000", "99999999.99"] {
            let back = numeric_from_binary(&encoded(text)).unwrap();
            assert_eq!(back.parse::<f64>().unwrap(), text.parse::<f64>().unwrap(), "{text} -> {back}");
        }
    }

    #[test]
    fn hostile_numeric_scale_is_refused_at_once() {
        let hostile = numeric(0, 0, NUMERIC_POS, 0xFFFF, &[]);
        let start = std::time::Instant::now();
        for _ in 0..1000 {
            let e = numeric_from_binary(&hostile).unwrap_err();
            assert_eq!(e.code, "22P03");
            assert_eq!(e.message, "invalid scale in external \"numeric\" value");
        }
        assert!(start.elapsed() < std::time::Duration::from_secs(2), "{:?}", start.elapsed());
        assert_eq!(code_of(bin(&hostile, &Type::NUMERIC)), "22P03");
        assert_eq!(code_of(bin(&numeric(1, 0, NUMERIC_NEG, 0xFFFF, &[5]), &Type::NUMERIC)), "22P03");
        assert_eq!(code_of(bin(&numeric(0, 0, NUMERIC_POS, 0x4000, &[]), &Type::NUMERIC)), "22P03");
        let arr = array(1, 0, 1700, &[(1, 1)], &[Some(hostile.as_slice())]);
        assert_eq!(code_of(bin(&arr, &Type::NUMERIC_ARRAY)), "22P03");
        // The largest scale PostgreSQL takes (0x3FFF) is cut: eight bytes never make a long text.
        let widest = numeric_from_binary(&numeric(0, 0, NUMERIC_POS, 0x3FFF, &[])).unwrap();
        assert_eq!(widest, format!("0.{}", "0".repeat(NUMERIC_PARAM_MAX_DIGITS)));
        let lit = bin(&numeric(1, i16::MIN, NUMERIC_NEG, 0x3FFF, &[9999]), &Type::NUMERIC).unwrap();
        assert!(lit.len() <= 64 + 16 * 10, "{lit}");
    }

    #[test]
    fn numeric_weight_is_bounded() {
        // Weight 0x7FFF: 131 072 digits in PostgreSQL; refused here before any is written.
        let e = numeric_from_binary(&numeric(1, 0x7FFF, NUMERIC_POS, 0, &[1])).unwrap_err();
        assert_eq!(e.code, codes::NUMERIC_VALUE_OUT_OF_RANGE);
        assert_eq!(code_of(bin(&numeric(1, 0x7FFF, NUMERIC_NEG, 0x3FFF, &[9999]), &Type::NUMERIC)), "22003");
        // The widest integer part taken, and one digit more.
        let widest = numeric_from_binary(&numeric(1, 18, NUMERIC_POS, 0, &[1000])).unwrap();
        assert_eq!(widest, format!("1{}", "0".repeat(NUMERIC_PARAM_MAX_DIGITS - 1)));
        assert_eq!(numeric_from_binary(&numeric(1, 19, NUMERIC_POS, 0, &[1])).unwrap_err().code, "22003");
        // A zero digit of a huge weight is no digit at all; a very negative weight is only zeros
        // up to the scale.
        assert_eq!(numeric_from_binary(&numeric(1, 0x7FFF, NUMERIC_POS, 0, &[0])).unwrap(), "0");
        assert_eq!(numeric_from_binary(&numeric(1, i16::MIN, NUMERIC_NEG, 2, &[1])).unwrap(), "0.00");
    }

    #[test]
    fn numeric_digits_signs_and_lengths_are_checked() {
        let refused = |raw: Vec<u8>, message: &str| {
            let e = numeric_from_binary(&raw).unwrap_err();
            assert_eq!((e.code.code(), e.message.as_str()), ("22P03", message), "{raw:?}");
        };
        let bad_digit = "invalid digit in external \"numeric\" value";
        refused(numeric(1, 0, NUMERIC_POS, 0, &[10000]), bad_digit);
        refused(numeric(2, 0, NUMERIC_NEG, 4, &[1, -1]), bad_digit);
        refused(numeric(1, 0, NUMERIC_NAN, 0, &[i16::MAX]), bad_digit);
        refused(numeric(2, 0, NUMERIC_POS, 0, &[1]), "insufficient data left in message");
        refused(numeric(1, 0, NUMERIC_POS, 0, &[1, 2]), "incorrect binary data format in bind parameter");
        for ndigits in [3001, 0x8000, 0xFFFF] {
            refused(numeric(ndigits, 0, NUMERIC_POS, 0, &[]), "invalid length in external \"numeric\" value");
        }
        for sign in [0x8000, 0x1234, 0x4001, 0xC001, 0xE000, 0xFFFF] {
            refused(numeric(0, 0, sign, 0, &[]), "invalid sign in external \"numeric\" value");
        }
        refused(Vec::new(), "insufficient data left in message");
        refused(vec![0, 0, 0, 0, 0, 0, 0], "insufficient data left in message");
        // Through Bind, naming the parameter.
        let raw = numeric(1, 0, NUMERIC_POS, 0, &[1, 2]);
        let e = param_literal_at(Some(raw.as_slice()), &Type::NUMERIC, true, 3).unwrap_err();
        assert_eq!((e.code.code(), e.message.as_str()), ("22P03", "incorrect binary data format in bind parameter 3"));
    }

    #[test]
    fn valid_numerics_decode_as_before() {
        for text in ["0", "-1.5", "123456789.000123", "1", "12345.6789", "0.0001", "10000", "99999999.99", "-0.005"] {
            assert_eq!(numeric_from_binary(&encoded(text)).unwrap(), text);
        }
        let mut b = BytesMut::new();
        numeric_binary(0, 2, &mut b);
        assert_eq!(numeric_from_binary(&b).unwrap(), "0.00");
        assert_eq!(numeric_from_binary(&numeric(0, 0, NUMERIC_NAN, 0, &[])).unwrap(), "NaN");
        assert_eq!(numeric_from_binary(&numeric(0, 0, NUMERIC_PINF, 0, &[])).unwrap(), "Infinity");
        assert_eq!(numeric_from_binary(&numeric(0, 0, NUMERIC_NINF, 0, &[])).unwrap(), "-Infinity");
        // Digits past the scale are cut, as numeric_recv cuts them; zero has no sign.
        assert_eq!(numeric_from_binary(&numeric(2, 0, NUMERIC_POS, 2, &[1, 2345])).unwrap(), "1.23");
        assert_eq!(numeric_from_binary(&numeric(1, -1, NUMERIC_NEG, 2, &[1])).unwrap(), "0.00");
        assert_eq!(bin(&encoded("-1.5"), &Type::NUMERIC).unwrap(), "CAST('-1.5' AS DECIMAL(38,10))");
        assert_eq!(bin(&numeric(0, 0, NUMERIC_NAN, 0, &[]), &Type::NUMERIC).unwrap(), "CAST('NaN' AS DECIMAL(38,10))");
    }

    #[test]
    fn fixed_size_binary_values_must_have_their_size() {
        let sizes = [
            (Type::BOOL, 1),
            (Type::CHAR, 1),
            (Type::INT2, 2),
            (Type::INT4, 4),
            (Type::OID, 4),
            (Type::FLOAT4, 4),
            (Type::DATE, 4),
            (Type::INT8, 8),
            (Type::FLOAT8, 8),
            (Type::TIME, 8),
            (Type::TIMESTAMP, 8),
            (Type::TIMESTAMPTZ, 8),
            (Type::INTERVAL, 16),
            (Type::UUID, 16),
        ];
        for (ty, size) in sizes {
            assert!(bin(&vec![0; size], &ty).is_ok(), "{ty}");
            for len in [0, size - 1, size + 1, 2 * size] {
                if len == size {
                    continue;
                }
                let e = bin(&vec![0; len], &ty).unwrap_err();
                assert_eq!(e.code, "22P03", "{ty} with {len} bytes: {e}");
            }
        }
        // The key parameter of a point plan too: an int4 of 8 bytes is not read as an int8.
        let e = param_value(Some(7i64.to_be_bytes().as_slice()), &Type::INT4, true, &D::Int32).unwrap_err();
        assert_eq!(e.code, "22P03");
        assert_eq!(param_value(Some(&[0u8, 7][..]), &Type::INT4, true, &D::Int32).unwrap_err().code, "22P03");
        let v = param_value(Some(7i32.to_be_bytes().as_slice()), &Type::INT4, true, &D::Int64).unwrap();
        assert!(matches!(v, V::Int64(7)), "{v:?}");
        let v = param_value(Some(70_000i32.to_be_bytes().as_slice()), &Type::INT4, true, &D::Int16).unwrap_err();
        assert_eq!(v.code, codes::NUMERIC_VALUE_OUT_OF_RANGE);
        let v = param_value(Some(&b"abc"[..]), &Type::TEXT, true, &D::Text).unwrap();
        assert!(matches!(&v, V::Text(s) if &**s == "abc"), "{v:?}");
        assert_eq!(param_value(Some(&[0xffu8][..]), &Type::TEXT, true, &D::Text).unwrap_err().code, "22021");
    }

    #[test]
    fn binary_values_become_literals() {
        assert_eq!(bin(&[1], &Type::BOOL).unwrap(), "true");
        assert_eq!(bin(&[0], &Type::BOOL).unwrap(), "false");
        for b in [2u8, 0x80, 0xFF] {
            assert_eq!(code_of(bin(&[b], &Type::BOOL)), "22P03");
        }
        assert_eq!(bin(&(-5i32).to_be_bytes(), &Type::INT4).unwrap(), "CAST(-5 AS INTEGER)");
        assert_eq!(bin(&i64::MAX.to_be_bytes(), &Type::INT8).unwrap(), format!("CAST({} AS BIGINT)", i64::MAX));
        assert_eq!(bin(&1.5f64.to_be_bytes(), &Type::FLOAT8).unwrap(), "CAST('1.5' AS DOUBLE PRECISION)");
        assert_eq!(bin(&0i32.to_be_bytes(), &Type::DATE).unwrap(), "CAST('2000-01-01' AS DATE)");
        assert_eq!(
            bin(&1i64.to_be_bytes(), &Type::TIMESTAMPTZ).unwrap(),
            "CAST('2000-01-01 00:00:00.000001+00' AS TIMESTAMPTZ)"
        );
        assert_eq!(bin(&USECS_PER_DAY.to_be_bytes(), &Type::TIME).unwrap(), "CAST('24:00:00' AS TIME)");
        let mut interval = 3_600_000_000i64.to_be_bytes().to_vec();
        interval.extend_from_slice(&3i32.to_be_bytes());
        interval.extend_from_slice(&14i32.to_be_bytes());
        assert_eq!(
            bin(&interval, &Type::INTERVAL).unwrap(),
            "CAST('14 mons 3 days 3600000000 microseconds' AS INTERVAL)"
        );
        let uuid: Vec<u8> = (0..16).collect();
        assert_eq!(bin(&uuid, &Type::UUID).unwrap(), "'00010203-0405-0607-0809-0a0b0c0d0e0f'");
        assert_eq!(bin(&[0, 0xff], &Type::BYTEA).unwrap(), "decode('00ff', 'hex')");
        assert_eq!(bin(b"it's", &Type::TEXT).unwrap(), "'it''s'");
        assert_eq!(bin(b"\x01{\"a\": 1}", &Type::JSONB).unwrap(), "'{\"a\": 1}'");
        assert_eq!(bin(&u32::MAX.to_be_bytes(), &Type::OID).unwrap(), "'4294967295'");
        assert_eq!(bin(b"a", &Type::CHAR).unwrap(), "'a'");
        assert_eq!(bin(&[0xE9], &Type::CHAR).unwrap(), "'\\351'");
    }

    #[test]
    fn binary_dates_and_times_are_range_checked() {
        let date = |d: i32| bin(&d.to_be_bytes(), &Type::DATE);
        assert_eq!(date(i32::MAX).unwrap(), "CAST('infinity' AS DATE)");
        assert_eq!(date(i32::MIN).unwrap(), "CAST('-infinity' AS DATE)");
        for d in [DATE_END, i32::MAX - 1, DATE_MIN - 1, i32::MIN + 1, 200_000_000] {
            assert_eq!(code_of(date(d)), "22008", "{d}");
        }
        let ts = |t: i64| bin(&t.to_be_bytes(), &Type::TIMESTAMP);
        assert_eq!(ts(i64::MAX).unwrap(), "CAST('infinity' AS TIMESTAMP)");
        assert_eq!(ts(i64::MIN).unwrap(), "CAST('-infinity' AS TIMESTAMP)");
        for t in [i64::MAX - 1, TIMESTAMP_END, TIMESTAMP_MIN - 1, i64::MIN + 1] {
            assert_eq!(code_of(ts(t)), "22008", "{t}");
        }
        let time = |t: i64| bin(&t.to_be_bytes(), &Type::TIME);
        for t in [-1, USECS_PER_DAY + 1, i64::MIN, i64::MAX] {
            assert_eq!(code_of(time(t)), "22008", "{t}");
        }
    }

    #[test]
    fn binary_text_is_checked() {
        assert_eq!(code_of(bin(&[0xff], &Type::TEXT)), "22021");
        assert_eq!(code_of(bin(b"a\0b", &Type::VARCHAR)), "22021");
        assert_eq!(code_of(bin(&[0xc3], &Type::JSON)), "22021");
        assert_eq!(code_of(bin(b"\x02{}", &Type::JSONB)), "22P03");
        assert_eq!(code_of(bin(b"", &Type::JSONB)), "22P03");
        assert_eq!(code_of(bin(b"\x01\xff", &Type::JSONB)), "22021");
        assert_eq!(code_of(bin(&[b'n'; 64], &Type::NAME)), "42622");
        assert_eq!(bin(&[b'n'; 63], &Type::NAME).unwrap(), format!("'{}'", "n".repeat(63)));
        assert_eq!(code_of(bin(b"x", &Type::TIMETZ)), "0A000");
        // The message names the bad bytes, as PostgreSQL's does.
        let e = bin(b"ab\xe2\x28", &Type::TEXT).unwrap_err();
        assert_eq!(e.message, "invalid byte sequence for encoding \"UTF8\": 0xe2");
    }

    #[test]
    fn binary_arrays_are_checked() {
        let one = 1i32.to_be_bytes();
        let three = 3i32.to_be_bytes();
        let ok = array(1, 1, 23, &[(3, 1)], &[Some(&one[..]), None, Some(&three[..])]);
        assert_eq!(
            bin(&ok, &Type::INT4_ARRAY).unwrap(),
            "CAST(ARRAY[CAST(1 AS INTEGER), NULL, CAST(3 AS INTEGER)] AS INTEGER[])"
        );
        assert_eq!(bin(&array(0, 0, 23, &[], &[]), &Type::INT4_ARRAY).unwrap(), "CAST(ARRAY[] AS INTEGER[])");
        // A dimension of length 0 makes an empty array, whatever the others and the rank.
        let empty = array(2, 0, 23, &[(0, 1), (5, 7)], &[]);
        assert_eq!(bin(&empty, &Type::INT4_ARRAY).unwrap(), "CAST(ARRAY[] AS INTEGER[])");
        let code = |raw: Vec<u8>| code_of(bin(&raw, &Type::INT4_ARRAY));
        assert_eq!(code(array(-1, 0, 23, &[], &[])), "22P03");
        assert_eq!(code(array(7, 0, 23, &[], &[])), "54000");
        assert_eq!(code(array(1, 2, 23, &[(1, 1)], &[Some(&one[..])])), "22P03");
        assert_eq!(code(array(1, -1, 23, &[(1, 1)], &[Some(&one[..])])), "22P03");
        assert_eq!(code(array(1, 0, 20, &[(1, 1)], &[Some(&one[..])])), "42804");
        // A user type's oid is not compared (PostgreSQL's rule): the elements are read as int4.
        assert!(bin(&array(1, 0, 16_384, &[(1, 1)], &[Some(&one[..])]), &Type::INT4_ARRAY).is_ok());
        // Huge or negative dimensions are refused before anything is allocated or read.
        assert_eq!(code(array(1, 0, 23, &[(i32::MAX, 1)], &[])), "54000");
        assert_eq!(code(array(2, 0, 23, &[(65_536, 1), (65_536, 1)], &[])), "54000");
        assert_eq!(code(array(6, 0, 23, &[(1000, 1); 6], &[])), "54000");
        assert_eq!(code(array(6, 0, 23, &[(32, 1); 6], &[])), "54000");
        assert_eq!(code(array(1, 0, 23, &[(-1, 1)], &[])), "54000");
        assert_eq!(code(array(1, 0, 23, &[(1, i32::MAX)], &[Some(&one[..])])), "54000");
        assert_eq!(code(array(1, 0, 23, &[(100_000_000, 1)], &[])), "22P03");
        // Elements: their lengths, their sizes, and what follows them.
        let mut bad_len = array(1, 0, 23, &[(1, 1)], &[]);
        bad_len.extend_from_slice(&(-2i32).to_be_bytes());
        assert_eq!(code(bad_len), "22P03");
        let mut long = array(1, 0, 23, &[(1, 1)], &[]);
        long.extend_from_slice(&100i32.to_be_bytes());
        long.extend_from_slice(&one);
        assert_eq!(code(long), "22P03");
        let wide = 7i64.to_be_bytes();
        let e = bin(&array(1, 0, 23, &[(1, 1)], &[Some(&wide[..])]), &Type::INT4_ARRAY).unwrap_err();
        assert_eq!((e.code.code(), e.message.as_str()), ("22P03", "improper binary format in array element 1"));
        assert_eq!(code(array(1, 0, 23, &[(1, 1)], &[Some(&[0u8, 1][..])])), "22P03");
        let mut trailing = ok.clone();
        trailing.push(0);
        let e = param_literal_at(Some(trailing.as_slice()), &Type::INT4_ARRAY, true, 2).unwrap_err();
        assert_eq!((e.code.code(), e.message.as_str()), ("22P03", "incorrect binary data format in bind parameter 2"));
        // Elements are checked as their type.
        let two_bool = array(1, 0, 16, &[(1, 1)], &[Some(&[2u8][..])]);
        assert_eq!(code_of(bin(&two_bool, &Type::BOOL_ARRAY)), "22P03");
        // What the server cannot hold is refused as unsupported.
        assert_eq!(code(array(2, 0, 23, &[(1, 1), (1, 1)], &[Some(&one[..])])), "0A000");
        assert_eq!(code(array(1, 0, 23, &[(1, 0)], &[Some(&one[..])])), "0A000");
    }

    /// xorshift64: deterministic pseudo-random numbers without a dependency.
    struct Rng(u64);

    impl Rng {
        fn next_u64(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.0 = x;
            x
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next_u64() % n
        }

        fn bytes(&mut self, n: usize) -> Vec<u8> {
            (0..n).map(|_| self.next_u64() as u8).collect()
        }
    }

    /// Pseudo-random input for a value of type `ty`: noise, noise of a size some type has, or a
    /// numeric or array with random fields, so that the checks past the first ones are reached.
    fn random_value(rng: &mut Rng, ty: &Type, depth: u32) -> Vec<u8> {
        match rng.below(5) {
            0 => {
                let n = rng.below(40) as usize;
                rng.bytes(n)
            }
            1 => {
                let sizes = [0, 1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17];
                let n = sizes[rng.below(sizes.len() as u64) as usize];
                rng.bytes(n)
            }
            2 => {
                let given = rng.below(6) as u16;
                let weight = match rng.below(3) {
                    0 => rng.next_u64() as i16,
                    1 => rng.below(40) as i16 - 20,
                    _ => [i16::MAX, i16::MIN, 18, 19][rng.below(4) as usize],
                };
                let signs = [NUMERIC_POS, NUMERIC_NEG, NUMERIC_NAN, NUMERIC_PINF, NUMERIC_NINF, rng.next_u64() as u16];
                let sign = signs[rng.below(6) as usize];
                let dscale = match rng.below(3) {
                    0 => rng.next_u64() as u16,
                    1 => rng.below(100) as u16,
                    _ => NUMERIC_DSCALE_MASK,
                };
                let digits: Vec<i16> = (0..given)
                    .map(|_| if rng.below(8) == 0 { rng.next_u64() as i16 } else { rng.below(10_000) as i16 })
                    .collect();
                let claimed = if rng.below(8) == 0 { rng.next_u64() as u16 } else { given };
                numeric(claimed, weight, sign, dscale, &digits)
            }
            _ => {
                let elem = array_elem(ty).unwrap_or_else(|| ty.clone());
                let n = rng.below(5) as usize;
                let ndim = if rng.below(6) == 0 { rng.next_u64() as i32 } else { rng.below(3) as i32 };
                let flags = if rng.below(8) == 0 { rng.next_u64() as i32 } else { rng.below(2) as i32 };
                let oid = if rng.below(8) == 0 { rng.next_u64() as u32 } else { elem.oid() };
                let mut b = Vec::new();
                b.extend_from_slice(&ndim.to_be_bytes());
                b.extend_from_slice(&flags.to_be_bytes());
                b.extend_from_slice(&oid.to_be_bytes());
                for d in 0..ndim.clamp(0, 7) {
                    let len = if rng.below(8) == 0 {
                        rng.next_u64() as i32
                    } else if d == 0 {
                        n as i32
                    } else {
                        1
                    };
                    let lower = if rng.below(8) == 0 { rng.next_u64() as i32 } else { 1 };
                    b.extend_from_slice(&len.to_be_bytes());
                    b.extend_from_slice(&lower.to_be_bytes());
                }
                for _ in 0..n {
                    if rng.below(4) == 0 {
                        b.extend_from_slice(&(-1i32).to_be_bytes());
                        continue;
                    }
                    let v = if depth == 0 {
                        random_value(rng, &elem, depth + 1)
                    } else {
                        let len = rng.below(20) as usize;
                        rng.bytes(len)
                    };
                    let len = if rng.below(10) == 0 { rng.next_u64() as i32 } else { v.len() as i32 };
                    b.extend_from_slice(&len.to_be_bytes());
                    b.extend_from_slice(&v);
                }
                if rng.below(10) == 0 {
                    b.push(rng.next_u64() as u8);
                }
                b
            }
        }
    }

    #[test]
    fn binary_decoders_survive_random_input() {
        let mut oids: Vec<u32> = crate::pg_catalog::TYPES
            .iter()
            .flat_map(|t| [t.0, t.3])
            .filter(|oid| *oid != 0)
            .map(|oid| oid as u32)
            .collect();
        // time with time zone, inet, tsvector: no binary input here.
        oids.extend([1266, 869, 3614]);
        let types: Vec<Type> = oids.iter().filter_map(|oid| Type::from_oid(*oid)).collect();
        assert!(types.len() >= 40, "{types:?}");
        let key_types = [D::Int16, D::Int32, D::Int64, D::Text];
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let mut decoded = 0usize;
        for round in 0..2000 {
            for ty in &types {
                let raw = random_value(&mut rng, ty, 0);
                // Whatever is made of a value stays within a small multiple of its size.
                let bound = 64 + 16 * raw.len();
                if let Ok(s) = param_literal_at(Some(raw.as_slice()), ty, true, round) {
                    assert!(s.len() <= bound, "{ty}: {} bytes -> {} chars: {s}", raw.len(), s.len());
                    decoded += 1;
                }
                for dt in &key_types {
                    if let Ok(V::Text(s)) = param_value(Some(raw.as_slice()), ty, true, dt) {
                        assert!(s.len() <= bound, "{ty}: {} bytes -> {} chars", raw.len(), s.len());
                    }
                }
                if let Ok(s) = numeric_from_binary(&raw) {
                    assert!(s.len() <= bound, "{} bytes -> {s}", raw.len());
                }
            }
        }
        // The inputs reach past the first checks: some decode.
        assert!(decoded > 1000, "{decoded}");
    }

    #[test]
    fn intervals_print_like_postgres() {
        assert_eq!(format_interval(14, 3, 3_600_000_000_000), "1 year 2 mons 3 days 01:00:00");
        assert_eq!(format_interval(0, 0, 0), "00:00:00");
    }
}
