//! Schema migrations: timestamped `.sql` files (`<version>_<name>.sql`, the version at least 8
//! digits, e.g. `20261126120000_create_todos.sql`), applied in version order, each once, each in
//! its own transaction, recorded in `bkg_migrations.schema_migrations` with a SHA-256 checksum.
//! An applied file that was edited since is an error, and nothing is applied then.
//!
//! The files of `crates/bkg-db/migrations/` are built into the binary and applied at startup;
//! others come from a directory (`bkg-db migrate apply --dir`, `BKG_DB_MIGRATIONS_DIR`) or in the
//! body of `POST /migrate/apply`.

use crate::SqlState;
use std::path::Path;
use std::sync::Arc;

use datafusion::sql::sqlparser::ast::{self, Statement};

use crate::error::{SqlError, SqlResult};
use crate::limits::{FILE_BYTES_MAX, MIGRATIONS_MAX};
use crate::{Engine, Output, Session};

include!(concat!(env!("OUT_DIR"), "/builtin_migrations.rs"));

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Migration {
    pub version: String,
    pub name: String,
    #[serde(skip)]
    pub sql: String,
    pub checksum: String,
}

/// A migration problem: a stable code, a message, and which file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrateError {
    /// `BKG101` edited after it was applied, `BKG102` bad file name or duplicate version,
    /// `BKG103` transaction control inside a file, `BKG104` unreadable file; else the SQLSTATE
    /// of the statement that failed.
    pub code: SqlState,
    pub message: String,
    pub file: Option<String>,
    pub detail: Option<String>,
}

impl std::fmt::Display for MigrateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.file {
            Some(file) => write!(f, "{file}: {} ({})", self.message, self.code)?,
            None => write!(f, "{} ({})", self.message, self.code)?,
        }
        if let Some(d) = &self.detail {
            write!(f, ": {d}")?;
        }
        Ok(())
    }
}

fn merr(code: SqlState, message: impl Into<String>, file: Option<&str>) -> MigrateError {
    MigrateError { code, message: message.into(), file: file.map(str::to_string), detail: None }
}

fn sql_err(e: SqlError, file: Option<&str>) -> MigrateError {
    MigrateError { code: e.code, message: e.message, file: file.map(str::to_string), detail: e.detail }
}

fn checksum(sql: &str) -> String {
    ring::digest::digest(&ring::digest::SHA256, sql.as_bytes()).as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

impl Migration {
    /// A migration from its file name (`<version>_<name>.sql`) and contents.
    pub fn new(file_name: &str, sql: &str) -> Result<Migration, MigrateError> {
        let bad = || {
            merr(
                SqlState::BkgMigrationName,
                "migration files are named <version>_<name>.sql with a version of at least 8 digits",
                Some(file_name),
            )
        };
        let stem = file_name.strip_suffix(".sql").ok_or_else(bad)?;
        let (version, name) = stem.split_once('_').ok_or_else(bad)?;
        if version.len() < 8
            || !version.chars().all(|c| c.is_ascii_digit())
            || name.is_empty()
            || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(bad());
        }
        if sql.len() > FILE_BYTES_MAX {
            return Err(merr(
                SqlState::BkgMigrationRead,
                format!("larger than {FILE_BYTES_MAX} bytes"),
                Some(file_name),
            ));
        }
        Ok(Migration { version: version.into(), name: name.into(), sql: sql.into(), checksum: checksum(sql) })
    }

    pub fn file_name(&self) -> String {
        format!("{}_{}.sql", self.version, self.name)
    }
}

/// The migrations built into the binary (`crates/bkg-db/migrations/`).
pub fn builtin() -> Vec<Migration> {
    BUILTIN
        .iter()
        .map(|(f, sql)| Migration::new(f, sql).expect("built-in migration names are checked by tests"))
        .collect()
}

