//! CHECK constraints: declared in CREATE TABLE and ALTER TABLE (`ddl` calls the DDL here:
//! ADD/VALIDATE/DROP CONSTRAINT), stored in the kernel's catalog as SQL text, and enforced here
//! on every row a statement writes — INSERT, UPDATE, upsert, COPY and bulk ingest (the columnar
//! path is not taken for a table with checks) — with 23514, as PostgreSQL does. A check passes
//! when its expression is true or NULL.

use std::sync::Arc;

use bkg_kernel::{CheckDef, Row, TableDef, Value};
use datafusion::arrow::array::{Array, BooleanArray};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::DFSchema;

use datafusion::sql::sqlparser::ast;
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;

use super::ddl::ident_name;
use super::policy::{compile_predicate, table_df_schema};
use super::provider::rows_to_batches;
use super::session::Session;
use crate::SqlState;
use crate::error::{SqlError, SqlResult, codes};

/// Refuses the first of `rows` (new versions of `def`'s rows) that breaks one of its checks.
pub fn check_new_rows(session: &Session, def: &TableDef, rows: &[Vec<Value>]) -> SqlResult<()> {
    if def.checks.is_empty() || rows.is_empty() {
        return Ok(());
    }
    let rows: Vec<(u64, Row)> = rows.iter().map(|r| (0, Row::from(r.clone()))).collect();
    check_rows(session, def, &def.checks, &rows)
}

/// Refuses the first of `rows` that breaks one of `checks` (also: the rows already there, when
/// ALTER TABLE adds or validates a check).
pub fn check_rows(session: &Session, def: &TableDef, checks: &[CheckDef], rows: &[(u64, Row)]) -> SqlResult<()> {
    if checks.is_empty() || rows.is_empty() {
        return Ok(());
    }
    let state = session.planning_state();
    let sec = session.security();
    let schema: SchemaRef = Arc::new(table_df_schema(def, None)?.as_arrow().clone());
    let df_schema = DFSchema::try_from(schema.as_ref().clone())?;
    let positions: Vec<Option<usize>> = def.live_columns().map(|(p, _)| Some(p)).collect();
    let batches = rows_to_batches(def, &schema, &positions, rows)?;
    for check in checks {
        let expr = compile_predicate(&state, &sec, def, &format!("({}) IS NOT FALSE", check.expr))?;
        let physical = state.create_physical_expr(expr, &df_schema)?;
        for batch in &batches {
            let mask = physical.evaluate(batch)?.into_array(batch.num_rows())?;
            let mask = mask
                .as_any()
                .downcast_ref::<BooleanArray>()
                .ok_or_else(|| SqlError::internal("a check expression must be boolean"))?;
            if let Some(r) = (0..mask.len()).find(|&i| !mask.is_valid(i) || !mask.value(i)) {
                let values: Vec<String> = batch
                    .columns()
                    .iter()
                    .map(|c| {
                        crate::pg_format::text_value(c.as_ref(), r).ok().flatten().unwrap_or_else(|| "null".to_string())
                    })
                    .collect();
                return Err(SqlError::new(
                    SqlState::CheckViolation,
                    format!("new row for relation \"{}\" violates check constraint \"{}\"", def.name, check.name),
                )
                .with_detail(format!("Failing row contains ({}).", values.join(", "))));
            }
        }
    }
    Ok(())
}

/// A CHECK constraint as declared, before it has its name.
pub(crate) struct CheckSpec {
    pub name: Option<String>,
    pub expr: ast::Expr,
    /// The column it was declared on (a column constraint).
    pub column: Option<String>,
}

impl CheckSpec {
    /// The constraint with PostgreSQL's name when none was given (`t_col_check` for a check on
    /// one column, `t_check` otherwise, numbered when taken).
    pub(crate) fn resolve(self, def: &TableDef) -> SqlResult<bkg_kernel::CheckDef> {
        let expr = self.expr.to_string();
        let cols = check_columns(&expr);
        if let Some(c) = cols.iter().find(|c| def.column_index(c).is_none()) {
            return Err(SqlError::new(codes::UNDEFINED_COLUMN, format!("column \"{c}\" does not exist")));
        }
        let name = match self.name {
            Some(n) => n,
            None => {
                let base = match (self.column, cols.as_slice()) {
                    (Some(c), _) => format!("{}_{c}_check", def.name),
                    (None, [one]) => format!("{}_{one}_check", def.name),
                    _ => format!("{}_check", def.name),
                };
                let taken = |n: &str| def.checks.iter().any(|c| c.name == n);
                let mut name = base.clone();
                let mut i = 0;
                while taken(&name) {
                    i += 1;
                    name = format!("{base}{i}");
                }
                name
            }
        };
        if def.checks.iter().any(|c| c.name == name) {
            return Err(SqlError::new(
                SqlState::DuplicateObject,
                format!("constraint \"{name}\" for relation \"{}\" already exists", def.name),
            ));
        }
        Ok(bkg_kernel::CheckDef { name, expr, not_valid: false })
    }
}

