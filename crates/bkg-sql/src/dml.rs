//! INSERT, UPDATE and DELETE.
//!
//! The rows a statement touches are chosen by a SELECT that DataFusion plans over the target's
//! DML view (`__dml.t<id>`, the table plus its hidden `__rowid`), so WHERE clauses with
//! subqueries, joins (`UPDATE ... FROM`, `DELETE ... USING`) and functions all work and read the
//! statement's snapshot. The kernel then applies the changes by row id. DataFusion's own DML
//! hooks are never used.

use std::collections::HashSet;
use std::sync::Arc;

use bkg_kernel::{ColumnDefault, OnConflict, PolicyCommand, Row, TableDef, Value, privilege};
use datafusion::arrow::array::{ArrayRef, RecordBatch, UInt64Array};
use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::catalog::MemTable;
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::{self, Statement};

use super::ddl::{ident_name, resolve_table};
use super::policy::{self, Clause};
use super::provider::{DML_SCHEMA, ROWID_COLUMN, rows_to_batches};
use super::session::{Output, Session};
use super::types::{column_array, column_values};
use crate::SqlState;
use crate::error::{SqlError, SqlResult, codes};
use crate::limits::BULK_ROWS_MIN;

fn table_def(session: &Session, table: u64) -> SqlResult<TableDef> {
    session.with_txn(|t| t.catalog().table(table).cloned().ok_or_else(|| SqlError::internal("table vanished")))
}

/// Values for columns an INSERT does not name, computed once per statement (identity and
/// random UUIDs per row).
#[derive(Debug)]
enum Fill {
    Const(Value),
    Identity,
    /// `DEFAULT gen_random_uuid()` (or `uuid()`): a new UUID for every row. Other volatile
    /// defaults (`random()`, `clock_timestamp()`) are still evaluated once per statement.
    Uuid,
}

/// True for a default that is a call of a random-UUID function.
fn is_random_uuid(expr: &str) -> bool {
    let e: String = expr.chars().filter(|c| !c.is_whitespace()).collect::<String>().to_lowercase();
    let e = e.strip_prefix("public.").or_else(|| e.strip_prefix("pg_catalog.")).unwrap_or(&e);
    matches!(e, "gen_random_uuid()" | "uuid()")
}

/// `n` new UUIDs as values of column `c`.
fn uuid_values(c: &bkg_kernel::ColumnDef, n: usize) -> SqlResult<Vec<Value>> {
    let arr: ArrayRef = Arc::new(datafusion::arrow::array::StringArray::from_iter_values(
        (0..n).map(|_| crate::pg_catalog::random_uuid()),
    ));
    column_values(&arr, &c.data_type, &c.name)
}

async fn defaults(session: &mut Session, def: &TableDef, given: &[usize]) -> SqlResult<Vec<Fill>> {
    let mut out = Vec::with_capacity(def.columns.len());
    for (pos, c) in def.columns.iter().enumerate() {
        if c.dropped || given.contains(&pos) {
            out.push(Fill::Const(Value::Null));
            continue;
        }
        out.push(match &c.default {
            None => Fill::Const(Value::Null),
            Some(ColumnDefault::Identity { .. }) => Fill::Identity,
            Some(ColumnDefault::Expr(e)) if is_random_uuid(e) => Fill::Uuid,
            Some(ColumnDefault::Expr(e)) => {
                let (_, batches) = session.query_sql(&format!("SELECT {e}")).await?;
                let b = batches
                    .iter()
                    .find(|b| b.num_rows() > 0)
                    .ok_or_else(|| SqlError::internal("default produced no row"))?;
                let vals = column_values(b.column(0), &c.data_type, &c.name)?;
                Fill::Const(vals.into_iter().next().unwrap_or(Value::Null))
            }
        });
    }
    Ok(out)
}

