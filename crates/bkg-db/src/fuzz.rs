//! Fuzz targets run inside the normal test suite for a bounded time (no nightly, no cargo-fuzz).
//!
//! | test               | code under test                                                   |
//! |--------------------|-------------------------------------------------------------------|
//! | `pg_binary_params` | [`param_literal_at`] and [`param_value`], binary and text format   |
//! | `postgrest_filter` | the PostgREST URL grammar ([`crate::rest::grammar`])               |
//! | `copy_text_csv`    | COPY FROM parsing ([`parse_text`], [`parse_csv`])                  |
//! | `jwt`              | [`JwtConfig::verify_at`] (HS256), raw tokens and re-signed JSON    |
//! | `pg_frontend`      | [`Framing`]'s message checks, then pgwire's frontend decoder       |
//!
//! (The WAL record decoder's target, `wal_record`, is `crates/bkg-kernel/tests/fuzz.rs`.)
//!
//! Each target runs every seed of `testdata/fuzz/<target>/` (and seeds the test builds), then
//! mutated inputs: bit flips, interesting bytes and integers, truncation, slice duplication,
//! random insertions, splicing of two inputs, and for text targets grammar tokens (quotes,
//! backslashes, commas, parentheses, dots, newlines, `::`, `%`, unicode). The mutations come
//! from a xorshift64 PRNG seeded with a constant, so a run is deterministic. A panic in the
//! code under test, or a failed check (output that is not proportional to its input, an
//! accepted token that is not validly signed, ...), fails the test with the input printed in
//! hex and escaped, the PRNG seed and the iteration; the input is also saved to
//! `$TMPDIR/bkg-fuzz-<target>-crash.<ext>`, and copying that file into `testdata/fuzz/<target>/`
//! replays it on every run. Which inputs are accepted is never asserted.
//!
//! Default budget per target: 20 000 inputs or 2 s, whichever comes first. Longer runs:
//!
//! ```text
//! BKG_FUZZ_SECS=60 cargo nextest run -p bkg-db fuzz
//! ```
//!
//! `BKG_FUZZ_SECS` alone lifts the iteration cap; `BKG_FUZZ_ITERS` sets it, `BKG_FUZZ_SEED`
//! changes the PRNG seed (decimal or `0x` hex), and `BKG_FUZZ_VERBOSE=1` prints each input
//! before it runs (for aborts, such as a stack overflow, that no test can catch).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use bkg_kernel::fuzzing::{Budget, Spec, TEXT_TOKENS, corpus, run};
use bkg_kernel::{DataType as D, Value as V};
use datafusion::arrow::array::{Array, StringArray};
use pgwire::api::Type;
use serde_json::{Map, Value as Json};

use crate::auth::jwt::{Alg, JwtConfig};
use crate::pgwire::encode::{param_literal_at, param_value};
use crate::pgwire::frames::{Framing, check_sasl_initial};
use crate::rest::grammar::{self, Cond, Field, Operand, OrderTerm, SelectItem};
use crate::sql::copy::{CopyOptions, Parsed, parse_csv, parse_text};

// ---------------------------------------------------------------------------------------------
// pg_binary_params

