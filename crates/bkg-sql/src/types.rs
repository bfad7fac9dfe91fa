//! SQL type names to kernel types, and Arrow result columns to kernel values.

use std::sync::Arc;

use bkg_kernel::arrow_conv::values_from_column;
use bkg_kernel::{DataType, Value};
use datafusion::arrow::array::{Array, ArrayRef};
use datafusion::arrow::compute::{CastOptions, cast_with_options};
use datafusion::sql::sqlparser::ast::{self, CharacterLength, ExactNumberInfo};

use crate::SqlState;
use crate::error::{SqlError, SqlResult, codes};

/// What a column type declaration means: the type, and whether it is a serial (identity).
pub struct ColumnType {
    pub data_type: DataType,
    pub serial: bool,
}

fn char_len(l: &Option<CharacterLength>) -> Option<u32> {
    match l {
        Some(CharacterLength::IntegerLength { length, .. }) => Some(*length as u32),
        _ => None,
    }
}

pub fn map_type(t: &ast::DataType) -> SqlResult<ColumnType> {
    use ast::DataType as T;
    let plain = |data_type| Ok(ColumnType { data_type, serial: false });
    match t {
        T::Bool | T::Boolean => plain(DataType::Bool),
        T::SmallInt(_) | T::Int2(_) => plain(DataType::Int16),
        T::Int(_) | T::Integer(_) | T::Int4(_) => plain(DataType::Int32),
        T::BigInt(_) | T::Int8(_) => plain(DataType::Int64),
        T::Real | T::Float4 => plain(DataType::Float32),
        T::Double(_) | T::DoublePrecision | T::Float8 => plain(DataType::Float64),
        T::Float(info) => match info {
            ExactNumberInfo::Precision(p) if *p <= 24 => plain(DataType::Float32),
            _ => plain(DataType::Float64),
        },
        T::Numeric(info) | T::Decimal(info) | T::Dec(info) => match info {
            ExactNumberInfo::None => plain(DataType::NUMERIC_DEFAULT),
            ExactNumberInfo::Precision(p) => plain(DataType::Numeric { precision: (*p).clamp(1, 38) as u8, scale: 0 }),
            ExactNumberInfo::PrecisionAndScale(p, s) => {
                if *p == 0 || *p > 38 || *s < 0 || *s as u64 > *p {
                    return Err(SqlError::new(
                        codes::INVALID_PARAMETER_VALUE,
                        format!("NUMERIC precision {p} and scale {s} are out of range (precision 1..38)"),
                    ));
                }
                plain(DataType::Numeric { precision: *p as u8, scale: *s as i8 })
            }
        },
        T::Text | T::String(None) => plain(DataType::Text),
        T::Varchar(l) | T::CharacterVarying(l) | T::CharVarying(l) => plain(DataType::Varchar(char_len(l))),
        T::Char(l) | T::Character(l) => plain(DataType::Char(char_len(l).unwrap_or(1))),
        T::Bytea => plain(DataType::Bytea),
        T::Date => plain(DataType::Date),
        T::Time(_, tz) => match tz {
            ast::TimezoneInfo::WithTimeZone | ast::TimezoneInfo::Tz => {
                Err(SqlError::unsupported("time with time zone"))
            }
            _ => plain(DataType::Time),
        },
        T::Timestamp(_, tz) => match tz {
            ast::TimezoneInfo::WithTimeZone | ast::TimezoneInfo::Tz => plain(DataType::TimestampTz),
            _ => plain(DataType::Timestamp),
        },
        T::Interval { .. } => plain(DataType::Interval),
        T::Uuid => plain(DataType::Uuid),
        T::JSON => plain(DataType::Json),
        T::JSONB => plain(DataType::Jsonb),
        T::Array(
            ast::ArrayElemTypeDef::SquareBracket(inner, _)
            | ast::ArrayElemTypeDef::AngleBracket(inner)
            | ast::ArrayElemTypeDef::Parenthesis(inner),
        ) => {
            let elem = map_type(inner)?;
            match elem.data_type {
                _ if elem.serial => Err(SqlError::unsupported("arrays of serial")),
                DataType::Array(_) => Err(SqlError::unsupported("multidimensional arrays")),
                e => plain(DataType::Array(Box::new(e))),
            }
        }
        T::Custom(name, _) => {
            let n = name.to_string().to_lowercase();
            match n.trim_matches('"') {
                "serial" | "serial4" => Ok(ColumnType { data_type: DataType::Int32, serial: true }),
                "bigserial" | "serial8" => Ok(ColumnType { data_type: DataType::Int64, serial: true }),
                "smallserial" | "serial2" => Ok(ColumnType { data_type: DataType::Int16, serial: true }),
                "timestamptz" => plain(DataType::TimestampTz),
                "bpchar" => plain(DataType::Char(1)),
                "int" => plain(DataType::Int32),
                other => Err(SqlError::new(codes::UNDEFINED_OBJECT, format!("type \"{other}\" does not exist"))),
            }
        }
        other => Err(SqlError::unsupported(format!("type {other}"))),
    }
}

