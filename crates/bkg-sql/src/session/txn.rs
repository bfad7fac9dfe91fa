//! Transaction control: BEGIN/COMMIT/ROLLBACK, implicit transactions, statement retries after
//! a row lock wait, and the failed-transaction state.

use super::*;
use crate::SqlState;

impl Session {
    pub(super) fn begin(&mut self, modes: &[ast::TransactionMode]) -> SqlResult<Output> {
        let mut iso = self.default_isolation();
        for m in modes {
            if let ast::TransactionMode::IsolationLevel(l) = m {
                iso = match l {
                    ast::TransactionIsolationLevel::ReadCommitted | ast::TransactionIsolationLevel::ReadUncommitted => {
                        IsolationLevel::ReadCommitted
                    }
                    ast::TransactionIsolationLevel::RepeatableRead | ast::TransactionIsolationLevel::Snapshot => {
                        IsolationLevel::RepeatableRead
                    }
                    ast::TransactionIsolationLevel::Serializable => {
                        return Err(SqlError::unsupported(
                            "SERIALIZABLE isolation (use REPEATABLE READ: snapshot isolation)",
                        ));
                    }
                };
            }
        }
        if self.explicit {
            // PostgreSQL warns and carries on.
            return Ok(Output::Command { tag: "BEGIN".into(), rows: None, txn: Some(TxnEvent::Begin) });
        }
        self.block_settings = Some(self.save_settings());
        if self.implicit_block {
            // BEGIN inside a multi-statement query turns the implicit transaction into a block.
            self.implicit_block = false;
            if let Some(t) = self.txn.lock().as_mut() {
                t.set_isolation(iso);
            }
        } else {
            *self.txn.lock() = Some(self.engine.db.begin(iso));
            self.txn_started = chrono::Utc::now();
        }
        self.explicit = true;
        self.failed = false;
        Ok(Output::Command { tag: "BEGIN".into(), rows: None, txn: Some(TxnEvent::Begin) })
    }

    pub(super) async fn commit(&mut self) -> SqlResult<Output> {
        self.implicit_block = false;
        let txn = self.txn.lock().take();
        let was_failed = self.failed;
        self.explicit = false;
        self.failed = false;
        self.savepoints.clear();
        match txn {
            _ if was_failed => {
                if let Some(t) = txn {
                    t.rollback();
                }
                self.end_block_settings(false);
                self.end_block_cursors(false);
                Ok(Output::Command { tag: "ROLLBACK".into(), rows: None, txn: Some(TxnEvent::Rollback) })
            }
            Some(t) => {
                let r = self.commit_txn(t).await;
                self.end_block_settings(r.is_ok());
                self.end_block_cursors(r.is_ok());
                r?;
                Ok(Output::Command { tag: "COMMIT".into(), rows: None, txn: Some(TxnEvent::Commit) })
            }
            None => {
                self.end_block_settings(true);
                self.end_block_cursors(true);
                Ok(Output::Command { tag: "COMMIT".into(), rows: None, txn: Some(TxnEvent::Commit) })
            }
        }
    }

    /// `SAVEPOINT name`: a point of the block that `ROLLBACK TO` returns to (writes, settings
    /// and row locks taken since). Names may repeat; the newest one is meant.
    pub(super) fn savepoint(&mut self, name: &ast::Ident) -> SqlResult<Output> {
        self.require_block("SAVEPOINT")?;
        let point = self.with_txn(|t| Ok(t.savepoint()))?;
        let settings = self.save_settings();
        let cursors = self.cursors.keys().cloned().collect();
        self.savepoints.push(SavepointEntry { name: crate::ddl::ident_name(name), point, settings, cursors });
        Ok(Output::command("SAVEPOINT"))
    }

