//! Describing a statement without running it: parameter types and result columns, for the
//! extended query protocol (and any front door with prepared statements).

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType as ArrowType, Field, Schema, SchemaRef};
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::{self, Statement};

use super::ddl::{ident_name, resolve_table};
use super::dml::{assignments, target_relation, targets_sql};
use super::session::Session;
use crate::SqlState;
use crate::error::SqlResult;

#[derive(Debug, Clone, Default)]
pub struct Described {
    /// Type of each `$n` parameter (index n-1), when it could be inferred.
    pub params: Vec<Option<ArrowType>>,
    /// Result columns, if the statement returns rows.
    pub schema: Option<SchemaRef>,
}

fn placeholder_index(e: &ast::Expr) -> Option<usize> {
    if let ast::Expr::Value(v) = e
        && let ast::Value::Placeholder(p) = &v.value
    {
        return p.strip_prefix('$').and_then(|n| n.parse::<usize>().ok()).filter(|n| *n > 0).map(|n| n - 1);
    }
    None
}

fn merge(params: &mut Vec<Option<ArrowType>>, idx: usize, t: ArrowType) {
    if params.len() <= idx {
        params.resize(idx + 1, None);
    }
    if params[idx].is_none() {
        params[idx] = Some(t);
    }
}

/// Highest `$n` used in the statement.
pub fn count_placeholders(stmt: &Statement) -> usize {
    let mut max = 0;
    let _ = ast::visit_expressions(stmt, |e| {
        if let Some(i) = placeholder_index(e) {
            max = max.max(i + 1);
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
    max
}

impl Session {
    async fn plan_params(&mut self, mut stmt: Statement, params: &mut Vec<Option<ArrowType>>) -> SqlResult<SchemaRef> {
        super::pg_catalog::rewrite(&mut stmt, &self.catalog_view(), &self.current_schema())?;
        super::output_names::assign(&mut stmt);
        let state = self.statement_state();
        let plan = state.statement_to_plan(DFStatement::Statement(Box::new(stmt))).await?;
        let types: HashMap<String, Option<ArrowType>> = plan.get_parameter_types()?;
        for (name, t) in types {
            if let (Some(i), Some(t)) = (name.strip_prefix('$').and_then(|n| n.parse::<usize>().ok()), t)
                && i > 0
            {
                merge(params, i - 1, t);
            }
        }
        Ok(super::output_names::restore(&Arc::new(plan.schema().as_arrow().clone())))
    }

    fn described_table(&self, name: &ast::ObjectName) -> crate::error::SqlResult<bkg_kernel::TableDef> {
        let table = resolve_table(self, name)?;
        self.with_txn(|t| Ok(t.catalog().table(table).cloned()))?
            .ok_or_else(|| crate::error::SqlError::internal("table vanished"))
    }

    /// Parameter types and result columns of `stmt`, without running it.
    pub async fn describe(&mut self, stmt: &Statement) -> SqlResult<Described> {
        let had_txn = self.with_txn(|_| Ok(())).is_ok();
        if !had_txn {
            self.begin_internal();
        }
        // Plan against the catalog this transaction sees (another session may have changed it).
        self.sync_view();
        let r = self.describe_inner(stmt).await;
        if !had_txn {
            self.end_internal();
        }
        let mut d = r?;
        let n = count_placeholders(stmt);
        if d.params.len() < n {
            d.params.resize(n, None);
        }
        Ok(d)
    }

    async fn describe_inner(&mut self, stmt: &Statement) -> SqlResult<Described> {
        self.sync_view();
        let mut params = Vec::new();
        match stmt {
            Statement::Query(_) | Statement::Explain { .. } => {
                let schema = self.plan_params(stmt.clone(), &mut params).await?;
                Ok(Described { params, schema: Some(schema) })
            }
            Statement::Fetch { name, into: None, .. } => {
                let schema = self.cursor_schema(name).ok_or_else(|| {
                    crate::error::SqlError::new(
                        SqlState::InvalidCursorName,
                        format!("cursor \"{}\" does not exist", name.value),
                    )
                })?;
                Ok(Described { params, schema: Some(schema) })
            }
            Statement::ShowVariable { variable } => {
                let name = variable.iter().map(|i| i.value.to_lowercase()).collect::<Vec<_>>().join(" ");
                Ok(Described {
                    params,
                    schema: Some(Arc::new(Schema::new(vec![Field::new(name, ArrowType::Utf8, false)]))),
                })
            }
            Statement::Insert(ins) => {
                let ast::TableObject::TableName(name) = &ins.table else {
                    return Ok(Described::default());
                };
                let def = self.described_table(name)?;
                let targets: Vec<usize> = if ins.columns.is_empty() {
                    def.live_columns().map(|(p, _)| p).collect()
                } else {
                    ins.columns
                        .iter()
                        .filter_map(|c| {
                            c.0.last().and_then(|p| p.as_ident()).and_then(|i| def.column_index(&ident_name(i)))
                        })
                        .collect()
                };
                if let Some(q) = &ins.source {
                    if let ast::SetExpr::Values(values) = q.body.as_ref() {
                        for row in &values.rows {
                            for (i, e) in row.iter().enumerate() {
                                if let (Some(p), Some(&col)) = (placeholder_index(e), targets.get(i)) {
                                    merge(&mut params, p, def.columns[col].data_type.arrow_type());
                                }
                            }
                        }
                    }
                    // Whatever is still unknown, DataFusion may infer from the query itself.
                    let _ = self.plan_params(Statement::Query(q.clone()), &mut params).await;
                }
                let schema = match &ins.returning {
                    Some(items) => Some(super::dml::returning_schema(&def, items, &name.to_string()).await?),
                    None => None,
                };
                Ok(Described { params, schema })
            }
            Statement::Update(upd) => {
                let (name, alias) = target_relation(&upd.table)?;
                let def = self.described_table(&name)?;
                let (targets, exprs) = assignments(&def, &upd.assignments, false)?;
                for (a, pos) in upd.assignments.iter().zip(targets) {
                    if let Some(p) = placeholder_index(&a.value) {
                        merge(&mut params, p, def.columns[pos].data_type.arrow_type());
                    }
                }
                let from = match &upd.from {
                    Some(ast::UpdateTableFromKind::BeforeSet(v) | ast::UpdateTableFromKind::AfterSet(v)) => {
                        v.as_slice()
                    }
                    None => &[],
                };
                let q = Session::parse(&targets_sql(def.id, &alias, from, &upd.selection, &exprs))?.remove(0);
                let _ = self.plan_params(q, &mut params).await;
                let schema = match &upd.returning {
                    Some(items) => Some(super::dml::returning_schema(&def, items, &alias).await?),
                    None => None,
                };
                Ok(Described { params, schema })
            }
            Statement::Delete(del) => {
                let from = match &del.from {
                    ast::FromTable::WithFromKeyword(v) | ast::FromTable::WithoutKeyword(v) => v,
                };
                let Some(target) = from.first() else { return Ok(Described::default()) };
                let (name, alias) = target_relation(target)?;
                let def = self.described_table(&name)?;
                let using = del.using.clone().unwrap_or_default();
                let q = Session::parse(&targets_sql(def.id, &alias, &using, &del.selection, &[]))?.remove(0);
                let _ = self.plan_params(q, &mut params).await;
                let schema = match &del.returning {
                    Some(items) => Some(super::dml::returning_schema(&def, items, &alias).await?),
                    None => None,
                };
                Ok(Described { params, schema })
            }
            _ => Ok(Described::default()),
        }
    }
}

/// Replaces every `$n` in `stmt` with `values[n-1]` (SQL expressions).
pub fn bind_params(stmt: &mut Statement, values: &[ast::Expr]) -> SqlResult<()> {
    let mut missing = None;
    let _ = ast::visit_expressions_mut(stmt, |e| {
        if let Some(i) = placeholder_index(e) {
            match values.get(i) {
                Some(v) => *e = v.clone(),
                None => missing = Some(i + 1),
            }
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
    if let Some(n) = missing {
        return Err(crate::error::SqlError::new(SqlState::ProtocolViolation, format!("there is no parameter ${n}")));
    }
    Ok(())
}