/// Inserts the rows of `batches` (columns in `target` order, all live columns when `None`): the
/// path of COPY FROM, Flight ingest and CREATE TABLE AS. A large insert into a table without
/// foreign keys or row-level security checks stays columnar into the kernel ([`BulkInsert`]);
/// otherwise rows are built and inserted as INSERT does. Both paths apply the same casts,
/// defaults and constraints.
pub async fn insert_batches(
    session: &mut Session,
    table: u64,
    target: Option<Vec<usize>>,
    batches: &[RecordBatch],
) -> SqlResult<u64> {
    let total: usize = batches.iter().map(|b| b.num_rows()).sum();
    if total >= BULK_ROWS_MIN
        && let Some(bulk) = BulkInsert::prepare(session, table, target.clone(), batches).await?
    {
        for b in batches.iter().filter(|b| b.num_rows() > 0) {
            let columns = BulkInsert::cast(&bulk.def, &bulk.target, b)?;
            bulk.insert(session, columns, b.num_rows())?;
        }
        return Ok(total as u64);
    }
    let def = table_def(session, table)?;
    let rows = build_rows(session, table, target, batches).await?;
    let n = rows.len() as u64;
    policy::check_new_rows(session, &def, PolicyCommand::Insert, Clause::Check, &rows)?;
    crate::checks::check_new_rows(session, &def, &rows)?;
    session.with_txn(|t| Ok(t.insert(table, rows, OnConflict::Error)?))?;
    Ok(n)
}

/// A columnar insert into one table, planned once per statement: the physical columns the
/// inputs go to and the defaults of the others. [`cast`](Self::cast) needs no session, so a
/// COPY runs it on other threads while it reads on.
#[derive(Debug)]
pub struct BulkInsert {
    pub def: TableDef,
    pub target: Vec<usize>,
    fills: Vec<Fill>,
}

impl BulkInsert {
    /// `None` when the table needs the row path: foreign keys to check, or row-level security
    /// policies that apply to this session.
    pub async fn prepare(
        session: &mut Session,
        table: u64,
        target: Option<Vec<usize>>,
        batches: &[RecordBatch],
    ) -> SqlResult<Option<BulkInsert>> {
        let def = table_def(session, table)?;
        if !def.foreign_keys.is_empty() || !def.checks.is_empty() || session.rls_restricts(&def) {
            return Ok(None);
        }
        let target = insert_target(&def, target, batches)?;
        let fills = defaults(session, &def, &target).await?;
        Ok(Some(BulkInsert { def, target, fills }))
    }

    /// The input columns of `batch`, cast and checked for their target columns.
    pub fn cast(def: &TableDef, target: &[usize], batch: &RecordBatch) -> SqlResult<Vec<ArrayRef>> {
        target
            .iter()
            .enumerate()
            .map(|(i, &p)| column_array(batch.column(i), &def.columns[p].data_type, &def.columns[p].name))
            .collect()
    }

    /// Inserts `n` rows given as the target columns from [`cast`](Self::cast); the other
    /// columns get their defaults (`None` for dropped ones).
    pub fn insert(&self, session: &mut Session, mut given: Vec<ArrayRef>, n: usize) -> SqlResult<()> {
        let def = &self.def;
        let mut out: Vec<Option<ArrayRef>> = Vec::with_capacity(def.columns.len());
        for (pos, (c, f)) in def.columns.iter().zip(&self.fills).enumerate() {
            if c.dropped {
                out.push(None);
                continue;
            }
            let col = match (self.target.iter().position(|&p| p == pos), f) {
                (Some(i), _) => std::mem::replace(&mut given[i], Arc::new(datafusion::arrow::array::NullArray::new(0))),
                (None, Fill::Const(v)) => {
                    bkg_kernel::arrow_conv::column_from_values(&c.data_type, std::iter::repeat_n(v, n))?
                }
                (None, Fill::Identity) => {
                    let values = (0..n)
                        .map(|_| {
                            session
                                .with_txn(|t| Ok(t.next_identity(def.id, pos)))
                                .and_then(|v| int_value(&c.data_type, v))
                        })
                        .collect::<SqlResult<Vec<Value>>>()?;
                    bkg_kernel::arrow_conv::column_from_values(&c.data_type, values.iter())?
                }
                (None, Fill::Uuid) => {
                    bkg_kernel::arrow_conv::column_from_values(&c.data_type, uuid_values(c, n)?.iter())?
                }
            };
            out.push(Some(col));
        }
        session.with_txn(|t| Ok(t.insert_columns(def.id, out)?))?;
        Ok(())
    }
}