/// Casts a result column to the column's storage type and reads its values, enforcing
/// varchar(n)/char(n) lengths as PostgreSQL does (char(n) pads with blanks).
pub fn column_values(array: &ArrayRef, dt: &DataType, column: &str) -> SqlResult<Vec<Value>> {
    // Array text ('{1,2}'): parse the elements, then read them as the element type.
    if let DataType::Array(elem) = dt
        && is_text(array.data_type())
    {
        let text = cast_with_options(array, &datafusion::arrow::datatypes::DataType::Utf8, &CastOptions::default())?;
        let text = text
            .as_any()
            .downcast_ref::<datafusion::arrow::array::StringArray>()
            .ok_or_else(|| SqlError::internal("text column of another type"))?;
        let mut out = Vec::with_capacity(text.len());
        for i in 0..text.len() {
            if text.is_null(i) {
                out.push(Value::Null);
                continue;
            }
            let items = parse_pg_array(text.value(i))?;
            let items: ArrayRef = Arc::new(datafusion::arrow::array::StringArray::from(items));
            out.push(Value::Array(column_values(&items, elem, column)?.into()));
        }
        return Ok(out);
    }
    // A list: read its elements as the element type (with that type's checks), then regroup.
    if let DataType::Array(elem) = dt
        && let Some(list) = array.as_any().downcast_ref::<datafusion::arrow::array::ListArray>()
    {
        let mut out = Vec::with_capacity(list.len());
        for i in 0..list.len() {
            if list.is_null(i) {
                out.push(Value::Null);
            } else {
                out.push(Value::Array(column_values(&list.value(i), elem, column)?.into()));
            }
        }
        return Ok(out);
    }
    // varchar(n) lengths and char(n) padding are checked on the array (as the columnar path does).
    let cast = match dt {
        DataType::Varchar(Some(_)) | DataType::Char(_) => column_array(array, dt, column)?,
        _ => cast_column(array, dt, column)?,
    };
    let mut values = values_from_column(dt, &cast).map_err(SqlError::from)?;
    match dt {
        DataType::Uuid => {
            for v in &mut values {
                if let Value::Text(s) = v {
                    *v = Value::Text(Arc::from(normalize_uuid(s)?));
                }
            }
        }
        DataType::Json | DataType::Jsonb => {
            for v in &values {
                if let Value::Text(s) = v
                    && serde_json::from_str::<serde_json::Value>(s).is_err()
                {
                    return Err(SqlError::new(
                        codes::INVALID_TEXT_REPRESENTATION,
                        "invalid input syntax for type json",
                    ));
                }
            }
        }
        _ => {}
    }
    Ok(values)
}

/// Casts a column to `dt`'s storage type (errors name the column and SQLSTATE).
fn cast_column(array: &ArrayRef, dt: &DataType, column: &str) -> SqlResult<ArrayRef> {
    let target = dt.arrow_type();
    Ok(if matches!(dt, DataType::Bytea) && is_text(array.data_type()) {
        bytea_from_text(array)?
    } else if array.data_type() == &target {
        array.clone()
    } else {
        let opts = CastOptions { safe: false, ..Default::default() };
        cast_with_options(array, &target, &opts).map_err(|e| {
            let msg = e.to_string();
            let mut err = SqlError::from(e);
            if msg.contains("Can't cast value") || msg.contains("too large to store") {
                err = SqlError::new(
                    codes::NUMERIC_VALUE_OUT_OF_RANGE,
                    format!("value out of range for type {}", dt.pg_name()),
                );
            }
            if err.code == codes::INTERNAL {
                err = SqlError::new(
                    codes::DATATYPE_MISMATCH,
                    format!(
                        "column \"{column}\" is of type {} but expression is of type {}",
                        dt.pg_name(),
                        array.data_type()
                    ),
                );
            }
            err
        })?
    })
}