/// The column names a check expression mentions (its plain identifiers), in order, once each.
pub(crate) fn check_columns(expr: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let Ok(e) = Parser::new(&PostgreSqlDialect {}).try_with_sql(expr).and_then(|mut p| p.parse_expr()) else {
        return out;
    };
    let _ = ast::visit_expressions(&e, |x| {
        let name = match x {
            ast::Expr::Identifier(i) => Some(ident_name(i)),
            ast::Expr::CompoundIdentifier(parts) => parts.last().map(ident_name),
            _ => None,
        };
        if let Some(n) = name
            && !out.contains(&n)
        {
            out.push(n);
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
    out
}

/// A check expression with column `from` renamed to `to`.
pub(crate) fn rename_in_check(expr: &str, from: &str, to: &str) -> String {
    let Ok(mut e) = Parser::new(&PostgreSqlDialect {}).try_with_sql(expr).and_then(|mut p| p.parse_expr()) else {
        return expr.to_string();
    };
    let _ = ast::visit_expressions_mut(&mut e, |x| {
        if let ast::Expr::Identifier(i) = x
            && ident_name(i) == from
        {
            *i = ast::Ident::with_quote('"', to);
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
    e.to_string()
}

/// ALTER TABLE … ADD [CONSTRAINT name] CHECK (…) [NOT VALID]: the rows already there must pass
/// unless NOT VALID (then only new rows are checked, until VALIDATE CONSTRAINT).
pub(crate) fn add_check(session: &mut Session, table: u64, spec: CheckSpec, not_valid: bool) -> SqlResult<()> {
    let def =
        session.with_txn(|t| t.catalog().table(table).cloned().ok_or_else(|| SqlError::internal("table vanished")))?;
    let mut check = spec.resolve(&def)?;
    if def.foreign_keys.iter().any(|f| f.name == check.name) || def.indexes.iter().any(|i| i.name == check.name) {
        return Err(SqlError::new(
            SqlState::DuplicateObject,
            format!("constraint \"{}\" for relation \"{}\" already exists", check.name, def.name),
        ));
    }
    if !not_valid {
        check_existing_rows(session, table, &def, &check)?;
    }
    check.not_valid = not_valid;
    session.with_txn(|t| {
        t.catalog_mut().table_mut(table)?.checks.push(check);
        Ok(())
    })
}

/// The rows `table` has now must pass `check` (23514 naming the constraint, as PostgreSQL's ALTER
/// TABLE does). The rows are gathered first: the kernel holds them in memory anyway.
fn check_existing_rows(session: &Session, table: u64, def: &TableDef, check: &CheckDef) -> SqlResult<()> {
    let mut rows = Vec::new();
    session.with_txn(|t| {
        t.scan(table, |id, r| rows.push((id, r.clone())));
        Ok(())
    })?;
    check_rows(session, def, std::slice::from_ref(check), &rows).map_err(|e| {
        if e.code == SqlState::CheckViolation {
            SqlError::new(
                SqlState::CheckViolation,
                format!("check constraint \"{}\" of relation \"{}\" is violated by some row", check.name, def.name),
            )
        } else {
            e
        }
    })
}

/// ALTER TABLE … VALIDATE CONSTRAINT: a NOT VALID check is checked against every row.
pub(crate) fn validate_check(session: &mut Session, table: u64, name: &str) -> SqlResult<()> {
    let def =
        session.with_txn(|t| t.catalog().table(table).cloned().ok_or_else(|| SqlError::internal("table vanished")))?;
    let Some(check) = def.checks.iter().find(|c| c.name == name).cloned() else {
        if def.foreign_keys.iter().any(|f| f.name == name) || def.indexes.iter().any(|i| i.name == name) {
            return Ok(());
        }
        return Err(SqlError::new(
            codes::UNDEFINED_OBJECT,
            format!("constraint \"{name}\" of relation \"{}\" does not exist", def.name),
        ));
    };
    if !check.not_valid {
        return Ok(());
    }
    check_existing_rows(session, table, &def, &check)?;
    session.with_txn(|t| {
        if let Some(c) = t.catalog_mut().table_mut(table)?.checks.iter_mut().find(|c| c.name == name) {
            c.not_valid = false;
        }
        Ok(())
    })
}

/// ALTER TABLE … DROP CONSTRAINT [IF EXISTS] name: a check, a foreign key, or a unique or
/// primary key constraint (with its index).
pub(crate) fn drop_constraint(session: &mut Session, table: u64, name: &str, if_exists: bool) -> SqlResult<()> {
    session.with_txn(|t| {
        let cat = t.catalog_mut();
        let key_cols = cat
            .table(table)
            .and_then(|d| d.indexes.iter().find(|i| i.name == name && i.unique))
            .map(|i| i.columns.clone());
        if let Some(cols) = &key_cols {
            let dependent = cat
                .tables
                .values()
                .flat_map(|d| d.foreign_keys.iter().map(move |f| (d, f)))
                .find(|(_, f)| f.ref_table == table && f.ref_columns == *cols);
            if let Some((d, f)) = dependent {
                return Err(SqlError::new(
                    SqlState::DependentObjectsStillExist,
                    format!(
                        "cannot drop constraint {name} because constraint {} on table {} depends on it",
                        f.name, d.name
                    ),
                ));
            }
        }
        let def = cat.table_mut(table)?;
        if let Some(i) = def.checks.iter().position(|c| c.name == name) {
            def.checks.remove(i);
            return Ok(());
        }
        if let Some(i) = def.foreign_keys.iter().position(|f| f.name == name) {
            def.foreign_keys.remove(i);
            return Ok(());
        }
        if key_cols.is_some() {
            def.indexes.retain(|i| i.name != name);
            return Ok(());
        }
        if if_exists {
            return Ok(());
        }
        Err(SqlError::new(
            codes::UNDEFINED_OBJECT,
            format!("constraint \"{name}\" of relation \"{}\" does not exist", def.name),
        ))
    })
}