/// The physical columns the input columns go to, checked: no more inputs than targets, and no
/// value for an identity column GENERATED ALWAYS.
fn insert_target(def: &TableDef, target: Option<Vec<usize>>, batches: &[RecordBatch]) -> SqlResult<Vec<usize>> {
    let live: Vec<usize> = def.live_columns().map(|(p, _)| p).collect();
    let ncols = batches.first().map(|b| b.num_columns()).unwrap_or(0);
    let mut target = target.unwrap_or(live);
    if ncols > target.len() {
        return Err(SqlError::syntax("INSERT has more expressions than target columns"));
    }
    if batches.iter().any(|b| b.num_rows() > 0) && ncols < target.len() {
        target.truncate(ncols);
    }
    for &p in &target {
        if let Some(ColumnDefault::Identity { always: true }) = def.columns[p].default {
            return Err(SqlError::new(
                SqlState::GeneratedAlways,
                format!("cannot insert a non-DEFAULT value into column \"{}\"", def.columns[p].name),
            )
            .with_detail(format!(
                "Column \"{}\" is an identity column defined as GENERATED ALWAYS.",
                def.columns[p].name
            )));
        }
    }
    Ok(target)
}

async fn build_rows(
    session: &mut Session,
    table: u64,
    target: Option<Vec<usize>>,
    batches: &[RecordBatch],
) -> SqlResult<Vec<Vec<Value>>> {
    let def = table_def(session, table)?;
    let target = insert_target(&def, target, batches)?;
    let fills = defaults(session, &def, &target).await?;
    let mut rows = Vec::new();
    for b in batches {
        let mut cols = Vec::with_capacity(target.len());
        for (i, &p) in target.iter().enumerate() {
            cols.push(column_values(b.column(i), &def.columns[p].data_type, &def.columns[p].name)?);
        }
        for r in 0..b.num_rows() {
            let mut row: Vec<Value> = Vec::with_capacity(def.columns.len());
            for (pos, f) in fills.iter().enumerate() {
                row.push(match f {
                    Fill::Const(v) => v.clone(),
                    Fill::Identity if !target.contains(&pos) => {
                        let n = session.with_txn(|t| Ok(t.next_identity(table, pos)))?;
                        int_value(&def.columns[pos].data_type, n)?
                    }
                    Fill::Identity => Value::Null,
                    Fill::Uuid if !target.contains(&pos) => {
                        uuid_values(&def.columns[pos], 1)?.pop().unwrap_or(Value::Null)
                    }
                    Fill::Uuid => Value::Null,
                });
            }
            for (i, &p) in target.iter().enumerate() {
                row[p] = cols[i][r].clone();
            }
            rows.push(row);
        }
    }
    Ok(rows)
}

fn int_value(dt: &bkg_kernel::DataType, n: i64) -> SqlResult<Value> {
    let overflow =
        || SqlError::new(SqlState::SequenceGeneratorLimitExceeded, "nextval: reached maximum value of sequence");
    Ok(match dt {
        bkg_kernel::DataType::Int16 => Value::Int16(i16::try_from(n).map_err(|_| overflow())?),
        bkg_kernel::DataType::Int32 => Value::Int32(i32::try_from(n).map_err(|_| overflow())?),
        _ => Value::Int64(n),
    })
}

pub async fn insert(session: &mut Session, ins: ast::Insert) -> SqlResult<Output> {
    let name = match &ins.table {
        ast::TableObject::TableName(n) => n.clone(),
        other => return Err(SqlError::unsupported(format!("INSERT into {other}"))),
    };
    let table = resolve_table(session, &name)?;
    let mut needed = privilege::INSERT;
    if let Some(ast::OnInsert::OnConflict(ast::OnConflict { action: ast::OnConflictAction::DoUpdate(_), .. })) = &ins.on
    {
        needed |= privilege::UPDATE;
    }
    if ins.returning.is_some() {
        needed |= privilege::SELECT;
    }
    session.require_relation(table, needed)?;
    let def = table_def(session, table)?;
    let target = target_columns(&def, &ins.columns)?;
    let (on_conflict, do_update) = conflict_action(&def, &ins.on)?;
    let mut ins = ins;
    type_array_literals(&def, target.as_deref(), &mut ins)?;
    let rows = match &ins.source {
        Some(q) => {
            let batches = match super::fast_path::literal_values(session, q)? {
                Some(batch) => vec![batch],
                None => match session.query(Statement::Query(q.clone())).await? {
                    Output::Rows { batches, .. } => batches,
                    _ => vec![],
                },
            };
            build_rows(session, table, target, &batches).await?
        }
        // INSERT ... DEFAULT VALUES
        None => vec![default_values_row(session, &def, table).await?],
    };
    let alias = ins.table_alias.as_ref().map(|a| a.alias.to_string()).unwrap_or_else(|| name_ident(&name));
    let proposed = if do_update.is_some() { rows.clone() } else { vec![] };
    policy::check_new_rows(session, &def, PolicyCommand::Insert, Clause::Check, &rows)?;
    crate::checks::check_new_rows(session, &def, &rows)?;
    let outcome = session.with_txn(|t| Ok(t.insert(table, rows, on_conflict)?))?;
    let mut written = outcome.inserted;
    if let Some(du) = do_update
        && !outcome.conflicts.is_empty()
    {
        let updated = upsert(session, &def, table, &alias, &du, &proposed, &outcome.conflicts, &written).await?;
        written.extend(updated);
    }
    let n = written.len() as u64;
    match &ins.returning {
        Some(items) => {
            // Rows handed back must be rows the principal may see.
            policy::check_rows(session, &def, PolicyCommand::Select, Clause::Using, &written)?;
            returning(&def, &written, items, "INSERT", &alias).await
        }
        None => Ok(Output::count("INSERT", n)),
    }
}