/// Every parameter type the server knows: the element and array types of the catalog's type
/// table, and a few it has no binary input for.
fn param_types() -> Vec<Type> {
    let mut oids: Vec<u32> = crate::sql::pg_catalog::TYPES
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
/// stays within a small multiple of its size (encode.rs: at most 64 + 16 bytes per input byte).
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
        crate::pgwire::encode::tests::array(1, has_null, oid, &[(elems.len() as i32, 1)], elems)
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
// postgrest_filter

/// Nodes (items, conditions, list elements) and bytes of names and values in a parse.
#[derive(Default, Debug)]
struct Size {
    nodes: usize,
    bytes: usize,
}

fn opt_len(o: &Option<String>) -> usize {
    o.as_ref().map_or(0, String::len)
}

fn field_bytes(f: &Field) -> usize {
    f.column.len() + f.json.iter().map(|(_, k)| k.len()).sum::<usize>()
}

fn cond_size(c: &Cond, s: &mut Size) {
    s.nodes += 1;
    match c {
        Cond::Filter(f) => {
            s.bytes += field_bytes(&f.field);
            match &f.operand {
                Operand::One(v) => s.bytes += v.len(),
                Operand::List(l) => {
                    s.nodes += l.len();
                    s.bytes += l.iter().map(String::len).sum::<usize>();
                }
                Operand::Is(_) => {}
            }
        }
        Cond::Tree { items, .. } => items.iter().for_each(|c| cond_size(c, s)),
    }
}

fn select_size(items: &[SelectItem], s: &mut Size) {
    for it in items {
        s.nodes += 1;
        match it {
            SelectItem::Star => {}
            SelectItem::Column { field, alias, cast } => s.bytes += field_bytes(field) + opt_len(alias) + opt_len(cast),
            SelectItem::Embed(e) => {
                s.bytes += opt_len(&e.alias) + e.relation.len() + opt_len(&e.hint);
                select_size(&e.items, s);
                e.filters.iter().for_each(|c| cond_size(c, s));
            }
        }
    }
}

fn order_size(terms: &[OrderTerm]) -> Size {
    Size { nodes: terms.len(), bytes: terms.iter().map(|t| field_bytes(&t.field)).sum() }
}

/// A parse of `text_len` bytes of text is made of pieces of that text: its names and values
/// take at most twice its bytes, its nodes at most one per byte.
fn check_size(what: &str, text_len: usize, s: Size) {
    assert!(
        s.bytes <= 2 * text_len + 16 && s.nodes <= text_len + 2,
        "{what}: {text_len} bytes of text parsed into {s:?}"
    );
}

fn check_cond(what: &str, text_len: usize, c: &Cond) {
    let mut s = Size::default();
    cond_size(c, &mut s);
    check_size(what, text_len, s);
}

/// One query string, split into pairs and parsed as the REST front door parses them
/// (rest::parse_request); then its raw text through each grammar function.
fn rest_query(input: &[u8]) -> bool {
    let pairs: Vec<(String, String)> = form_urlencoded::parse(input).into_owned().collect();
    let mut accepted = !pairs.is_empty();
    for (k, v) in &pairs {
        let ok = match k.as_str() {
            "select" => grammar::select(v)
                .map(|items| {
                    let mut s = Size::default();
                    select_size(&items, &mut s);
                    check_size("select", v.len(), s);
                })
                .is_ok(),
            "order" => grammar::order(v).map(|t| check_size("order", v.len(), order_size(&t))).is_ok(),
            "limit" | "offset" | "on_conflict" | "columns" => true,
            "or" | "and" | "not.or" | "not.and" => {
                grammar::logic(k, v).map(|c| check_cond("logic", v.len(), &c)).is_ok()
            }
            _ => {
                // `rel.col=…` and `rel.or=…` address an embedding: the last part is the filter's.
                if let Some((_, last)) = k.rsplit_once('.') {
                    let r = match last {
                        "or" | "and" => grammar::logic(last, v),
                        _ => grammar::filter(last, v),
                    };
                    if let Ok(c) = r {
                        check_cond("embedded filter", last.len() + v.len(), &c);
                    }
                }
                grammar::filter(k, v).map(|c| check_cond("filter", k.len() + v.len(), &c)).is_ok()
            }
        };
        accepted &= ok;
    }
    // The raw text as each kind of value.
    let text = String::from_utf8_lossy(input);
    let s: &str = &text;
    if let Ok(items) = grammar::select(s) {
        let mut size = Size::default();
        select_size(&items, &mut size);
        check_size("raw select", s.len(), size);
    }
    if let Ok(t) = grammar::order(s) {
        check_size("raw order", s.len(), order_size(&t));
    }
    for key in ["or", "not.and"] {
        if let Ok(c) = grammar::logic(key, s) {
            check_cond("raw logic", s.len(), &c);
        }
    }
    if let Ok(c) = grammar::filter("col", s) {
        check_cond("raw filter value", s.len() + 3, &c);
    }
    if let Some((k, v)) = s.split_once('=')
        && let Ok(c) = grammar::filter(k, v)
    {
        check_cond("raw filter", s.len(), &c);
    }
    if let Ok(f) = grammar::field(s) {
        check_size("raw field", s.len(), Size { nodes: 1, bytes: field_bytes(&f) });
    }
    accepted
}

#[test]
fn postgrest_filter() {
    let seeds = corpus("postgrest_filter");
    let mut tokens: Vec<&str> = TEXT_TOKENS.to_vec();
    tokens.extend([
        "eq.",
        "neq.",
        "gt.",
        "gte.",
        "lt.",
        "lte.",
        "like.",
        "ilike.",
        "match.",
        "imatch.",
        "in.(",
        "is.",
        "isdistinct.",
        "not.",
        "or(",
        "and(",
        "or=(",
        "and=(",
        "not.or=(",
        "select=",
        "order=",
        ".desc",
        ".asc",
        ".nullsfirst",
        ".nullslast",
        "!inner",
        "!left",
        "!fk",
        "%28",
        "%29",
        "%3A",
        "+",
        "&select=a(b(c))",
        "\"a,b\"",
        "\\\"",
        "null",
        "not_null",
        "true",
        "unknown",
    ]);
    let spec = Spec { name: "postgrest_filter", ext: "txt", max_len: 2048, tokens: &tokens };
    run(&spec, &Budget::from_env(), &seeds, &mut rest_query);
}

// ---------------------------------------------------------------------------------------------
// copy_text_csv

/// The option sets COPY FROM takes (sql::copy::options): text and CSV, and the odd ones it lets
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

// ---------------------------------------------------------------------------------------------
// jwt

/// The public demo secret of Supabase's local stack (testdata/fuzz/jwt/supabase_demo_anon.token
/// is signed with it).
const JWT_SECRET: &[u8] = b"super-secret-jwt-token-with-at-least-32-characters-long";
const HS256_HEADER: &str = r#"{"alg":"HS256","typ":"JWT"}"#;
/// Times tokens are checked at: before the seeds' `exp`, now-ish, and the end of time.
const JWT_NOWS: [u64; 3] = [1000, 1_700_000_000, u64::MAX];

fn jwt_configs() -> Vec<JwtConfig> {
    let base = JwtConfig {
        alg: Alg::HS256,
        secret: JWT_SECRET.to_vec(),
        keys: vec![],
        audience: None,
        issuer: None,
        leeway_s: 30,
    };
    let strict = JwtConfig {
        audience: Some("authenticated".into()),
        issuer: Some("supabase-demo".into()),
        leeway_s: u64::MAX,
        ..base.clone()
    };
    vec![base, strict]
}

/// An HS256 token over header and payload bytes as given.
fn sign_raw(header: &[u8], payload: &[u8]) -> String {
    let signed = format!("{}.{}", B64URL.encode(header), B64URL.encode(payload));
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, JWT_SECRET);
    format!("{signed}.{}", B64URL.encode(ring::hmac::sign(&key, signed.as_bytes()).as_ref()))
}

