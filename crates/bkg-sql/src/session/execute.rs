//! Running SQL text: parsing (with its limits), the statement dispatch, errors and CHECKPOINT.

use super::*;
use crate::SqlState;
use crate::limits::{EXPR_DEPTH_MAX, SQL_TEXT_BYTES_MAX};

impl Session {
    /// Parses SQL text into statements (PostgreSQL dialect).
    pub fn parse(sql: &str) -> SqlResult<Vec<Statement>> {
        if sql.len() > SQL_TEXT_BYTES_MAX {
            return Err(SqlError::new(
                SqlState::ProgramLimitExceeded,
                format!("statement text of {} bytes exceeds the limit of {SQL_TEXT_BYTES_MAX}", sql.len()),
            ));
        }
        let parse = |text: &str| {
            Parser::new(&PostgreSqlDialect {}).with_recursion_limit(200).try_with_sql(text)?.parse_statements()
        };
        let (role_text, from_user) = match crate::roles::rewrite_role_statements(sql) {
            Some((text, from_user)) => (Some(text), from_user),
            None => (None, vec![]),
        };
        let sql = role_text.as_deref().unwrap_or(sql);
        let publication_text = crate::publication::rewrite(sql);
        let sql = publication_text.as_deref().unwrap_or(sql);
        let mut stmts = match parse(sql) {
            Ok(s) => s,
            Err(e) => match compat_rewrite(sql) {
                // Forms the parser does not know but clients send (pgbench, pg_dump).
                Some(rewritten) => parse(&rewritten).map_err(|_| e)?,
                None => return Err(e.into()),
            },
        };
        // CREATE USER is CREATE ROLE with LOGIN unless it says otherwise.
        let mut from_user = from_user.into_iter();
        for s in stmts.iter_mut() {
            if let Statement::CreateRole(cr) = s
                && from_user.next().unwrap_or(false)
                && cr.login.is_none()
            {
                cr.login = Some(true);
            }
        }
        for s in &stmts {
            check_depth(s)?;
        }
        Ok(stmts)
    }

    /// Runs every statement of `sql`; stops at the first error, which is the last element.
    pub async fn execute(&mut self, sql: &str) -> Vec<SqlResult<Output>> {
        self.end_interrupted_block();
        if is_checkpoint(sql) {
            return vec![self.checkpoint().await];
        }
        let parsed = {
            let _span = tracing::debug_span!(target: crate::telemetry::SPAN_TARGET, "sql.parse").entered();
            Session::parse(sql)
        };
        let stmts = match parsed {
            Ok(s) => s,
            Err(e) => {
                if self.explicit {
                    self.failed = true;
                }
                return vec![Err(e)];
            }
        };
        // Several statements outside a transaction block run as one implicit transaction, as in
        // PostgreSQL: an error rolls all of them back.
        let block = stmts.len() > 1 && !self.explicit;
        if block {
            self.begin_internal();
            self.txn_started = chrono::Utc::now();
            self.implicit_block = true;
        }
        let mut out = Vec::with_capacity(stmts.len());
        let mut failed = false;
        for stmt in stmts {
            let r = self.run_statement(stmt).await;
            failed = r.is_err();
            out.push(r);
            if failed {
                break;
            }
        }
        if block && self.implicit_block {
            self.implicit_block = false;
            if !self.explicit {
                let txn = self.txn.lock().take();
                if let Some(t) = txn {
                    if failed {
                        t.rollback();
                    } else if let Err(e) = self.commit_txn(t).await {
                        out.push(Err(e));
                    }
                }
            }
        }
        out
    }

    /// Runs one SQL text that must hold exactly one statement.
    pub async fn execute_one(&mut self, sql: &str) -> SqlResult<Output> {
        if is_checkpoint(sql) {
            return self.checkpoint().await;
        }
        let mut stmts = {
            let _span = tracing::debug_span!(target: crate::telemetry::SPAN_TARGET, "sql.parse").entered();
            Session::parse(sql)?
        };
        match stmts.len() {
            1 => self.execute_statement(stmts.remove(0)).await,
            0 => Ok(Output::command("")),
            _ => Err(SqlError::syntax("cannot insert multiple commands into a prepared statement")),
        }
    }

    /// Runs SQL text holding one statement, with `$n` bound to `params` (SQL expressions, bound
    /// after parsing, so no value can change the statement's structure).
    pub async fn execute_with_params(&mut self, sql: &str, params: &[ast::Expr]) -> SqlResult<Output> {
        let mut stmts = Session::parse(sql)?;
        if stmts.len() != 1 {
            return Err(SqlError::internal("a statement with parameters must be one statement"));
        }
        let mut stmt = stmts.remove(0);
        crate::describe::bind_params(&mut stmt, params)?;
        Box::pin(self.execute_statement(stmt)).await
    }