/// As [`column_values`], but as an Arrow column of `dt.arrow_type()`: the columnar insert path.
/// Numbers, text, dates and times stay arrays end to end (varchar(n) and char(n) are checked
/// and padded on the array); the other types go through values.
pub fn column_array(array: &ArrayRef, dt: &DataType, column: &str) -> SqlResult<ArrayRef> {
    use datafusion::arrow::array::{StringArray, StringBuilder};
    let by_values = || -> SqlResult<ArrayRef> {
        let values = column_values(array, dt, column)?;
        Ok(bkg_kernel::arrow_conv::column_from_values(dt, values.iter())?)
    };
    match dt {
        DataType::Array(_) | DataType::Bytea | DataType::Uuid | DataType::Json | DataType::Jsonb => by_values(),
        DataType::Varchar(Some(n)) => {
            let cast = cast_column(array, dt, column)?;
            let text = cast.as_any().downcast_ref::<StringArray>().ok_or_else(|| SqlError::internal("text column"))?;
            // Only a value of more than n bytes can have more than n characters.
            if text.iter().flatten().any(|s| s.len() > *n as usize && s.chars().count() > *n as usize) {
                return Err(SqlError::new(
                    codes::STRING_DATA_RIGHT_TRUNCATION,
                    format!("value too long for type character varying({n})"),
                ));
            }
            Ok(cast)
        }
        DataType::Char(n) => {
            let n = *n as usize;
            let cast = cast_column(array, dt, column)?;
            let text = cast.as_any().downcast_ref::<StringArray>().ok_or_else(|| SqlError::internal("text column"))?;
            let padded = |s: &str| s.len() == n && s.is_ascii();
            if text.iter().flatten().all(padded) {
                return Ok(cast);
            }
            let mut b = StringBuilder::with_capacity(text.len(), text.len() * n);
            let mut p = String::new();
            for v in text.iter() {
                let Some(s) = v else {
                    b.append_null();
                    continue;
                };
                if padded(s) {
                    b.append_value(s);
                    continue;
                }
                let trimmed = s.trim_end_matches(' ');
                let len = trimmed.chars().count();
                if len > n {
                    return Err(SqlError::new(
                        codes::STRING_DATA_RIGHT_TRUNCATION,
                        format!("value too long for type character({n})"),
                    ));
                }
                p.clear();
                p.push_str(trimmed);
                p.extend(std::iter::repeat_n(' ', n - len));
                b.append_value(&p);
            }
            Ok(Arc::new(b.finish()))
        }
        _ => {
            let cast = cast_column(array, dt, column)?;
            if cast.data_type() == &dt.arrow_type() { Ok(cast) } else { by_values() }
        }
    }
}

/// The elements of a one-dimensional array in PostgreSQL's text form: `{1,2,NULL}`,
/// `{"a b","c\"d",e}`. Unquoted `NULL` is a null; quoted elements take backslash escapes.
pub fn parse_pg_array(text: &str) -> SqlResult<Vec<Option<String>>> {
    let malformed = |why: &str| {
        SqlError::new(codes::INVALID_TEXT_REPRESENTATION, format!("malformed array literal: \"{text}\""))
            .with_detail(why.to_string())
    };
    let t = text.trim();
    let inner = t
        .strip_prefix('{')
        .and_then(|r| r.strip_suffix('}'))
        .ok_or_else(|| malformed("Array value must start with \"{\" and end with \"}\"."))?;
    let mut out = Vec::new();
    if inner.trim().is_empty() {
        return Ok(out);
    }
    let mut chars = inner.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        match chars.peek() {
            Some('{') => return Err(SqlError::unsupported("multidimensional arrays")),
            Some('"') => {
                chars.next();
                let mut s = String::new();
                loop {
                    match chars.next() {
                        Some('\\') => s.push(chars.next().ok_or_else(|| malformed("Unexpected end of input."))?),
                        Some('"') => break,
                        Some(c) => s.push(c),
                        None => return Err(malformed("Unexpected end of input.")),
                    }
                }
                out.push(Some(s));
                while chars.peek().is_some_and(|c| c.is_whitespace()) {
                    chars.next();
                }
            }
            _ => {
                let mut s = String::new();
                while let Some(&c) = chars.peek() {
                    if c == ',' {
                        break;
                    }
                    if c == '"' || c == '{' || c == '}' {
                        return Err(malformed("Unexpected array element."));
                    }
                    if c == '\\' {
                        chars.next();
                        s.push(chars.next().ok_or_else(|| malformed("Unexpected end of input."))?);
                        continue;
                    }
                    s.push(c);
                    chars.next();
                }
                let s = s.trim_end().to_string();
                if s.is_empty() {
                    return Err(malformed("Unexpected \",\" character."));
                }
                out.push(if s.eq_ignore_ascii_case("null") { None } else { Some(s) });
            }
        }
        match chars.next() {
            Some(',') => continue,
            None => break,
            Some(_) => return Err(malformed("Unexpected array element.")),
        }
    }
    Ok(out)
}

