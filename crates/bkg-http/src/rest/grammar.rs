//! The PostgREST URL grammar: `select=`, filters, `or=`/`and=` trees and `order=`, parsed into
//! plain values. Nothing here knows SQL; names are checked against the catalog later and values
//! are only ever bound as parameters.

use super::error::RestError;
use crate::limits::{EMBED_DEPTH_MAX, LIST_ITEMS_MAX, LOGIC_DEPTH_MAX};
use bkg_sql::SqlState;

/// A column, optionally followed by a JSON path: `data->a->>b`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    pub column: String,
    /// (`->>` when true, `->` when false, key).
    pub json: Vec<(bool, String)>,
}

impl Field {
    /// The name PostgREST gives the field in results: the last JSON key, else the column.
    pub fn default_name(&self) -> &str {
        self.json.last().map(|(_, k)| k.as_str()).unwrap_or(&self.column)
    }
    /// Whether the value is JSON (ends in `->`), not text.
    pub fn is_json_value(&self) -> bool {
        matches!(self.json.last(), Some((false, _)))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Neq,
    Gt,
    Gte,
    Lt,
    Lte,
    Like,
    Ilike,
    Match,
    Imatch,
    In,
    Is,
    IsDistinct,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IsValue {
    Null,
    NotNull,
    True,
    False,
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operand {
    One(String),
    List(Vec<String>),
    Is(IsValue),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    pub field: Field,
    pub negate: bool,
    pub op: Op,
    pub operand: Operand,
}

/// A condition tree: filters joined by `and`/`or`, each node optionally negated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cond {
    Filter(Filter),
    Tree { or: bool, negate: bool, items: Vec<Cond> },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SelectItem {
    Star,
    Column { field: Field, alias: Option<String>, cast: Option<String> },
    Embed(Embed),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Embed {
    pub alias: Option<String>,
    pub relation: String,
    /// `!hint`: a foreign key constraint name or a column of it.
    pub hint: Option<String>,
    /// `!inner`: only parent rows with at least one embedded row.
    pub inner: bool,
    pub items: Vec<SelectItem>,
    /// Filters given as `relation.col=op.value` (or `alias.col`).
    pub filters: Vec<Cond>,
}

impl Embed {
    pub fn name(&self) -> &str {
        self.alias.as_deref().unwrap_or(&self.relation)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderTerm {
    pub field: Field,
    pub desc: bool,
    /// Some(true) = NULLS FIRST.
    pub nulls_first: Option<bool>,
}

fn bad(message: impl Into<String>, details: impl Into<String>) -> RestError {
    RestError::new(400, SqlState::PgrstQueryString, message).details(details)
}

/// Splits on `sep` at nesting depth 0, outside double quotes.
fn split_top(s: &str, sep: char) -> Result<Vec<String>, RestError> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut depth = 0i32;
    let mut quoted = false;
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if quoted => {
                cur.push(c);
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
                continue;
            }
            // A quote opens a quoted element only at its start; elsewhere it is a character.
            '"' if quoted => quoted = false,
            '"' if cur.trim().is_empty() || cur.ends_with('(') || cur.ends_with('.') => quoted = true,
            '(' if !quoted => depth += 1,
            ')' if !quoted => {
                depth -= 1;
                if depth < 0 {
                    return Err(bad("unbalanced parentheses", s));
                }
            }
            c if c == sep && depth == 0 && !quoted => {
                out.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    if depth != 0 || quoted {
        return Err(bad("unbalanced parentheses or quotes", s));
    }
    out.push(cur);
    if out.len() > LIST_ITEMS_MAX {
        return Err(bad(format!("more than {LIST_ITEMS_MAX} items in a list"), ""));
    }
    Ok(out)
}

/// A name: quoted (`"my col"`) or bare (letters, digits, `_`, `$`, and anything but the
/// grammar's punctuation).
fn name(s: &str) -> Result<String, RestError> {
    let s = s.trim();
    if let Some(inner) = s.strip_prefix('"').and_then(|r| r.strip_suffix('"')) {
        if inner.is_empty() {
            return Err(bad("empty quoted name", s));
        }
        return Ok(inner.replace("\\\"", "\""));
    }
    if s.is_empty() || s.chars().any(|c| ",.:;()!\"'\\ ".contains(c) || c.is_control()) {
        return Err(bad(format!("\"{s}\" is not a valid name"), "Names may be quoted with double quotes."));
    }
    Ok(s.to_string())
}

/// `col`, `col->a->>b`, `col->0`.
pub fn field(s: &str) -> Result<Field, RestError> {
    let s = s.trim();
    let mut rest = s;
    let first = rest.find("->").unwrap_or(rest.len());
    let column = name(&rest[..first])?;
    rest = &rest[first..];
    let mut json = Vec::new();
    while !rest.is_empty() {
        let (text, after) = if let Some(r) = rest.strip_prefix("->>") {
            (true, r)
        } else if let Some(r) = rest.strip_prefix("->") {
            (false, r)
        } else {
            return Err(bad(format!("unexpected \"{rest}\" in field \"{s}\""), ""));
        };
        let end = after.find("->").unwrap_or(after.len());
        let key = after[..end].trim();
        if key.is_empty() {
            return Err(bad(format!("empty JSON key in \"{s}\""), ""));
        }
        json.push((text, key.trim_matches('\'').to_string()));
        rest = &after[end..];
    }
    Ok(Field { column, json })
}

/// `select=` value. Its nesting is bounded before anything recurses into it: the items of an
/// embedding are parsed by a recursive call, so one deep `a(a(a(…)))` would otherwise take
/// time quadratic in its length and overflow the stack.
pub fn select(s: &str) -> Result<Vec<SelectItem>, RestError> {
    let (mut depth, mut deepest, mut quoted) = (0usize, 0usize, false);
    for c in s.chars() {
        match c {
            '"' => quoted = !quoted,
            '(' if !quoted => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            ')' if !quoted => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    if deepest > EMBED_DEPTH_MAX {
        return Err(bad(format!("embedding nests at most {EMBED_DEPTH_MAX} levels"), s));
    }
    select_level(s)
}

fn select_level(s: &str) -> Result<Vec<SelectItem>, RestError> {
    let mut items = Vec::new();
    if s.trim().is_empty() {
        return Ok(items);
    }
    for part in split_top(s, ',')? {
        let part = part.trim();
        if part.is_empty() {
            return Err(bad("empty item in select", s));
        }
        items.push(select_item(part)?);
    }
    Ok(items)
}

/// Splits `alias:rest` (a single colon, not `::`).
fn alias_split(s: &str) -> (Option<&str>, &str) {
    let bytes = s.as_bytes();
    let mut i = 0;
    let mut quoted = false;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => quoted = !quoted,
            b'(' if !quoted => break,
            b':' if !quoted => {
                if bytes.get(i + 1) == Some(&b':') {
                    return (None, s);
                }
                return (Some(&s[..i]), &s[i + 1..]);
            }
            _ => {}
        }
        i += 1;
    }
    (None, s)
}

fn select_item(part: &str) -> Result<SelectItem, RestError> {
    if part == "*" {
        return Ok(SelectItem::Star);
    }
    let (alias, rest) = alias_split(part);
    let alias = alias.map(name).transpose()?;
    if let Some(open) = rest.find('(')
        && rest.ends_with(')')
    {
        let head = &rest[..open];
        let inner = &rest[open + 1..rest.len() - 1];
        let mut bits = head.split('!');
        let relation = name(bits.next().unwrap_or_default())?;
        let mut hint = None;
        let mut inner_join = false;
        for b in bits {
            match b {
                "inner" => inner_join = true,
                "left" => inner_join = false,
                h => hint = Some(name(h)?),
            }
        }
        let items = if inner.trim().is_empty() { vec![] } else { select_level(inner)? };
        return Ok(SelectItem::Embed(Embed { alias, relation, hint, inner: inner_join, items, filters: vec![] }));
    }
    let (fpart, cast) = match rest.split_once("::") {
        Some((f, c)) => {
            let c = c.trim();
            if c.is_empty() || !c.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == ' ') {
                return Err(bad(format!("\"{c}\" is not a type name"), ""));
            }
            (f, Some(c.to_lowercase()))
        }
        None => (rest, None),
    };
    Ok(SelectItem::Column { field: field(fpart)?, alias, cast })
}

/// `order=` value.
pub fn order(s: &str) -> Result<Vec<OrderTerm>, RestError> {
    let mut out = Vec::new();
    for part in split_top(s, ',')? {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        let mut bits: Vec<&str> = part.split('.').collect();
        let mut desc = false;
        let mut nulls_first = None;
        while bits.len() > 1 {
            match *bits.last().unwrap_or(&"") {
                "asc" => desc = false,
                "desc" => desc = true,
                "nullsfirst" => nulls_first = Some(true),
                "nullslast" => nulls_first = Some(false),
                _ => break,
            }
            bits.pop();
        }
        out.push(OrderTerm { field: field(&bits.join("."))?, desc, nulls_first });
    }
    Ok(out)
}

fn list_operand(v: &str) -> Result<Vec<String>, RestError> {
    let inner = v
        .strip_prefix('(')
        .and_then(|r| r.strip_suffix(')'))
        .ok_or_else(|| bad(format!("\"{v}\" is not a list"), "Lists are written as in.(a,b,\"c,d\")."))?;
    if inner.is_empty() {
        return Ok(vec![]);
    }
    split_top(inner, ',')?.into_iter().map(|x| Ok(unquote(x.trim()))).collect()
}

fn unquote(v: &str) -> String {
    match v.strip_prefix('"').and_then(|r| r.strip_suffix('"')) {
        Some(inner) => inner.replace("\\\"", "\"").replace("\\\\", "\\"),
        None => v.to_string(),
    }
}

/// `[not.]op.value` (the part of a filter after the column).
pub fn operation(field: Field, s: &str) -> Result<Filter, RestError> {
    let (negate, s) = match s.strip_prefix("not.") {
        Some(r) => (true, r),
        None => (false, s),
    };
    let (op_name, value) =
        s.split_once('.').ok_or_else(|| bad(format!("\"{s}\" is not an operator and value"), "Use e.g. eq.5"))?;
    let op = match op_name {
        "eq" => Op::Eq,
        "neq" => Op::Neq,
        "gt" => Op::Gt,
        "gte" => Op::Gte,
        "lt" => Op::Lt,
        "lte" => Op::Lte,
        "like" => Op::Like,
        "ilike" => Op::Ilike,
        "match" => Op::Match,
        "imatch" => Op::Imatch,
        "in" => Op::In,
        "is" => Op::Is,
        "isdistinct" => Op::IsDistinct,
        other => {
            return Err(bad(
                format!("unknown operator \"{other}\""),
                "Operators: eq neq gt gte lt lte like ilike match imatch in is isdistinct, with an optional not. prefix",
            ));
        }
    };
    let operand = match op {
        Op::In => Operand::List(list_operand(value)?),
        Op::Is => Operand::Is(match value.to_lowercase().as_str() {
            "null" => IsValue::Null,
            "not_null" => IsValue::NotNull,
            "true" => IsValue::True,
            "false" => IsValue::False,
            "unknown" => IsValue::Unknown,
            other => {
                return Err(bad(format!("\"{other}\" is not null, not_null, true, false or unknown"), ""));
            }
        }),
        _ => Operand::One(unquote(value)),
    };
    Ok(Filter { field, negate, op, operand })
}

/// A query-string filter `col=[not.]op.value`.
pub fn filter(key: &str, value: &str) -> Result<Cond, RestError> {
    Ok(Cond::Filter(operation(field(key)?, value)?))
}

/// `or=(...)`/`and=(...)` (key `or`, `and`, `not.or`, `not.and`).
pub fn logic(key: &str, value: &str) -> Result<Cond, RestError> {
    let (negate, op) = match key.strip_prefix("not.") {
        Some(k) => (true, k),
        None => (false, key),
    };
    tree(op == "or", negate, value, 1)
}

fn tree(or: bool, negate: bool, value: &str, depth: usize) -> Result<Cond, RestError> {
    if depth > LOGIC_DEPTH_MAX {
        return Err(bad(format!("logic trees nest at most {LOGIC_DEPTH_MAX} levels"), ""));
    }
    let inner = value.strip_prefix('(').and_then(|r| r.strip_suffix(')')).ok_or_else(|| {
        bad(format!("\"{value}\" is not a parenthesised list of conditions"), "e.g. or=(a.eq.1,b.gt.2)")
    })?;
    let mut items = Vec::new();
    for part in split_top(inner, ',')? {
        let part = part.trim();
        let (neg, body) = match part.strip_prefix("not.") {
            Some(r) => (true, r),
            None => (false, part),
        };
        if let Some(rest) =
            body.strip_prefix("or(").map(|r| ("or", r)).or_else(|| body.strip_prefix("and(").map(|r| ("and", r)))
        {
            let (kind, r) = rest;
            items.push(tree(kind == "or", neg, &format!("({r}"), depth + 1)?);
            continue;
        }
        // `col.op.value` or `col.not.op.value`; the column ends at the first '.' outside quotes.
        let split = column_end(part).ok_or_else(|| bad(format!("\"{part}\" is not a condition"), "e.g. a.eq.1"))?;
        let (col, rest) = (&part[..split], &part[split + 1..]);
        items.push(Cond::Filter(operation(field(col)?, rest)?));
    }
    if items.is_empty() {
        return Err(bad("empty logic tree", value));
    }
    Ok(Cond::Tree { or, negate, items })
}

fn column_end(s: &str) -> Option<usize> {
    let mut quoted = false;
    for (i, c) in s.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '.' if !quoted => return Some(i),
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deeply nested select is refused before any recursion (it overflowed the stack).
    #[test]
    fn deep_embedding_is_refused_without_recursing() {
        let deep = format!("{}x{}", "a(".repeat(200_000), ")".repeat(200_000));
        let e = select(&deep).unwrap_err();
        assert!(format!("{e:?}").contains("at most 8 levels"), "{e:?}");
        let ok = format!("{}x{}", "a(".repeat(EMBED_DEPTH_MAX), ")".repeat(EMBED_DEPTH_MAX));
        assert!(select(&ok).is_ok());
        // Parentheses inside quoted names do not count.
        let quoted = select(&format!("\"{}\"", "(".repeat(50)));
        assert!(quoted.as_ref().map_or_else(|e| !format!("{e:?}").contains("levels"), |_| true), "{quoted:?}");
    }

    #[test]
    fn select_items() {
        let s =
            select("id,name:full_name,age::text,data->a->>b,author:users!author_id(name,posts(*)),x!inner(*)").unwrap();
        assert_eq!(s.len(), 6);
        assert!(
            matches!(&s[1], SelectItem::Column { alias: Some(a), field, .. } if a == "name" && field.column == "full_name")
        );
        assert!(matches!(&s[2], SelectItem::Column { cast: Some(c), .. } if c == "text"));
        match &s[3] {
            SelectItem::Column { field, .. } => {
                assert_eq!(field.json, vec![(false, "a".to_string()), (true, "b".to_string())]);
                assert_eq!(field.default_name(), "b");
            }
            _ => panic!(),
        }
        match &s[4] {
            SelectItem::Embed(e) => {
                assert_eq!(
                    (e.alias.as_deref(), e.relation.as_str(), e.hint.as_deref()),
                    (Some("author"), "users", Some("author_id"))
                );
                assert!(matches!(&e.items[1], SelectItem::Embed(_)));
            }
            _ => panic!(),
        }
        assert!(matches!(&s[5], SelectItem::Embed(e) if e.inner));
        assert!(select("a;drop").is_err());
        assert!(select("a::int);--").is_err());
        assert!(select("a(b").is_err());
    }

    #[test]
    fn filters_and_trees() {
        let f = filter("age", "not.in.(1,2,\"3,4\")").unwrap();
        match f {
            Cond::Filter(f) => {
                assert!(f.negate);
                assert_eq!(f.operand, Operand::List(vec!["1".into(), "2".into(), "3,4".into()]));
            }
            _ => panic!(),
        }
        let t = logic("or", "(a.eq.1,and(b.gt.2,c.is.null),not.and(d.lt.0,e.like.*x*))").unwrap();
        match t {
            Cond::Tree { or: true, items, .. } => assert_eq!(items.len(), 3),
            _ => panic!(),
        }
        match filter("name", "in.(al\"ice,bob)").unwrap() {
            Cond::Filter(f) => assert_eq!(f.operand, Operand::List(vec!["al\"ice".into(), "bob".into()])),
            _ => panic!(),
        }
        assert!(select("id,,name").is_err());
        assert!(filter("a", "eq").is_err());
        assert!(filter("a", "zz.1").is_err());
        assert!(filter("a", "is.maybe").is_err());
        let nest = |n: usize| format!("({}a.eq.1{})", "or(".repeat(n), ")".repeat(n));
        assert!(logic("or", &nest(LOGIC_DEPTH_MAX - 1)).is_ok());
        assert!(logic("or", &nest(LOGIC_DEPTH_MAX + 5)).is_err());
        let o = order("a.desc.nullslast,b,data->x.asc").unwrap();
        assert_eq!((o[0].desc, o[0].nulls_first), (true, Some(false)));
        assert_eq!(o[2].field.json.len(), 1);
    }
}