/// The columns an INSERT names, as positions (`None`: all columns, in order).
fn target_columns(def: &TableDef, columns: &[ast::ObjectName]) -> SqlResult<Option<Vec<usize>>> {
    Ok(if columns.is_empty() {
        None
    } else {
        let mut seen = HashSet::new();
        let mut cols = Vec::new();
        for c in columns {
            let cname = c.0.last().and_then(|p| p.as_ident()).map(ident_name).unwrap_or_default();
            let pos = def.column_index(&cname).ok_or_else(|| {
                SqlError::new(
                    codes::UNDEFINED_COLUMN,
                    format!("column \"{cname}\" of relation \"{}\" does not exist", def.name),
                )
            })?;
            if !seen.insert(pos) {
                return Err(SqlError::new(
                    SqlState::DuplicateColumn,
                    format!("column \"{cname}\" specified more than once"),
                ));
            }
            cols.push(pos);
        }
        Some(cols)
    })
}

/// What an INSERT does on a unique conflict, and the DO UPDATE clause if it has one.
fn conflict_action(def: &TableDef, on: &Option<ast::OnInsert>) -> SqlResult<(OnConflict, Option<ast::DoUpdate>)> {
    let on_conflict = match on {
        None => OnConflict::Error,
        Some(ast::OnInsert::OnConflict(oc)) => {
            let index = match &oc.conflict_target {
                None => None,
                Some(ast::ConflictTarget::Columns(cols)) => {
                    let pos: Vec<usize> = cols.iter().filter_map(|c| def.column_index(&ident_name(c))).collect();
                    let idx = def.indexes.iter().find(|i| {
                        i.unique && i.columns.len() == pos.len() && pos.iter().all(|p| i.columns.contains(p))
                    });
                    Some(
                        idx.ok_or_else(|| {
                            SqlError::new(
                                SqlState::InvalidColumnReference,
                                "there is no unique or exclusion constraint matching the ON CONFLICT specification",
                            )
                        })?
                        .id,
                    )
                }
                Some(ast::ConflictTarget::OnConstraint(n)) => {
                    let cname = n.to_string();
                    Some(
                        def.indexes
                            .iter()
                            .find(|i| i.name == cname)
                            .ok_or_else(|| {
                                SqlError::new(
                                    codes::UNDEFINED_OBJECT,
                                    format!("constraint \"{cname}\" for table \"{}\" does not exist", def.name),
                                )
                            })?
                            .id,
                    )
                }
            };
            match &oc.action {
                ast::OnConflictAction::DoNothing => OnConflict::Skip(index),
                ast::OnConflictAction::DoUpdate(du) => {
                    if index.is_none() {
                        return Err(SqlError::new(
                            SqlState::SyntaxError,
                            "ON CONFLICT DO UPDATE requires inference specification or constraint name",
                        )
                        .with_hint("For example, ON CONFLICT (column_name)."));
                    }
                    return Ok((OnConflict::Skip(index), Some(du.clone())));
                }
            }
        }
        Some(other) => return Err(SqlError::unsupported(format!("{other}"))),
    };
    Ok((on_conflict, None))
}