    pub async fn execute_statement(&mut self, stmt: Statement) -> SqlResult<Output> {
        self.end_interrupted_block();
        self.run_statement(stmt).await
    }

    /// Runs one statement in whatever block is open (no check for an interrupted one).
    pub(super) async fn run_statement(&mut self, stmt: Statement) -> SqlResult<Output> {
        self.apply_pending_settings();
        self.last_active = std::time::Instant::now();
        let r = self.execute_statement_inner(stmt).await;
        self.last_active = std::time::Instant::now();
        r
    }

    /// `CHECKPOINT`: writes the column snapshots now (the parser does not know the statement).
    pub(super) async fn checkpoint(&mut self) -> SqlResult<Output> {
        if self.failed {
            return Err(SqlError::new(
                codes::IN_FAILED_TRANSACTION,
                "current transaction is aborted, commands ignored until end of transaction block",
            ));
        }
        // A checkpoint rewrites every table: PostgreSQL 15 keeps it to superusers (and
        // pg_checkpoint, a role this server does not have).
        if !self.is_superuser() {
            return Err(SqlError::new(
                codes::INSUFFICIENT_PRIVILEGE,
                "must be superuser or have privileges of pg_checkpoint to do CHECKPOINT",
            ));
        }
        let db = self.engine.db.clone();
        tokio::task::spawn_blocking(move || db.checkpoint())
            .await
            .map_err(|e| SqlError::internal(format!("checkpoint task: {e}")))??;
        Ok(Output::command("CHECKPOINT"))
    }

    pub(super) fn on_error(&mut self) {
        self.drop_pending_settings();
        if self.explicit {
            self.failed = true;
            // Nothing of it can commit any more: give its row locks and snapshot back now,
            // unless a savepoint can still bring it back (ROLLBACK TO undoes the failed
            // statement's writes with everything else since the savepoint).
            if self.savepoints.is_empty()
                && let Some(t) = self.txn.lock().take()
            {
                t.rollback();
            }
        } else if self.implicit_block {
            // The whole block is rolled back at its end.
        } else if let Some(t) = self.txn.lock().take() {
            t.rollback();
        }
    }

    pub(super) async fn execute_statement_inner(&mut self, stmt: Statement) -> SqlResult<Output> {
        let r = self.dispatch(stmt).await;
        // Every error inside a block fails it, as in PostgreSQL (SET, SHOW and the savepoint
        // statements included), until ROLLBACK or ROLLBACK TO a savepoint.
        if r.is_err() && self.explicit && !self.failed {
            self.on_error();
        }
        r
    }

