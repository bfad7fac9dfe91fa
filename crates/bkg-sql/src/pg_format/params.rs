//! Bound parameters (Bind) to SQL literal text, each checked against its declared type.

use super::*;

use crate::quote::literal as sql_string;

/// Turns one bound parameter into SQL literal text, checking it against its declared type.
pub fn param_literal(value: Option<&[u8]>, ty: &Type, binary: bool) -> SqlResult<String> {
    literal_of_param(value, ty, binary, None)
}

/// [`param_literal`] for bind parameter number `param` (1-based), which errors name as
/// PostgreSQL does ("incorrect binary data format in bind parameter 2").
pub fn param_literal_at(value: Option<&[u8]>, ty: &Type, binary: bool, param: usize) -> SqlResult<String> {
    literal_of_param(value, ty, binary, Some(param))
}

pub(super) fn literal_of_param(
    value: Option<&[u8]>,
    ty: &Type,
    binary: bool,
    param: Option<usize>,
) -> SqlResult<String> {
    let Some(raw) = value else {
        return Ok("NULL".into());
    };
    if let Some(elem) = array_elem(ty) {
        return array_param(raw, &elem, binary, param);
    }
    if binary {
        let mut r = Reader::new(raw);
        let text = binary_text(&mut r, ty)?;
        if !r.is_empty() {
            return Err(trailing_data(param));
        }
        return Ok(literal_of(text, ty));
    }
    let text = utf8_text(raw)?;
    Ok(match *ty {
        Type::BOOL | Type::INT2 | Type::INT4 | Type::INT8 | Type::FLOAT4 | Type::FLOAT8 | Type::NUMERIC => {
            let t = text.trim();
            let ok = match *ty {
                Type::BOOL => {
                    ["t", "f", "true", "false", "1", "0", "yes", "no", "on", "off"].contains(&t.to_lowercase().as_str())
                }
                Type::INT2 => t.parse::<i16>().is_ok(),
                Type::INT4 => t.parse::<i32>().is_ok(),
                Type::INT8 => t.parse::<i64>().is_ok(),
                _ => t.parse::<f64>().is_ok() || ["nan", "infinity", "-infinity"].contains(&t.to_lowercase().as_str()),
            };
            if !ok {
                return Err(SqlError::new(
                    codes::INVALID_TEXT_REPRESENTATION,
                    format!("invalid input syntax for type {}: \"{text}\"", ty.name()),
                ));
            }
            format!("CAST({} AS {})", sql_string(t), cast_name(ty).unwrap_or("TEXT"))
        }
        Type::BYTEA => format!("decode({}, 'hex')", sql_string(text.trim_start_matches("\\x"))),
        _ => match cast_name(ty) {
            Some(c) => format!("CAST({} AS {c})", sql_string(text)),
            None => sql_string(text),
        },
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
    // The parameter's text; a binary value is first read (and checked) as its declared type.
    let decoded;
    let text: &str = if binary {
        let mut r = Reader::new(raw);
        decoded = binary_text(&mut r, ty)?;
        if !r.is_empty() {
            return Err(trailing_data(None));
        }
        &decoded
    } else {
        utf8_text(raw)?
    };
    match dt {
        D::Int16 | D::Int32 | D::Int64 => {
            let t = text.trim();
            let n: i64 = t.parse().map_err(|_| {
                SqlError::new(
                    codes::INVALID_TEXT_REPRESENTATION,
                    format!("invalid input syntax for type {}: \"{t}\"", dt.pg_name()),
                )
            })?;
            Ok(match dt {
                D::Int16 => V::Int16(i16::try_from(n).map_err(|_| out_of_range())?),
                D::Int32 => V::Int32(i32::try_from(n).map_err(|_| out_of_range())?),
                _ => V::Int64(n),
            })
        }
        _ => Ok(V::Text(std::sync::Arc::from(text))),
    }
}

/// An array parameter as `CAST(ARRAY[…] AS elem[])`, each element checked as a parameter of
/// the element type. Text form `{1,2,NULL}`; binary form as PostgreSQL's array_recv reads it,
/// elements in one dimension (or none).
pub(super) fn array_param(raw: &[u8], elem: &Type, binary: bool, param: Option<usize>) -> SqlResult<String> {
    let elems: Vec<String> = if binary {
        binary_array_literals(raw, elem, param)?
    } else {
        crate::types::parse_pg_array(utf8_text(raw)?)?
            .iter()
            .map(|x| literal_of_param(x.as_deref().map(str::as_bytes), elem, false, param))
            .collect::<SqlResult<_>>()?
    };
    let elem_sql = match *elem {
        Type::NUMERIC => "DECIMAL(38,10)",
        _ => cast_name(elem).unwrap_or("TEXT"),
    };
    Ok(format!("CAST(ARRAY[{}] AS {elem_sql}[])", elems.join(", ")))
}