/// '{…}' text for an array column becomes ARRAY[…], so VALUES rows mixing both forms agree
/// on a type (PostgreSQL types such literals from the column).
fn type_array_literals(def: &TableDef, target: Option<&[usize]>, ins: &mut ast::Insert) -> SqlResult<()> {
    if let Some(q) = ins.source.as_mut()
        && let ast::SetExpr::Values(values) = q.body.as_mut()
    {
        let positions: Vec<usize> = match target {
            Some(t) => t.to_vec(),
            None => def.live_columns().map(|(p, _)| p).collect(),
        };
        let array_types: Vec<Option<ast::DataType>> = positions
            .iter()
            .map(|&pos| match &def.columns[pos].data_type {
                bkg_kernel::DataType::Array(elem) => {
                    // The planner's view of the type: text-like elements travel as text.
                    let name = match elem.as_ref() {
                        bkg_kernel::DataType::Uuid
                        | bkg_kernel::DataType::Json
                        | bkg_kernel::DataType::Jsonb
                        | bkg_kernel::DataType::Varchar(_)
                        | bkg_kernel::DataType::Char(_) => "text[]".to_string(),
                        e => format!("{}[]", e.pg_name()),
                    };
                    datafusion::sql::sqlparser::parser::Parser::new(
                        &datafusion::sql::sqlparser::dialect::PostgreSqlDialect {},
                    )
                    .try_with_sql(&name)
                    .and_then(|mut p| p.parse_data_type())
                    .ok()
                }
                _ => None,
            })
            .collect();
        for row in values.rows.iter_mut() {
            for (j, e) in row.iter_mut().enumerate() {
                let Some(Some(data_type)) = array_types.get(j) else { continue };
                if matches!(e, ast::Expr::Value(v) if matches!(v.value, ast::Value::Null)) {
                    continue;
                }
                let inner = super::pg_catalog::array_text_literal_checked(e)?.unwrap_or_else(|| e.clone());
                *e = ast::Expr::Cast {
                    kind: ast::CastKind::Cast,
                    expr: Box::new(inner),
                    data_type: data_type.clone(),
                    array: false,
                    format: None,
                };
            }
        }
    }
    Ok(())
}

/// The row of `INSERT ... DEFAULT VALUES`.
async fn default_values_row(session: &mut Session, def: &TableDef, table: u64) -> SqlResult<Vec<Value>> {
    let fills = defaults(session, def, &[]).await?;
    let mut row = Vec::new();
    for (pos, f) in fills.iter().enumerate() {
        row.push(match f {
            Fill::Const(v) => v.clone(),
            Fill::Identity => {
                int_value(&def.columns[pos].data_type, session.with_txn(|t| Ok(t.next_identity(table, pos)))?)?
            }
            Fill::Uuid => uuid_values(&def.columns[pos], 1)?.pop().unwrap_or(Value::Null),
        });
    }
    Ok(row)
}

/// ON CONFLICT DO UPDATE: evaluates the SET list (and WHERE) over each conflicting existing row,
/// with the proposed row as `excluded`, and updates the rows that pass.
#[allow(clippy::too_many_arguments)]
async fn upsert(
    session: &mut Session,
    def: &TableDef,
    table: u64,
    alias: &str,
    du: &ast::DoUpdate,
    proposed: &[Vec<Value>],
    conflicts: &[(usize, u64, Row)],
    inserted_now: &[(u64, Row)],
) -> SqlResult<Vec<(u64, Row)>> {
    let mine: HashSet<u64> = inserted_now.iter().map(|(r, _)| *r).collect();
    let mut seen = HashSet::new();
    for (_, rowid, _) in conflicts {
        if mine.contains(rowid) || !seen.insert(*rowid) {
            return Err(SqlError::new(
                SqlState::CardinalityViolation,
                "ON CONFLICT DO UPDATE command cannot affect row a second time",
            )
            .with_hint(
                "Ensure that no rows proposed for insertion within the same command have duplicate constrained values.",
            ));
        }
    }
    // Two in-memory tables: the existing rows (under the target's name) and `excluded`.
    let live: Vec<(usize, &bkg_kernel::ColumnDef)> = def.live_columns().collect();
    let mut fields: Vec<_> = live.iter().map(|(_, c)| c.data_type.arrow_field(&c.name, true)).collect();
    fields.push(datafusion::arrow::datatypes::Field::new(
        ROWID_COLUMN,
        datafusion::arrow::datatypes::DataType::UInt64,
        false,
    ));
    let existing_schema: SchemaRef = Arc::new(Schema::new(fields));
    let mut positions: Vec<Option<usize>> = live.iter().map(|(p, _)| Some(*p)).collect();
    positions.push(None);
    let existing_rows: Vec<(u64, Row)> = conflicts.iter().map(|(_, r, row)| (*r, row.clone())).collect();
    let existing = rows_to_batches(def, &existing_schema, &positions, &existing_rows)?;
    // `excluded` rows carry the existing row id they collided with, to join on.
    let excluded_rows: Vec<(u64, Row)> =
        conflicts.iter().map(|(i, r, _)| (*r, Row::from(proposed[*i].clone()))).collect();
    let excluded = rows_to_batches(def, &existing_schema, &positions, &excluded_rows)?;
    let ctx = SessionContext::new();
    let target = alias.trim_matches('"').to_string();
    ctx.register_table(
        datafusion::common::TableReference::bare(target.clone()),
        Arc::new(MemTable::try_new(existing_schema.clone(), vec![existing])?),
    )?;
    ctx.register_table("excluded", Arc::new(MemTable::try_new(existing_schema.clone(), vec![excluded])?))?;
    let (targets, exprs) = assignments(def, &du.assignments, false)?;
    let quoted = crate::quote::ident(&target);
    let mut sql = format!("SELECT {quoted}.\"{ROWID_COLUMN}\"");
    for e in &exprs {
        sql.push_str(", ");
        sql.push_str(e);
    }
    sql.push_str(&format!(" FROM {quoted} JOIN excluded ON {quoted}.\"{ROWID_COLUMN}\" = excluded.\"{ROWID_COLUMN}\""));
    if let Some(w) = &du.selection {
        sql.push_str(&format!(" WHERE {w}"));
    }
    let batches = ctx.sql(&sql).await?.collect().await?;
    let changes =
        new_rows(def, &targets, &batches, |id| Ok(conflicts.iter().find(|(_, x, _)| *x == id).map(|c| c.2.clone())))?;
    // The existing rows must be ones the principal may update, the new versions must pass.
    let existing: Vec<(u64, Row)> = conflicts.iter().map(|(_, r, row)| (*r, row.clone())).collect();
    policy::check_rows(session, def, PolicyCommand::Update, Clause::Using, &existing)?;
    let new: Vec<Vec<Value>> = changes.iter().map(|(_, r)| r.clone()).collect();
    policy::check_new_rows(session, def, PolicyCommand::Update, Clause::Check, &new)?;
    crate::checks::check_new_rows(session, def, &new)?;
    session.with_txn(|t| Ok(t.update(table, changes)?))
}