    async fn dispatch(&mut self, stmt: Statement) -> SqlResult<Output> {
        match stmt {
            Statement::StartTransaction { modes, .. } => self.begin(&modes),
            Statement::Commit { chain, .. } => {
                if chain {
                    return Err(SqlError::unsupported("COMMIT AND CHAIN"));
                }
                self.commit().await
            }
            Statement::Rollback { savepoint: Some(name), chain: false } => self.rollback_to(&name),
            Statement::Rollback { chain: true, .. } => Err(SqlError::unsupported("ROLLBACK AND CHAIN")),
            Statement::Rollback { savepoint: None, .. } => self.rollback(),
            _ if self.failed => Err(SqlError::new(
                codes::IN_FAILED_TRANSACTION,
                "current transaction is aborted, commands ignored until end of transaction block",
            )),
            Statement::Savepoint { name } => self.savepoint(&name),
            Statement::ReleaseSavepoint { name } => self.release(&name),
            // Boxed: rare statements whose futures would otherwise enlarge every statement's.
            Statement::Declare { stmts } => Box::pin(self.declare_cursor(stmts)).await,
            Statement::Fetch { name, direction, into, .. } => {
                Box::pin(self.fetch_cursor(&name, &direction, into.as_ref())).await
            }
            Statement::Close { cursor } => self.close_cursor(&cursor),
            Statement::Copy { .. } => {
                let (timeout, cancel) = (self.statement_timeout(), self.cancel.clone());
                let r = interruptible(timeout, cancel, self.copy(stmt)).await;
                if r.is_err() {
                    self.on_error();
                }
                r
            }
            Statement::Set(set) => self.set(set),
            Statement::ShowVariable { variable } => self.show(&variable),
            Statement::Reset(r) => {
                match r.reset {
                    ast::Reset::ALL => self.reset_all()?,
                    ast::Reset::ConfigurationParameter(name) if name.to_string().eq_ignore_ascii_case("role") => {
                        self.set_role(None)?;
                    }
                    ast::Reset::ConfigurationParameter(name)
                        if name.to_string().to_lowercase().starts_with("request.jwt") =>
                    {
                        self.set_claims_setting(&name.to_string().to_lowercase(), None)?;
                    }
                    ast::Reset::ConfigurationParameter(name) => {
                        let key = name.to_string().to_lowercase();
                        match default_vars(&self.engine).get(&key) {
                            Some(v) => {
                                self.vars.insert(key, v.clone());
                            }
                            None => {
                                self.vars.remove(&key);
                            }
                        }
                    }
                }
                self.apply_search_path();
                Ok(Output::command("RESET"))
            }
            Statement::Discard { object_type } => {
                let tag = format!("DISCARD {}", object_type.to_string().to_uppercase());
                if object_type == ast::DiscardObject::ALL {
                    self.discard_all()?;
                }
                // PLANS, SEQUENCES, TEMP: this server caches no plans across statements, keeps
                // no sequence state per session and has no temporary tables.
                Ok(Output::command(&tag))
            }
            // Protocol-level prepared statements are dropped by the front door; nothing to do here.
            Statement::Deallocate { name, .. } => Ok(Output::command(if name.value.eq_ignore_ascii_case("all") {
                "DEALLOCATE ALL"
            } else {
                "DEALLOCATE"
            })),
            Statement::Vacuum(_) => {
                // One VACUUM here collects old versions of every table, so only a superuser
                // may ask for it (it also runs at every checkpoint).
                if !self.is_superuser() {
                    return Err(SqlError::new(codes::INSUFFICIENT_PRIVILEGE, "must be superuser to VACUUM")
                        .with_hint("Old row versions are collected at every checkpoint."));
                }
                self.engine.db.vacuum();
                Ok(Output::command("VACUUM"))
            }
            Statement::Analyze(_) => Ok(Output::command("ANALYZE")),
            other => {
                let implicit = self.start_statement();
                // The statement may be interrupted; the commit of its own transaction below
                // may not (once it reached the WAL it is done, and is reported so).
                let (timeout, cancel) = (self.statement_timeout(), self.cancel.clone());
                let r = interruptible(timeout, cancel, self.run_with_retries(other)).await;
                match (r, implicit) {
                    (Ok(out), true) => {
                        let txn = self.txn.lock().take();
                        if let Some(t) = txn {
                            self.commit_txn(t).await?;
                        }
                        Ok(out)
                    }
                    (Ok(out), false) => Ok(out),
                    (Err(e), _) => {
                        self.on_error();
                        Err(e)
                    }
                }
            }
        }
    }
}