    /// `ROLLBACK TO [SAVEPOINT] name`: undoes what the block did since the savepoint, which
    /// stays (later ones are gone), and ends a failed state.
    pub(super) fn rollback_to(&mut self, name: &ast::Ident) -> SqlResult<Output> {
        self.require_block("ROLLBACK TO SAVEPOINT")?;
        let i = self.find_savepoint(name)?;
        for later in self.savepoints.drain(i + 1..).rev() {
            if let Some(t) = self.txn.lock().as_mut() {
                t.release_savepoint(later.point);
            }
        }
        let entry = &self.savepoints[i];
        let settings = entry.settings.clone();
        let keep = entry.cursors.clone();
        self.cursors.retain(|name, _| keep.contains(name));
        {
            let mut g = self.txn.lock();
            let t = g.as_mut().ok_or_else(|| SqlError::internal("a savepoint without its transaction"))?;
            t.rollback_to(&entry.point);
        }
        self.restore_settings(settings);
        self.failed = false;
        Ok(Output::command("ROLLBACK"))
    }

    /// `RELEASE [SAVEPOINT] name`: forgets the savepoint and every later one; what the block
    /// did since stays.
    pub(super) fn release(&mut self, name: &ast::Ident) -> SqlResult<Output> {
        self.require_block("RELEASE SAVEPOINT")?;
        let i = self.find_savepoint(name)?;
        for sp in self.savepoints.drain(i..).rev() {
            if let Some(t) = self.txn.lock().as_mut() {
                t.release_savepoint(sp.point);
            }
        }
        Ok(Output::command("RELEASE"))
    }

    fn find_savepoint(&self, name: &ast::Ident) -> SqlResult<usize> {
        let name = crate::ddl::ident_name(name);
        self.savepoints.iter().rposition(|s| s.name == name).ok_or_else(|| {
            SqlError::new(codes::SAVEPOINT_EXCEPTION_INVALID, format!("savepoint \"{name}\" does not exist"))
        })
    }

    /// Statements that only make sense in a transaction block (25P01 outside one).
    pub(super) fn require_block(&self, what: &str) -> SqlResult<()> {
        if self.explicit {
            Ok(())
        } else {
            Err(SqlError::new(
                codes::NO_ACTIVE_SQL_TRANSACTION,
                format!("{what} can only be used in transaction blocks"),
            ))
        }
    }

    pub(super) fn rollback(&mut self) -> SqlResult<Output> {
        self.implicit_block = false;
        if let Some(t) = self.txn.lock().take() {
            t.rollback();
        }
        self.explicit = false;
        self.failed = false;
        self.savepoints.clear();
        self.end_block_settings(false);
        self.end_block_cursors(false);
        Ok(Output::Command { tag: "ROLLBACK".into(), rows: None, txn: Some(TxnEvent::Rollback) })
    }

    /// Runs a statement inside the open transaction. An UPDATE or DELETE that meets a row
    /// another transaction has locked waits for that transaction to end and runs again: under
    /// READ COMMITTED on a new snapshot, so it acts on the row's newest version (as PostgreSQL
    /// re-checks it); under REPEATABLE READ the rerun fails with 40001 if the other committed.
    pub(super) async fn run_with_retries(&mut self, stmt: Statement) -> SqlResult<Output> {
        let restartable = match &stmt {
            Statement::Update(_) | Statement::Delete(_) | Statement::Insert(_) => true,
            Statement::Query(q) => !q.locks.is_empty(),
            _ => false,
        };
        let mut stmt = stmt;
        let mut attempts = 0u32;
        loop {
            let again = restartable.then(|| stmt.clone());
            let err = match Box::pin(self.run_in_txn(stmt)).await {
                Ok(out) => return Ok(out),
                Err(e) => e,
            };
            let read_committed =
                self.txn.lock().as_ref().is_some_and(|t| t.isolation() == IsolationLevel::ReadCommitted);
            match err.retry {
                Some(Retry::LockWait(table, rowid, holder)) => {
                    let me = self.with_txn(|t| Ok(t.id()))?;
                    let timeout = self
                        .vars
                        .get("lock_timeout")
                        .and_then(|v| parse_duration_ms(v))
                        .filter(|ms| *ms > 0)
                        .map(Duration::from_millis);
                    self.engine.db.wait_for_row_lock(me, (table, rowid, holder), timeout).await?;
                }
                Some(Retry::Conflict) if read_committed && again.is_some() => {}
                _ => return Err(err),
            }
            attempts += 1;
            let Some(next) = again.filter(|_| attempts < 1000) else {
                return Err(SqlError::new(
                    SqlState::SerializationFailure,
                    "could not serialize access due to concurrent update",
                ));
            };
            // The rerun starts from the write set as it was before the statement.
            self.with_txn(|t| {
                t.rollback_statement();
                Ok(())
            })?;
            self.statement_start();
            stmt = next;
        }
    }