/// Verifies `token` with each configuration at each time. An accepted token must carry a valid
/// HMAC of its first two parts under the secret, and an `exp` not yet passed (with at most
/// LEEWAY_S_MAX of skew); its claims stay proportional to its size.
fn jwt_verify(configs: &[JwtConfig], token: &str) -> bool {
    let mut accepted = false;
    for c in configs {
        for now in JWT_NOWS {
            let Ok(claims) = c.verify_at(token, now) else { continue };
            accepted = true;
            let parts: Vec<&str> = token.split('.').collect();
            assert_eq!(parts.len(), 3, "accepted a token of {} parts", parts.len());
            let sig = B64URL.decode(parts[2]).expect("an accepted token's signature is base64url");
            let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, JWT_SECRET);
            let signed = &token[..parts[0].len() + 1 + parts[1].len()];
            assert!(
                ring::hmac::verify(&key, signed.as_bytes(), &sig).is_ok(),
                "accepted a token not signed with the secret"
            );
            let exp = claims.get("exp").and_then(Json::as_f64).expect("an accepted token has a numeric exp");
            let leeway = c.leeway_s.min(crate::auth::jwt::LEEWAY_S_MAX);
            assert!((now as f64) < exp + leeway as f64 + 1.0, "accepted at {now} a token that expired at {exp}");
            let size = serde_json::to_string(&claims).map_or(0, |s| s.len());
            assert!(size <= 8 * token.len() + 64, "a {}-byte token made {size} bytes of claims", token.len());
        }
    }
    accepted
}

