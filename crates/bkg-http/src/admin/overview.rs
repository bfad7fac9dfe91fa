//! `GET /admin/overview`: the server at a glance — version, uptime, listeners, the data
//! directory and WAL on disk, the last checkpoint, connections, totals and every table with its
//! row count, snapshot size and row-level security.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::Ordering;

use axum::extract::{ConnectInfo, State};
use axum::http::HeaderMap;
use axum::response::Json;
use bkg_sql::{Output, SqlState};
use serde_json::{Value, json};

use crate::HttpState;
use crate::rest::RestError;

/// Tables listed (with a row count each) at most; `tables_truncated` says when there are more.
const TABLES_MAX: usize = 500;
/// Directory entries looked at when summing the data directory's size.
const DIR_ENTRIES_MAX: usize = 200_000;

/// Bytes of the files under `dir` (not following links), and whether the walk stopped early.
fn dir_bytes(dir: &Path) -> (u64, bool) {
    let (mut total, mut seen, mut stack) = (0u64, 0usize, vec![dir.to_path_buf()]);
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            seen += 1;
            if seen > DIR_ENTRIES_MAX {
                return (total, true);
            }
            match e.metadata() {
                Ok(m) if m.is_dir() => stack.push(e.path()),
                Ok(m) if m.is_file() => total += m.len(),
                _ => {}
            }
        }
    }
    (total, false)
}

fn rfc3339_ms(ms: u64) -> Option<String> {
    chrono::DateTime::from_timestamp_millis(ms as i64).map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
}

/// How long counted rows are reused, and the longest a count may run.
const COUNTS_FRESH: std::time::Duration = std::time::Duration::from_secs(5);
const COUNT_TIMEOUT_MS: u64 = 10_000;

/// The last row counts: (when, the tables counted, their counts or why they are missing).
#[derive(Debug, Default)]
pub(crate) struct CountsCache(tokio::sync::Mutex<Option<(std::time::Instant, Vec<(String, String)>, Counted)>>);

type Counted = Result<Vec<Option<i64>>, String>;

impl CountsCache {
    /// The counts of `tables`, from the last few seconds when they were the same tables;
    /// concurrent callers wait for one computation. A failed count (a timeout, a table dropped
    /// meanwhile) is reported as its message, not as an error of the whole overview.
    async fn get(&self, s: &HttpState, tables: Vec<(String, String)>) -> Counted {
        let mut slot = self.0.lock().await;
        if let Some((at, t, c)) = slot.as_ref()
            && at.elapsed() < COUNTS_FRESH
            && *t == tables
        {
            return c.clone();
        }
        let counted = row_counts(s, &tables).await.map_err(|e| e.message);
        *slot = Some((std::time::Instant::now(), tables, counted.clone()));
        counted
    }
}

/// Rows of every table, counted by one superuser statement (row-level security does not apply:
/// this is the operator's view) under a statement timeout.
async fn row_counts(s: &HttpState, tables: &[(String, String)]) -> Result<Vec<Option<i64>>, RestError> {
    if tables.is_empty() {
        return Ok(vec![]);
    }
    let q = bkg_sql::quote::ident;
    // UNION ALL does not promise order: number the parts.
    let sql = format!(
        "SELECT n, c FROM ({}) AS counts(n, c)",
        tables
            .iter()
            .enumerate()
            .map(|(i, (schema, name))| format!("SELECT {i}, count(*) FROM {}.{}", q(schema), q(name)))
            .collect::<Vec<_>>()
            .join(" UNION ALL ")
    );
    let mut session = s.engine.session("postgres");
    Box::pin(session.execute_one(&format!("SET statement_timeout = {COUNT_TIMEOUT_MS}")))
        .await
        .map_err(|e| RestError::from_sql(e, false))?;
    let out = Box::pin(session.execute_one(&sql)).await.map_err(|e| RestError::from_sql(e, false))?;
    let mut counts = vec![None; tables.len()];
    if let Output::Rows { batches, .. } = out {
        use datafusion::arrow::array::{Array, Int64Array};
        use datafusion::arrow::compute::cast;
        use datafusion::arrow::datatypes::DataType;
        for b in batches {
            let n = cast(b.column(0), &DataType::Int64).map_err(|e| RestError::internal(e.to_string()))?;
            let c = cast(b.column(1), &DataType::Int64).map_err(|e| RestError::internal(e.to_string()))?;
            let (n, c) =
                (n.as_any().downcast_ref::<Int64Array>().cloned(), c.as_any().downcast_ref::<Int64Array>().cloned());
            let (Some(n), Some(c)) = (n, c) else { continue };
            for r in 0..b.num_rows() {
                if let Some(slot) = counts.get_mut(n.value(r) as usize)
                    && !c.is_null(r)
                {
                    *slot = Some(c.value(r));
                }
            }
        }
    }
    Ok(counts)
}

