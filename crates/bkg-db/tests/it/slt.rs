//! Runs every `testdata/slt/**/*.slt` file twice: in process through the engine, and through
//! pgwire against a started server with tokio-postgres. Both must give the file's results.

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use bkg_db::sql::pg_format::text_value;
use bkg_db::{Engine, EngineConfig, Output, Session};
use bkg_kernel::Options;
use sqllogictest::{AsyncDB, DBOutput, DefaultColumnType};

use crate::server::TestServer;

#[derive(Debug)]
struct TestError(String);

impl std::fmt::Display for TestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TestError {}

fn cell(v: Option<String>) -> String {
    match v {
        None => "NULL".into(),
        Some(s) if s.is_empty() => "(empty)".into(),
        Some(s) => s,
    }
}

struct EngineDb {
    session: Session,
}

#[async_trait]
impl AsyncDB for EngineDb {
    type Error = TestError;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, TestError> {
        let mut last = DBOutput::StatementComplete(0);
        for r in self.session.execute(sql).await {
            match r.map_err(|e| TestError(format!("{} {}", e.code, e.message)))? {
                Output::Rows { schema, batches, .. } => {
                    let mut rows = Vec::new();
                    for b in &batches {
                        for i in 0..b.num_rows() {
                            let mut row = Vec::with_capacity(b.num_columns());
                            for c in b.columns() {
                                row.push(cell(text_value(c.as_ref(), i).map_err(|e| TestError(e.to_string()))?));
                            }
                            rows.push(row);
                        }
                    }
                    last = DBOutput::Rows { types: vec![DefaultColumnType::Any; schema.fields().len()], rows };
                }
                Output::Command { rows, .. } => last = DBOutput::StatementComplete(rows.unwrap_or(0)),
                Output::CopyIn { .. } | Output::CopyOut { .. } => {
                    return Err(TestError("COPY needs a client that sends or reads data".into()));
                }
            }
        }
        Ok(last)
    }

    async fn shutdown(&mut self) {}

    async fn sleep(dur: std::time::Duration) {
        tokio::time::sleep(dur).await
    }
}

struct PgDb {
    client: tokio_postgres::Client,
}

#[async_trait]
impl AsyncDB for PgDb {
    type Error = TestError;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, TestError> {
        let msgs = self.client.simple_query(sql).await.map_err(|e| match e.as_db_error() {
            Some(db) => TestError(format!("{} {}", db.code().code(), db.message())),
            None => TestError(e.to_string()),
        })?;
        let mut rows = Vec::new();
        let mut ncols = None;
        let mut last = DBOutput::StatementComplete(0);
        for m in msgs {
            match m {
                tokio_postgres::SimpleQueryMessage::RowDescription(cols) => {
                    ncols = Some(cols.len());
                    rows.clear();
                }
                tokio_postgres::SimpleQueryMessage::Row(r) => {
                    ncols = Some(r.len());
                    rows.push((0..r.len()).map(|i| cell(r.get(i).map(str::to_string))).collect());
                }
                tokio_postgres::SimpleQueryMessage::CommandComplete(n) => {
                    last = match ncols.take() {
                        Some(c) => {
                            DBOutput::Rows { types: vec![DefaultColumnType::Any; c], rows: std::mem::take(&mut rows) }
                        }
                        None => DBOutput::StatementComplete(n),
                    };
                }
                _ => {}
            }
        }
        Ok(last)
    }

    async fn shutdown(&mut self) {}

    async fn sleep(dur: std::time::Duration) {
        tokio::time::sleep(dur).await
    }
}

/// Label of the runs against bkg-db: `onlyif bkg-db` marks records where bkg-db deliberately
/// differs from PostgreSQL (documented in `testdata/slt/KNOWN-GAPS.md`).
const LABEL: &str = "bkg-db";

