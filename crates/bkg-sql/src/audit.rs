//! Audit events of committed changes, whatever front door made them.
//!
//! A change and its event commit together: [`Session::audit`] writes the event as a row of
//! `bkg_audit.outbox` in the change's own transaction, so a rolled-back change leaves no event
//! and a committed one cannot lose it (the row is in the WAL with the change). After the commit
//! the session asks the [`Auditor`] to ship: it reads the outbox, appends the events to the
//! signed log ([`bkg_audit::AuditLog`], fsynced), then deletes the rows it shipped. A crash
//! between append and delete sends the rows again at the next start, and the log skips event
//! ids it already holds. Events that are not changes (a failed sign-in) go straight to the
//! shipper through [`Engine::audit_now`].
//!
//! The outbox is the server's: only superusers can read it, nobody can change, drop or alter it
//! over SQL once the log is on, and it is empty but for the events of the last moments.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bkg_audit::{AuditLog, Event, KeyInfo};
use bkg_kernel::{IsolationLevel, OnConflict, Value};
use parking_lot::Mutex;
use serde_json::json;

use crate::error::{SqlError, SqlResult};
use crate::session::{Engine, Session};

pub use bkg_audit::{Actor, Outcome};

/// Schema and table of the outbox.
pub const OUTBOX_SCHEMA: &str = "bkg_audit";
pub const OUTBOX_TABLE: &str = "outbox";

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct AuditStats {
    pub events_written: AtomicU64,
    pub ship_failures: AtomicU64,
}

/// The server's audit log and the shipper that fills it.
#[derive(Debug)]
pub struct Auditor {
    log: Arc<Mutex<AuditLog>>,
    dir: PathBuf,
    /// Events that are not part of a transaction, waiting for the next ship.
    direct: Mutex<Vec<Event>>,
    ship_lock: tokio::sync::Mutex<()>,
    pub stats: AuditStats,
}

impl Auditor {
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    pub fn public_key(&self) -> KeyInfo {
        self.log.lock().public_key().clone()
    }

    /// Closes and signs the open segment now (`None`: nothing was open).
    pub async fn seal(&self) -> SqlResult<Option<PathBuf>> {
        let log = self.log.clone();
        blocking(move || log.lock().seal()).await
    }

    /// Verifies the whole log as `bkg-db audit verify` does (chain, opening lines, signatures by
    /// the published keys). Appends wait meanwhile, so the open segment is never read half
    /// written. The outer error is a failure to run; the inner one what verification found.
    pub async fn verify(&self) -> SqlResult<Result<bkg_audit::Report, bkg_audit::AuditError>> {
        let (log, dir) = (self.log.clone(), self.dir.clone());
        tokio::task::spawn_blocking(move || {
            let _appends_wait = log.lock();
            bkg_audit::verify(&dir, &[])
        })
        .await
        .map_err(|e| SqlError::internal(format!("audit verification task: {e}")))
    }

    /// Seals the open segment and signs from now on with a new key.
    pub async fn rotate_key(&self) -> SqlResult<KeyInfo> {
        let log = self.log.clone();
        blocking(move || log.lock().rotate_key()).await
    }