/// The `*.sql` files of `dir` (other files are ignored).
pub fn load_dir(dir: &Path) -> Result<Vec<Migration>, MigrateError> {
    let rd = std::fs::read_dir(dir)
        .map_err(|e| merr(SqlState::BkgMigrationRead, format!("cannot read {}: {e}", dir.display()), None))?;
    let mut out = Vec::new();
    for entry in rd {
        let entry =
            entry.map_err(|e| merr(SqlState::BkgMigrationRead, format!("cannot read {}: {e}", dir.display()), None))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.ends_with(".sql") {
            continue;
        }
        let path = entry.path();
        let meta =
            std::fs::metadata(&path).map_err(|e| merr(SqlState::BkgMigrationRead, e.to_string(), Some(&name)))?;
        if meta.len() as usize > FILE_BYTES_MAX {
            return Err(merr(SqlState::BkgMigrationRead, format!("larger than {FILE_BYTES_MAX} bytes"), Some(&name)));
        }
        let sql =
            std::fs::read_to_string(&path).map_err(|e| merr(SqlState::BkgMigrationRead, e.to_string(), Some(&name)))?;
        out.push(Migration::new(&name, &sql)?);
    }
    sort(out)
}

/// Orders by version; the same version twice is an error unless the files are identical.
pub fn sort(mut all: Vec<Migration>) -> Result<Vec<Migration>, MigrateError> {
    if all.len() > MIGRATIONS_MAX {
        return Err(merr(SqlState::BkgMigrationName, format!("more than {MIGRATIONS_MAX} migrations"), None));
    }
    all.sort_by(|a, b| a.version.cmp(&b.version).then(a.name.cmp(&b.name)));
    all.dedup();
    for w in all.windows(2) {
        if w[0].version == w[1].version {
            return Err(merr(
                SqlState::BkgMigrationName,
                format!("version {} is used by two migrations", w[0].version),
                Some(&w[1].file_name()),
            ));
        }
    }
    Ok(all)
}

/// State of one migration.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StatusRow {
    pub version: String,
    pub name: String,
    /// `applied`, `pending`, `edited` (applied, the file changed since) or `missing` (applied,
    /// no file given now).
    pub state: &'static str,
    pub applied_at: Option<String>,
}

const TABLE: &str = "bkg_migrations.schema_migrations";

async fn ensure_table(session: &mut Session) -> SqlResult<()> {
    for sql in [
        "CREATE SCHEMA IF NOT EXISTS bkg_migrations",
        "CREATE TABLE IF NOT EXISTS bkg_migrations.schema_migrations (version text PRIMARY KEY, name text NOT NULL, \
         checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())",
    ] {
        session.execute_one(sql).await?;
    }
    Ok(())
}

async fn applied(session: &mut Session) -> SqlResult<Vec<(String, String, String, String)>> {
    let out = session
        .execute_one(&format!("SELECT version, name, checksum, CAST(applied_at AS text) FROM {TABLE} ORDER BY version"))
        .await?;
    let mut rows = Vec::new();
    if let Output::Rows { batches, .. } = out {
        for b in batches {
            for r in 0..b.num_rows() {
                let t =
                    |c: usize| crate::pg_format::text_value(b.column(c).as_ref(), r).ok().flatten().unwrap_or_default();
                rows.push((t(0), t(1), t(2), t(3)));
            }
        }
    }
    Ok(rows)
}

/// Where each of `migrations` stands (and applied ones no longer given).
pub async fn status(engine: &Arc<Engine>, migrations: &[Migration]) -> Result<Vec<StatusRow>, MigrateError> {
    let mut session = engine.session("postgres");
    ensure_table(&mut session).await.map_err(|e| sql_err(e, None))?;
    let done = applied(&mut session).await.map_err(|e| sql_err(e, None))?;
    let mut out = Vec::new();
    for m in migrations {
        let row = done.iter().find(|d| d.0 == m.version);
        let state = match row {
            None => "pending",
            Some(d) if d.2 != m.checksum => "edited",
            Some(_) => "applied",
        };
        out.push(StatusRow {
            version: m.version.clone(),
            name: m.name.clone(),
            state,
            applied_at: row.map(|d| d.3.clone()),
        });
    }
    for d in done.iter().filter(|d| !migrations.iter().any(|m| m.version == d.0)) {
        out.push(StatusRow {
            version: d.0.clone(),
            name: d.1.clone(),
            state: "missing",
            applied_at: Some(d.3.clone()),
        });
    }
    out.sort_by(|a, b| a.version.cmp(&b.version));
    Ok(out)
}

