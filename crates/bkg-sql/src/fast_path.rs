//! The OLTP fast path: point queries answered from the kernel without DataFusion.
//!
//! `SELECT columns FROM table WHERE key = literal [AND ...]`, where the equalities cover every
//! column of a unique index (the primary key, typically), is a hash-index lookup plus a
//! projection. Planning such a statement through DataFusion costs far more than running it, so
//! the session recognises this shape on the parsed statement and answers directly. Likewise
//! `UPDATE table SET intcol = intcol + literal, ... WHERE key = literal` (pgbench's TPC-B-like
//! updates). Anything else, or any doubt (an expression, a literal that needs a real cast, a
//! view, a join, RETURNING), goes the normal way; results are identical either way.
//!
//! Row-level security, once it lands, must keep tables with policies off this path.

use std::sync::Arc;

use bkg_kernel::mvcc::columns_from_rows;
use bkg_kernel::{DataType, Row, TableDef, Value};
use datafusion::arrow::array::{RecordBatch, RecordBatchOptions};
use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::sql::sqlparser::ast::{self, Expr, SelectItem, SetExpr, TableFactor};

use super::ddl::{ident_name, split_name};
use super::session::{Output, Session};
use crate::error::{SqlError, SqlResult};

/// Where one value of a point query's key comes from.
#[derive(Debug, Clone)]
pub enum KeyPart {
    Const(Value),
    /// Bound parameter `$n` (zero-based here).
    Param(usize),
}

/// A point SELECT analysed once: the table, the unique index, where each key value comes from,
/// and the columns to return. Prepared statements keep it and run it with each Bind's values.
#[derive(Debug)]
pub struct PointPlan {
    /// The catalog it was made against; a different one means "analyse again".
    pub catalog_version: u64,
    pub(crate) def: TableDef,
    index: u64,
    /// Every `column = value` conjunct (the index's columns among them).
    eqs: Vec<(usize, KeyPart)>,
    positions: Vec<Option<usize>>,
    schema: SchemaRef,
}

/// Answers `q` if it is a point query on a unique index; `None` means "plan it normally".
pub fn point_select(session: &Session, q: &ast::Query) -> SqlResult<Option<Output>> {
    let catalog = session.with_txn(|t| Ok(t.catalog().clone()))?;
    let Some(plan) = plan_point_select(session, &catalog, q) else { return Ok(None) };
    if plan.eqs.iter().any(|(_, k)| matches!(k, KeyPart::Param(_))) {
        return Ok(None);
    }
    run_point(session, &plan, &|_, _| Err(SqlError::internal("no parameters here"))).map(Some)
}

/// The point plan of `q`, if it is `SELECT columns FROM t WHERE key = value AND …` covering a
/// unique index, values being literals or parameters.
pub fn plan_point_select(session: &Session, catalog: &bkg_kernel::Catalog, q: &ast::Query) -> Option<PointPlan> {
    // A unique key gives at most one row, so `LIMIT n` (n >= 1, no OFFSET) changes nothing.
    let limit_ok = match &q.limit_clause {
        None => true,
        Some(ast::LimitClause::LimitOffset { limit: Some(Expr::Value(v)), offset: None, limit_by }) => {
            limit_by.is_empty()
                && matches!(&v.value, ast::Value::Number(n, false) if n.parse::<u64>().is_ok_and(|n| n >= 1))
        }
        Some(_) => false,
    };
    if q.with.is_some() || q.order_by.is_some() || !limit_ok || q.fetch.is_some() || !q.locks.is_empty() {
        return None;
    }
    let SetExpr::Select(sel) = q.body.as_ref() else { return None };
    let plain = sel.distinct.is_none()
        && sel.top.is_none()
        && sel.into.is_none()
        && sel.lateral_views.is_empty()
        && sel.having.is_none()
        && sel.named_window.is_empty()
        && sel.qualify.is_none()
        && sel.cluster_by.is_empty()
        && sel.distribute_by.is_empty()
        && sel.sort_by.is_empty()
        && matches!(&sel.group_by, ast::GroupByExpr::Expressions(v, m) if v.is_empty() && m.is_empty());
    let ([from], Some(selection), true) = (sel.from.as_slice(), &sel.selection, plain) else { return None };
    if !from.joins.is_empty() {
        return None;
    }
    let TableFactor::Table { name, alias, args: None, with_hints, .. } = &from.relation else { return None };
    if !with_hints.is_empty() || alias.as_ref().is_some_and(|a| !a.columns.is_empty()) {
        return None;
    }
    let (schema, table) = split_name(session, name).ok()?;
    let def = catalog.find_table(&schema, &table)?;
    if session.rls_restricts(def) {
        // Row-level security filters in the scan; the point path does not evaluate policies.
        return None;
    }
    let qualifier = alias.as_ref().map(|a| ident_name(&a.name)).unwrap_or_else(|| table.clone());
    let column = resolver(def, &qualifier);
    // Output columns.
    let mut outputs: Vec<(usize, String)> = Vec::new();
    for item in &sel.projection {
        match item {
            SelectItem::Wildcard(o) if *o == Default::default() => {
                outputs.extend(def.live_columns().map(|(p, c)| (p, c.name.clone())));
            }
            SelectItem::UnnamedExpr(e) => outputs.push((column(e)?, def.columns[column(e)?].name.clone())),
            SelectItem::ExprWithAlias { expr, alias } => outputs.push((column(expr)?, ident_name(alias))),
            _ => return None,
        }
    }
    let mut eqs = Vec::new();
    if !equalities(selection, &column, def, &mut eqs) {
        return None;
    }
    let index =
        def.indexes.iter().filter(|i| i.unique).find(|i| i.columns.iter().all(|c| eqs.iter().any(|(p, _)| p == c)))?;
    let fields: Vec<Field> =
        outputs.iter().map(|(p, n)| def.columns[*p].data_type.arrow_field(n, def.columns[*p].nullable)).collect();
    Some(PointPlan {
        catalog_version: catalog.version,
        def: def.clone(),
        index: index.id,
        eqs,
        positions: outputs.iter().map(|(p, _)| Some(*p)).collect(),
        schema: Arc::new(Schema::new(fields)),
    })
}

