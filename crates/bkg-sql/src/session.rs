//! Engine (shared) and Session (one per connection).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bkg_kernel::{Database, IsolationLevel, Options, RecoveryInfo, Transaction};
use datafusion::arrow::array::{RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType as ArrowType, Field, Schema, SchemaRef};
use datafusion::common::config::Dialect;
use datafusion::execution::SessionState;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::context::SQLOptions;
use datafusion::execution::memory_pool::FairSpillPool;
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::prelude::SessionConfig;
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::{self, Statement};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;
use parking_lot::Mutex;

use super::provider::{BkgCatalogList, CatalogView, DATABASE_NAME, ScanContext};
use crate::error::{Retry, SqlError, SqlResult, codes};

/// Engine-wide settings.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Memory all queries together may use for operators that buffer (joins, sorts, aggregates).
    pub query_memory_bytes_max: usize,
    pub target_partitions: usize,
    pub server_version: String,
    /// Defaults of `idle_in_transaction_session_timeout` and `idle_session_timeout` (ms, 0 = off).
    pub idle_in_transaction_timeout_ms: u64,
    pub idle_session_timeout_ms: u64,
    /// Where COPY … TO '<url>' and /export may write.
    pub export: super::export::ExportConfig,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            query_memory_bytes_max: 4 << 30,
            target_partitions: 2,
            server_version: "16.6".into(),
            idle_in_transaction_timeout_ms: 0,
            idle_session_timeout_ms: 0,
            export: Default::default(),
        }
    }
}

/// What is shared by all sessions: the database and DataFusion's runtime (memory pool).
pub struct Engine {
    /// The kernel. Front doors reach it only through the methods below and through sessions.
    pub(crate) db: Database,
    pub config: EngineConfig,
    runtime: Arc<RuntimeEnv>,
    pub recovery: RecoveryInfo,
    /// Point queries answered by the fast path (see [`super::fast_path`]).
    pub fast_path_queries: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("db", &self.db).finish()
    }
}

impl Engine {
    /// The current catalog (an immutable snapshot of it).
    pub fn catalog(&self) -> Arc<bkg_kernel::Catalog> {
        self.db.catalog()
    }

    /// The data directory.
    pub fn data_dir(&self) -> &std::path::Path {
        self.db.dir()
    }

    /// The last checkpoint written, if any.
    pub fn last_checkpoint(&self) -> Option<bkg_kernel::CheckpointInfo> {
        self.db.last_checkpoint()
    }

    /// The kernel's counters (versions, snapshots, WAL, GC horizon).
    pub fn stats(&self) -> bkg_kernel::DbStats {
        self.db.stats()
    }

    /// The kernel itself, for the binary's maintenance (the checkpoint loop, shutdown) and for
    /// tests. Front doors go through sessions and the methods above.
    pub fn kernel(&self) -> &Database {
        &self.db
    }

    pub fn open(opts: Options, config: EngineConfig) -> SqlResult<Arc<Engine>> {
        let (db, recovery) = Database::open(opts)?;
        Engine::with_database(db, recovery, config)
    }

    pub fn with_database(db: Database, recovery: RecoveryInfo, config: EngineConfig) -> SqlResult<Arc<Engine>> {
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_pool(Arc::new(FairSpillPool::new(config.query_memory_bytes_max)))
            .build_arc()?;
        Ok(Arc::new(Engine { db, config, runtime, recovery, fast_path_queries: Default::default() }))
    }

    pub fn session(self: &Arc<Self>, user: &str) -> Session {
        Session::new(self.clone(), user)
    }
}

/// Transaction state changes, for protocols that report them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnEvent {
    Begin,
    Commit,
    Rollback,
}

/// The result of one statement.
#[derive(Debug)]
pub enum Output {
    Rows {
        schema: SchemaRef,
        batches: Vec<RecordBatch>,
        tag: String,
    },
    Command {
        tag: String,
        rows: Option<u64>,
        txn: Option<TxnEvent>,
    },
    /// COPY FROM STDIN started: the client sends data next.
    CopyIn {
        columns: usize,
    },
    /// COPY TO STDOUT: the rows to send.
    CopyOut {
        schema: SchemaRef,
        batches: Vec<RecordBatch>,
        opts: super::copy::CopyOptions,
    },
}

impl Output {
    pub fn command(tag: &str) -> Output {
        Output::Command { tag: tag.to_string(), rows: None, txn: None }
    }
    pub fn count(tag: &str, rows: u64) -> Output {
        Output::Command { tag: tag.to_string(), rows: Some(rows), txn: None }
    }
    /// The command tag as PostgreSQL prints it (`INSERT 0 3`, `SELECT 2`, `BEGIN`).
    pub fn tag_text(&self) -> String {
        match self {
            Output::Rows { tag, batches, .. } => {
                let n: usize = batches.iter().map(|b| b.num_rows()).sum();
                if tag == "SELECT" { format!("SELECT {n}") } else { format!("{tag} {n}") }
            }
            Output::Command { tag, rows: Some(n), .. } if tag == "INSERT" => format!("INSERT 0 {n}"),
            Output::Command { tag, rows: Some(n), .. } => format!("{tag} {n}"),
            Output::Command { tag, .. } => tag.clone(),
            Output::CopyIn { .. } => "COPY".into(),
            Output::CopyOut { batches, .. } => format!("COPY {}", batches.iter().map(|b| b.num_rows()).sum::<usize>()),
        }
    }
}

/// Cancel requests for one session's running statement (a pgwire CancelRequest). A request
/// interrupts the statement that is running when it arrives, never one that starts later, and
/// never a COMMIT: a statement is interrupted at its awaits, and a commit is not interruptible.
#[derive(Debug, Default)]
pub struct CancelSignal {
    requests: std::sync::atomic::AtomicU64,
    notify: tokio::sync::Notify,
}