/// One apply at a time per process.
static APPLY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Applies the pending ones of `migrations` in order; returns the versions applied. Stops at the
/// first failure (whose transaction is rolled back; earlier ones stay applied).
pub async fn apply(engine: &Arc<Engine>, migrations: &[Migration]) -> Result<Vec<String>, MigrateError> {
    let _one = APPLY.lock().await;
    let rows = status(engine, migrations).await?;
    if let Some(e) = rows.iter().find(|r| r.state == "edited") {
        return Err(merr(
            SqlState::BkgMigrationEdited,
            "this migration was edited after it was applied",
            Some(&format!("{}_{}.sql", e.version, e.name)),
        )
        .with_detail("Write a new migration instead of changing an applied one."));
    }
    let mut done = Vec::new();
    for m in migrations.iter().filter(|m| rows.iter().any(|r| r.version == m.version && r.state == "pending")) {
        let file = m.file_name();
        let stmts = Session::parse(&m.sql).map_err(|e| sql_err(e, Some(&file)))?;
        if stmts.iter().any(|s| {
            matches!(s, Statement::StartTransaction { .. } | Statement::Commit { .. } | Statement::Rollback { .. })
        }) {
            return Err(merr(
                SqlState::BkgMigrationTransaction,
                "migrations run in their own transaction: remove BEGIN/COMMIT",
                Some(&file),
            ));
        }
        let mut session = engine.session("postgres");
        session.execute_one("BEGIN").await.map_err(|e| sql_err(e, Some(&file)))?;
        let mut failed = None;
        for stmt in stmts {
            if let Err(e) = Box::pin(session.execute_statement(stmt)).await {
                failed = Some(e);
                break;
            }
        }
        if failed.is_none() {
            let lit = |s: &str| ast::Expr::value(ast::Value::SingleQuotedString(s.to_string()));
            let record = format!("INSERT INTO {TABLE} (version, name, checksum) VALUES ($1, $2, $3)");
            let params = [lit(&m.version), lit(&m.name), lit(&m.checksum)];
            if let Err(e) = Box::pin(session.execute_with_params(&record, &params)).await {
                failed = Some(e);
            }
        }
        if failed.is_none() {
            let detail = serde_json::json!({ "version": m.version, "name": m.name, "checksum": m.checksum });
            failed = session.audit("migration.apply", &file, detail).err();
        }
        if let Some(e) = failed {
            let _ = session.execute_one("ROLLBACK").await;
            return Err(sql_err(e, Some(&file)));
        }
        session.execute_one("COMMIT").await.map_err(|e| sql_err(e, Some(&file)))?;
        tracing::info!(migration = %file, "migration applied");
        done.push(m.version.clone());
    }
    Ok(done)
}

impl MigrateError {
    fn with_detail(mut self, d: &str) -> MigrateError {
        self.detail = Some(d.into());
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_order() {
        assert!(Migration::new("20261126120000_create_todos.sql", "").is_ok());
        for bad in ["create.sql", "2026_x.sql", "20261126120000_.sql", "20261126120000_a b.sql", "20261126120000_x.txt"]
        {
            assert_eq!(Migration::new(bad, "").unwrap_err().code, SqlState::BkgMigrationName, "{bad}");
        }
        let a = Migration::new("20260101000000_a.sql", "select 1").unwrap();
        let b = Migration::new("20250101000000_b.sql", "select 2").unwrap();
        let sorted = sort(vec![a.clone(), b.clone(), a.clone()]).unwrap();
        assert_eq!(sorted, vec![b, a.clone()]);
        let clash = Migration::new("20260101000000_other.sql", "select 3").unwrap();
        assert_eq!(sort(vec![a, clash]).unwrap_err().code, SqlState::BkgMigrationName);
        assert!(!builtin().is_empty());
    }
}