    /// Runs a statement inside the open transaction. A query has its own `sql.plan` and
    /// `sql.execute` spans; any other statement runs in one `sql.execute` span.
    pub(super) async fn run_in_txn(&mut self, stmt: Statement) -> SqlResult<Output> {
        self.sync_view();
        if let Statement::Query(q) = stmt {
            if q.locks.is_empty() {
                return self.query(Statement::Query(q)).await;
            }
            let span = tracing::debug_span!(target: crate::telemetry::SPAN_TARGET, "sql.execute");
            // Boxed, as the future of a rare statement: see `dispatch`.
            return crate::in_span!(span, Box::pin(self.locking_select(*q)));
        }
        if matches!(stmt, Statement::Explain { .. }) {
            return self.query(stmt).await;
        }
        let span = tracing::debug_span!(target: crate::telemetry::SPAN_TARGET, "sql.execute");
        crate::in_span!(span, self.run_command(stmt))
    }

    /// Runs a statement other than a query inside the open transaction.
    async fn run_command(&mut self, stmt: Statement) -> SqlResult<Output> {
        match stmt {
            Statement::Insert(ins) => crate::dml::insert(self, ins).await,
            Statement::Update(upd) => crate::dml::update(self, upd).await,
            Statement::Delete(del) => crate::dml::delete(self, del).await,
            ref ddl if self.scopes.as_ref().is_some_and(|s| !s.admin) && is_schema_change(ddl) => {
                Err(SqlError::new(codes::INSUFFICIENT_PRIVILEGE, "the token's scopes do not allow schema changes")
                    .with_hint("It needs the scope admin."))
            }
            ref s if is_ddl(s) => {
                let event = Audited::of(s);
                let out = crate::ddl::execute(self, stmt).await?;
                event.record(self, out)
            }
            ref s if is_role_statement(s) => {
                let event = Audited::of(s);
                let out = crate::roles::execute(self, stmt).await?;
                event.record(self, out)
            }
            ref s if is_policy_statement(s) => crate::policy::execute(self, stmt),
            ref s if crate::publication::is_publication_statement(s) => {
                let event = Audited::of(s);
                let out = crate::publication::execute(self, stmt)?;
                event.record(self, out)
            }
            Statement::Copy { .. } => Err(SqlError::unsupported("COPY in this context")),
            other => {
                let text = other.to_string();
                let word = text.split_whitespace().take(2).collect::<Vec<_>>().join(" ");
                Err(SqlError::unsupported(format!("statement \"{word}\"")))
            }
        }
    }

    /// Opens a read transaction used only for planning (describe).
    pub(crate) fn begin_internal(&mut self) {
        let iso = self.default_isolation();
        *self.txn.lock() = Some(self.engine.db.begin(iso));
    }

    /// Commits the transaction opened by [`begin_internal`](Self::begin_internal).
    pub(crate) async fn commit_internal(&mut self) -> SqlResult<()> {
        let txn = self.txn.lock().take();
        if let Some(t) = txn {
            self.commit_txn(t).await?;
        }
        Ok(())
    }

    /// A statement of an explicit transaction starts (READ COMMITTED takes a new snapshot).
    pub(crate) fn statement_start(&mut self) {
        if let Some(t) = self.txn.lock().as_mut() {
            t.statement_start();
        }
    }

    /// An error inside an explicit transaction block fails the block.
    pub(crate) fn mark_failed(&mut self) {
        self.drop_pending_settings();
        if self.explicit {
            self.failed = true;
        }
    }

    pub(crate) fn end_internal(&mut self) {
        if let Some(t) = self.txn.lock().take() {
            t.rollback();
        }
    }

