//! Binary parameters (Bind format code 1), read as PostgreSQL's receive functions read them:
//! every length is checked before it is used, every field validated, and the text made of a value
//! stays within a small multiple of its size (at most 64 + 16 bytes per input byte), so a hostile
//! value is refused, never expanded.

use super::*;
use crate::quote::literal as sql_string;

/// Most digits of an external NUMERIC (NUMERIC_MAX_PRECISION + NUMERIC_MAX_RESULT_SCALE).
pub(super) const NUMERIC_MAX_NDIGITS: usize = 3000;
/// The bits an external NUMERIC's dscale may use (NUMERIC_DSCALE_MASK).
pub(super) const NUMERIC_DSCALE_MASK: u16 = 0x3FFF;
pub(super) const NUMERIC_POS: u16 = 0x0000;
pub(super) const NUMERIC_NEG: u16 = 0x4000;
pub(super) const NUMERIC_NAN: u16 = 0xC000;
pub(super) const NUMERIC_PINF: u16 = 0xD000;
pub(super) const NUMERIC_NINF: u16 = 0xF000;
/// The base of a NUMERIC digit.
pub(super) const NBASE: i16 = 10_000;
/// Most decimal digits a binary NUMERIC parameter may have before its point, and most kept
/// after it. The widest decimal the server stores has 38 digits (Arrow's widest has 76) and a
/// parameter is cast to DECIMAL(38,10): more digits could only overflow or be rounded away.
/// PostgreSQL would take weight 0x7FFF (131 072 digits out of 10 bytes) and dscale 0x3FFF; here
/// the first is refused (22003) and the second cut to this many places.
pub(super) const NUMERIC_PARAM_MAX_DIGITS: usize = 76;
/// PostgreSQL's MAXDIM and MaxArraySize.
pub(super) const ARRAY_MAX_DIMS: i32 = 6;
pub(super) const ARRAY_MAX_ITEMS: i64 = 0x3FFF_FFFF / 8;
/// Type oids below this are built in (FirstGenbkiObjectId): as in PostgreSQL, an array whose
/// element type differs from the expected one is refused only when both are built in.
pub(super) const FIRST_GENBKI_OBJECT_ID: u32 = 10_000;
/// A name is shorter than this many bytes (NAMEDATALEN).
pub(super) const NAMEDATALEN: usize = 64;
pub(super) const USECS_PER_DAY: i64 = 86_400_000_000;
/// Dates PostgreSQL takes, in days since 2000-01-01: from 4714-11-24 BC (Julian day 0) up to,
/// not including, 5874898-01-01. i32::MIN and i32::MAX are -infinity and infinity.
pub(super) const DATE_MIN: i32 = -2_451_545;
pub(super) const DATE_END: i32 = 2_145_031_949;
/// Timestamps PostgreSQL takes, in microseconds since 2000-01-01: from 4714-11-24 BC up to, not
/// including, 294277-01-01. i64::MIN and i64::MAX are -infinity and infinity.
pub(super) const TIMESTAMP_MIN: i64 = -211_813_488_000_000_000;
pub(super) const TIMESTAMP_END: i64 = 9_223_371_331_200_000_000;

/// Reads one binary value front to back; running short is "insufficient data left in message".
pub(super) struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(super) fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }

    pub(super) fn remaining(&self) -> usize {
        self.buf.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub(super) fn take(&mut self, n: usize) -> SqlResult<&'a [u8]> {
        if n > self.buf.len() {
            return Err(insufficient_data());
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    /// Everything left (the types whose binary form is the rest of the value).
    pub(super) fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.buf)
    }

    pub(super) fn bytes<const N: usize>(&mut self) -> SqlResult<[u8; N]> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    pub(super) fn u8(&mut self) -> SqlResult<u8> {
        let [b] = self.bytes::<1>()?;
        Ok(b)
    }

    pub(super) fn i16(&mut self) -> SqlResult<i16> {
        Ok(i16::from_be_bytes(self.bytes::<2>()?))
    }

    pub(super) fn u16(&mut self) -> SqlResult<u16> {
        Ok(u16::from_be_bytes(self.bytes::<2>()?))
    }

    pub(super) fn i32(&mut self) -> SqlResult<i32> {
        Ok(i32::from_be_bytes(self.bytes::<4>()?))
    }

    pub(super) fn u32(&mut self) -> SqlResult<u32> {
        Ok(u32::from_be_bytes(self.bytes::<4>()?))
    }

    pub(super) fn i64(&mut self) -> SqlResult<i64> {
        Ok(i64::from_be_bytes(self.bytes::<8>()?))
    }

    pub(super) fn u64(&mut self) -> SqlResult<u64> {
        Ok(u64::from_be_bytes(self.bytes::<8>()?))
    }
}

