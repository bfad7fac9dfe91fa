//! The operators' API behind the dashboard (`/admin/*`): who is asking and what they may do,
//! the server at a glance, rates over the last minutes, recent slow statements, and the
//! signing and API keys. Everything but `/admin/bootstrap` and `/admin/whoami` needs the admin
//! scope or the service role (the keys the service role itself), decided by the same check as
//! `/policy` and `/audit`.
//!
//! Rates need a past: [`sample_history`] reads the counters every [`HISTORY_INTERVAL_S`]
//! seconds into a bounded ring, so the charts have the last [`HISTORY_SAMPLES_MAX`] intervals as
//! soon as a page opens.

pub(crate) mod keys;
pub(crate) mod overview;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use crate::HttpState;
use crate::rest::RestError;
use bkg_sql::metrics::{Histogram, LATENCY_BOUNDS_S};

/// Seconds between two samples of the counters.
pub const HISTORY_INTERVAL_S: u64 = 5;
/// Rate samples kept (15 minutes at 5 s).
pub const HISTORY_SAMPLES_MAX: usize = 180;
/// Most slow statements one request returns.
const SLOW_PAGE_MAX: usize = 200;

/// Counters of the doors outside this crate (realtime, storage), read by the sampler.
#[derive(Debug, Clone, Copy, Default)]
pub struct DoorStats {
    /// HTTP connections open now (REST, auth, storage, and realtime's WebSockets, which stay
    /// HTTP connections after their upgrade).
    pub http_connections: u64,
    /// Flight SQL (gRPC) connections open now.
    pub flight_connections: u64,
    pub realtime_clients: u64,
    pub storage_bytes_in: u64,
    pub storage_bytes_out: u64,
}

/// One reading of the counters.
#[derive(Debug, Clone)]
struct Reading {
    at: Instant,
    time: String,
    commits: u64,
    statements: u64,
    http_requests: u64,
    http_errors: u64,
    latency: [u64; LATENCY_BOUNDS_S.len() + 1],
    pg_connections: u64,
    doors: DoorStats,
}

/// The ring of readings (see the module documentation).
#[derive(Debug, Default)]
pub struct History {
    ring: std::sync::Mutex<VecDeque<Reading>>,
    /// The overview's row counts of the last few seconds (one computation at a time).
    pub(crate) counts: overview::CountsCache,
}

fn read(s: &HttpState) -> Reading {
    let m = &s.metrics;
    Reading {
        at: Instant::now(),
        time: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        commits: s.engine.stats().commits,
        statements: m.queries.load(Ordering::Relaxed),
        http_requests: m.http_requests.load(Ordering::Relaxed),
        http_errors: m.http_client_errors.load(Ordering::Relaxed) + m.http_server_errors.load(Ordering::Relaxed),
        latency: m.http_latency.counts(),
        pg_connections: (s.pg_active)() as u64,
        doors: (s.door_stats)(),
    }
}

impl History {
    fn push(&self, r: Reading) {
        let mut ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        if ring.len() > HISTORY_SAMPLES_MAX {
            ring.pop_front();
        }
        ring.push_back(r);
    }

    /// Rates between consecutive readings, oldest first.
    fn samples(&self) -> Vec<Value> {
        let ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        ring.iter().zip(ring.iter().skip(1)).map(|(a, b)| rates(a, b)).collect()
    }
}