/// Canonical lower-case hyphenated form of a UUID; error 22P02 if it is not one.
pub fn normalize_uuid(s: &str) -> SqlResult<String> {
    let hex: String = s.trim_matches(|c| c == '{' || c == '}').chars().filter(|c| *c != '-').collect();
    if hex.len() != 32 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(SqlError::new(
            codes::INVALID_TEXT_REPRESENTATION,
            format!("invalid input syntax for type uuid: \"{s}\""),
        ));
    }
    let h = hex.to_lowercase();
    Ok(format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32]))
}

fn is_text(t: &datafusion::arrow::datatypes::DataType) -> bool {
    use datafusion::arrow::datatypes::DataType as A;
    matches!(t, A::Utf8 | A::LargeUtf8 | A::Utf8View)
}

/// Text to `bytea` as PostgreSQL reads it: the hex format `\x0a1b...` or the escape format
/// (`\\` for a backslash, `\ooo` for an octal byte, anything else as is).
pub fn decode_bytea(s: &str) -> SqlResult<Vec<u8>> {
    let invalid = |m: &str| SqlError::new(codes::INVALID_TEXT_REPRESENTATION, m.to_string());
    if let Some(hex) = s.strip_prefix("\\x") {
        // PostgreSQL reports bad hex input as invalid_parameter_value.
        let invalid = |m: &str| SqlError::new(SqlState::InvalidParameterValue, m.to_string());
        let digits: Vec<u8> = hex.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
        let nibble = |b: u8| {
            (b as char)
                .to_digit(16)
                .map(|d| d as u8)
                .ok_or_else(|| invalid(&format!("invalid hexadecimal digit: \"{}\"", b as char)))
        };
        if digits.len() % 2 == 1 {
            return Err(invalid("invalid hexadecimal data: odd number of digits"));
        }
        return digits.chunks(2).map(|p| Ok(nibble(p[0])? << 4 | nibble(p[1])?)).collect();
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'\\' {
            out.push(bytes[i]);
            i += 1;
        } else if bytes.get(i + 1) == Some(&b'\\') {
            out.push(b'\\');
            i += 2;
        } else if let Some(oct) = bytes.get(i + 1..i + 4)
            && matches!(oct[0], b'0'..=b'3')
            && oct[1..].iter().all(|b| matches!(b, b'0'..=b'7'))
        {
            out.push((oct[0] - b'0') * 64 + (oct[1] - b'0') * 8 + (oct[2] - b'0'));
            i += 4;
        } else {
            return Err(invalid("invalid input syntax for type bytea"));
        }
    }
    Ok(out)
}

/// A text column decoded as `bytea` values.
pub fn bytea_from_text(array: &ArrayRef) -> SqlResult<ArrayRef> {
    use datafusion::arrow::array::BinaryBuilder;
    use datafusion::arrow::datatypes::DataType as A;
    let text = cast_with_options(array, &A::Utf8, &CastOptions::default()).map_err(SqlError::from)?;
    let text = text
        .as_any()
        .downcast_ref::<datafusion::arrow::array::StringArray>()
        .ok_or_else(|| SqlError::internal("text column is not Utf8"))?;
    let mut b = BinaryBuilder::with_capacity(text.len(), text.value_data().len());
    for i in 0..text.len() {
        if text.is_null(i) {
            b.append_null();
        } else {
            b.append_value(decode_bytea(text.value(i))?);
        }
    }
    Ok(Arc::new(b.finish()))
}

#[cfg(test)]
mod tests {
    use super::decode_bytea;

    #[test]
    fn bytea_input_formats() {
        assert_eq!(decode_bytea("\\x0102ff").unwrap(), vec![1, 2, 255]);
        assert_eq!(decode_bytea("\\x01 02").unwrap(), vec![1, 2]);
        assert_eq!(decode_bytea("\\x").unwrap(), Vec::<u8>::new());
        assert_eq!(decode_bytea("a\\\\b\\001").unwrap(), vec![b'a', b'\\', b'b', 1]);
        assert_eq!(decode_bytea("plain").unwrap(), b"plain".to_vec());
        assert_eq!(decode_bytea("\\x012").unwrap_err().code, "22023");
        assert_eq!(decode_bytea("\\xzz").unwrap_err().code, "22023");
        assert_eq!(decode_bytea("\\q").unwrap_err().code, "22P02");
    }
}