pub(super) fn binary_error(message: impl Into<String>) -> SqlError {
    SqlError::new(codes::INVALID_BINARY_REPRESENTATION, message)
}

/// A value shorter than its type's binary form says. PostgreSQL reports a short scalar as 08P01
/// (from pq_getmsgint) and a short array element as 22P03; it is 22P03 here throughout, as the
/// value, not the connection, is at fault (pools and drivers take 08xxx as a broken connection).
pub(super) fn insufficient_data() -> SqlError {
    binary_error("insufficient data left in message")
}

/// A value longer than its type's binary form.
pub(super) fn trailing_data(param: Option<usize>) -> SqlError {
    binary_error(match param {
        Some(n) => format!("incorrect binary data format in bind parameter {n}"),
        None => "incorrect binary data format in bind parameter".to_string(),
    })
}

pub(super) fn invalid_utf8(bytes: &[u8]) -> SqlError {
    let shown: Vec<String> = bytes.iter().take(4).map(|b| format!("0x{b:02x}")).collect();
    SqlError::new(
        codes::CHARACTER_NOT_IN_REPERTOIRE,
        format!("invalid byte sequence for encoding \"UTF8\": {}", shown.join(" ")),
    )
}

pub(super) fn datetime_out_of_range(what: &str) -> SqlError {
    SqlError::new(codes::DATETIME_VALUE_OUT_OF_RANGE, format!("{what} out of range"))
}

/// `raw` as text, checked as PostgreSQL checks what a client sends: UTF-8, and no NUL byte.
pub(super) fn utf8_text(raw: &[u8]) -> SqlResult<&str> {
    let text = std::str::from_utf8(raw).map_err(|e| {
        let bad = raw.get(e.valid_up_to()..).unwrap_or_default();
        invalid_utf8(bad.get(..e.error_len().unwrap_or(bad.len())).unwrap_or(bad))
    })?;
    if let Some(at) = text.find('\0') {
        return Err(invalid_utf8(raw.get(at..=at).unwrap_or_default()));
    }
    Ok(text)
}

