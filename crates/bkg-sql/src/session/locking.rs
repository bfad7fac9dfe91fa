//! `SELECT … FOR UPDATE | FOR NO KEY UPDATE | FOR SHARE | FOR KEY SHARE [OF t] [NOWAIT | SKIP
//! LOCKED]`: the rows a query returns are locked in the kernel's row-lock table, the one UPDATE
//! and DELETE lock the rows they change with, until the transaction ends.
//!
//! The query runs over the locked tables' row-id views (as the row-selecting SELECT of an
//! UPDATE does), with their row ids as extra columns, and without its LIMIT/OFFSET: rows are
//! locked in the query's order as they stream in, and LIMIT and OFFSET count only rows that
//! were locked (PostgreSQL locks below its Limit node too, so SKIP LOCKED never returns fewer
//! rows than the limit while others are free). A row another transaction holds makes the
//! statement wait and run again (READ COMMITTED: on a new snapshot; REPEATABLE READ: 40001 if
//! the holder changed it), fail with 55P03 (NOWAIT), or be left out (SKIP LOCKED). Every mode
//! takes the same exclusive lock: two FOR SHARE transactions wait for each other where
//! PostgreSQL lets them share (documented in KNOWN-GAPS.md).

use super::*;
use bkg_kernel::{PolicyCommand, privilege};
use datafusion::arrow::array::{Array, BooleanArray, UInt64Array};
use futures::StreamExt;

/// One locked table of the query.
struct Locked {
    table: u64,
    /// How the query names it (for messages).
    name: String,
    nonblock: Option<ast::NonBlock>,
}

const LOCK_COLUMN_PREFIX: &str = "__lock_";