/// Claims sets the server meets: an API key, a GoTrue user token, one with every time claim.
fn jwt_claims() -> Vec<Map<String, Json>> {
    let obj = |v: Json| v.as_object().cloned().unwrap_or_default();
    vec![
        obj(serde_json::json!({"iss": "supabase-demo", "role": "anon", "exp": 2000})),
        obj(serde_json::json!({
            "aud": "authenticated", "exp": 2000, "iat": 900, "iss": "supabase-demo",
            "sub": "8d0fbd41-2d38-4ee6-9a0c-5e2b1f7f3c1a", "email": "a@example.com", "role": "authenticated",
            "app_metadata": {"provider": "email", "providers": ["email"]}, "user_metadata": {},
            "amr": [{"method": "password", "timestamp": 900}], "session_id": "4c1f0b6e", "is_anonymous": false,
        })),
        obj(
            serde_json::json!({"exp": 2000.5, "nbf": 900, "iat": 900, "aud": ["x", "authenticated"], "role": "service_role"}),
        ),
    ]
}

#[test]
fn jwt() {
    let configs = jwt_configs();
    let budget = Budget::from_env();
    let files = corpus("jwt");
    let claims = jwt_claims();

    // Raw tokens: signed ones (which verify until mutated) and the corpus's *.token files.
    let mut token_seeds: Vec<(String, Vec<u8>)> = claims
        .iter()
        .enumerate()
        .map(|(i, c)| (format!("signed claims {i}"), configs[0].sign(c).into_bytes()))
        .collect();
    token_seeds.extend(files.iter().filter(|(f, _)| f.ends_with(".token")).cloned());
    for (label, t) in &token_seeds[..claims.len()] {
        let t = String::from_utf8_lossy(t);
        assert!(configs[0].verify_at(&t, 1000).is_ok(), "seed {label} does not verify");
    }
    let mut tokens: Vec<&str> = TEXT_TOKENS.to_vec();
    tokens.extend(["eyJ", "e30", "AAAA", "_", "-", "=", "+", "/", "..", "fQ", "In0", "eyJhbGciOiJub25lIn0"]);
    let spec = Spec { name: "jwt", ext: "token", max_len: crate::auth::jwt::TOKEN_BYTES_MAX + 64, tokens: &tokens };
    run(&spec, &budget.share(2), &token_seeds, &mut |input: &[u8]| {
        jwt_verify(&configs, &String::from_utf8_lossy(input))
    });

    // Header and payload JSON (a newline between them), mutated, then encoded and signed with
    // the secret, so that what lies behind the signature check is reached.
    let mut json_seeds: Vec<(String, Vec<u8>)> = claims
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let payload = serde_json::to_string(c).unwrap_or_default();
            (format!("claims {i}"), format!("{HS256_HEADER}\n{payload}").into_bytes())
        })
        .collect();
    json_seeds.extend(files.iter().filter(|(f, _)| f.ends_with(".json")).cloned());
    let mut tokens: Vec<&str> = TEXT_TOKENS.to_vec();
    tokens.extend([
        "{",
        "}",
        "[",
        "]",
        ":",
        "\"exp\":",
        "\"nbf\":",
        "\"iat\":",
        "\"aud\":",
        "\"iss\":",
        "\"alg\":",
        "\"kid\":",
        "\"crit\":",
        "\"jku\":",
        "\"role\":",
        "\"HS256\"",
        "\"none\"",
        "\"authenticated\"",
        "null",
        "true",
        "1e308",
        "-0",
        "0.5",
        "18446744073709551616",
        "1e-400",
        "\\u0000",
        "\\ud800",
        "\\u006f",
        "[[[[[[[[",
        "]]]]]]]]",
    ]);
    let spec = Spec { name: "jwt", ext: "json", max_len: 6144, tokens: &tokens };
    run(&spec, &budget.share(2), &json_seeds, &mut |input: &[u8]| {
        let (header, payload) = match input.iter().position(|b| *b == b'\n') {
            Some(at) => (&input[..at], &input[at + 1..]),
            None => (HS256_HEADER.as_bytes(), input),
        };
        jwt_verify(&configs, &sign_raw(header, payload))
    });
}