/// The text of one binary value of type `ty`, read from `r` as the type's PostgreSQL receive
/// function reads it; whatever is left in `r` is for the caller to refuse. The text is what
/// [`literal_of`] turns into SQL (PostgreSQL's output form, but for an interval, which is given
/// in units Arrow parses).
pub(super) fn binary_text(r: &mut Reader<'_>, ty: &Type) -> SqlResult<String> {
    Ok(match *ty {
        // PostgreSQL's boolrecv takes any non-zero byte as true; only 0 and 1 are taken here.
        Type::BOOL => match r.u8()? {
            0 => "false".to_string(),
            1 => "true".to_string(),
            b => return Err(binary_error(format!("invalid byte {b:#04x} in binary \"boolean\" value (0 or 1)"))),
        },
        Type::INT2 => r.i16()?.to_string(),
        Type::INT4 => r.i32()?.to_string(),
        Type::INT8 => r.i64()?.to_string(),
        Type::OID => r.u32()?.to_string(),
        // Debug prints the shortest text that reads back as the same value, in exponent form
        // for tiny and huge ones (Display would write a subnormal out in 300 digits).
        Type::FLOAT4 => format!("{:?}", f32::from_bits(r.u32()?)),
        Type::FLOAT8 => format!("{:?}", f64::from_bits(r.u64()?)),
        Type::NUMERIC => numeric_text(r)?,
        Type::DATE => date_text(r.i32()?)?,
        Type::TIME => {
            let t = r.i64()?;
            if !(0..=USECS_PER_DAY).contains(&t) {
                return Err(datetime_out_of_range("time"));
            }
            format_time_micros(t)
        }
        Type::TIMESTAMP => timestamp_text(r.i64()?, false)?,
        Type::TIMESTAMPTZ => timestamp_text(r.i64()?, true)?,
        Type::INTERVAL => {
            let micros = r.i64()?;
            let days = r.i32()?;
            let months = r.i32()?;
            if (micros, days, months) == (i64::MAX, i32::MAX, i32::MAX) {
                "infinity".to_string()
            } else if (micros, days, months) == (i64::MIN, i32::MIN, i32::MIN) {
                "-infinity".to_string()
            } else {
                format!("{months} mons {days} days {micros} microseconds")
            }
        }
        Type::UUID => {
            use std::fmt::Write as _;
            let mut s = String::with_capacity(36);
            for (i, b) in r.take(16)?.iter().enumerate() {
                if matches!(i, 4 | 6 | 8 | 10) {
                    s.push('-');
                }
                let _ = write!(s, "{b:02x}");
            }
            s
        }
        Type::BYTEA => hex_bytea(r.rest()),
        Type::JSONB => {
            let version = r.u8()?;
            if version != 1 {
                return Err(binary_error(format!("unsupported jsonb version number {version}")));
            }
            utf8_text(r.rest())?.to_string()
        }
        // "char": one byte, printed as charout prints it (NUL as '', a high byte as \ooo).
        Type::CHAR => match r.u8()? {
            0 => String::new(),
            b if b >= 0x80 => format!("\\{b:03o}"),
            b => char::from(b).to_string(),
        },
        Type::NAME => {
            let t = utf8_text(r.rest())?;
            if t.len() >= NAMEDATALEN {
                return Err(SqlError::new(codes::NAME_TOO_LONG, "identifier too long")
                    .with_detail(format!("Identifier must be less than {NAMEDATALEN} characters.")));
            }
            t.to_string()
        }
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::JSON | Type::UNKNOWN => utf8_text(r.rest())?.to_string(),
        _ => {
            return Err(SqlError::new(
                codes::FEATURE_NOT_SUPPORTED,
                format!("binary format is not supported for parameters of type {}", ty.name()),
            ));
        }
    })
}

/// The SQL literal for the text of a value of type `ty` (from [`binary_text`]).
pub(super) fn literal_of(text: String, ty: &Type) -> String {
    match *ty {
        Type::BOOL => text,
        Type::INT2 | Type::INT4 | Type::INT8 => format!("CAST({text} AS {})", cast_name(ty).unwrap_or("BIGINT")),
        Type::BYTEA => format!("decode('{}', 'hex')", text.trim_start_matches("\\x")),
        _ => match cast_name(ty) {
            Some(c) => format!("CAST({} AS {c})", sql_string(&text)),
            None => sql_string(&text),
        },
    }
}

