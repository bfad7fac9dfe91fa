//! Fuzz targets of this crate, run by `bkg_kernel::fuzzing` inside the normal test suite for a
//! bounded time (how, the budget and the knobs: that module's documentation).
//!
//! | test               | code under test                                                   |
//! |--------------------|-------------------------------------------------------------------|
//! | `pg_binary_params` | [`param_literal_at`] and [`param_value`], binary and text format   |
//! | `copy_text_csv`    | COPY FROM parsing ([`parse_text`], [`parse_csv`])                  |

use bkg_kernel::fuzzing::{Budget, Spec, TEXT_TOKENS, corpus, run};
use bkg_kernel::{DataType as D, Value as V};
use datafusion::arrow::array::{Array, StringArray};
use pgwire::api::Type;

use crate::copy::{CopyOptions, Parsed, parse_csv, parse_text};
use crate::pg_format::{param_literal_at, param_value};

// ---------------------------------------------------------------------------------------------
// pg_binary_params

/// Every parameter type the server knows: the element and array types of the catalog's type
/// table, and a few it has no binary input for.
fn param_types() -> Vec<Type> {
    let mut oids: Vec<u32> = crate::pg_catalog::TYPES
        .iter()
        .flat_map(|t| [t.0, t.3])
        .filter(|oid| *oid > 0)
        .filter_map(|oid| u32::try_from(oid).ok())
        .collect();
    // time with time zone, inet, tsvector.
    oids.extend([1266, 869, 3614]);
    oids.sort_unstable();
    oids.dedup();
    oids.into_iter().filter_map(Type::from_oid).collect()
}

/// One Bind parameter value, tried as every type, in both formats. Whatever is made of a value
/// stays within a small multiple of its size (pg_format/binary.rs: at most 64 + 16 bytes per input byte).
fn pg_param(types: &[Type], raw: &[u8]) -> bool {
    let bound = 64 + 16 * raw.len();
    let mut accepted = false;
    for (i, ty) in types.iter().enumerate() {
        for binary in [true, false] {
            if let Ok(s) = param_literal_at(Some(raw), ty, binary, i + 1) {
                let format = if binary { "binary" } else { "text" };
                assert!(s.len() <= bound, "{ty} ({format}): {} bytes made {} bytes of SQL: {s}", raw.len(), s.len());
                accepted = true;
            }
        }
        for (binary, dt) in [(true, D::Text), (true, D::Int16), (false, D::Int32)] {
            if let Ok(V::Text(s)) = param_value(Some(raw), ty, binary, &dt) {
                assert!(s.len() <= bound, "{ty} key parameter: {} bytes made {} bytes of text", raw.len(), s.len());
            }
        }
    }
    accepted
}

/// Binary values as PostgreSQL's send functions write them, for the types the corpus has no
/// file for.
fn pg_param_seeds() -> Vec<(String, Vec<u8>)> {
    /// A one-dimensional binary array (array_send), lower bound 1.
    fn array(oid: u32, elems: &[Option<&[u8]>]) -> Vec<u8> {
        let has_null = i32::from(elems.iter().any(Option::is_none));
        crate::pg_format::tests::array(1, has_null, oid, &[(elems.len() as i32, 1)], elems)
    }
    let ts = 757_382_400_000_000i64.to_be_bytes();
    let uuid: Vec<u8> = (0u8..16).map(|i| i.wrapping_mul(17)).collect();
    let inf = f64::INFINITY.to_be_bytes();
    let neg_zero = (-0.0f64).to_be_bytes();
    vec![
        ("bool array".into(), array(16, &[Some(&[1u8][..]), Some(&[0u8][..]), None])),
        ("int8 array".into(), array(20, &[Some(&i64::MIN.to_be_bytes()[..])])),
        ("float8 array".into(), array(701, &[Some(&inf[..]), Some(&neg_zero[..])])),
        ("timestamptz array".into(), array(1184, &[Some(&ts[..]), Some(&i64::MAX.to_be_bytes()[..])])),
        ("date array".into(), array(1082, &[Some(&(-1i32).to_be_bytes()[..])])),
        ("uuid array".into(), array(2950, &[Some(uuid.as_slice())])),
        ("jsonb array".into(), array(3802, &[Some(&b"\x01[1,{\"a\":null}]"[..])])),
        ("bytea array".into(), array(17, &[Some(&b""[..]), Some(&b"\x00\\'"[..])])),
        ("oid".into(), u32::MAX.to_be_bytes().to_vec()),
        ("empty".into(), Vec::new()),
    ]
}