/// Runs a point plan in the session's transaction; `param(i, type)` gives parameter `i` as a
/// value of the key column's type.
pub fn run_point(
    session: &Session,
    plan: &PointPlan,
    param: &dyn Fn(usize, &DataType) -> SqlResult<Value>,
) -> SqlResult<Output> {
    let def = &plan.def;
    session.require_relation(def.id, bkg_kernel::privilege::SELECT)?;
    if session.rls_restricts(def) {
        return Err(SqlError::internal("a point plan cannot apply row-level security"));
    }
    let mut eqs = Vec::with_capacity(plan.eqs.len());
    for (p, k) in &plan.eqs {
        eqs.push((
            *p,
            match k {
                KeyPart::Const(v) => v.clone(),
                KeyPart::Param(i) => param(*i, &def.columns[*p].data_type)?,
            },
        ));
    }
    let rows = lookup_rows(session, def, plan.index, &eqs)?;
    let cols = columns_from_rows(def, &plan.positions, &rows)?;
    let batch = RecordBatch::try_new_with_options(
        plan.schema.clone(),
        cols,
        &RecordBatchOptions::new().with_row_count(Some(rows.len())),
    )
    .map_err(|e| SqlError::internal(e.to_string()))?;
    session.engine.fast_path_queries.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    Ok(Output::Rows { schema: plan.schema.clone(), batches: vec![batch], tag: "SELECT".into() })
}

/// Resolves `col` and `qualifier.col` to physical column positions of `def`.
fn resolver<'a>(def: &'a TableDef, qualifier: &'a str) -> impl Fn(&Expr) -> Option<usize> + 'a {
    move |e: &Expr| match e {
        Expr::Identifier(i) => def.column_index(&ident_name(i)),
        Expr::CompoundIdentifier(p) if p.len() == 2 && ident_name(&p[0]) == qualifier => {
            def.column_index(&ident_name(&p[1]))
        }
        _ => None,
    }
}

/// The rows `selection` picks when it is `column = literal` conjuncts covering a unique index;
/// `None` when it is anything else.
fn point_rows(
    session: &Session,
    def: &TableDef,
    column: &dyn Fn(&Expr) -> Option<usize>,
    selection: &Expr,
) -> SqlResult<Option<Vec<(u64, Row)>>> {
    let mut parts: Vec<(usize, KeyPart)> = Vec::new();
    if !equalities(selection, column, def, &mut parts) {
        return Ok(None);
    }
    let mut eqs = Vec::with_capacity(parts.len());
    for (p, k) in parts {
        match k {
            KeyPart::Const(v) => eqs.push((p, v)),
            KeyPart::Param(_) => return Ok(None),
        }
    }
    let Some(index) =
        def.indexes.iter().filter(|i| i.unique).find(|i| i.columns.iter().all(|c| eqs.iter().any(|(p, _)| p == c)))
    else {
        return Ok(None);
    };
    lookup_rows(session, def, index.id, &eqs).map(Some)
}