/// A binary array (array_recv): ndim, has-null flag, element oid, (length, lower bound) per
/// dimension, then each element as a length-prefixed binary value (-1 for NULL). The elements'
/// SQL literals.
pub(super) fn binary_array_literals(raw: &[u8], elem: &Type, param: Option<usize>) -> SqlResult<Vec<String>> {
    let too_large = || {
        SqlError::new(
            codes::PROGRAM_LIMIT_EXCEEDED,
            format!("array size exceeds the maximum allowed ({ARRAY_MAX_ITEMS})"),
        )
    };
    let mut r = Reader::new(raw);
    let ndim = r.i32()?;
    if ndim < 0 {
        return Err(binary_error(format!("invalid number of dimensions: {ndim}")));
    }
    if ndim > ARRAY_MAX_DIMS {
        return Err(SqlError::new(
            codes::PROGRAM_LIMIT_EXCEEDED,
            format!("number of array dimensions ({ndim}) exceeds the maximum allowed ({ARRAY_MAX_DIMS})"),
        ));
    }
    let flags = r.i32()?;
    if !matches!(flags, 0 | 1) {
        return Err(binary_error("invalid array flags"));
    }
    let elem_oid = r.u32()?;
    let expected = elem.oid();
    if elem_oid != expected && elem_oid < FIRST_GENBKI_OBJECT_ID && expected < FIRST_GENBKI_OBJECT_ID {
        let name = |oid: u32| Type::from_oid(oid).map(|t| t.name().to_string()).unwrap_or_else(|| "???".to_string());
        return Err(SqlError::new(
            codes::DATATYPE_MISMATCH,
            format!(
                "binary data has array element type {elem_oid} ({}) instead of expected {expected} ({})",
                name(elem_oid),
                name(expected)
            ),
        ));
    }
    // The element count, checked as ArrayGetNItems and ArrayCheckBounds do, before anything is
    // allocated for it.
    let mut nitems: i64 = if ndim == 0 { 0 } else { 1 };
    let mut lower_bounds_are_one = true;
    for _ in 0..ndim {
        let dim = r.i32()?;
        let lower = r.i32()?;
        if dim < 0 {
            return Err(too_large());
        }
        nitems = nitems.checked_mul(i64::from(dim)).filter(|n| i32::try_from(*n).is_ok()).ok_or_else(too_large)?;
        if dim.checked_add(lower).is_none() {
            return Err(SqlError::new(
                codes::PROGRAM_LIMIT_EXCEEDED,
                format!("array lower bound is too large: {lower}"),
            ));
        }
        lower_bounds_are_one &= lower == 1;
    }
    if nitems > ARRAY_MAX_ITEMS {
        return Err(too_large());
    }
    // Every element takes at least its 4-byte length.
    if nitems > i64::try_from(r.remaining() / 4).unwrap_or(i64::MAX) {
        return Err(insufficient_data());
    }
    if nitems > 0 && ndim > 1 {
        return Err(SqlError::unsupported("multidimensional arrays"));
    }
    if nitems > 0 && !lower_bounds_are_one {
        return Err(SqlError::unsupported("array lower bounds other than 1"));
    }
    let mut out = Vec::with_capacity(usize::try_from(nitems).unwrap_or(0));
    for i in 1..=nitems {
        let len = r.i32()?;
        if len == -1 {
            out.push("NULL".to_string());
            continue;
        }
        let len = usize::try_from(len).ok().filter(|n| *n <= r.remaining()).ok_or_else(insufficient_data)?;
        let mut er = Reader::new(r.take(len)?);
        let text = binary_text(&mut er, elem)?;
        if !er.is_empty() {
            return Err(binary_error(format!("improper binary format in array element {i}")));
        }
        out.push(literal_of(text, elem));
    }
    if !r.is_empty() {
        return Err(trailing_data(param));
    }
    Ok(out)
}