fn name_ident(name: &ast::ObjectName) -> String {
    name.0.last().map(|p| p.to_string()).unwrap_or_default()
}

/// Evaluates RETURNING items over the given rows.
async fn returning(
    def: &TableDef,
    rows: &[(u64, Row)],
    items: &[ast::SelectItem],
    tag: &str,
    alias: &str,
) -> SqlResult<Output> {
    let fields: Vec<_> = def.live_columns().map(|(_, c)| c.data_type.arrow_field(&c.name, true)).collect();
    let schema: SchemaRef = Arc::new(Schema::new(fields));
    let positions: Vec<Option<usize>> = def.live_columns().map(|(p, _)| Some(p)).collect();
    let batches = rows_to_batches(def, &schema, &positions, rows)?;
    let ctx = SessionContext::new();
    let mem = MemTable::try_new(schema.clone(), vec![batches])?;
    let table_name = alias.trim_matches('"').to_string();
    ctx.register_table(datafusion::common::TableReference::bare(table_name.clone()), Arc::new(mem))?;
    let list = items.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(", ");
    let df = ctx.sql(&format!("SELECT {list} FROM {}", crate::quote::ident(&table_name))).await?;
    let out_schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
    let batches = df.collect().await?;
    Ok(Output::Rows { schema: out_schema, batches, tag: tag.to_string() })
}

/// The columns RETURNING would produce, without any row.
pub async fn returning_schema(def: &TableDef, items: &[ast::SelectItem], alias: &str) -> SqlResult<SchemaRef> {
    match returning(def, &[], items, "SELECT", alias).await? {
        Output::Rows { schema, .. } => Ok(schema),
        _ => Err(SqlError::internal("RETURNING produced no schema")),
    }
}

