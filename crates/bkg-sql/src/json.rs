//! JSON operators on json/jsonb (stored as text): `doc -> key` (a JSON value) and `doc ->> key`
//! (text), with a key naming an object member or, as an integer, an array element (negative
//! counts from the end). The parser's `->`/`->>` are rewritten to `json_get`/`json_get_text`.

use datafusion::arrow::datatypes::DataType as A;
use datafusion::logical_expr::{ScalarUDF, Signature, Volatility};
use datafusion::sql::sqlparser::ast;
use serde_json::Value;

fn lookup(doc: &str, key: &str) -> Option<Value> {
    let v: Value = serde_json::from_str(doc).ok()?;
    match v {
        Value::Object(mut m) => m.remove(key),
        Value::Array(mut a) => {
            let i: i64 = key.trim().parse().ok()?;
            let idx = if i < 0 { a.len() as i64 + i } else { i };
            if idx < 0 || idx as usize >= a.len() { None } else { Some(a.swap_remove(idx as usize)) }
        }
        _ => None,
    }
}

pub fn functions() -> Vec<ScalarUDF> {
    let sig = || Signature::any(2, Volatility::Immutable);
    vec![
        super::pg_catalog::udf("json_get", sig(), A::Utf8, |a| {
            let v = lookup(a.first()?.as_deref()?, a.get(1)?.as_deref()?)?;
            Some(v.to_string())
        }),
        super::pg_catalog::udf("json_get_text", sig(), A::Utf8, |a| {
            match lookup(a.first()?.as_deref()?, a.get(1)?.as_deref()?)? {
                Value::Null => None,
                Value::String(s) => Some(s),
                other => Some(other.to_string()),
            }
        }),
    ]
}

/// `a -> b` → `json_get(a, b)`, `a ->> b` → `json_get_text(a, b)`.
pub fn rewrite_operator(e: &mut ast::Expr) {
    if let ast::Expr::BinaryOp { left, op, right } = e {
        let name = match op {
            ast::BinaryOperator::Arrow => "json_get",
            ast::BinaryOperator::LongArrow => "json_get_text",
            _ => return,
        };
        let args = vec![
            ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(left.as_ref().clone())),
            ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(right.as_ref().clone())),
        ];
        *e = ast::Expr::Function(ast::Function {
            name: ast::ObjectName::from(vec![ast::Ident::new(name)]),
            uses_odbc_syntax: false,
            parameters: ast::FunctionArguments::None,
            args: ast::FunctionArguments::List(ast::FunctionArgumentList {
                duplicate_treatment: None,
                args,
                clauses: vec![],
            }),
            filter: None,
            null_treatment: None,
            over: None,
            within_group: vec![],
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups() {
        assert_eq!(lookup(r#"{"a":{"b":1}}"#, "a").unwrap().to_string(), r#"{"b":1}"#);
        assert_eq!(lookup("[1,2,3]", "-1").unwrap(), Value::from(3));
        assert!(lookup("[1]", "5").is_none());
        assert!(lookup("not json", "a").is_none());
    }
}