/// The rows of unique index `index` whose key the equalities give, re-checked against all of them.
fn lookup_rows(session: &Session, def: &TableDef, index: u64, eqs: &[(usize, Value)]) -> SqlResult<Vec<(u64, Row)>> {
    let idx = def.indexes.iter().find(|i| i.id == index).ok_or_else(|| SqlError::internal("index vanished"))?;
    let key: Vec<Value> =
        idx.columns.iter().map(|c| eqs.iter().find(|(p, _)| p == c).expect("covered").1.clone()).collect();
    let rows = session.with_txn(|t| Ok(t.lookup(def.id, index, &key)?))?;
    Ok(rows
        .into_iter()
        .filter(|(_, row)| {
            eqs.iter().all(|(p, v)| {
                let have = row.get(*p).unwrap_or(&def.columns[*p].missing);
                !have.is_null() && !v.is_null() && have.total_cmp(v).is_eq()
            })
        })
        .collect())
}

fn is_int(dt: &DataType) -> bool {
    matches!(dt, DataType::Int16 | DataType::Int32 | DataType::Int64)
}

fn int_of(v: &Value) -> Option<i64> {
    match v {
        Value::Int16(x) => Some(*x as i64),
        Value::Int32(x) => Some(*x as i64),
        Value::Int64(x) => Some(*x),
        _ => None,
    }
}

enum Assign {
    Const(Value),
    /// Column `.0` plus `.1`.
    Add(usize, i64),
}

/// `UPDATE` of integer columns to literals or `column ± literal`, on the rows of a unique key.
/// Returns the number of rows updated, or `None` to take the normal path. `targets` and `values`
/// are the assignments (physical positions, checked by the caller).
pub fn point_update(
    session: &Session,
    def: &TableDef,
    qualifier: &str,
    targets: &[usize],
    values: &[&Expr],
    selection: Option<&Expr>,
) -> SqlResult<Option<u64>> {
    let Some(selection) = selection else { return Ok(None) };
    // CHECK constraints are evaluated by the planner's expression code: the normal path.
    if session.rls_restricts(def) || !def.checks.is_empty() {
        return Ok(None);
    }
    let column = resolver(def, qualifier);
    let mut plan = Vec::with_capacity(targets.len());
    for (&t, e) in targets.iter().zip(values) {
        if !is_int(&def.columns[t].data_type) {
            return Ok(None);
        }
        let assign = match e {
            Expr::BinaryOp { left, op: op @ (ast::BinaryOperator::Plus | ast::BinaryOperator::Minus), right } => {
                let (Some(c), Some(Value::Int64(n))) = (column(left), literal(right, &DataType::Int64)) else {
                    return Ok(None);
                };
                if !is_int(&def.columns[c].data_type) {
                    return Ok(None);
                }
                let n = if matches!(op, ast::BinaryOperator::Minus) { n.checked_neg() } else { Some(n) };
                let Some(n) = n else { return Ok(None) };
                Assign::Add(c, n)
            }
            e => match literal(e, &def.columns[t].data_type) {
                Some(v) => Assign::Const(v),
                None => return Ok(None),
            },
        };
        plan.push((t, assign));
    }
    let Some(rows) = point_rows(session, def, &column, selection)? else { return Ok(None) };
    let mut changes = Vec::with_capacity(rows.len());
    for (rowid, row) in rows {
        let mut new: Vec<Value> = row.to_vec();
        new.resize(def.columns.len(), Value::Null);
        for (t, assign) in &plan {
            new[*t] = match assign {
                Assign::Const(v) => v.clone(),
                Assign::Add(c, n) => match int_of(row.get(*c).unwrap_or(&def.columns[*c].missing)) {
                    None => Value::Null,
                    Some(old) => int_value(&def.columns[*t].data_type, old.checked_add(*n))?,
                },
            };
        }
        changes.push((rowid, new));
    }
    let updated = session.with_txn(|t| Ok(t.update(def.id, changes)?))?;
    session.engine.fast_path_queries.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    Ok(Some(updated.len() as u64))
}

/// An integer result stored in a column of type `dt` (22003 when it does not fit).
fn int_value(dt: &DataType, v: Option<i64>) -> SqlResult<Value> {
    let out =
        |name: &str| SqlError::new(crate::error::codes::NUMERIC_VALUE_OUT_OF_RANGE, format!("{name} out of range"));
    match dt {
        DataType::Int16 => v.and_then(|v| i16::try_from(v).ok()).map(Value::Int16).ok_or_else(|| out("smallint")),
        DataType::Int32 => v.and_then(|v| i32::try_from(v).ok()).map(Value::Int32).ok_or_else(|| out("integer")),
        _ => v.map(Value::Int64).ok_or_else(|| out("bigint")),
    }
}