/// An external NUMERIC (numeric_recv): ndigits, weight, sign and dscale as 16-bit integers, then
/// ndigits base-10000 digits, most significant first; the first digit's value is
/// digit × 10000^weight. As text, truncated to dscale places as PostgreSQL truncates it.
pub(super) fn numeric_text(r: &mut Reader<'_>) -> SqlResult<String> {
    use std::fmt::Write as _;
    let ndigits = usize::from(r.u16()?);
    if ndigits > NUMERIC_MAX_NDIGITS {
        return Err(binary_error("invalid length in external \"numeric\" value"));
    }
    let weight = i32::from(r.i16()?);
    let sign = r.u16()?;
    if !matches!(sign, NUMERIC_POS | NUMERIC_NEG | NUMERIC_NAN | NUMERIC_PINF | NUMERIC_NINF) {
        return Err(binary_error("invalid sign in external \"numeric\" value"));
    }
    let dscale = r.u16()?;
    if dscale & NUMERIC_DSCALE_MASK != dscale {
        return Err(binary_error("invalid scale in external \"numeric\" value"));
    }
    // ndigits ≤ 3000, so this neither overflows nor reads past the value.
    let body = r.take(ndigits * 2)?;
    let mut digits: Vec<u16> = Vec::with_capacity(ndigits);
    for pair in body.chunks_exact(2) {
        let &[hi, lo] = pair else { return Err(insufficient_data()) };
        let d = i16::from_be_bytes([hi, lo]);
        if !(0..NBASE).contains(&d) {
            return Err(binary_error("invalid digit in external \"numeric\" value"));
        }
        digits.push(d.unsigned_abs());
    }
    match sign {
        NUMERIC_NAN => return Ok("NaN".to_string()),
        NUMERIC_PINF => return Ok("Infinity".to_string()),
        NUMERIC_NINF => return Ok("-Infinity".to_string()),
        _ => {}
    }
    // The digit of weight p (10000^p), 0 where none is given. |weight - p| < 2^17: no overflow.
    let group = |p: i32| -> u16 { usize::try_from(weight - p).ok().and_then(|k| digits.get(k).copied()).unwrap_or(0) };
    // The integer part starts at the highest non-zero digit of weight ≥ 0 (k < 3000 fits i32).
    let top = digits.iter().enumerate().find_map(|(k, &d)| {
        let p = weight - k as i32;
        (p >= 0 && d != 0).then_some(p)
    });
    if let Some(top) = top {
        let top_len = match group(top) {
            0..=9 => 1,
            10..=99 => 2,
            100..=999 => 3,
            _ => 4,
        };
        let int_len = usize::try_from(top).unwrap_or(usize::MAX).saturating_mul(4).saturating_add(top_len);
        if int_len > NUMERIC_PARAM_MAX_DIGITS {
            return Err(SqlError::new(codes::NUMERIC_VALUE_OUT_OF_RANGE, "value overflows numeric format")
                .with_detail(format!(
                    "A binary numeric parameter has at most {NUMERIC_PARAM_MAX_DIGITS} digits before the decimal point."
                )));
        }
    }
    // The fraction, digit by digit: truncated to dscale places (and to the limit), zero-padded.
    let places = usize::from(dscale).min(NUMERIC_PARAM_MAX_DIGITS);
    let mut frac = String::with_capacity(places);
    for j in 0..places {
        // Place j (0-based) lies in the digit of weight -1 - j/4 (j < 76, so no overflow).
        let d = group(-1 - (j / 4) as i32);
        let place = (d / 10u16.pow(3 - (j % 4) as u32)) % 10;
        frac.push(char::from(b'0' + place as u8));
    }
    let negative = sign == NUMERIC_NEG && (top.is_some() || frac.bytes().any(|b| b != b'0'));
    let mut text = String::with_capacity(2 + NUMERIC_PARAM_MAX_DIGITS + places);
    if negative {
        text.push('-');
    }
    match top {
        None => text.push('0'),
        Some(top) => {
            let _ = write!(text, "{}", group(top));
            for p in (0..top).rev() {
                let _ = write!(text, "{:04}", group(p));
            }
        }
    }
    if places > 0 {
        text.push('.');
        text.push_str(&frac);
    }
    Ok(text)
}

/// A binary date (days since 2000-01-01) as text, in the range PostgreSQL's date_recv takes and
/// the server can print.
pub(super) fn date_text(days: i32) -> SqlResult<String> {
    match days {
        i32::MAX => return Ok("infinity".to_string()),
        i32::MIN => return Ok("-infinity".to_string()),
        _ => {}
    }
    if !(DATE_MIN..DATE_END).contains(&days) {
        return Err(datetime_out_of_range("date"));
    }
    days.checked_add(PG_EPOCH_DAYS)
        .and_then(|d| d.checked_add(719_163))
        .and_then(NaiveDate::from_num_days_from_ce_opt)
        .map(|d| d.format("%Y-%m-%d").to_string())
        .ok_or_else(|| datetime_out_of_range("date"))
}

/// A binary timestamp (microseconds since 2000-01-01) as text, in the range PostgreSQL's
/// timestamp_recv takes and the server can print.
pub(super) fn timestamp_text(t: i64, tz: bool) -> SqlResult<String> {
    match t {
        i64::MAX => return Ok("infinity".to_string()),
        i64::MIN => return Ok("-infinity".to_string()),
        _ => {}
    }
    if !(TIMESTAMP_MIN..TIMESTAMP_END).contains(&t) {
        return Err(datetime_out_of_range("timestamp"));
    }
    let unix = t.checked_add(PG_EPOCH_MICROS).ok_or_else(|| datetime_out_of_range("timestamp"))?;
    let micros = unix.rem_euclid(1_000_000) as u32;
    let dt = DateTime::from_timestamp(unix.div_euclid(1_000_000), micros * 1000)
        .ok_or_else(|| datetime_out_of_range("timestamp"))?;
    Ok(format!(
        "{}{}{}",
        dt.naive_utc().format("%Y-%m-%d %H:%M:%S"),
        trim_fraction(micros),
        if tz { "+00" } else { "" }
    ))
}