#[test]
fn pg_binary_params() {
    let types = param_types();
    assert!(types.len() >= 40, "{types:?}");
    let mut seeds = corpus("pg_binary_params");
    seeds.extend(pg_param_seeds());
    let spec = Spec {
        name: "pg_binary_params",
        ext: "bin",
        max_len: 1024,
        tokens: &[
            "{",
            "}",
            ",",
            "\"",
            "\\",
            "NULL",
            "null",
            "'",
            "''",
            "-",
            ".",
            "e",
            "E+308",
            "Infinity",
            "-infinity",
            "NaN",
            "\\x",
            " ",
            "\t",
            "\n",
            "\0",
            "é",
            "\u{FEFF}",
            "\u{10FFFF}",
            "true",
            "yes",
            "2024-02-29",
            "24:00:00",
            "+00",
            " BC",
            "::",
            "%",
        ],
    };
    run(&spec, &Budget::from_env(), &seeds, &mut |raw: &[u8]| pg_param(&types, raw));
}

// ---------------------------------------------------------------------------------------------
// copy_text_csv

/// The option sets COPY FROM takes (copy::options): text and CSV, and the odd ones it lets
/// through (a quote or escape cut from a non-ASCII character, a delimiter equal to the quote).
fn copy_option_sets() -> Vec<CopyOptions> {
    let text = |delimiter: u8, null: &str, header: bool| CopyOptions {
        csv: false,
        delimiter,
        null: null.into(),
        header,
        quote: b'"',
        escape: b'"',
    };
    let csv = |delimiter: u8, quote: u8, escape: u8, null: &str, header: bool| CopyOptions {
        csv: true,
        delimiter,
        null: null.into(),
        header,
        quote,
        escape,
    };
    vec![
        CopyOptions::default(),
        text(b',', "", false),
        text(b'|', "NULL", true),
        text(b'\\', "\\N", false),
        csv(b',', b'"', b'"', "", false),
        csv(b',', b'"', b'"', "", true),
        csv(b',', b'"', b'\\', "\\N", false),
        csv(b';', b'\'', b'\'', "NULL", false),
        csv(b'\t', 0xE9, 0x00, "", false),
        csv(b'"', b'"', b'"', "", false),
    ]
}

/// A parse of `data` holds `ncols` columns of `rows` entries each, at most one row per line and
/// no more text than `data` (escapes only shrink).
fn check_copy(p: &Parsed, data: &[u8], ncols: usize, o: &CopyOptions) {
    assert_eq!(p.columns.len(), ncols, "{o:?}: column count");
    let lines = data.iter().filter(|b| **b == b'\n').count() + 1;
    assert!(p.rows <= lines, "{o:?}: {} rows from {lines} lines", p.rows);
    let mut bytes = 0usize;
    for c in &p.columns {
        assert_eq!(c.len(), p.rows, "{o:?}: a column's length is not the row count");
        let s = c.as_any().downcast_ref::<StringArray>().expect("COPY columns are text");
        bytes += (0..s.len()).filter(|i| !s.is_null(*i)).map(|i| s.value(i).len()).sum::<usize>();
    }
    assert!(bytes <= data.len(), "{o:?}: {} bytes of data parsed into {bytes} bytes of text", data.len());
}

fn copy_data(sets: &[CopyOptions], data: &[u8]) -> bool {
    let mut accepted = false;
    for o in sets {
        let first_line = data.split(|b| *b == b'\n').next().unwrap_or_default();
        let guess = first_line.split(|b| *b == o.delimiter).count().clamp(1, 64);
        // The first line's field count (what a well-formed input has), then 0 to 3 columns.
        for (ncols, line0) in [(guess, 0usize), (data.len() % 4, 1_000_000)] {
            let parsed = if o.csv { parse_csv(data, o, ncols, line0) } else { parse_text(data, o, ncols, line0) };
            if let Ok(p) = parsed {
                check_copy(&p, data, ncols, o);
                accepted = true;
            }
        }
    }
    accepted
}

#[test]
fn copy_text_csv() {
    let sets = copy_option_sets();
    let seeds = corpus("copy_text_csv");
    let mut tokens: Vec<&str> = TEXT_TOKENS.to_vec();
    tokens.extend(["\\N", "\\.", "\\.\n", "\\x", "\\x4", "\\0", "\\777", "\\\\", "\"\"", ";", "|", "NULL", "\n\n"]);
    let spec = Spec { name: "copy_text_csv", ext: "txt", max_len: 2048, tokens: &tokens };
    run(&spec, &Budget::from_env(), &seeds, &mut |data: &[u8]| copy_data(&sets, data));
}