/// Builds the new version of each selected row: batches hold the row id, then one column per
/// assigned target; `old` fetches the current row. A row selected twice is changed once.
fn new_rows(
    def: &TableDef,
    targets: &[usize],
    batches: &[RecordBatch],
    mut old: impl FnMut(u64) -> SqlResult<Option<Row>>,
) -> SqlResult<Vec<(u64, Vec<Value>)>> {
    let mut seen = HashSet::new();
    let mut changes = Vec::new();
    for b in batches {
        let ids = rowids(b)?;
        let mut cols = Vec::with_capacity(targets.len());
        for (i, &p) in targets.iter().enumerate() {
            cols.push(column_values(b.column(i + 1), &def.columns[p].data_type, &def.columns[p].name)?);
        }
        for r in 0..b.num_rows() {
            let id = ids.value(r);
            if !seen.insert(id) {
                continue;
            }
            let Some(current) = old(id)? else { continue };
            let mut row: Vec<Value> = (0..def.columns.len())
                .map(|c| current.get(c).cloned().unwrap_or_else(|| def.columns[c].missing.clone()))
                .collect();
            for (i, &p) in targets.iter().enumerate() {
                row[p] = cols[i][r].clone();
            }
            changes.push((id, row));
        }
    }
    Ok(changes)
}

/// Resolves SET assignments to physical column positions and their expressions as SQL text.
/// Identity columns GENERATED ALWAYS may not be set by UPDATE.
pub(crate) fn assignments(
    def: &TableDef,
    list: &[ast::Assignment],
    check_identity: bool,
) -> SqlResult<(Vec<usize>, Vec<String>)> {
    let mut targets = Vec::with_capacity(list.len());
    let mut exprs = Vec::with_capacity(list.len());
    for a in list {
        let col = match &a.target {
            ast::AssignmentTarget::ColumnName(n) => {
                n.0.last().and_then(|p| p.as_ident()).map(ident_name).unwrap_or_default()
            }
            ast::AssignmentTarget::Tuple(_) => {
                return Err(SqlError::unsupported("tuple assignment (SET (a, b) = ...)"));
            }
        };
        let pos = def.column_index(&col).ok_or_else(|| {
            SqlError::new(
                codes::UNDEFINED_COLUMN,
                format!("column \"{col}\" of relation \"{}\" does not exist", def.name),
            )
        })?;
        if check_identity && let Some(ColumnDefault::Identity { always: true }) = def.columns[pos].default {
            return Err(SqlError::new(
                SqlState::GeneratedAlways,
                format!("column \"{col}\" can only be updated to DEFAULT"),
            ));
        }
        // Each value gets a name of its own: two equal expressions (`SET a = now(), b = now()`)
        // would otherwise collide in the row-selecting projection.
        exprs.push(format!("({}) AS \"__set{}\"", a.value, targets.len()));
        targets.push(pos);
    }
    Ok((targets, exprs))
}

pub(crate) fn target_relation(tw: &ast::TableWithJoins) -> SqlResult<(ast::ObjectName, String)> {
    if !tw.joins.is_empty() {
        return Err(SqlError::unsupported("JOIN in the target of UPDATE/DELETE (use FROM/USING)"));
    }
    match &tw.relation {
        ast::TableFactor::Table { name, alias, .. } => {
            let a = match alias {
                Some(a) => a.name.to_string(),
                None => name_ident(name),
            };
            Ok((name.clone(), a))
        }
        other => Err(SqlError::unsupported(format!("UPDATE/DELETE target {other}"))),
    }
}

/// The row-selecting SELECT of an UPDATE/DELETE: the target's row id, then `exprs`, over the
/// target's DML view, the extra FROM/USING tables and the WHERE clause.
pub(crate) fn targets_sql(
    table: u64,
    alias: &str,
    extra_from: &[ast::TableWithJoins],
    selection: &Option<ast::Expr>,
    exprs: &[String],
) -> String {
    let mut sql = format!("SELECT {alias}.\"{ROWID_COLUMN}\"");
    for e in exprs {
        sql.push_str(", ");
        sql.push_str(e);
    }
    sql.push_str(&format!(" FROM \"{DML_SCHEMA}\".\"t{table}\" AS {alias}"));
    for f in extra_from {
        sql.push_str(", ");
        sql.push_str(&f.to_string());
    }
    if let Some(w) = selection {
        sql.push_str(&format!(" WHERE {w}"));
    }
    sql
}

/// Runs the row-selecting SELECT of an UPDATE/DELETE; returns batches whose first column is the row id.
async fn select_targets(
    session: &mut Session,
    command: PolicyCommand,
    table: u64,
    alias: &str,
    extra_from: &[ast::TableWithJoins],
    selection: &Option<ast::Expr>,
    exprs: &[String],
) -> SqlResult<Vec<RecordBatch>> {
    let sql = targets_sql(table, alias, extra_from, selection, exprs);
    session.dml_target = Some((table, command));
    let r = session.query_sql(&sql).await;
    session.dml_target = None;
    Ok(r?.1)
}