async fn pg_runner(conn: String) -> Result<PgDb, TestError> {
    let (client, c) =
        tokio_postgres::connect(&conn, tokio_postgres::NoTls).await.map_err(|e| TestError(e.to_string()))?;
    tokio::spawn(async move {
        let _ = c.await;
    });
    Ok(PgDb { client })
}

fn slt_files() -> Vec<PathBuf> {
    let root = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../testdata/slt"));
    let mut out = Vec::new();
    let mut stack = vec![root];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "slt") {
                out.push(p);
            }
        }
    }
    out.sort();
    assert!(!out.is_empty(), "no .slt files found");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slt_through_the_engine() {
    let mut failures = Vec::new();
    for file in slt_files() {
        let dir = tempfile::tempdir().unwrap();
        let engine: Arc<Engine> = Engine::open(Options::new(dir.path()), EngineConfig::default()).unwrap();
        let mut runner = sqllogictest::Runner::new(move || {
            let engine = engine.clone();
            async move { Ok::<_, TestError>(EngineDb { session: engine.session("postgres") }) }
        });
        runner.with_column_validator(|_, _| true);
        runner.add_label(LABEL);
        if let Err(e) = runner.run_file_async(&file).await {
            failures.push(format!("{}: {e}", file.display()));
        }
    }
    assert!(failures.is_empty(), "{} file(s) failed:\n{}", failures.len(), failures.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slt_through_pgwire() {
    let mut failures = Vec::new();
    for file in slt_files() {
        let server = TestServer::start();
        let conn = server.conn_string();
        let mut runner = sqllogictest::Runner::new(move || pg_runner(conn.clone()));
        runner.with_column_validator(|_, _| true);
        runner.add_label(LABEL);
        if let Err(e) = runner.run_file_async(&file).await {
            failures.push(format!("{}: {e}", file.display()));
        }
        drop(server);
    }
    assert!(failures.is_empty(), "{} file(s) failed:\n{}", failures.len(), failures.join("\n"));
}

/// Runs the same files against a real PostgreSQL, to keep their expected results honest:
/// `BKG_SLT_POSTGRES_DSN=... cargo nextest run --workspace --run-ignored only slt_against_postgresql`
/// (`make slt-postgres` starts a throwaway PostgreSQL 15 and does this). Each file starts from an
/// empty database (every user schema dropped); records marked `onlyif bkg-db` are skipped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a PostgreSQL server in BKG_SLT_POSTGRES_DSN"]
async fn slt_against_postgresql() {
    let dsn =
        std::env::var("BKG_SLT_POSTGRES_DSN").expect("BKG_SLT_POSTGRES_DSN names the PostgreSQL to check against");
    let mut failures = Vec::new();
    for file in slt_files() {
        let admin = pg_runner(dsn.clone()).await.unwrap();
        admin
            .client
            .batch_execute(
                "DO $$DECLARE s text; BEGIN \
                   FOR s IN SELECT nspname FROM pg_namespace \
                            WHERE nspname NOT LIKE 'pg\\_%' AND nspname <> 'information_schema' LOOP \
                     EXECUTE format('DROP SCHEMA %I CASCADE', s); \
                   END LOOP; END$$; \
                 CREATE SCHEMA public; GRANT USAGE ON SCHEMA public TO PUBLIC",
            )
            .await
            .unwrap();
        let conn = dsn.clone();
        let mut runner = sqllogictest::Runner::new(move || {
            let conn = conn.clone();
            async move {
                let db = pg_runner(conn).await?;
                db.client.batch_execute("SET TIME ZONE 'UTC'").await.map_err(|e| TestError(e.to_string()))?;
                Ok(db)
            }
        });
        runner.with_column_validator(|_, _| true);
        runner.add_label("postgres");
        if let Err(e) = runner.run_file_async(&file).await {
            failures.push(format!("{}: {e}", file.display()));
        }
    }
    assert!(failures.is_empty(), "{} file(s) failed:\n{}", failures.len(), failures.join("\n"));
}