impl Session {
    /// Runs a query that has a locking clause (see the module documentation).
    pub(super) async fn locking_select(&mut self, mut q: ast::Query) -> SqlResult<Output> {
        let locks = std::mem::take(&mut q.locks);
        let clause = lock_words(&locks[0]);
        let refuse = |what: &str| SqlError::unsupported(format!("{clause} with {what}"));
        let (limit, offset) = limit_offset(&q)?;
        q.limit_clause = None;
        if q.fetch.is_some() {
            return Err(refuse("FETCH FIRST (use LIMIT)"));
        }
        let ast::SetExpr::Select(select) = q.body.as_mut() else {
            return Err(SqlError::unsupported(format!("{clause} is not allowed with UNION/INTERSECT/EXCEPT")));
        };
        if select.distinct.is_some() {
            return Err(SqlError::unsupported(format!("{clause} is not allowed with DISTINCT clause")));
        }
        if !matches!(&select.group_by, ast::GroupByExpr::Expressions(e, _) if e.is_empty()) {
            return Err(SqlError::unsupported(format!("{clause} is not allowed with GROUP BY clause")));
        }
        if select.having.is_some() {
            return Err(SqlError::unsupported(format!("{clause} is not allowed with HAVING clause")));
        }
        if has_aggregate(&select.projection) {
            return Err(SqlError::unsupported(format!("{clause} is not allowed with aggregate functions")));
        }
        let locked = self.lock_targets(select, &locks, &clause)?;
        // The first locked table's scan applies its UPDATE policies too, as PostgreSQL does.
        self.dml_target = locked.first().map(|l| (l.table, PolicyCommand::Update));
        let planned = self.plan_query(Statement::Query(Box::new(q))).await;
        self.dml_target = None;
        let (physical, schema, state) = match planned? {
            super::plan::Planned::Done(_) => return Err(SqlError::internal("a locking query was answered unplanned")),
            super::plan::Planned::Plan { physical, schema, state } => (physical, schema, state),
        };
        let lock_cols: Vec<usize> = (0..locked.len())
            .map(|i| {
                schema
                    .index_of(&format!("{LOCK_COLUMN_PREFIX}{i}"))
                    .map_err(|_| SqlError::internal("the row id of a locked table is missing"))
            })
            .collect::<SqlResult<_>>()?;
        let keep_cols: Vec<usize> = (0..schema.fields().len())
            .filter(|i| {
                let n = schema.field(*i).name();
                !lock_cols.contains(i) && n != crate::provider::ROWID_COLUMN
            })
            .collect();
        let out_schema = Arc::new(schema.project(&keep_cols)?);
        let mut stream = datafusion::physical_plan::execute_stream(physical, state.task_ctx())?;
        let mut batches = Vec::new();
        let (mut skipped_offset, mut taken) = (0u64, 0u64);
        'stream: while let Some(b) = stream.next().await {
            if limit.is_some_and(|l| taken >= l) {
                break;
            }
            let b = b?;
            let ids: Vec<&UInt64Array> = lock_cols
                .iter()
                .map(|c| {
                    b.column(*c)
                        .as_any()
                        .downcast_ref::<UInt64Array>()
                        .ok_or_else(|| SqlError::internal("row id column has the wrong type"))
                })
                .collect::<SqlResult<_>>()?;
            let mut mask = vec![false; b.num_rows()];
            for (r, keep) in mask.iter_mut().enumerate() {
                if limit.is_some_and(|l| taken >= l) {
                    let part = datafusion::arrow::compute::filter_record_batch(&b, &BooleanArray::from(mask.clone()))?;
                    batches.push(part.project(&keep_cols)?);
                    break 'stream;
                }
                if !self.lock_result_row(&locked, &ids, r)? {
                    continue;
                }
                if skipped_offset < offset {
                    skipped_offset += 1;
                    continue;
                }
                taken += 1;
                *keep = true;
            }
            let part = datafusion::arrow::compute::filter_record_batch(&b, &BooleanArray::from(mask))?;
            if part.num_rows() > 0 {
                batches.push(part.project(&keep_cols)?);
            }
        }
        // Under the output's names (the plan's own differ, e.g. for repeated names).
        let batches =
            batches.into_iter().map(|b| super::plan::rename_batch(&out_schema, b)).collect::<Result<Vec<_>, _>>()?;
        Ok(Output::Rows { schema: out_schema, batches, tag: "SELECT".into() })
    }

    /// Points the relations the locking clauses lock at their tables' row-id views and adds
    /// their row ids to the select list (`__lock_<i>`); returns them in that order.
    fn lock_targets(
        &mut self,
        select: &mut ast::Select,
        locks: &[ast::LockClause],
        clause: &str,
    ) -> SqlResult<Vec<Locked>> {
        let refuse = |what: &str| SqlError::unsupported(format!("{clause} with {what}"));
        // The relations each clause locks: those it names with OF, else every one in FROM.
        let mut locked: Vec<Locked> = Vec::new();
        let mut extra = Vec::new();
        let mut relations: Vec<&mut ast::TableFactor> = Vec::new();
        for twj in select.from.iter_mut() {
            relations.push(&mut twj.relation);
            for j in twj.joins.iter_mut() {
                relations.push(&mut j.relation);
            }
        }
        for rel in relations {
            let ast::TableFactor::Table { name, alias, args: None, .. } = rel else {
                if locks.iter().any(|l| l.of.is_none()) {
                    return Err(refuse("a subquery or function in FROM (name the tables to lock with OF)"));
                }
                continue;
            };
            let ref_name = match alias {
                Some(a) => a.name.value.clone(),
                None => name.0.last().map(|p| p.to_string().trim_matches('"').to_string()).unwrap_or_default(),
            };
            let Some(clause) = locks.iter().find(|l| match &l.of {
                None => true,
                Some(of) => of.0.last().is_some_and(|p| p.to_string().trim_matches('"') == ref_name),
            }) else {
                continue;
            };
            let table = crate::ddl::resolve_table(self, name).map_err(|e| {
                if e.code == codes::WRONG_OBJECT_TYPE { refuse("a view (lock the tables it reads)") } else { e }
            })?;
            self.require_relation(table, privilege::SELECT | privilege::UPDATE)?;
            let i = locked.len();
            *name = ast::ObjectName::from(vec![
                ast::Ident::with_quote('"', crate::provider::DML_SCHEMA),
                ast::Ident::with_quote('"', format!("t{table}")),
            ]);
            if alias.is_none() {
                *alias = Some(ast::TableAlias {
                    explicit: true,
                    name: ast::Ident::with_quote('"', ref_name.clone()),
                    columns: vec![],
                    at: None,
                });
            }
            extra.push(format!(
                "\"{}\".\"{}\" AS \"{LOCK_COLUMN_PREFIX}{i}\"",
                ref_name.replace('"', "\"\""),
                crate::provider::ROWID_COLUMN
            ));
            locked.push(Locked { table, name: ref_name, nonblock: clause.nonblock });
        }
        for of in locks.iter().filter_map(|l| l.of.as_ref()) {
            let n = of.0.last().map(|p| p.to_string().trim_matches('"').to_string()).unwrap_or_default();
            if !locked.iter().any(|l| l.name == n) {
                return Err(SqlError::new(
                    codes::UNDEFINED_TABLE,
                    format!("relation \"{n}\" in {clause} clause not found in FROM clause"),
                ));
            }
        }
        for e in &extra {
            let item = Parser::new(&PostgreSqlDialect {}).try_with_sql(e)?.parse_select_item()?;
            select.projection.push(item);
        }
        Ok(locked)
    }

    /// Locks the rows of result row `r` in every locked table; false when SKIP LOCKED leaves it out.
    fn lock_result_row(&mut self, locked: &[Locked], ids: &[&UInt64Array], r: usize) -> SqlResult<bool> {
        for (l, col) in locked.iter().zip(ids) {
            if col.is_null(r) {
                // The null side of an outer join: nothing to lock.
                continue;
            }
            let rowid = col.value(r);
            let got = self.with_txn(|t| Ok(t.lock_row(l.table, rowid)))?;
            match got {
                Ok(bkg_kernel::RowLock::Locked) => {}
                Ok(bkg_kernel::RowLock::Gone) => return Ok(false),
                Err(bkg_kernel::Error::LockWait { .. }) if l.nonblock == Some(ast::NonBlock::SkipLocked) => {
                    return Ok(false);
                }
                Err(bkg_kernel::Error::LockWait { .. }) if l.nonblock == Some(ast::NonBlock::Nowait) => {
                    return Err(SqlError::new(
                        codes::LOCK_NOT_AVAILABLE,
                        format!("could not obtain lock on row in relation \"{}\"", l.name),
                    ));
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(true)
    }
}

/// `FOR UPDATE` / `FOR SHARE` as the clause said it (for messages).
fn lock_words(l: &ast::LockClause) -> String {
    format!("FOR {}", l.lock_type)
}

/// The query's LIMIT and OFFSET as numbers (they must be constants here).
fn limit_offset(q: &ast::Query) -> SqlResult<(Option<u64>, u64)> {
    let number = |e: &ast::Expr, what: &str| -> SqlResult<Option<u64>> {
        // A bound parameter arrives as a typed literal (`10::INTEGER`), maybe in parentheses.
        let mut e = e;
        loop {
            match e {
                ast::Expr::Nested(inner) => e = inner,
                ast::Expr::Cast { expr, .. } => e = expr,
                _ => break,
            }
        }
        match e {
            ast::Expr::UnaryOp { op: ast::UnaryOperator::Minus, .. } => {
                Err(SqlError::new(SqlState::InvalidRowCountInLimitClause, format!("{what} must not be negative")))
            }
            ast::Expr::Value(v) => match &v.value {
                ast::Value::Null => Ok(None),
                ast::Value::Number(n, _) => {
                    let n: i64 = n.parse().map_err(|_| {
                        SqlError::new(codes::INVALID_TEXT_REPRESENTATION, format!("invalid {what} \"{n}\""))
                    })?;
                    if n < 0 {
                        return Err(SqlError::new(
                            SqlState::InvalidRowCountInLimitClause,
                            format!("{what} must not be negative"),
                        ));
                    }
                    Ok(Some(n as u64))
                }
                _ => Err(SqlError::unsupported(format!("{what} that is not a number with a locking clause"))),
            },
            _ => Err(SqlError::unsupported(format!("{what} that is not a constant with a locking clause"))),
        }
    };
    match &q.limit_clause {
        None => Ok((None, 0)),
        Some(ast::LimitClause::LimitOffset { limit, offset, limit_by }) if limit_by.is_empty() => {
            let l = match limit {
                Some(e) => number(e, "LIMIT")?,
                None => None,
            };
            let o = match offset {
                Some(o) => number(&o.value, "OFFSET")?.unwrap_or(0),
                None => 0,
            };
            Ok((l, o))
        }
        Some(ast::LimitClause::OffsetCommaLimit { offset, limit }) => {
            Ok((number(limit, "LIMIT")?, number(offset, "OFFSET")?.unwrap_or(0)))
        }
        Some(_) => Err(SqlError::unsupported("LIMIT BY with a locking clause")),
    }
}

/// True when the select list calls an aggregate function (PostgreSQL refuses to lock then).
fn has_aggregate(items: &[ast::SelectItem]) -> bool {
    const AGGREGATES: &[&str] = &[
        "count",
        "sum",
        "avg",
        "min",
        "max",
        "array_agg",
        "string_agg",
        "bool_and",
        "bool_or",
        "every",
        "json_agg",
        "jsonb_agg",
        "json_object_agg",
        "jsonb_object_agg",
        "stddev",
        "variance",
    ];
    /// Found one; how deep in subqueries the visit is (theirs do not count).
    struct Finder(bool, usize);
    impl ast::Visitor for Finder {
        type Break = ();
        fn pre_visit_expr(&mut self, e: &ast::Expr) -> std::ops::ControlFlow<()> {
            if let ast::Expr::Function(f) = e
                && self.1 == 0
                && f.over.is_none()
                && AGGREGATES.contains(&f.name.to_string().to_lowercase().as_str())
            {
                self.0 = true;
                return std::ops::ControlFlow::Break(());
            }
            std::ops::ControlFlow::Continue(())
        }
        fn pre_visit_query(&mut self, _q: &ast::Query) -> std::ops::ControlFlow<()> {
            self.1 += 1;
            std::ops::ControlFlow::Continue(())
        }
        fn post_visit_query(&mut self, _q: &ast::Query) -> std::ops::ControlFlow<()> {
            self.1 -= 1;
            std::ops::ControlFlow::Continue(())
        }
    }
    let mut f = Finder(false, 0);
    for i in items {
        let _ = ast::Visit::visit(i, &mut f);
    }
    f.0
}