/// The rates between readings `a` and `b` (a before b).
fn rates(a: &Reading, b: &Reading) -> Value {
    let dt = b.at.duration_since(a.at).as_secs_f64().max(1e-3);
    let per_s = |x: u64, y: u64| ((y.saturating_sub(x)) as f64 / dt * 100.0).round() / 100.0;
    let window: [u64; LATENCY_BOUNDS_S.len() + 1] = std::array::from_fn(|i| b.latency[i].saturating_sub(a.latency[i]));
    let q = |p: f64| Histogram::quantile_ms(&window, p).map(|v| (v * 100.0).round() / 100.0);
    json!({
        "time": b.time,
        "commits_per_s": per_s(a.commits, b.commits),
        "statements_per_s": per_s(a.statements, b.statements),
        "http_requests_per_s": per_s(a.http_requests, b.http_requests),
        "http_errors_per_s": per_s(a.http_errors, b.http_errors),
        "http_latency_ms": { "p50": q(0.5), "p95": q(0.95), "p99": q(0.99) },
        "pgwire_connections": b.pg_connections,
        "http_connections": b.doors.http_connections,
        "flight_connections": b.doors.flight_connections,
        "realtime_clients": b.doors.realtime_clients,
        "storage_bytes_in_per_s": per_s(a.doors.storage_bytes_in, b.doors.storage_bytes_in),
        "storage_bytes_out_per_s": per_s(a.doors.storage_bytes_out, b.doors.storage_bytes_out),
    })
}

/// Reads the counters every [`HISTORY_INTERVAL_S`] seconds until `stop`.
pub async fn sample_history(state: HttpState, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_secs(HISTORY_INTERVAL_S));
    // After a stall, one late reading rather than a burst of readings microseconds apart
    // (which would show a few requests as thousands per second).
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => state.history.push(read(&state)),
            _ = stop.changed() => return,
        }
    }
}

pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/admin/bootstrap", get(bootstrap))
        .route("/admin/whoami", get(whoami))
        .route("/admin/overview", get(overview::overview))
        .route("/admin/metrics/history", get(history))
        .route("/admin/statements/slow", get(slow))
        .route("/admin/keys", get(keys::list))
        .route("/admin/keys/rotate", post(keys::rotate))
        .route("/admin/keys/rotate-api-keys", post(keys::rotate_api_keys))
        .route("/admin/keys/{kid}/retire", post(keys::retire))
        .with_state(state)
}

/// What a sign-in page needs before anyone signed in
#[utoipa::path(get, path = "/admin/bootstrap", tag = "operations", operation_id = "admin_bootstrap", security(()),
    responses((status = 200, description = "{version, anon_key}: the anon key is public (it is what browsers send)", content_type = "application/json")))]
pub async fn bootstrap(State(s): State<HttpState>) -> Json<Value> {
    // keys.json's: the admin API may have issued new API keys since the start.
    let anon =
        bkg_auth::AuthConfig::stored_anon_key(s.engine.data_dir()).unwrap_or_else(|| s.rest.auth.anon_key.clone());
    Json(json!({ "version": env!("CARGO_PKG_VERSION"), "anon_key": anon }))
}

/// Whether the caller is an admin (the service role, or a token with the admin scope).
pub(crate) fn is_admin(p: &bkg_auth::Principal) -> bool {
    match bkg_sql::policy::Scopes::from_claims(&Value::Object(p.claims.clone())) {
        Some(sc) => sc.admin,
        None => p.role == bkg_auth::SERVICE_ROLE,
    }
}

/// The principal of the request's credentials
#[utoipa::path(get, path = "/admin/whoami", tag = "operations", operation_id = "admin_whoami",
    responses(
        (status = 200, description = "{role, user_id, email, admin, service_role}", content_type = "application/json"),
        (status = 401, description = "No or bad credentials", body = crate::rest::error::ErrorBody),
    ), security(("apikey" = []), ("bearer" = [])))]