    /// Moves the outbox's committed events and the direct ones into the log. Returns how many
    /// lines it wrote. On failure nothing is lost: the outbox rows stay for the next try.
    pub async fn ship(&self, engine: &Engine) -> SqlResult<usize> {
        let _one = self.ship_lock.lock().await;
        let mut txn = engine.db.begin(IsolationLevel::RepeatableRead);
        let Some(table) = txn.catalog().find_table(OUTBOX_SCHEMA, OUTBOX_TABLE).map(|t| t.id) else {
            return Err(SqlError::internal("the audit outbox bkg_audit.outbox is missing; restart the server"));
        };
        let mut rowids = Vec::new();
        let mut events = Vec::new();
        txn.scan(table, |rowid, row| {
            rowids.push(rowid);
            match row.get(1) {
                Some(Value::Text(s)) => match serde_json::from_str::<Event>(s) {
                    Ok(e) => events.push(e),
                    Err(e) => tracing::error!(target: "bkg_db::audit", rowid, "an outbox row is not an event: {e}"),
                },
                _ => tracing::error!(target: "bkg_db::audit", rowid, "an outbox row without its event"),
            }
        });
        let direct = std::mem::take(&mut *self.direct.lock());
        let direct_count = direct.len();
        events.extend(direct.iter().cloned());
        if events.is_empty() {
            txn.rollback();
            return Ok(0);
        }
        events.sort_by(|a, b| a.id.cmp(&b.id));
        let log = self.log.clone();
        let written = match blocking(move || log.lock().append(&events)).await {
            Ok(n) => n,
            Err(e) => {
                self.stats.ship_failures.fetch_add(1, Ordering::Relaxed);
                let mut back = self.direct.lock();
                let mut kept = direct;
                kept.append(&mut back);
                *back = kept;
                txn.rollback();
                return Err(e);
            }
        };
        self.stats.events_written.fetch_add(written as u64, Ordering::Relaxed);
        if !rowids.is_empty() {
            txn.delete(table, &rowids)?;
            txn.commit().await?;
        } else {
            txn.rollback();
        }
        tracing::debug!(target: "bkg_db::audit", written, direct = direct_count, "audit events shipped");
        Ok(written)
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> bkg_audit::Result<T> + Send + 'static) -> SqlResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| SqlError::internal(format!("audit task: {e}")))?
        .map_err(|e| SqlError::internal(format!("audit log: {e}")))
}

impl Engine {
    /// Turns the audit log on: creates the outbox if needed, then ships what a crash left in it.
    pub async fn enable_audit(self: &Arc<Self>, log: AuditLog) -> SqlResult<()> {
        let mut s = self.session("postgres");
        for sql in [
            format!("CREATE SCHEMA IF NOT EXISTS {OUTBOX_SCHEMA}"),
            format!(
                "CREATE TABLE IF NOT EXISTS {OUTBOX_SCHEMA}.{OUTBOX_TABLE} (id text PRIMARY KEY, event text NOT NULL)"
            ),
        ] {
            s.execute_one(&sql).await?;
        }
        // Nobody but superusers (who may only read it, see `Session::require_relation`) holds
        // anything on the outbox, whatever default privileges said when it was created.
        let mut txn = self.db.begin(IsolationLevel::RepeatableRead);
        let cat = txn.catalog_mut();
        let table = cat.find_table(OUTBOX_SCHEMA, OUTBOX_TABLE).map(|t| t.id);
        let granted = cat.schemas.get(OUTBOX_SCHEMA).is_some_and(|d| !d.acl.is_empty() || !d.default_acl.is_empty())
            || table.and_then(|id| cat.table(id)).is_some_and(|t| !t.acl.is_empty());
        if granted {
            if let Some(d) = cat.schemas.get_mut(OUTBOX_SCHEMA) {
                d.acl.clear();
                d.default_acl.clear();
            }
            if let Some(id) = table {
                cat.table_mut(id)?.acl.clear();
            }
            txn.commit().await?;
        } else {
            txn.rollback();
        }
        let dir = log.dir().to_path_buf();
        let auditor = Auditor {
            log: Arc::new(Mutex::new(log)),
            dir,
            direct: Mutex::default(),
            ship_lock: tokio::sync::Mutex::new(()),
            stats: AuditStats::default(),
        };
        self.audit.set(Arc::new(auditor)).map_err(|_| SqlError::internal("the audit log is already on"))?;
        self.ship_audit().await;
        Ok(())
    }

    /// The audit log, when it is on.
    pub fn auditor(&self) -> Option<&Arc<Auditor>> {
        self.audit.get()
    }

    /// Records an event that is not part of a transaction (a sign-in, an export) and ships it.
    pub async fn audit_now(&self, mut event: Event) {
        if event.request_id.is_none() {
            event.request_id = crate::telemetry::current_trace_id();
        }
        trace(&event);
        if let Some(a) = self.audit.get() {
            a.direct.lock().push(event);
            self.ship_audit().await;
        }
    }

    /// Ships the outbox now; a failure is logged and counted (the rows wait for the next ship).
    pub async fn ship_audit(&self) {
        if let Some(a) = self.audit.get()
            && let Err(e) = a.ship(self).await
        {
            tracing::error!(target: "bkg_db::audit", "audit events could not be written: {}", e.message);
        }
    }
}

fn trace(e: &Event) {
    tracing::info!(
        target: "bkg_db::audit",
        action = %e.action,
        object = %e.object,
        role = %e.actor.role,
        user_id = e.actor.user_id.as_deref().unwrap_or(""),
        outcome = ?e.outcome,
        "audit"
    );
}

impl Session {
    /// Who this session acts as, for an event.
    pub fn actor(&self) -> Actor {
        let claims = self.claims();
        let claim = |k: &str| claims.as_ref().and_then(|c| c.get(k)).and_then(|v| v.as_str()).map(str::to_string);
        Actor {
            role: self.audit_role.clone().unwrap_or_else(|| self.info.user.read().clone()),
            user_id: claim("sub"),
            token_id: claim("session_id").or_else(|| claim("jti")),
            address: self.client_address.clone(),
        }
    }

