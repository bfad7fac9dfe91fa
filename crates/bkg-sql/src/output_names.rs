//! PostgreSQL's names for result columns.
//!
//! PostgreSQL names an unaliased select item after its column or function (`count`, `upper`)
//! and everything else `?column?`, and allows duplicate names. The planner wants unique names, so
//! each unaliased top-level item gets a unique internal alias carrying its PostgreSQL name, and
//! the result schema is renamed back before it leaves the session.

use std::sync::Arc;

use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::sql::sqlparser::ast::{self, Expr, SelectItem, SetExpr, Statement};

const MARK: char = '\u{1}';

fn pg_name(e: &Expr) -> String {
    match e {
        Expr::Identifier(i) => i.value.clone(),
        Expr::CompoundIdentifier(parts) => parts.last().map(|i| i.value.clone()).unwrap_or_default(),
        Expr::Function(f) => f
            .name
            .0
            .last()
            .and_then(|p| p.as_ident())
            .map(|i| i.value.to_lowercase())
            .unwrap_or_else(|| "?column?".into()),
        Expr::Cast { expr, data_type, .. } => match expr.as_ref() {
            Expr::Value(_) => data_type.to_string().to_lowercase().split('(').next().unwrap_or("?column?").to_string(),
            inner => pg_name(inner),
        },
        Expr::Nested(inner) => pg_name(inner),
        Expr::Case { .. } => "case".into(),
        Expr::Exists { .. } => "exists".into(),
        Expr::Array(_) => "array".into(),
        Expr::Value(v) if matches!(v.value, ast::Value::Boolean(_)) => "bool".into(),
        _ => "?column?".into(),
    }
}

/// Gives unaliased top-level select items (other than plain columns) and every item whose name
/// is repeated a unique alias carrying its PostgreSQL name; in every branch of a UNION,
/// INTERSECT or EXCEPT (the result is named after the first).
pub fn assign(stmt: &mut Statement) {
    let Statement::Query(q) = stmt else { return };
    assign_body(q.body.as_mut());
}

fn assign_body(body: &mut SetExpr) {
    match body {
        SetExpr::Select(sel) => assign_select(sel),
        SetExpr::SetOperation { left, right, .. } => {
            assign_body(left);
            assign_body(right);
        }
        SetExpr::Query(q) => assign_body(q.body.as_mut()),
        _ => {}
    }
}

fn assign_select(sel: &mut ast::Select) {
    let names: Vec<Option<String>> = sel
        .projection
        .iter()
        .map(|item| match item {
            SelectItem::UnnamedExpr(e) => Some(pg_name(e)),
            SelectItem::ExprWithAlias { alias, .. } => Some(alias.value.clone()),
            _ => None,
        })
        .collect();
    let repeated = |n: &str| names.iter().filter(|x| x.as_deref() == Some(n)).count() > 1;
    for (i, item) in sel.projection.iter_mut().enumerate() {
        let Some(name) = names[i].clone() else { continue };
        let internal = ast::Ident::with_quote('"', format!("{MARK}{i}{MARK}{name}"));
        match item {
            SelectItem::UnnamedExpr(e) => {
                // Plain column references keep the planner's naming unless the name repeats.
                if matches!(e, Expr::Identifier(_) | Expr::CompoundIdentifier(_)) && !repeated(&name) {
                    continue;
                }
                let expr = std::mem::replace(e, Expr::value(ast::Value::Null));
                *item = SelectItem::ExprWithAlias { expr, alias: internal };
            }
            SelectItem::ExprWithAlias { alias, .. } if repeated(&name) => *alias = internal,
            _ => {}
        }
    }
}

/// Strips the internal aliases from a result schema.
pub fn restore(schema: &SchemaRef) -> SchemaRef {
    if !schema.fields().iter().any(|f| f.name().starts_with(MARK)) {
        return schema.clone();
    }
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| match f.name().strip_prefix(MARK).and_then(|r| r.split_once(MARK)) {
            Some((_, name)) => f.as_ref().clone().with_name(name),
            None => f.as_ref().clone(),
        })
        .collect();
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}
