//! Fuzz targets of this crate, run by `bkg_kernel::fuzzing` inside the normal test suite for a
//! bounded time (how, the budget and the knobs: that module's documentation).
//!
//! | test               | code under test                                                   |
//! |--------------------|-------------------------------------------------------------------|
//! | `postgrest_filter` | the PostgREST URL grammar ([`crate::rest::grammar`])               |

use bkg_kernel::fuzzing::{Budget, Spec, TEXT_TOKENS, corpus, run};

use crate::rest::grammar::{self, Cond, Field, Operand, OrderTerm, SelectItem};

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