pub async fn whoami(
    State(s): State<HttpState>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Result<Json<Value>, RestError> {
    let p = s.rest.authenticate(addr, &headers)?;
    let claim = |n: &str| p.claims.get(n).and_then(Value::as_str).map(str::to_string);
    Ok(Json(json!({
        "role": p.role,
        "user_id": claim("sub"),
        "email": claim("email"),
        "admin": is_admin(&p),
        "service_role": p.role == bkg_auth::SERVICE_ROLE,
    })))
}

/// Rates over the last minutes
#[utoipa::path(get, path = "/admin/metrics/history", tag = "operations", operation_id = "admin_metrics_history",
    responses(
        (status = 200, description = "{interval_s, samples: [{time, commits_per_s, statements_per_s, http_requests_per_s, http_errors_per_s, http_latency_ms: {p50, p95, p99}, pgwire_connections, http_connections, flight_connections, realtime_clients, storage_bytes_in_per_s, storage_bytes_out_per_s}], errors_by_code} oldest first", content_type = "application/json"),
        (status = 403, description = "Not the admin scope or the service role", body = crate::rest::error::ErrorBody),
    ), security(("apikey" = []), ("bearer" = [])))]
pub async fn history(
    State(s): State<HttpState>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Result<Json<Value>, RestError> {
    crate::rest::policy::admin(&s.rest, addr, &headers)?;
    Ok(Json(json!({
        "interval_s": HISTORY_INTERVAL_S,
        "samples": s.history.samples(),
        "errors_by_code": s.metrics.errors_by_code(),
    })))
}

#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SlowParams {
    /// Statements to return (1–200, default 50).
    limit: Option<usize>,
}

/// Recent slow statements of every front door
#[utoipa::path(get, path = "/admin/statements/slow", tag = "operations", operation_id = "admin_slow_statements", params(SlowParams),
    responses(
        (status = 200, description = "{threshold_ms, statements: [{time, duration_ms, door, role, statement, sqlstate}]} newest first", content_type = "application/json"),
        (status = 403, description = "Not the admin scope or the service role", body = crate::rest::error::ErrorBody),
    ), security(("apikey" = []), ("bearer" = [])))]
pub async fn slow(
    State(s): State<HttpState>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Query(p): Query<SlowParams>,
) -> Result<Response, RestError> {
    crate::rest::policy::admin(&s.rest, addr, &headers)?;
    let limit = p.limit.unwrap_or(50).clamp(1, SLOW_PAGE_MAX);
    Ok(Json(json!({
        "threshold_ms": s.engine.slow.threshold_ms(),
        "statements": s.engine.slow.recent(limit),
    }))
    .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(secs: u64, commits: u64, fast: u64) -> Reading {
        let mut latency = [0; LATENCY_BOUNDS_S.len() + 1];
        latency[1] = fast;
        Reading {
            at: Instant::now() + Duration::from_secs(secs),
            time: format!("t{secs}"),
            commits,
            statements: commits * 2,
            http_requests: fast,
            http_errors: 0,
            latency,
            pg_connections: 3,
            doors: DoorStats { realtime_clients: 2, storage_bytes_in: secs * 100, ..Default::default() },
        }
    }

    #[test]
    fn rates_come_from_the_difference_of_two_readings() {
        let r = rates(&reading(0, 10, 5), &reading(5, 60, 105));
        assert_eq!(r["time"], "t5");
        assert_eq!(r["commits_per_s"], 10.0);
        assert_eq!(r["statements_per_s"], 20.0);
        assert_eq!(r["http_requests_per_s"], 20.0);
        assert_eq!(r["storage_bytes_in_per_s"], 100.0);
        assert_eq!(r["pgwire_connections"], 3);
        let p50 = r["http_latency_ms"]["p50"].as_f64().unwrap();
        assert!((0.5..=1.0).contains(&p50), "{p50}");
        // No request in the window: no latency rather than a made-up one.
        assert!(rates(&reading(0, 1, 5), &reading(5, 1, 5))["http_latency_ms"]["p50"].is_null());
    }

    #[test]
    fn the_ring_is_bounded() {
        let h = History::default();
        for i in 0..HISTORY_SAMPLES_MAX as u64 + 20 {
            h.push(reading(i, i, i));
        }
        assert_eq!(h.samples().len(), HISTORY_SAMPLES_MAX);
    }
}