/// Collects `column = literal` conjuncts of `e`; false if `e` holds anything else.
fn equalities(
    e: &Expr,
    column: &dyn Fn(&Expr) -> Option<usize>,
    def: &TableDef,
    out: &mut Vec<(usize, KeyPart)>,
) -> bool {
    match e {
        Expr::Nested(inner) => equalities(inner, column, def, out),
        Expr::BinaryOp { left, op: ast::BinaryOperator::And, right } => {
            equalities(left, column, def, out) && equalities(right, column, def, out)
        }
        Expr::BinaryOp { left, op: ast::BinaryOperator::Eq, right } => {
            let (pos, lit) = match (column(left), column(right)) {
                (Some(p), None) => (p, right.as_ref()),
                (None, Some(p)) => (p, left.as_ref()),
                _ => return false,
            };
            if let Some(i) = placeholder(lit) {
                out.push((pos, KeyPart::Param(i)));
                return true;
            }
            match literal(lit, &def.columns[pos].data_type) {
                Some(v) => {
                    out.push((pos, KeyPart::Const(v)));
                    true
                }
                None => false,
            }
        }
        _ => false,
    }
}

enum CastTo {
    Int,
    Text,
}

/// `CAST(x AS <integer or text type>)` / `x::type`, as bound parameters arrive: the operand and
/// the kind of target type.
fn plain_cast(e: &Expr) -> Option<(&Expr, CastTo)> {
    use ast::DataType as T;
    let Expr::Cast {
        kind: ast::CastKind::Cast | ast::CastKind::DoubleColon,
        expr,
        data_type,
        format: None,
        array: false,
    } = e
    else {
        return None;
    };
    let to = match data_type {
        T::SmallInt(_) | T::Int(_) | T::Integer(_) | T::BigInt(_) | T::Int2(_) | T::Int4(_) | T::Int8(_) => CastTo::Int,
        T::Text | T::Varchar(None) | T::CharacterVarying(None) => CastTo::Text,
        _ => return None,
    };
    Some((expr, to))
}

/// The value of a literal (as clients and bound parameters write them) for a column of type
/// `dt`, when it is exactly representable without a real cast.
/// `$n` (possibly cast as bound parameters are), as a zero-based parameter index.
fn placeholder(e: &Expr) -> Option<usize> {
    match e {
        Expr::Value(v) => match &v.value {
            ast::Value::Placeholder(p) => p.strip_prefix('$')?.parse::<usize>().ok()?.checked_sub(1),
            _ => None,
        },
        Expr::Nested(inner) => placeholder(inner),
        _ => None,
    }
}

fn literal(e: &Expr, dt: &DataType) -> Option<Value> {
    let int = |s: &str| -> Option<Value> {
        let n: i64 = s.trim().parse().ok()?;
        match dt {
            DataType::Int16 => i16::try_from(n).ok().map(Value::Int16),
            DataType::Int32 => i32::try_from(n).ok().map(Value::Int32),
            DataType::Int64 => Some(Value::Int64(n)),
            _ => None,
        }
    };
    let is_int = matches!(dt, DataType::Int16 | DataType::Int32 | DataType::Int64);
    let is_text = matches!(dt, DataType::Text | DataType::Varchar(_));
    if let Some((inner, to)) = plain_cast(e) {
        return match (to, is_int, is_text) {
            (CastTo::Int, true, _) | (CastTo::Text, _, true) => literal(inner, dt),
            _ => None,
        };
    }
    match e {
        Expr::Nested(inner) => literal(inner, dt),
        Expr::Value(v) => match &v.value {
            ast::Value::Number(n, false) if is_int => int(n),
            ast::Value::SingleQuotedString(s) if is_int => int(s),
            ast::Value::SingleQuotedString(s) if is_text => Some(Value::Text(Arc::from(s.as_str()))),
            _ => None,
        },
        Expr::UnaryOp { op: ast::UnaryOperator::Minus, expr } if is_int => match expr.as_ref() {
            Expr::Value(v) => match &v.value {
                ast::Value::Number(n, false) => int(&format!("-{n}")),
                _ => None,
            },
            _ => None,
        },
        _ => None,
    }
}