fn rowids(b: &RecordBatch) -> SqlResult<&UInt64Array> {
    b.column(0)
        .as_any()
        .downcast_ref::<UInt64Array>()
        .ok_or_else(|| SqlError::internal("row id column has the wrong type"))
}

pub async fn update(session: &mut Session, upd: ast::Update) -> SqlResult<Output> {
    if !upd.order_by.is_empty() || upd.limit.is_some() {
        return Err(SqlError::unsupported("ORDER BY/LIMIT in UPDATE"));
    }
    let (name, alias) = target_relation(&upd.table)?;
    let table = resolve_table(session, &name)?;
    // As in PostgreSQL, reading rows (WHERE, RETURNING) needs SELECT as well.
    let reads = upd.selection.is_some() || upd.returning.is_some();
    session.require_relation(table, privilege::UPDATE | if reads { privilege::SELECT } else { 0 })?;
    let def = table_def(session, table)?;
    let (targets, exprs) = assignments(&def, &upd.assignments, true)?;
    if upd.from.is_none() && upd.returning.is_none() {
        let values: Vec<&ast::Expr> = upd.assignments.iter().map(|a| &a.value).collect();
        if let Some(n) =
            super::fast_path::point_update(session, &def, &alias, &targets, &values, upd.selection.as_ref())?
        {
            return Ok(Output::count("UPDATE", n));
        }
    }
    let from: Vec<ast::TableWithJoins> = match &upd.from {
        None => vec![],
        Some(ast::UpdateTableFromKind::BeforeSet(v)) | Some(ast::UpdateTableFromKind::AfterSet(v)) => v.clone(),
    };
    let batches = select_targets(session, PolicyCommand::Update, table, &alias, &from, &upd.selection, &exprs).await?;
    let changes = new_rows(&def, &targets, &batches, |id| session.with_txn(|t| Ok(t.row(table, id))))?;
    let new: Vec<Vec<Value>> = changes.iter().map(|(_, r)| r.clone()).collect();
    policy::check_new_rows(session, &def, PolicyCommand::Update, Clause::Check, &new)?;
    crate::checks::check_new_rows(session, &def, &new)?;
    if reads {
        // As in PostgreSQL: an UPDATE that reads rows (WHERE, RETURNING) may not write a
        // version its SELECT policies would hide.
        policy::check_new_rows(session, &def, PolicyCommand::Select, Clause::Using, &new)?;
    }
    let new_rows = session.with_txn(|t| Ok(t.update(table, changes)?))?;
    match &upd.returning {
        Some(items) => returning(&def, &new_rows, items, "UPDATE", &alias).await,
        None => Ok(Output::count("UPDATE", new_rows.len() as u64)),
    }
}

pub async fn delete(session: &mut Session, del: ast::Delete) -> SqlResult<Output> {
    if !del.order_by.is_empty() || del.limit.is_some() {
        return Err(SqlError::unsupported("ORDER BY/LIMIT in DELETE"));
    }
    if !del.tables.is_empty() {
        return Err(SqlError::unsupported("multi-table DELETE"));
    }
    let from = match &del.from {
        ast::FromTable::WithFromKeyword(v) | ast::FromTable::WithoutKeyword(v) => v,
    };
    let [target] = from.as_slice() else {
        return Err(SqlError::unsupported("DELETE from several tables"));
    };
    let (name, alias) = target_relation(target)?;
    let table = resolve_table(session, &name)?;
    let reads = del.selection.is_some() || del.returning.is_some();
    session.require_relation(table, privilege::DELETE | if reads { privilege::SELECT } else { 0 })?;
    let def = table_def(session, table)?;
    let using = del.using.clone().unwrap_or_default();
    let batches = select_targets(session, PolicyCommand::Delete, table, &alias, &using, &del.selection, &[]).await?;
    let mut seen = HashSet::new();
    let mut ids = Vec::new();
    for b in &batches {
        for id in rowids(b)?.values() {
            if seen.insert(*id) {
                ids.push(*id);
            }
        }
    }
    let old: Vec<(u64, Row)> = if del.returning.is_some() {
        session.with_txn(|t| Ok(ids.iter().filter_map(|id| t.row(table, *id).map(|r| (*id, r))).collect()))?
    } else {
        vec![]
    };
    let n = session.with_txn(|t| Ok(t.delete(table, &ids)?))?;
    match &del.returning {
        Some(items) => returning(&def, &old, items, "DELETE", &alias).await,
        None => Ok(Output::count("DELETE", n as u64)),
    }
}