    /// Records an event of a change made in the open transaction: it is written if and only if
    /// the transaction commits.
    pub fn audit(&mut self, action: &str, object: &str, detail: serde_json::Value) -> SqlResult<()> {
        let event = Event::new(self.actor(), action, object, Outcome::Success).with_detail(detail);
        self.audit_event(event)
    }

    /// Records a complete event (a front door names the actor itself) in the open transaction:
    /// written if and only if the transaction commits.
    pub fn audit_event(&mut self, mut event: Event) -> SqlResult<()> {
        if event.request_id.is_none() {
            event.request_id = crate::telemetry::current_trace_id();
        }
        trace(&event);
        if self.engine.audit.get().is_none() {
            return Ok(());
        }
        let row = vec![
            Value::Text(event.id.as_str().into()),
            Value::Text(
                serde_json::to_string(&event)
                    .map_err(|e| SqlError::internal(format!("an audit event as JSON: {e}")))?
                    .into(),
            ),
        ];
        self.with_txn(|t| {
            let Some(table) = t.catalog().find_table(OUTBOX_SCHEMA, OUTBOX_TABLE).map(|d| d.id) else {
                return Err(SqlError::internal("the audit outbox bkg_audit.outbox is missing; restart the server"));
            };
            t.insert(table, vec![row], OnConflict::Error)?;
            Ok(())
        })?;
        self.audit_pending = true;
        Ok(())
    }

    /// Commits `t`, then ships the audit events it carried.
    pub(crate) async fn commit_txn(&mut self, t: bkg_kernel::Transaction) -> SqlResult<()> {
        let pending = std::mem::take(&mut self.audit_pending);
        let span = tracing::debug_span!(target: crate::telemetry::SPAN_TARGET, "sql.commit");
        tracing::Instrument::instrument(t.commit(), span).await?;
        if pending {
            self.engine.ship_audit().await;
        }
        Ok(())
    }
}

/// `PASSWORD '...'` in a statement's text, for events that carry the statement.
pub fn redact_passwords(sql: &str) -> String {
    static PASSWORD: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(r"(?i)\b(password|encrypted\s+password)\s+'(?:[^']|'')*'").expect("valid regex")
    });
    PASSWORD.replace_all(sql, "$1 '***'").into_owned()
}

/// The `detail` of an event for a SQL statement: its text, passwords hidden, at most 4 KiB.
pub fn statement_detail(sql: &str) -> serde_json::Value {
    let mut s = redact_passwords(sql);
    if s.len() > 4096 {
        let mut cut = 4096;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push_str(" …");
    }
    json!({ "statement": s })
}

/// The action and object of an audited statement (DDL, roles, privileges, row-level security,
/// publications; policies are audited by [`crate::policy`] with their definition).
pub(crate) fn statement_event(stmt: &datafusion::sql::sqlparser::ast::Statement) -> (String, String) {
    use datafusion::sql::sqlparser::ast::{AlterTableOperation as Op, ObjectType, Statement as S};
    let names = |n: &[datafusion::sql::sqlparser::ast::ObjectName]| {
        n.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
    };
    let (action, object) = match stmt {
        S::CreateTable(c) => ("ddl.create_table".to_string(), c.name.to_string()),
        S::CreateSchema { schema_name, .. } => ("ddl.create_schema".into(), schema_name.to_string()),
        S::AlterSchema(a) => ("ddl.alter_schema".into(), a.name.to_string()),
        S::CreateIndex(c) => ("ddl.create_index".into(), c.table_name.to_string()),
        S::CreateView(v) => ("ddl.create_view".into(), v.name.to_string()),
        S::Truncate(_) => ("ddl.truncate".into(), String::new()),
        S::Drop { object_type: ObjectType::Role, names: n, .. } => ("role.drop".into(), names(n)),
        S::Drop { object_type, names: n, .. } => {
            (format!("ddl.drop_{}", object_type.to_string().to_lowercase().replace(' ', "_")), names(n))
        }
        S::AlterTable(a) => {
            let rls = a.operations.iter().find_map(|op| match op {
                Op::EnableRowLevelSecurity => Some("rls.enable"),
                Op::DisableRowLevelSecurity => Some("rls.disable"),
                Op::ForceRowLevelSecurity => Some("rls.force"),
                Op::NoForceRowLevelSecurity => Some("rls.no_force"),
                _ => None,
            });
            (rls.unwrap_or("ddl.alter_table").to_string(), a.name.to_string())
        }
        S::CreateRole(c) => ("role.create".into(), names(&c.names)),
        S::AlterRole { name, .. } => ("role.alter".into(), name.value.clone()),
        S::Grant(_) => ("privilege.grant".into(), String::new()),
        S::Revoke(_) => ("privilege.revoke".into(), String::new()),
        _ => ("publication.change".into(), String::new()),
    };
    (action, object)
}