/// The rows of `VALUES (...), (...)` whose items are all literals (numbers, strings, booleans,
/// NULL, `CURRENT_TIMESTAMP`/`now()`, and the CASTs bound parameters become), as one batch typed
/// the way the planner would type it; `None` for anything else. INSERT then converts the columns
/// to the target types exactly as it does with planned rows.
pub fn literal_values(session: &Session, q: &ast::Query) -> SqlResult<Option<RecordBatch>> {
    use datafusion::arrow::array::{
        ArrayRef, BooleanArray, Int64Array, NullArray, StringArray, TimestampMicrosecondArray,
    };
    use datafusion::arrow::datatypes::{DataType as A, TimeUnit};
    #[derive(Clone, PartialEq)]
    enum Lit {
        Null,
        Int(i64),
        Str(String),
        Bool(bool),
        Now,
    }
    fn lit(e: &Expr) -> Option<Lit> {
        if let Some((inner, to)) = plain_cast(e) {
            return match (to, lit(inner)?) {
                (CastTo::Int, Lit::Int(n)) => Some(Lit::Int(n)),
                (CastTo::Int, Lit::Str(s)) => s.trim().parse().ok().map(Lit::Int),
                (CastTo::Text, Lit::Str(s)) => Some(Lit::Str(s)),
                _ => None,
            };
        }
        match e {
            Expr::Nested(inner) => lit(inner),
            Expr::Value(v) => match &v.value {
                ast::Value::Null => Some(Lit::Null),
                ast::Value::Number(n, false) => n.parse().ok().map(Lit::Int),
                ast::Value::SingleQuotedString(s) => Some(Lit::Str(s.clone())),
                ast::Value::Boolean(b) => Some(Lit::Bool(*b)),
                _ => None,
            },
            Expr::UnaryOp { op: ast::UnaryOperator::Minus, expr } => match lit(expr)? {
                Lit::Int(n) => n.checked_neg().map(Lit::Int),
                _ => None,
            },
            Expr::Function(f)
                if matches!(f.name.to_string().to_lowercase().as_str(), "current_timestamp" | "now")
                    && match &f.args {
                        ast::FunctionArguments::None => true,
                        ast::FunctionArguments::List(l) => l.args.is_empty(),
                        _ => false,
                    } =>
            {
                Some(Lit::Now)
            }
            _ => None,
        }
    }
    if q.with.is_some() || q.order_by.is_some() || q.limit_clause.is_some() || q.fetch.is_some() {
        return Ok(None);
    }
    let SetExpr::Values(values) = q.body.as_ref() else { return Ok(None) };
    let Some(width) = values.rows.first().map(|r| r.len()) else { return Ok(None) };
    let mut cols: Vec<Vec<Lit>> = vec![Vec::with_capacity(values.rows.len()); width];
    for row in &values.rows {
        if row.len() != width {
            return Ok(None);
        }
        for (i, e) in row.iter().enumerate() {
            match lit(e) {
                Some(l) => cols[i].push(l),
                None => return Ok(None),
            }
        }
    }
    let now = session.statement_now_micros();
    let mut arrays: Vec<ArrayRef> = Vec::with_capacity(width);
    let mut fields = Vec::with_capacity(width);
    for (i, col) in cols.iter().enumerate() {
        let kind = col.iter().find(|l| **l != Lit::Null);
        let same = |f: fn(&Lit) -> bool| col.iter().all(|l| *l == Lit::Null || f(l));
        let array: ArrayRef = match kind {
            None => Arc::new(NullArray::new(col.len())),
            Some(Lit::Int(_)) if same(|l| matches!(l, Lit::Int(_))) => {
                Arc::new(col.iter().map(|l| if let Lit::Int(n) = l { Some(*n) } else { None }).collect::<Int64Array>())
            }
            Some(Lit::Str(_)) if same(|l| matches!(l, Lit::Str(_))) => Arc::new(
                col.iter().map(|l| if let Lit::Str(s) = l { Some(s.as_str()) } else { None }).collect::<StringArray>(),
            ),
            Some(Lit::Bool(_)) if same(|l| matches!(l, Lit::Bool(_))) => Arc::new(
                col.iter().map(|l| if let Lit::Bool(b) = l { Some(*b) } else { None }).collect::<BooleanArray>(),
            ),
            Some(Lit::Now) if same(|l| matches!(l, Lit::Now)) => Arc::new(
                col.iter()
                    .map(|l| (*l == Lit::Now).then_some(now))
                    .collect::<TimestampMicrosecondArray>()
                    .with_timezone("+00:00"),
            ),
            _ => return Ok(None),
        };
        let dt = match array.data_type() {
            A::Timestamp(_, _) => A::Timestamp(TimeUnit::Microsecond, Some("+00:00".into())),
            other => other.clone(),
        };
        fields.push(Field::new(format!("column{}", i + 1), dt, true));
        arrays.push(array);
    }
    let batch =
        RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays).map_err(|e| SqlError::internal(e.to_string()))?;
    session.engine.fast_path_queries.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    Ok(Some(batch))
}