    /// Points the planner at the transaction's catalog.
    pub fn sync_view(&mut self) {
        if let Some(t) = self.txn.lock().as_ref() {
            self.view.set(t.catalog().clone());
        }
    }

    /// Commits the open transaction without shipping its audit events: what a crash right after
    /// the commit leaves behind.
    #[cfg(test)]
    pub(crate) async fn commit_unshipped(&mut self) -> SqlResult<()> {
        let t = self.txn.lock().take().ok_or_else(|| SqlError::internal("no transaction is open"))?;
        self.explicit = false;
        self.audit_pending = false;
        t.commit().await?;
        Ok(())
    }

    /// Runs `f` on the open transaction.
    pub fn with_txn<R>(&self, f: impl FnOnce(&mut Transaction) -> SqlResult<R>) -> SqlResult<R> {
        let mut g = self.txn.lock();
        let t = g.as_mut().ok_or_else(|| SqlError::internal("no transaction is open"))?;
        let r = f(t);
        drop(g);
        r
    }

    /// A DataFusion state for one statement, bound to the transaction.
    pub fn statement_state(&self) -> SessionState {
        let mut state = self.state.clone();
        let security = Arc::new(self.security());
        state.config_mut().set_extension(Arc::new(ScanContext { txn: self.txn.clone(), security }));
        // now() and friends give the transaction's start time, as in PostgreSQL.
        state.mark_start_execution();
        state.execution_props_mut().query_execution_start_time = Some(self.txn_started);
        *self.view.planner.write() = Some(state.clone());
        state
    }

    /// Opens the transaction a statement runs in: its own when no block is open (returns true:
    /// the caller ends it), else the block's, where READ COMMITTED takes a new snapshot.
    pub(super) fn start_statement(&mut self) -> bool {
        let implicit = !self.explicit && !self.implicit_block;
        if self.implicit_block && self.txn.lock().is_none() {
            self.begin_internal();
        }
        if implicit {
            let iso = self.default_isolation();
            *self.txn.lock() = Some(self.engine.db.begin(iso));
            self.txn_started = chrono::Utc::now();
        } else if let Some(t) = self.txn.lock().as_mut() {
            t.statement_start();
        }
        implicit
    }
}

/// The audit event of a schema-changing statement, taken before it runs (it consumes the
/// statement) and recorded in its transaction when it succeeded.
struct Audited {
    action: String,
    object: String,
    detail: serde_json::Value,
}

impl Audited {
    fn of(stmt: &Statement) -> Audited {
        let (action, object) = crate::audit::statement_event(stmt);
        Audited { action, object, detail: crate::audit::statement_detail(&stmt.to_string()) }
    }

    fn record(self, session: &mut Session, out: Output) -> SqlResult<Output> {
        session.audit(&self.action, &self.object, self.detail)?;
        Ok(out)
    }
}

/// DDL, role, privilege, policy and publication statements: what only an `admin` scope may run.
fn is_schema_change(stmt: &Statement) -> bool {
    is_ddl(stmt)
        || is_role_statement(stmt)
        || is_policy_statement(stmt)
        || crate::publication::is_publication_statement(stmt)
}

/// Statements `crate::ddl` runs.
fn is_ddl(stmt: &Statement) -> bool {
    matches!(
        stmt,
        Statement::CreateTable(_)
            | Statement::CreateSchema { .. }
            | Statement::Drop { .. }
            | Statement::AlterTable(_)
            | Statement::AlterSchema(_)
            | Statement::CreateIndex(_)
            | Statement::CreateView(_)
            | Statement::Truncate(_)
    )
}

/// Statements `crate::roles` runs.
fn is_role_statement(stmt: &Statement) -> bool {
    matches!(stmt, Statement::CreateRole(_) | Statement::AlterRole { .. } | Statement::Grant(_) | Statement::Revoke(_))
}

/// Statements `crate::policy` runs.
fn is_policy_statement(stmt: &Statement) -> bool {
    matches!(stmt, Statement::CreatePolicy(_) | Statement::AlterPolicy(_) | Statement::DropPolicy(_))
}