// ---------------------------------------------------------------------------------------------
// pg_frontend

/// Reads `data` as a client's byte stream the way a connection does: through the checks of
/// [`Framing`], then pgwire's decoder on each message they let through, from the first
/// (untyped) message or from after the startup. Every checked message must decode without a
/// panic and consume exactly its own bytes; the password family's forms are coerced as the
/// authentication handlers coerce them (the SASL initial form only when its check passes).
fn pg_frontend(data: &[u8]) -> bool {
    use pgwire::messages::startup::PasswordMessageFamily as Pw;
    use pgwire::messages::{DecodeContext, PgWireFrontendMessage as M};
    let mut accepted = false;
    for untyped_first in [true, false] {
        let mut framing = Framing::new((), bytes::BytesMut::from(data));
        framing.startup = untyped_first;
        let _ = framing.frame();
        let mut buf = framing.ready.split();
        let mut startup = untyped_first;
        while !buf.is_empty() {
            let offset = usize::from(!startup);
            let len = i32::from_be_bytes(buf[offset..offset + 4].try_into().unwrap()) as usize;
            let (before, frame) = (buf.len(), buf[..offset + len].to_vec());
            let mut ctx = DecodeContext::default();
            ctx.awaiting_frontend_ssl = false;
            ctx.awaiting_frontend_startup = startup;
            let msg = match M::decode(&mut buf, &ctx) {
                Ok(Some(m)) => m,
                Ok(None) => panic!("a checked message was incomplete to the decoder: {frame:02x?}"),
                Err(_) => break,
            };
            assert_eq!(before - buf.len(), offset + len, "the decoder read past its message: {frame:02x?}");
            accepted = true;
            match msg {
                M::Startup(_) => startup = false,
                M::CancelRequest(_) => break,
                M::PasswordMessageFamily(Pw::Raw(body)) => {
                    let sasl_initial_ok = check_sasl_initial(&body).is_ok();
                    let _ = Pw::Raw(body.clone()).into_password();
                    let _ = Pw::Raw(body.clone()).into_sasl_response();
                    if sasl_initial_ok {
                        let _ = Pw::Raw(body).into_sasl_initial_response();
                    }
                }
                _ => {}
            }
        }
    }
    accepted
}

#[test]
fn pg_frontend_messages() {
    let seeds = corpus("pg_frontend");
    let spec = Spec { name: "pg_frontend", ext: "bin", max_len: 4096, tokens: &[] };
    run(&spec, &Budget::from_env(), &seeds, &mut pg_frontend);
}