/// The server at a glance
#[utoipa::path(get, path = "/admin/overview", tag = "operations", operation_id = "admin_overview",
    responses(
        (status = 200, description = "{version, started_at, uptime_s, data_dir, data_dir_bytes, wal_bytes, last_checkpoint, listeners, connections {pgwire, http, flight, realtime}, totals, tables: [{schema, name, rows, snapshot_bytes, rls_enabled, rls_forced, policies}], tables_truncated, rows_error}: rows are counted at most every 5 s, under a 10 s statement timeout; rows_error says why they are null", content_type = "application/json"),
        (status = 403, description = "Not the admin scope or the service role", body = crate::rest::error::ErrorBody),
    ), security(("apikey" = []), ("bearer" = [])))]
pub async fn overview(
    State(s): State<HttpState>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Result<Json<Value>, RestError> {
    crate::rest::policy::admin(&s.rest, addr, &headers)?;
    let catalog = s.engine.catalog();
    let mut defs: Vec<_> = catalog.tables.values().collect();
    defs.sort_by(|a, b| (&a.schema, &a.name).cmp(&(&b.schema, &b.name)));
    let truncated = defs.len() > TABLES_MAX;
    defs.truncate(TABLES_MAX);
    let names: Vec<(String, String)> = defs.iter().map(|d| (d.schema.clone(), d.name.clone())).collect();
    let (counts, rows_error) = match s.history.counts.get(&s, names.clone()).await {
        Ok(c) => (c, None),
        Err(e) => (vec![None; names.len()], Some(e)),
    };
    let cp = s.engine.last_checkpoint();
    let snapshot_bytes = |id: u64| cp.as_ref().and_then(|c| c.files.iter().find(|f| f.0 == id)).map(|f| f.2);
    let tables: Vec<Value> = defs
        .iter()
        .zip(counts)
        .map(|(d, rows)| {
            json!({
                "schema": d.schema,
                "name": d.name,
                "rows": rows,
                "snapshot_bytes": snapshot_bytes(d.id),
                "rls_enabled": d.row_security,
                "rls_forced": d.force_row_security,
                "policies": d.policies.len(),
            })
        })
        .collect();
    let dir = s.engine.data_dir().to_path_buf();
    let ((data_bytes, partial), (wal_bytes, _)) =
        tokio::task::spawn_blocking(move || (dir_bytes(&dir), dir_bytes(&dir.join("wal"))))
            .await
            .map_err(|e| RestError::internal(e.to_string()))?;
    let stats = s.engine.stats();
    let doors = (s.door_stats)();
    let m = &s.metrics;
    let started_at = chrono::Utc::now() - chrono::Duration::from_std(s.started.elapsed()).unwrap_or_default();
    Ok(Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "started_at": started_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "uptime_s": s.started.elapsed().as_secs(),
        "data_dir": s.engine.data_dir().display().to_string(),
        "data_dir_bytes": data_bytes,
        "data_dir_bytes_partial": partial,
        "wal_bytes": wal_bytes,
        "wal_bytes_since_checkpoint": stats.wal_bytes_since_checkpoint,
        "last_checkpoint": cp.as_ref().map(|c| json!({
            "at": rfc3339_ms(c.wall_ms),
            "checkpoint_ts": c.checkpoint_ts,
            "wal_start_lsn": c.wal_start_lsn,
            "tables": c.tables,
            "rows": c.rows,
            "bytes": c.bytes,
        })),
        "listeners": *s.listeners,
        "connections": {
            "pgwire": (s.pg_active)(),
            "http": doors.http_connections,
            "flight": doors.flight_connections,
            "realtime": doors.realtime_clients,
        },
        "totals": {
            "commits": stats.commits,
            "statements": m.queries.load(Ordering::Relaxed),
            "statement_errors": m.query_errors.load(Ordering::Relaxed),
            "http_requests": m.http_requests.load(Ordering::Relaxed),
            "http_errors": m.http_client_errors.load(Ordering::Relaxed) + m.http_server_errors.load(Ordering::Relaxed),
        },
        "tables": tables,
        "tables_truncated": truncated,
        "rows_error": rows_error,
    })))
}

impl RestError {
    pub(crate) fn internal(message: String) -> RestError {
        tracing::error!("admin API: {message}");
        RestError::new(500, SqlState::InternalError, "internal error; see the server log")
    }
}
