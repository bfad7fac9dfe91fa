//! Engine (shared) and Session (one per connection).
//!
//! Statement execution ([`execute`]), transaction control ([`txn`]), settings ([`settings`]) and
//! query planning ([`plan`]) add their methods to [`Session`] in their own files.

mod cursors;
mod execute;
mod known_settings;
mod locking;
mod plan;
mod settings;
mod txn;

pub use plan::{StatementStream, memory_stream};
pub use settings::parse_duration_ms;
pub(crate) use settings::{check_setting, current_setting_in};

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
use crate::SqlState;
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
    /// The audit log, once the server turned it on ([`Engine::enable_audit`]).
    pub(crate) audit: std::sync::OnceLock<Arc<crate::audit::Auditor>>,
    /// Recent slow statements of every front door.
    pub slow: crate::slow::SlowLog,
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
        Ok(Arc::new(Engine {
            db,
            config,
            runtime,
            recovery,
            fast_path_queries: Default::default(),
            audit: Default::default(),
            slow: Default::default(),
        }))
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
    /// The client's address (`ip:port`), as the front door saw it, for audit events.
    pub client_address: Option<String>,
    /// The role audit events name when a door runs a principal's request as another role (a
    /// policy change made for the service role by the superuser session); `None`: the login role.
    pub audit_role: Option<String>,
    /// The open transaction wrote audit events (shipped after it commits).
    pub(crate) audit_pending: bool,
    /// The block's savepoints, oldest first.
    savepoints: Vec<SavepointEntry>,
    /// The settings when the block began (a ROLLBACK returns to them).
    block_settings: Option<settings::SavedSettings>,
    /// Settings changed by SET LOCAL in the block, with the values they return to when it ends.
    local_settings: BTreeMap<String, Option<String>>,
    /// Open cursors by name.
    cursors: BTreeMap<String, cursors::Cursor>,
}

/// One `SAVEPOINT` of a transaction block.
struct SavepointEntry {
    name: String,
    point: bkg_kernel::Savepoint,
    settings: settings::SavedSettings,
    /// The cursors open when it was taken (ROLLBACK TO closes the others).
    cursors: Vec<String>,
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
            settings: Default::default(),
            pending_settings: Default::default(),
            has_pending_settings: Default::default(),
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
            client_address: None,
            audit_role: None,
            audit_pending: false,
            savepoints: Vec::new(),
            block_settings: None,
            local_settings: BTreeMap::new(),
            cursors: BTreeMap::new(),
        }
        .published()
    }

    fn published(self) -> Session {
        self.publish_settings();
        self
    }

    /// `RESET ALL`: every setting back to its default, the role back to the login's, and the
    /// claims too unless a token fixed them.
    fn reset_all(&mut self) -> SqlResult<()> {
        self.vars = default_vars(&self.engine);
        self.publish_settings();
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
        self.cursors.clear();
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
        self.apply_pending_settings();
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
    pub fn idle_deadline(&self) -> Option<(std::time::Instant, SqlState, &'static str)> {
        if self.explicit {
            let t = self.duration_var("idle_in_transaction_session_timeout")?;
            Some((
                self.last_active + t,
                SqlState::IdleInTransactionSessionTimeout,
                "terminating connection due to idle-in-transaction timeout",
            ))
        } else {
            let t = self.duration_var("idle_session_timeout")?;
            Some((
                self.last_active + t,
                SqlState::IdleSessionTimeout,
                "terminating connection due to idle-session timeout",
            ))
        }
    }
}
