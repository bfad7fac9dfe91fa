//! Process metrics, rendered in the Prometheus text format at `/metrics`.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct Metrics {
    pub connections: AtomicU64,
    pub queries: AtomicU64,
    pub query_errors: AtomicU64,
    pub http_requests: AtomicU64,
    /// HTTP answers with a 4xx status (429 included) and with a 5xx status.
    pub http_client_errors: AtomicU64,
    pub http_server_errors: AtomicU64,
}

impl Metrics {
    pub fn render(&self, engine: &crate::Engine, active_connections: usize, fast_path_queries: u64) -> String {
        let s = engine.stats();
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, value: u64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}");
        };
        metric(
            "bkg_pg_connections_total",
            "counter",
            "PostgreSQL wire connections accepted.",
            self.connections.load(Ordering::Relaxed),
        );
        metric(
            "bkg_pg_connections_active",
            "gauge",
            "PostgreSQL wire connections open now.",
            active_connections as u64,
        );
        metric("bkg_queries_total", "counter", "Statements executed.", self.queries.load(Ordering::Relaxed));
        metric(
            "bkg_query_errors_total",
            "counter",
            "Statements that failed.",
            self.query_errors.load(Ordering::Relaxed),
        );
        metric(
            "bkg_http_requests_total",
            "counter",
            "HTTP requests served (every path).",
            self.http_requests.load(Ordering::Relaxed),
        );
        metric(
            "bkg_http_client_errors_total",
            "counter",
            "HTTP answers with a 4xx status (bad requests, refused keys, privileges, rate limit).",
            self.http_client_errors.load(Ordering::Relaxed),
        );
        metric(
            "bkg_http_server_errors_total",
            "counter",
            "HTTP answers with a 5xx status.",
            self.http_server_errors.load(Ordering::Relaxed),
        );
        metric("bkg_commits_total", "counter", "Transactions committed with writes.", s.commits);
        metric(
            "bkg_fast_path_queries_total",
            "counter",
            "Point queries on a unique key answered without the query planner.",
            fast_path_queries,
        );
        metric(
            "bkg_serialization_failures_total",
            "counter",
            "Row changes refused because a transaction that committed after the snapshot changed the row (40001; under READ COMMITTED most are retried).",
            s.serialization_failures,
        );
        let (locks_held, lock_waits, deadlocks) = engine.db.lock_stats();
        metric("bkg_row_locks_held", "gauge", "Row write locks held by open transactions.", locks_held as u64);
        metric(
            "bkg_lock_waits_total",
            "counter",
            "Statements that waited for another transaction's row lock.",
            lock_waits,
        );
        metric("bkg_deadlocks_total", "counter", "Lock waits refused with 40P01 (deadlock detected).", deadlocks);
        metric(
            "bkg_wal_fsyncs_total",
            "counter",
            "fdatasync calls of the WAL writer (one per group commit).",
            s.wal_fsyncs,
        );
        metric("bkg_wal_records_total", "counter", "WAL records written.", s.wal_records);
        metric("bkg_wal_bytes_total", "counter", "WAL bytes written.", s.wal_bytes);
        metric(
            "bkg_wal_bytes_since_checkpoint",
            "gauge",
            "WAL bytes not yet covered by a snapshot.",
            s.wal_bytes_since_checkpoint,
        );
        metric("bkg_visible_commit_ts", "gauge", "Newest durable commit timestamp.", s.visible_ts);
        metric(
            "bkg_mvcc_row_versions",
            "gauge",
            "Row versions held in memory since the last checkpoint (live and dead).",
            s.row_versions,
        );
        metric(
            "bkg_mvcc_bulk_rows",
            "gauge",
            "Rows of bulk inserts (COPY, Flight ingest, CREATE TABLE AS) held as Arrow columns since the last checkpoint.",
            s.bulk_rows,
        );
        metric("bkg_active_snapshots", "gauge", "Snapshots held by open transactions.", s.active_snapshots as u64);
        let t = crate::telemetry::telemetry();
        metric(
            "bkg_otel_spans_exported_total",
            "counter",
            "Trace spans handed to the OTLP exporter and accepted by the receiver.",
            t.spans_exported.load(Ordering::Relaxed),
        );
        metric(
            "bkg_otel_spans_dropped_total",
            "counter",
            "Trace spans dropped because the export queue was full (exporting never blocks a request).",
            t.spans_dropped.load(Ordering::Relaxed),
        );
        metric(
            "bkg_otel_export_failures_total",
            "counter",
            "Trace spans the OTLP receiver did not accept (unreachable, refused, timed out).",
            t.export_failures.load(Ordering::Relaxed),
        );
        if let Some(a) = engine.auditor() {
            metric(
                "bkg_audit_events_written_total",
                "counter",
                "Lines appended to the signed audit log.",
                a.stats.events_written.load(Ordering::Relaxed),
            );
            metric(
                "bkg_audit_write_failures_total",
                "counter",
                "Attempts to write audit events that failed (the events wait in bkg_audit.outbox).",
                a.stats.ship_failures.load(Ordering::Relaxed),
            );
        }
        metric(
            "bkg_oldest_snapshot_age_seconds",
            "gauge",
            "How long the oldest snapshot still held by a transaction has been held (0 when none is).",
            s.oldest_snapshot_age_ms.unwrap_or(0) / 1000,
        );
        metric(
            "bkg_gc_horizon_lag",
            "gauge",
            "Commits newer than the oldest snapshot held: the versions they replaced cannot be collected yet.",
            s.gc_horizon_lag,
        );
        let _ = writeln!(
            out,
            "# HELP bkg_otel_sampling_rate Share of new traces sampled (CAVE_OTEL_SAMPLING_RATE; 0 when no OTLP endpoint is set).\n# TYPE bkg_otel_sampling_rate gauge\nbkg_otel_sampling_rate {}",
            if t.enabled() { t.rate() } else { 0.0 }
        );
        out
    }
}