/// Rewrites statement forms PostgreSQL accepts that the parser does not, keeping their meaning:
/// `COPY ... WITH (FREEZE ON)`, `VACUUM ANALYZE t` / `VACUUM (options) t` and `ABORT`
/// (ROLLBACK).
fn compat_rewrite(sql: &str) -> Option<String> {
    let original = sql;
    static ABORT: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(r"(?i)^\s*abort(\s+(work|transaction))?(\s+and\s+(no\s+)?chain)?\s*;?\s*$")
            .expect("valid regex")
    });
    if let Some(c) = ABORT.captures(sql) {
        return Some(format!("ROLLBACK{}", c.get(3).map(|m| m.as_str()).unwrap_or_default()));
    }
    // MOVE is FETCH without the rows (the parser knows only FETCH; see `cursors`).
    static MOVE: std::sync::LazyLock<regex::Regex> =
        std::sync::LazyLock::new(|| regex::Regex::new(r#"(?is)^\s*move\s+(.*?)\s*;?\s*$"#).expect("valid regex"));
    if let Some(c) = MOVE.captures(sql) {
        return Some(format!("FETCH {} INTO {}", &c[1], super::cursors::MOVE_MARKER));
    }
    // SET CONSTRAINTS: every constraint is checked at the end of its statement here (DEFERRABLE
    // ones too), so the statement only records what was asked, until the block ends.
    static SET_CONSTRAINTS: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(r#"(?i)^\s*set\s+constraints\s+([\w.", ]+?)\s+(immediate|deferred)\s*;?\s*$"#)
            .expect("valid regex")
    });
    if let Some(c) = SET_CONSTRAINTS.captures(sql) {
        let what = format!("{} {}", &c[1], c[2].to_lowercase()).replace('\'', "");
        return Some(format!("SET LOCAL bkg.set_constraints = '{what}'"));
    }
    // The parser knows FOR UPDATE and FOR SHARE with one OF name; every mode takes the same
    // lock here (see `locking`), so the weaker forms are spelled as those.
    static LOCK_MODE: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(r"(?i)\bfor\s+(no\s+key\s+update|key\s+share)\b").expect("valid regex")
    });
    static LOCK_OF: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(
            r#"(?i)\bfor\s+(update|share)\s+of\s+((?:[\w."]+)(?:\s*,\s*[\w."]+)+)(\s+nowait|\s+skip\s+locked)?"#,
        )
        .expect("valid regex")
    });
    let sql =
        &LOCK_MODE.replace_all(
            sql,
            |c: &regex::Captures| {
                if c[1].to_lowercase().starts_with("no") { "FOR UPDATE" } else { "FOR SHARE" }
            },
        );
    let sql = &LOCK_OF.replace_all(sql, |c: &regex::Captures| {
        let tail = c.get(3).map(|m| m.as_str()).unwrap_or_default();
        c[2].split(',').map(|n| format!("FOR {} OF {}{tail}", &c[1], n.trim())).collect::<Vec<_>>().join(" ")
    });
    static FREEZE: std::sync::LazyLock<regex::Regex> =
        std::sync::LazyLock::new(|| regex::Regex::new(r"(?i)\bfreeze\s+(on|off)\b").expect("valid regex"));
    static VACUUM: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(r"(?i)^\s*vacuum\s+(\([^)]*\)\s*|(full|freeze|verbose|analyze)\s+)*").expect("valid regex")
    });
    let mut out = FREEZE
        .replace_all(
            sql,
            |c: &regex::Captures| if c[1].eq_ignore_ascii_case("on") { "freeze true" } else { "freeze false" },
        )
        .into_owned();
    if VACUUM.is_match(&out) {
        out = VACUUM.replace(&out, "VACUUM ").into_owned();
    }
    (out != original).then_some(out)
}

fn is_checkpoint(sql: &str) -> bool {
    sql.trim().trim_end_matches(';').trim().eq_ignore_ascii_case("checkpoint")
}

/// Refuses statements whose expressions nest deeper than [`EXPR_DEPTH_MAX`] (planning walks them
/// recursively, and the time it takes grows with the depth), and locking clauses (`FOR UPDATE`
/// …) anywhere but on a top-level SELECT, which alone takes row locks (see `locking`).
fn check_depth(stmt: &Statement) -> SqlResult<()> {
    struct Depth {
        now: usize,
        max: usize,
        /// Queries entered so far (the first of a top-level SELECT is the statement itself).
        queries: usize,
        /// A nested query with a locking clause was found.
        nested_lock: bool,
    }
    impl ast::Visitor for Depth {
        type Break = ();
        fn pre_visit_query(&mut self, q: &ast::Query) -> std::ops::ControlFlow<()> {
            self.queries += 1;
            if !q.locks.is_empty() && self.queries > 1 {
                self.nested_lock = true;
                return std::ops::ControlFlow::Break(());
            }
            std::ops::ControlFlow::Continue(())
        }
        fn pre_visit_expr(&mut self, _e: &ast::Expr) -> std::ops::ControlFlow<()> {
            self.now += 1;
            self.max = self.max.max(self.now);
            if self.now > EXPR_DEPTH_MAX {
                std::ops::ControlFlow::Break(())
            } else {
                std::ops::ControlFlow::Continue(())
            }
        }
        fn post_visit_expr(&mut self, _e: &ast::Expr) -> std::ops::ControlFlow<()> {
            self.now -= 1;
            std::ops::ControlFlow::Continue(())
        }
    }
    // A top-level SELECT's own query is the first one visited; in any other statement every
    // query is nested.
    let top = usize::from(matches!(stmt, Statement::Query(_)));
    let mut d = Depth { now: 0, max: 0, queries: 1 - top, nested_lock: false };
    if ast::Visit::visit(stmt, &mut d).is_break() {
        if d.nested_lock {
            // Ignoring the clause would let NOWAIT wait and SKIP LOCKED hand out locked rows.
            return Err(SqlError::unsupported("FOR UPDATE/FOR SHARE in a subquery").with_hint(
                "Lock the rows with a top-level SELECT … FOR UPDATE in the transaction first; UPDATE and DELETE lock the rows they change.",
            ));
        }
        return Err(SqlError::new(
            SqlState::StatementTooComplex,
            format!("statement is too deeply nested (expression depth over {EXPR_DEPTH_MAX})"),
        )
        .with_hint("Split long chains of operators, e.g. use IN (...) instead of many ORs."));
    }
    Ok(())
}