impl CancelSignal {
    /// Asks the running statement to stop.
    pub fn cancel(&self) {
        self.requests.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    fn seen(&self) -> u64 {
        self.requests.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Resolves once a request newer than `seen` arrives.
    async fn requested_after(&self, seen: u64) {
        loop {
            let notified = self.notify.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            if self.seen() > seen {
                return;
            }
            notified.await;
        }
    }
}

/// Runs a statement's work (never its commit) until it ends, `timeout` passes or a cancel
/// request arrives; the last two drop the work and answer 57014, as PostgreSQL does.
async fn interruptible<T>(
    timeout: Option<Duration>,
    cancel: Arc<CancelSignal>,
    work: impl std::future::Future<Output = SqlResult<T>>,
) -> SqlResult<T> {
    let seen = cancel.seen();
    let expired = async {
        match timeout {
            Some(t) => tokio::time::sleep(t).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        r = work => r,
        () = expired => Err(SqlError::new(codes::QUERY_CANCELED, "canceling statement due to statement timeout")),
        () = cancel.requested_after(seen) => {
            Err(SqlError::new(codes::QUERY_CANCELED, "canceling statement due to user request"))
        }
    }
}

/// One connection's state.
pub struct Session {
    pub engine: Arc<Engine>,
    /// The role that logged in (`session_user`).
    pub user: String,
    /// Oid of the logged-in role; [`NO_ROLE`] when the name is not a role.
    pub(crate) session_role: u64,
    /// Oid of the role privileges are checked against (`current_user`; changed by SET ROLE).
    pub(crate) role: u64,
    state: SessionState,
    view: Arc<CatalogView>,
    txn: Arc<Mutex<Option<Transaction>>>,
    explicit: bool,
    /// When the last statement started or ended (for the idle timeouts).
    last_active: std::time::Instant,
    /// Inside a multi-statement simple query run as one implicit transaction.
    implicit_block: bool,
    failed: bool,
    pub(crate) pending_copy: Option<super::copy::PendingCopy>,
    pub(crate) info: Arc<super::pg_catalog::SessionInfo>,
    txn_started: chrono::DateTime<chrono::Utc>,
    pub vars: BTreeMap<String, String>,
    /// The running UPDATE/DELETE's target, for the row-level security of its row-selecting scan.
    pub(crate) dml_target: Option<(u64, bkg_kernel::PolicyCommand)>,
    /// The session logged in with a JWT: its principal is fixed (no SET ROLE, no claims change).
    jwt_login: bool,
    /// The scopes of the principal's token (`None`: not limited by scopes).
    scopes: Option<Arc<super::policy::Scopes>>,
    /// Cancel requests for the running statement.
    cancel: Arc<CancelSignal>,
}

impl Drop for Session {
    fn drop(&mut self) {
        // Break the view -> state -> catalog list -> view cycle.
        *self.view.planner.write() = None;
        if let Some(t) = self.txn.lock().take() {
            t.rollback();
        }
    }
}

/// The role oid of a session whose user name is not a role: it holds only what PUBLIC holds.
pub const NO_ROLE: u64 = u64::MAX;

fn default_vars(engine: &Engine) -> BTreeMap<String, String> {
    let mut v = BTreeMap::new();
    for (k, val) in [
        ("search_path", "\"$user\", public"),
        ("statement_timeout", "0"),
        ("client_encoding", "UTF8"),
        ("server_encoding", "UTF8"),
        ("datestyle", "ISO, MDY"),
        ("timezone", "UTC"),
        ("application_name", ""),
        ("default_transaction_isolation", "read committed"),
        ("extra_float_digits", "1"),
        ("standard_conforming_strings", "on"),
        ("integer_datetimes", "on"),
        ("intervalstyle", "postgres"),
        ("transaction_isolation", "read committed"),
        ("max_identifier_length", "63"),
        ("role", "none"),
    ] {
        v.insert(k.to_string(), val.to_string());
    }
    v.insert("server_version".into(), engine.config.server_version.clone());
    v.insert("idle_in_transaction_session_timeout".into(), engine.config.idle_in_transaction_timeout_ms.to_string());
    v.insert("idle_session_timeout".into(), engine.config.idle_session_timeout_ms.to_string());
    v
}

impl Session {
    pub fn new(engine: Arc<Engine>, user: &str) -> Session {
        let view = CatalogView::new(engine.db.catalog());
        let mut config = SessionConfig::new()
            .with_default_catalog_and_schema(DATABASE_NAME, "public")
            .with_create_default_catalog_and_schema(false)
            .with_information_schema(true)
            .with_target_partitions(engine.config.target_partitions);
        {
            let o = config.options_mut();
            o.sql_parser.dialect = Dialect::PostgreSQL;
            o.sql_parser.map_string_types_to_utf8view = false;
            o.execution.time_zone = Some("+00:00".into());
            o.execution.parquet.schema_force_view_types = false;
        }
        let state = SessionStateBuilder::new()
            .with_config(config)
            .with_runtime_env(engine.runtime.clone())
            .with_default_features()
            .with_catalog_list(Arc::new(BkgCatalogList { view: view.clone(), db: engine.db.clone() }))
            .build();
        let vars = default_vars(&engine);
        static NEXT_PID: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(1000);
        let role = engine.db.catalog().find_role(user).map(|r| r.oid).unwrap_or(NO_ROLE);
        let info = Arc::new(super::pg_catalog::SessionInfo {
            user: parking_lot::RwLock::new(user.to_string()),
            session_user: parking_lot::RwLock::new(user.to_string()),
            schema: parking_lot::RwLock::new("public".into()),
            backend_pid: NEXT_PID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            claims: parking_lot::RwLock::new(None),
        });
        let mut state = state;
        state.add_analyzer_rule(Arc::new(super::pg_semantics::CheckedIntegerArithmetic::default()));
        for f in super::pg_catalog::functions(view.clone(), info.clone(), &engine.config.server_version)
            .into_iter()
            .chain(super::json::functions())
        {
            let _ = datafusion::execution::FunctionRegistry::register_udf(&mut state, Arc::new(f));
        }
        Session {
            engine,
            user: user.to_string(),
            session_role: role,
            role,
            state,
            view,
            txn: Arc::new(Mutex::new(None)),
            explicit: false,
            last_active: std::time::Instant::now(),
            implicit_block: false,
            failed: false,
            pending_copy: None,
            info,
            txn_started: chrono::Utc::now(),
            vars,
            dml_target: None,
            jwt_login: false,
            scopes: None,
            cancel: Arc::default(),
        }
    }

    /// `RESET ALL`: every setting back to its default, the role back to the login's, and the
    /// claims too unless a token fixed them.
    fn reset_all(&mut self) -> SqlResult<()> {
        self.vars = default_vars(&self.engine);
        self.set_role(None)?;
        if !self.jwt_login {
            self.set_claims(None);
        }
        self.apply_search_path();
        Ok(())
    }

    /// `DISCARD ALL`, and what a pooled session goes through before it serves another caller:
    /// [`reset_all`](Self::reset_all), and nothing left of a COPY or a failed statement. Not
    /// inside a transaction block (25001, as PostgreSQL). Protocol-level prepared statements
    /// belong to the front door, which drops them itself.
    pub fn discard_all(&mut self) -> SqlResult<()> {
        if self.explicit {
            return Err(SqlError::new(
                codes::ACTIVE_SQL_TRANSACTION,
                "DISCARD ALL cannot run inside a transaction block",
            ));
        }
        self.end_interrupted_block();
        self.reset_all()?;
        self.pending_copy = None;
        self.dml_target = None;
        self.failed = false;
        // A statement whose caller went away mid-way (a dropped HTTP request) may have left its
        // own transaction open, pinning a snapshot while the session waits in a pool.
        if let Some(t) = self.txn.lock().take() {
            t.rollback();
        }
        Ok(())
    }

    /// Where cancel requests for this session's running statement go.
    pub fn cancel_signal(&self) -> Arc<CancelSignal> {
        self.cancel.clone()
    }

    /// A multi-statement query whose future was dropped before it ended (its caller went away)
    /// left its implicit transaction open: nothing of it may commit, so it is rolled back
    /// before anything else runs on the session.
    fn end_interrupted_block(&mut self) {
        if self.implicit_block {
            self.implicit_block = false;
            if !self.explicit
                && let Some(t) = self.txn.lock().take()
            {
                t.rollback();
            }
        }
    }

    /// Sets (or clears) the principal the session acts for: the verified claims of a JWT. Front
    /// doors call this per request; it is never a setting a client can change.
    pub fn set_claims(&mut self, claims: Option<serde_json::Value>) {
        self.scopes = claims.as_ref().and_then(super::policy::Scopes::from_claims).map(Arc::new);
        *self.info.claims.write() = claims.map(Arc::new);
    }

    /// The token scopes limiting the principal, if its token has any.
    pub fn scopes(&self) -> Option<Arc<super::policy::Scopes>> {
        self.scopes.clone()
    }

    /// The claims of the session's principal.
    pub fn claims(&self) -> Option<Arc<serde_json::Value>> {
        self.info.claims.read().clone()
    }

    /// Logs the session in with a verified JWT: as the token's role, with its claims, for good.
    pub fn login_with_token(&mut self, role: &str, claims: serde_json::Value) {
        self.login(role);
        self.set_claims(Some(claims));
        self.jwt_login = true;
    }

    /// True when the session's principal came from a JWT at login.
    pub fn is_jwt_login(&self) -> bool {
        self.jwt_login
    }

    /// Who runs the current statement, for row-level security.
    pub fn security(&self) -> super::policy::Security {
        let cat = self.catalog_for_security();
        super::policy::Security::new(&cat, self.role, self.claims(), self.dml_target)
    }

    /// True when row-level security restricts the current principal on `def` (cheap when the
    /// table has it off).
    pub fn rls_restricts(&self, def: &bkg_kernel::TableDef) -> bool {
        // Security::new skips the membership walk for exempt roles, so this stays cheap.
        def.row_security
            && super::policy::Security::new(&self.catalog_for_security(), self.role, None, None).restricted(def)
    }

    fn catalog_for_security(&self) -> Arc<bkg_kernel::Catalog> {
        self.txn.lock().as_ref().map(|t| t.catalog().clone()).unwrap_or_else(|| self.view.get())
    }

    /// Binds the session to the role that authenticated (front doors call this after login).
    pub fn login(&mut self, user: &str) {
        if self.user == user && self.session_role != NO_ROLE {
            return;
        }
        let role = self.engine.db.catalog().find_role(user).map(|r| r.oid).unwrap_or(NO_ROLE);
        self.user = user.to_string();
        self.session_role = role;
        self.role = role;
        *self.info.user.write() = user.to_string();
        *self.info.session_user.write() = user.to_string();
    }

    pub fn in_transaction(&self) -> bool {
        self.explicit
    }

    pub fn in_failed_transaction(&self) -> bool {
        self.failed
    }

    fn default_isolation(&self) -> IsolationLevel {
        match self.vars.get("default_transaction_isolation").map(|s| s.to_lowercase()) {
            Some(s) if s == "read committed" || s == "read uncommitted" => IsolationLevel::ReadCommitted,
            _ => IsolationLevel::RepeatableRead,
        }
    }

    pub fn statement_timeout(&self) -> Option<Duration> {
        self.duration_var("statement_timeout")
    }

    fn duration_var(&self, name: &str) -> Option<Duration> {
        let v = self.vars.get(name)?;
        parse_duration_ms(v).filter(|ms| *ms > 0).map(Duration::from_millis)
    }

    /// `now()` of the current statement: the transaction's start, in microseconds since 1970.
    pub(crate) fn statement_now_micros(&self) -> i64 {
        self.txn_started.timestamp_micros()
    }

    /// When an idle connection is to be closed, with the SQLSTATE and message to close it with:
    /// `idle_in_transaction_session_timeout` inside a transaction block, `idle_session_timeout`
    /// outside one. Measured from the end of the last statement.
    pub fn idle_deadline(&self) -> Option<(std::time::Instant, &'static str, &'static str)> {
        if self.explicit {
            let t = self.duration_var("idle_in_transaction_session_timeout")?;
            Some((self.last_active + t, "25P03", "terminating connection due to idle-in-transaction timeout"))
        } else {
            let t = self.duration_var("idle_session_timeout")?;
            Some((self.last_active + t, "57P05", "terminating connection due to idle-session timeout"))
        }
    }

    /// Parses SQL text into statements (PostgreSQL dialect).
    pub fn parse(sql: &str) -> SqlResult<Vec<Statement>> {
        if sql.len() > SQL_TEXT_BYTES_MAX {
            return Err(SqlError::new(
                "54000",
                format!("statement text of {} bytes exceeds the limit of {SQL_TEXT_BYTES_MAX}", sql.len()),
            ));
        }
        let parse = |text: &str| {
            Parser::new(&PostgreSqlDialect {}).with_recursion_limit(200).try_with_sql(text)?.parse_statements()
        };
        let (role_text, from_user) = match super::roles::rewrite_role_statements(sql) {
            Some((text, from_user)) => (Some(text), from_user),
            None => (None, vec![]),
        };
        let sql = role_text.as_deref().unwrap_or(sql);
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
        let stmts = match Session::parse(sql) {
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
                    } else if let Err(e) = t.commit().await {
                        out.push(Err(e.into()));
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
        let mut stmts = Session::parse(sql)?;
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
        super::describe::bind_params(&mut stmt, params)?;
        Box::pin(self.execute_statement(stmt)).await
    }

    pub async fn execute_statement(&mut self, stmt: Statement) -> SqlResult<Output> {
        self.end_interrupted_block();
        self.run_statement(stmt).await
    }

    /// Runs one statement in whatever block is open (no check for an interrupted one).
    async fn run_statement(&mut self, stmt: Statement) -> SqlResult<Output> {
        self.last_active = std::time::Instant::now();
        let r = self.execute_statement_inner(stmt).await;
        self.last_active = std::time::Instant::now();
        r
    }

    /// `CHECKPOINT`: writes the column snapshots now (the parser does not know the statement).
    async fn checkpoint(&mut self) -> SqlResult<Output> {
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

    fn on_error(&mut self) {
        if self.explicit {
            self.failed = true;
            // Nothing of it can commit any more: give its row locks and snapshot back now.
            if let Some(t) = self.txn.lock().take() {
                t.rollback();
            }
        } else if self.implicit_block {
            // The whole block is rolled back at its end.
        } else if let Some(t) = self.txn.lock().take() {
            t.rollback();
        }
    }

    async fn execute_statement_inner(&mut self, stmt: Statement) -> SqlResult<Output> {
        match stmt {
            Statement::StartTransaction { modes, .. } => self.begin(&modes),
            Statement::Commit { chain, .. } => {
                if chain {
                    return Err(SqlError::unsupported("COMMIT AND CHAIN"));
                }
                self.commit().await
            }
            Statement::Rollback { savepoint, .. } => {
                if savepoint.is_some() {
                    return Err(SqlError::unsupported("savepoints"));
                }
                self.rollback()
            }
            _ if self.failed => Err(SqlError::new(
                codes::IN_FAILED_TRANSACTION,
                "current transaction is aborted, commands ignored until end of transaction block",
            )),
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
                            t.commit().await?;
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

    fn begin(&mut self, modes: &[ast::TransactionMode]) -> SqlResult<Output> {
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

    async fn commit(&mut self) -> SqlResult<Output> {
        self.implicit_block = false;
        let txn = self.txn.lock().take();
        let was_failed = self.failed;
        self.explicit = false;
        self.failed = false;
        match txn {
            _ if was_failed => {
                if let Some(t) = txn {
                    t.rollback();
                }
                Ok(Output::Command { tag: "ROLLBACK".into(), rows: None, txn: Some(TxnEvent::Rollback) })
            }
            Some(t) => {
                t.commit().await?;
                Ok(Output::Command { tag: "COMMIT".into(), rows: None, txn: Some(TxnEvent::Commit) })
            }
            None => Ok(Output::Command { tag: "COMMIT".into(), rows: None, txn: Some(TxnEvent::Commit) }),
        }
    }

    fn rollback(&mut self) -> SqlResult<Output> {
        self.implicit_block = false;
        if let Some(t) = self.txn.lock().take() {
            t.rollback();
        }
        self.explicit = false;
        self.failed = false;
        Ok(Output::Command { tag: "ROLLBACK".into(), rows: None, txn: Some(TxnEvent::Rollback) })
    }

    fn set(&mut self, set: ast::Set) -> SqlResult<Output> {
        match set {
            ast::Set::SingleAssignment { variable, values, .. } => {
                let name = variable.to_string().to_lowercase();
                let value = values.iter().map(expr_setting_text).collect::<Vec<_>>().join(", ");
                self.set_var(&name, value)?;
            }
            ast::Set::SetTimeZone { value, .. } => self.set_var("timezone", expr_setting_text(&value))?,
            ast::Set::SetNames { charset_name, .. } => self.set_var("client_encoding", charset_name.value)?,
            ast::Set::SetRole { role_name, context_modifier } => {
                if matches!(context_modifier, Some(ast::ContextModifier::Local)) {
                    return Err(SqlError::unsupported("SET LOCAL ROLE"));
                }
                let name = role_name.as_ref().map(super::ddl::ident_name);
                self.set_role(name.as_deref().filter(|n| *n != "none"))?;
            }
            ast::Set::SetTransaction { modes, session, .. } => {
                for m in modes {
                    if let ast::TransactionMode::IsolationLevel(l) = m {
                        let text = match l {
                            ast::TransactionIsolationLevel::ReadCommitted
                            | ast::TransactionIsolationLevel::ReadUncommitted => "read committed",
                            ast::TransactionIsolationLevel::Serializable => {
                                return Err(SqlError::unsupported("SERIALIZABLE isolation"));
                            }
                            _ => "repeatable read",
                        };
                        if session {
                            self.set_var("default_transaction_isolation", text.into())?;
                        } else if let Some(t) = self.txn.lock().as_mut() {
                            t.set_isolation(if text == "read committed" {
                                IsolationLevel::ReadCommitted
                            } else {
                                IsolationLevel::RepeatableRead
                            });
                        }
                    }
                }
            }
            other => return Err(SqlError::unsupported(format!("SET form \"{other}\""))),
        }
        Ok(Output::command("SET"))
    }

    pub fn set_var(&mut self, name: &str, value: String) -> SqlResult<()> {
        let name = match name {
            "time zone" => "timezone",
            n => n,
        };
        let invalid = || {
            SqlError::new(
                codes::INVALID_PARAMETER_VALUE,
                format!("invalid value for parameter \"{name}\": \"{value}\""),
            )
        };
        if name.starts_with("request.jwt") {
            return self.set_claims_setting(name, Some(&value));
        }
        match name {
            "statement_timeout" | "idle_in_transaction_session_timeout" | "lock_timeout" | "idle_session_timeout" => {
                parse_duration_ms(&value).ok_or_else(invalid)?;
            }
            "default_transaction_isolation" | "transaction_isolation" => match value.to_lowercase().as_str() {
                "read committed" | "read uncommitted" | "repeatable read" => {
                    if name == "transaction_isolation"
                        && let Some(t) = self.txn.lock().as_mut()
                    {
                        t.set_isolation(if value.eq_ignore_ascii_case("repeatable read") {
                            IsolationLevel::RepeatableRead
                        } else {
                            IsolationLevel::ReadCommitted
                        });
                        return Ok(());
                    }
                }
                "serializable" => {
                    return Err(SqlError::unsupported(
                        "SERIALIZABLE isolation (REPEATABLE READ gives snapshot isolation)",
                    ));
                }
                _ => return Err(invalid()),
            },
            "client_encoding" => {
                let v = value.to_uppercase().replace('-', "");
                if v != "UTF8" && v != "UNICODE" {
                    return Err(SqlError::unsupported(format!("client encoding \"{value}\" (only UTF8)")));
                }
            }
            _ => {}
        }
        self.vars.insert(name.to_string(), value);
        if name == "search_path" {
            self.apply_search_path();
        }
        Ok(())
    }

    /// True when the logged-in role may act for another principal: superusers and
    /// `service_role` (`SET ROLE`, `SET request.jwt.claims`).
    pub fn may_impersonate(&self) -> bool {
        // A token limited by scopes cannot shed them by acting for someone else.
        if self.jwt_login && self.scopes.as_ref().is_some_and(|s| !s.admin) {
            return false;
        }
        let cat = self.catalog_view();
        cat.is_superuser(self.session_role) || cat.role(self.session_role).is_some_and(|r| r.name == "service_role")
    }

    /// `SET request.jwt.claims = '{json}'` (or RESET, `value` None): the principal policies see,
    /// for superusers and the service role only.
    fn set_claims_setting(&mut self, name: &str, value: Option<&str>) -> SqlResult<()> {
        if name != "request.jwt.claims" {
            return Err(SqlError::new(
                codes::UNDEFINED_OBJECT,
                format!("unrecognized configuration parameter \"{name}\""),
            )
            .with_hint("Set the principal with request.jwt.claims, a JSON object."));
        }
        if !self.may_impersonate() {
            return Err(SqlError::new(
                codes::INSUFFICIENT_PRIVILEGE,
                format!("permission denied to set parameter \"{name}\""),
            ));
        }
        match value {
            None => self.set_claims(None),
            Some(v) => {
                let claims: serde_json::Value = serde_json::from_str(v).map_err(|e| {
                    SqlError::new(
                        codes::INVALID_PARAMETER_VALUE,
                        format!("invalid value for parameter \"{name}\": {e}"),
                    )
                })?;
                if !claims.is_object() {
                    return Err(SqlError::new(
                        codes::INVALID_PARAMETER_VALUE,
                        format!("invalid value for parameter \"{name}\": not a JSON object"),
                    ));
                }
                self.set_claims(Some(claims));
            }
        }
        Ok(())
    }

    fn apply_search_path(&mut self) {
        let path = self.vars.get("search_path").cloned().unwrap_or_default();
        let catalog = self.view.get();
        let first = path
            .split(',')
            .map(|s| s.trim().trim_matches('"').to_string())
            .find(|s| catalog.schemas.contains_key(s))
            .unwrap_or_else(|| "public".into());
        *self.info.schema.write() = first.clone();
        self.state.config_mut().options_mut().catalog.default_schema = first;
    }

    /// The catalog the session plans against now.
    pub fn catalog_view(&self) -> Arc<bkg_kernel::Catalog> {
        self.view.get()
    }

    /// The schema unqualified names resolve to.
    pub fn current_schema(&self) -> String {
        self.state.config().options().catalog.default_schema.clone()
    }

    fn show(&self, variable: &[ast::Ident]) -> SqlResult<Output> {
        let name = variable.iter().map(|i| i.value.to_lowercase()).collect::<Vec<_>>().join(" ");
        let key = match name.as_str() {
            "time zone" => "timezone".to_string(),
            "transaction isolation level" => "transaction_isolation".to_string(),
            _ => name.clone(),
        };
        if key == "all" {
            let schema = Arc::new(Schema::new(vec![
                Field::new("name", ArrowType::Utf8, false),
                Field::new("setting", ArrowType::Utf8, false),
            ]));
            let names: Vec<&str> = self.vars.keys().map(|s| s.as_str()).collect();
            let vals: Vec<&str> = self.vars.values().map(|s| s.as_str()).collect();
            let batch = RecordBatch::try_new(
                schema.clone(),
                vec![Arc::new(StringArray::from(names)), Arc::new(StringArray::from(vals))],
            )?;
            return Ok(Output::Rows { schema, batches: vec![batch], tag: "SHOW".into() });
        }
        let value = if key == "transaction_isolation" {
            match self.txn.lock().as_ref().map(|t| t.isolation()) {
                Some(IsolationLevel::ReadCommitted) => "read committed".to_string(),
                Some(IsolationLevel::RepeatableRead) => "repeatable read".to_string(),
                None => self.vars.get("default_transaction_isolation").cloned().unwrap_or_default(),
            }
        } else {
            let v = self.vars.get(&key).cloned().ok_or_else(|| {
                SqlError::new(codes::UNDEFINED_OBJECT, format!("unrecognized configuration parameter \"{name}\""))
            })?;
            match key.as_str() {
                "statement_timeout"
                | "lock_timeout"
                | "idle_in_transaction_session_timeout"
                | "idle_session_timeout" => parse_duration_ms(&v).map(show_duration_ms).unwrap_or(v),
                _ => v,
            }
        };
        let schema = Arc::new(Schema::new(vec![Field::new(key.clone(), ArrowType::Utf8, false)]));
        let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(StringArray::from(vec![value]))])?;
        Ok(Output::Rows { schema, batches: vec![batch], tag: "SHOW".into() })
    }

    /// Runs a statement inside the open transaction. An UPDATE or DELETE that meets a row
    /// another transaction has locked waits for that transaction to end and runs again: under
    /// READ COMMITTED on a new snapshot, so it acts on the row's newest version (as PostgreSQL
    /// re-checks it); under REPEATABLE READ the rerun fails with 40001 if the other committed.
    async fn run_with_retries(&mut self, stmt: Statement) -> SqlResult<Output> {
        let restartable = matches!(stmt, Statement::Update(_) | Statement::Delete(_) | Statement::Insert(_));
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
                return Err(SqlError::new("40001", "could not serialize access due to concurrent update"));
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

    /// Runs a statement inside the open transaction.
    async fn run_in_txn(&mut self, stmt: Statement) -> SqlResult<Output> {
        self.sync_view();
        match stmt {
            Statement::Query(_) | Statement::Explain { .. } => self.query(stmt).await,
            Statement::Insert(ins) => super::dml::insert(self, ins).await,
            Statement::Update(upd) => super::dml::update(self, upd).await,
            Statement::Delete(del) => super::dml::delete(self, del).await,
            ref ddl if self.scopes.as_ref().is_some_and(|s| !s.admin) && is_schema_change(ddl) => {
                Err(SqlError::new(codes::INSUFFICIENT_PRIVILEGE, "the token's scopes do not allow schema changes")
                    .with_hint("It needs the scope admin."))
            }
            Statement::CreateTable(_)
            | Statement::CreateSchema { .. }
            | Statement::Drop { .. }
            | Statement::AlterTable(_)
            | Statement::AlterSchema(_)
            | Statement::CreateIndex(_)
            | Statement::CreateView(_)
            | Statement::Truncate(_) => super::ddl::execute(self, stmt).await,
            Statement::CreateRole(_) | Statement::AlterRole { .. } | Statement::Grant(_) | Statement::Revoke(_) => {
                super::roles::execute(self, stmt).await
            }
            Statement::CreatePolicy(_) | Statement::AlterPolicy(_) | Statement::DropPolicy(_) => {
                super::policy::execute(self, stmt)
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
            t.commit().await?;
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
    fn start_statement(&mut self) -> bool {
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

    /// Runs a prepared point query from its cached plan, in the transaction a statement would
    /// use. `None` when the plan does not apply any more (the catalog changed, or the session
    /// is in a failed transaction): the caller then runs the statement the normal way.
    pub fn execute_point(
        &mut self,
        plan: &super::fast_path::PointPlan,
        param: &dyn Fn(usize, &bkg_kernel::DataType) -> SqlResult<bkg_kernel::Value>,
    ) -> Option<SqlResult<Output>> {
        self.end_interrupted_block();
        if self.failed || self.pending_copy.is_some() {
            return None;
        }
        let implicit = self.start_statement();
        // A transaction that ran DDL has a private catalog whose version has not moved yet.
        let version = self.txn.lock().as_ref().filter(|t| !t.ran_ddl()).map(|t| t.catalog().version);
        if version != Some(plan.catalog_version) {
            if implicit {
                self.end_internal();
            }
            return None;
        }
        if self.rls_restricts(&plan.def) {
            // The plan was made for another principal (SET ROLE since): plan it normally.
            if implicit {
                self.end_internal();
            }
            return None;
        }
        self.last_active = std::time::Instant::now();
        let r = super::fast_path::run_point(self, plan, param);
        if implicit {
            // Read only: nothing to commit.
            self.end_internal();
        } else if r.is_err() {
            self.on_error();
        }
        self.last_active = std::time::Instant::now();
        Some(r)
    }

    /// Plans a query for running: the physical plan with the state to run it in and its output
    /// schema under PostgreSQL's column names, or the finished answer when no plan is needed
    /// (the point fast path, provably empty catalog queries).
    async fn plan_query(&mut self, mut stmt: Statement) -> SqlResult<Planned> {
        self.sync_view();
        if let Statement::Query(q) = &stmt
            && let Some(names) = super::pg_catalog::provably_empty(q)
        {
            let fields: Vec<Field> = names.iter().map(|n| Field::new(n, ArrowType::Utf8, true)).collect();
            let schema = Arc::new(Schema::new(fields));
            return Ok(Planned::Done(Output::Rows { schema, batches: vec![], tag: "SELECT".into() }));
        }
        if let Statement::Query(q) = &stmt
            && let Some(out) = super::fast_path::point_select(self, q)?
        {
            return Ok(Planned::Done(out));
        }
        super::pg_catalog::rewrite(&mut stmt, &self.view.get(), &self.current_schema())?;
        super::output_names::assign(&mut stmt);
        let state = self.statement_state();
        let plan = state.statement_to_plan(DFStatement::Statement(Box::new(stmt))).await?;
        self.check_plan_privileges(&plan)?;
        // The principal the statement's scans enforce, built once by statement_state.
        let security = state.config().get_extension::<ScanContext>().map(|c| c.security.clone());
        let security = security.unwrap_or_else(|| Arc::new(self.security()));
        let plan = super::policy::rewrite_plan(&state, &security, plan)?;
        SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false)
            .verify_plan(&plan)?;
        // The scans read their snapshot here, while the transaction is open.
        let physical = state.create_physical_plan(&plan).await?;
        *self.view.planner.write() = None;
        let schema = super::output_names::restore(&physical.schema());
        Ok(Planned::Plan { physical, schema, state })
    }

    /// Plans and runs a query through DataFusion.
    pub async fn query(&mut self, stmt: Statement) -> SqlResult<Output> {
        let (physical, schema, state) = match self.plan_query(stmt).await? {
            Planned::Done(out) => return Ok(out),
            Planned::Plan { physical, schema, state } => (physical, schema, state),
        };
        let batches = datafusion::physical_plan::collect(physical, state.task_ctx()).await?;
        let batches = batches.into_iter().map(|b| rename_batch(&schema, b)).collect::<Result<_, _>>()?;
        Ok(Output::Rows { schema, batches, tag: "SELECT".into() })
    }

    /// Runs one statement and hands its rows over as a stream. A query is planned (its scans
    /// take their snapshot) and then runs batch by batch as the consumer pulls, under the
    /// statement timeout; any other statement runs to completion first. The transaction
    /// rules are those of [`execute_statement`](Self::execute_statement).
    pub async fn execute_streaming(&mut self, stmt: Statement) -> SqlResult<StatementStream> {
        if !matches!(stmt, Statement::Query(_)) || self.failed {
            return match self.execute_statement(stmt).await? {
                Output::CopyIn { .. } => {
                    Err(self.copy_fail("COPY FROM STDIN needs the PostgreSQL protocol; use bulk ingest"))
                }
                out => Ok(StatementStream::from_output(out)),
            };
        }
        self.end_interrupted_block();
        self.last_active = std::time::Instant::now();
        let started = std::time::Instant::now();
        let timeout = self.statement_timeout();
        let implicit = self.start_statement();
        let planned = interruptible(timeout, self.cancel.clone(), self.plan_query(stmt)).await;
        // A query writes nothing: an implicit transaction ends once the scans hold their data.
        if implicit {
            self.end_internal();
        }
        self.last_active = std::time::Instant::now();
        let (physical, schema, state) = match planned {
            Ok(Planned::Done(out)) => return Ok(StatementStream::from_output(out)),
            Ok(Planned::Plan { physical, schema, state }) => (physical, schema, state),
            Err(e) => {
                self.on_error();
                return Err(e);
            }
        };
        let stream = datafusion::physical_plan::execute_stream(physical, state.task_ctx())?;
        let out_schema = schema.clone();
        let deadline = timeout.map(|t| started + t);
        let stream = futures::StreamExt::map(stream, move |b| {
            if deadline.is_some_and(|d| std::time::Instant::now() > d) {
                return Err(datafusion::error::DataFusionError::External(Box::new(SqlError::new(
                    codes::QUERY_CANCELED,
                    "canceling statement due to statement timeout",
                ))));
            }
            Ok(rename_batch(&out_schema, b?)?)
        });
        let stream = Box::pin(datafusion::physical_plan::stream::RecordBatchStreamAdapter::new(schema.clone(), stream));
        Ok(StatementStream { schema, stream, rows: None })
    }

    /// Plans and runs SQL text that must be a query (used by DML for its row-selecting part).
    pub async fn query_sql(&mut self, sql: &str) -> SqlResult<(SchemaRef, Vec<RecordBatch>)> {
        let mut stmts = Session::parse(sql)?;
        if stmts.len() != 1 {
            return Err(SqlError::internal("internal query must be one statement"));
        }
        match self.query(stmts.remove(0)).await? {
            Output::Rows { schema, batches, .. } => Ok((schema, batches)),
            _ => Err(SqlError::internal("internal query returned no rows")),
        }
    }
}

/// DDL, role, privilege and policy statements: what only an `admin` scope may run.
fn is_schema_change(stmt: &Statement) -> bool {
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
            | Statement::CreateRole(_)
            | Statement::AlterRole { .. }
            | Statement::Grant(_)
            | Statement::Revoke(_)
            | Statement::CreatePolicy(_)
            | Statement::AlterPolicy(_)
            | Statement::DropPolicy(_)
    )
}

fn expr_setting_text(e: &ast::Expr) -> String {
    match e {
        ast::Expr::Value(v) => match &v.value {
            ast::Value::SingleQuotedString(s) | ast::Value::DoubleQuotedString(s) => s.clone(),
            other => other.to_string(),
        },
        ast::Expr::Identifier(i) => i.value.clone(),
        other => other.to_string(),
    }
}

/// Rewrites statement forms PostgreSQL accepts that the parser does not, keeping their meaning:
/// `COPY ... WITH (FREEZE ON)` and `VACUUM ANALYZE t` / `VACUUM (options) t`.
fn compat_rewrite(sql: &str) -> Option<String> {
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
    (out != sql).then_some(out)
}

fn is_checkpoint(sql: &str) -> bool {
    sql.trim().trim_end_matches(';').trim().eq_ignore_ascii_case("checkpoint")
}

/// Longest SQL text accepted in one message.
pub const SQL_TEXT_BYTES_MAX: usize = 16 << 20;
/// Deepest expression nesting accepted (`a+b+c+...` chains count one level per operator).
pub const EXPR_DEPTH_MAX: usize = 1500;

/// Refuses statements whose expressions nest deeper than [`EXPR_DEPTH_MAX`] (planning walks them
/// recursively, and the time it takes grows with the depth), and queries with a locking clause
/// (`FOR UPDATE` …), which this server cannot honour yet.
fn check_depth(stmt: &Statement) -> SqlResult<()> {
    struct Depth {
        now: usize,
        max: usize,
        /// A query with a locking clause was found.
        locks: bool,
    }
    impl ast::Visitor for Depth {
        type Break = ();
        fn pre_visit_query(&mut self, q: &ast::Query) -> std::ops::ControlFlow<()> {
            if q.locks.is_empty() {
                std::ops::ControlFlow::Continue(())
            } else {
                self.locks = true;
                std::ops::ControlFlow::Break(())
            }
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
    let mut d = Depth { now: 0, max: 0, locks: false };
    if ast::Visit::visit(stmt, &mut d).is_break() {
        if d.locks {
            // Ignoring the clause would let two workers take the same queue row.
            return Err(SqlError::unsupported("SELECT … FOR UPDATE/FOR SHARE (row locks)").with_hint(
                "UPDATE and DELETE lock the rows they change; a queue can claim a row with UPDATE … RETURNING.",
            ));
        }
        return Err(SqlError::new(
            "54001",
            format!("statement is too deeply nested (expression depth over {EXPR_DEPTH_MAX})"),
        )
        .with_hint("Split long chains of operators, e.g. use IN (...) instead of many ORs."));
    }
    Ok(())
}

/// A duration setting as PostgreSQL shows it: in the largest unit that divides it (`0`, `250ms`,
/// `5s`, `2min`, `1h`, `1d`).
fn show_duration_ms(ms: u64) -> String {
    if ms == 0 {
        return "0".into();
    }
    for (unit, size) in [("d", 86_400_000), ("h", 3_600_000), ("min", 60_000), ("s", 1000)] {
        if ms.is_multiple_of(size) {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{ms}ms")
}

/// Parses a PostgreSQL duration setting (`0`, `500`, `5s`, `2min`, `100ms`) into milliseconds.
pub fn parse_duration_ms(v: &str) -> Option<u64> {
    let v = v.trim().trim_matches('\'').to_lowercase();
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (num, unit) = v.split_at(split);
    let n: u64 = num.parse().ok()?;
    let mult = match unit.trim() {
        "" | "ms" => 1,
        "s" => 1000,
        "min" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return None,
    };
    n.checked_mul(mult)
}

enum Planned {
    Done(Output),
    Plan { physical: Arc<dyn datafusion::physical_plan::ExecutionPlan>, schema: SchemaRef, state: SessionState },
}

/// A batch under the output schema's names (the plan's internal names may differ).
fn rename_batch(schema: &SchemaRef, b: RecordBatch) -> Result<RecordBatch, datafusion::arrow::error::ArrowError> {
    if Arc::ptr_eq(schema, &b.schema()) {
        return Ok(b);
    }
    RecordBatch::try_new_with_options(
        schema.clone(),
        b.columns().to_vec(),
        &datafusion::arrow::array::RecordBatchOptions::new().with_row_count(Some(b.num_rows())),
    )
}

/// The rows of one statement as a stream (see [`Session::execute_streaming`]).
pub struct StatementStream {
    pub schema: SchemaRef,
    pub stream: datafusion::execution::SendableRecordBatchStream,
    /// Rows a command changed, when it counts them.
    pub rows: Option<u64>,
}

impl StatementStream {
    fn from_output(out: Output) -> StatementStream {
        let (schema, batches, rows) = match out {
            Output::Rows { schema, batches, .. } | Output::CopyOut { schema, batches, .. } => (schema, batches, None),
            Output::Command { rows, .. } => (Arc::new(Schema::empty()), vec![], rows),
            Output::CopyIn { .. } => (Arc::new(Schema::empty()), vec![], None),
        };
        StatementStream { stream: memory_stream(schema.clone(), batches), schema, rows }
    }
}

/// Batches already in memory as a record batch stream.
pub fn memory_stream(schema: SchemaRef, batches: Vec<RecordBatch>) -> datafusion::execution::SendableRecordBatchStream {
    let stream = futures::stream::iter(batches.into_iter().map(Ok));
    Box::pin(datafusion::physical_plan::stream::RecordBatchStreamAdapter::new(schema, stream))
}