#[cfg(test)]
mod tests {
    use bkg_audit::{AuditLog, LogOptions, Query, read_page};

    use crate::session::{Engine, EngineConfig};
    use crate::{SqlState, audit::OUTBOX_SCHEMA};

    #[tokio::test]
    async fn the_outbox_is_shipped_later_and_nobody_changes_it_over_sql() {
        let dir = tempfile::tempdir().unwrap();
        let audit_dir = dir.path().join("audit");
        let engine =
            Engine::open(bkg_kernel::db::Options::new(dir.path().join("db")), EngineConfig::default()).unwrap();
        engine.enable_audit(AuditLog::open(&audit_dir, LogOptions::default()).unwrap()).await.unwrap();
        let mut s = engine.session("postgres");
        s.execute_one("CREATE ROLE somebody NOLOGIN").await.unwrap();
        // A change's event committed, but the server stops before shipping it.
        s.execute_one("BEGIN").await.unwrap();
        s.audit("test.in_flight", "x", serde_json::json!({})).unwrap();
        s.commit_unshipped().await.unwrap();
        let in_flight = Query { limit: 10, action: Some("test".into()), ..Query::default() };
        assert!(read_page(&audit_dir, &in_flight).unwrap().events.is_empty());
        let count = format!("SELECT count(*) FROM {OUTBOX_SCHEMA}.outbox");
        let rows = |out: crate::session::Output| match out {
            crate::session::Output::Rows { batches, .. } => {
                datafusion::arrow::util::pretty::pretty_format_batches(&batches).unwrap().to_string()
            }
            _ => panic!("no rows"),
        };
        assert!(rows(s.execute_one(&count).await.unwrap()).contains("| 1 "), "superusers may read the outbox");
        // Not even a superuser may change, drop, alter, grant on or create in it.
        for sql in [
            "INSERT INTO bkg_audit.outbox VALUES ('1', '{}')",
            "DELETE FROM bkg_audit.outbox",
            "UPDATE bkg_audit.outbox SET event = '{}'",
            "TRUNCATE bkg_audit.outbox",
            "DROP TABLE bkg_audit.outbox",
            "DROP SCHEMA bkg_audit CASCADE",
            "ALTER TABLE bkg_audit.outbox ADD COLUMN x int",
            "GRANT SELECT ON bkg_audit.outbox TO somebody",
            "GRANT USAGE ON SCHEMA bkg_audit TO somebody",
            "CREATE TABLE bkg_audit.other (id int)",
        ] {
            let e = s.execute_one(sql).await.expect_err(sql);
            assert_eq!(e.code, SqlState::InsufficientPrivilege, "{sql}: {e}");
            assert!(e.message.contains("audit log"), "{sql}: {e}");
        }
        // The next ship (at the latest the next start) writes it, and empties the outbox.
        engine.ship_audit().await;
        assert_eq!(read_page(&audit_dir, &in_flight).unwrap().events.len(), 1);
        assert!(rows(s.execute_one(&count).await.unwrap()).contains("| 0 "));
        assert_eq!(engine.auditor().unwrap().stats.ship_failures.load(std::sync::atomic::Ordering::Relaxed), 0);
    }

    #[test]
    fn passwords_are_hidden() {
        assert_eq!(
            super::redact_passwords("CREATE ROLE a LOGIN PASSWORD 'it''s secret'"),
            "CREATE ROLE a LOGIN PASSWORD '***'"
        );
        assert_eq!(
            super::redact_passwords("alter role a encrypted password 'x'"),
            "alter role a encrypted password '***'"
        );
    }
}
