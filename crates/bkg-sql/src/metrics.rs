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
    /// How long HTTP requests took until their answer's head (every path).
    pub http_latency: Histogram,
    /// Errors answered, by front door and code (SQLSTATE); at most
    /// [`ERROR_CODES_MAX`](crate::limits::ERROR_CODES_MAX) pairs, the rest counted as `other`.
    errors: parking_lot::Mutex<std::collections::BTreeMap<(&'static str, String), u64>>,
}

/// Upper bounds of the latency buckets, seconds (the last bucket is everything above).
pub const LATENCY_BOUNDS_S: [f64; 14] =
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// A fixed-bucket latency histogram: one atomic add per observation.
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; LATENCY_BOUNDS_S.len() + 1],
    sum_us: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, took: std::time::Duration) {
        let s = took.as_secs_f64();
        let i = LATENCY_BOUNDS_S.iter().position(|b| s <= *b).unwrap_or(LATENCY_BOUNDS_S.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(took.as_micros() as u64, Ordering::Relaxed);
    }

    /// The count of each bucket (not cumulative).
    pub fn counts(&self) -> [u64; LATENCY_BOUNDS_S.len() + 1] {
        std::array::from_fn(|i| self.buckets[i].load(Ordering::Relaxed))
    }

    /// The `q` quantile (0–1) of the observations counted in `counts`, in milliseconds,
    /// interpolated linearly inside its bucket; `None` without observations. Observations above
    /// the last bound count as the last bound.
    pub fn quantile_ms(counts: &[u64; LATENCY_BOUNDS_S.len() + 1], q: f64) -> Option<f64> {
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = (q.clamp(0.0, 1.0) * total as f64).max(1.0);
        let mut seen = 0u64;
        for (i, c) in counts.iter().enumerate() {
            if *c == 0 {
                continue;
            }
            if (seen + c) as f64 >= rank {
                let lower = if i == 0 { 0.0 } else { LATENCY_BOUNDS_S[i - 1] };
                let upper = LATENCY_BOUNDS_S.get(i).copied().unwrap_or(lower);
                let within = (rank - seen as f64) / *c as f64;
                return Some((lower + (upper - lower) * within) * 1000.0);
            }
            seen += c;
        }
        LATENCY_BOUNDS_S.last().map(|b| b * 1000.0)
    }

    /// Prometheus histogram lines for `name`.
    fn render(&self, out: &mut String, name: &str, help: &str) {
        let counts = self.counts();
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (i, bound) in LATENCY_BOUNDS_S.iter().enumerate() {
            cumulative += counts[i];
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        cumulative += counts[LATENCY_BOUNDS_S.len()];
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
        let _ = writeln!(out, "{name}_sum {}", self.sum_us.load(Ordering::Relaxed) as f64 / 1e6);
        let _ = writeln!(out, "{name}_count {cumulative}");
    }
}

impl Metrics {
    /// Counts an error answered by `door` with `code`.
    pub fn count_error(&self, door: &'static str, code: &str) {
        let mut m = self.errors.lock();
        if let Some(n) = m.get_mut(&(door, code.to_string())) {
            *n += 1;
            return;
        }
        let key = if m.len() < crate::limits::ERROR_CODES_MAX { code.to_string() } else { "other".to_string() };
        *m.entry((door, key)).or_insert(0) += 1;
    }

    /// Errors answered so far, by code (all doors together).
    pub fn errors_by_code(&self) -> std::collections::BTreeMap<String, u64> {
        let mut out = std::collections::BTreeMap::new();
        for ((_, code), n) in self.errors.lock().iter() {
            *out.entry(code.clone()).or_insert(0) += n;
        }
        out
    }

    /// Errors by door and code, and the HTTP latency histogram.
    fn render_errors(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "# HELP bkg_errors_total Errors answered, by front door and SQLSTATE.\n# TYPE bkg_errors_total counter"
        );
        for ((door, code), n) in self.errors.lock().iter() {
            let _ = writeln!(out, "bkg_errors_total{{door=\"{door}\",code=\"{code}\"}} {n}");
        }
        self.http_latency.render(
            out,
            "bkg_http_request_duration_seconds",
            "Time from an HTTP request's arrival to its answer's head (every path).",
        );
    }

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
        self.render_errors(&mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn quantiles_interpolate_inside_buckets() {
        let h = Histogram::default();
        assert_eq!(Histogram::quantile_ms(&h.counts(), 0.5), None);
        for _ in 0..90 {
            h.observe(Duration::from_micros(700)); // 0.5–1 ms bucket
        }
        for _ in 0..10 {
            h.observe(Duration::from_millis(200)); // 100–250 ms bucket
        }
        let c = h.counts();
        let p50 = Histogram::quantile_ms(&c, 0.5).unwrap();
        assert!((0.5..=1.0).contains(&p50), "{p50}");
        let p99 = Histogram::quantile_ms(&c, 0.99).unwrap();
        assert!((100.0..=250.0).contains(&p99), "{p99}");
        h.observe(Duration::from_secs(60));
        assert_eq!(Histogram::quantile_ms(&h.counts(), 1.0), Some(10_000.0));
    }
}
