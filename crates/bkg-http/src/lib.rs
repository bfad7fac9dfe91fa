//! The HTTP front door: REST (`/rest/v1`), users (`/auth/v1`), policies, migrations, export,
//! OpenAPI, health and metrics, on one axum router.

pub mod admin;
#[cfg(test)]
mod fuzz;
pub mod gotrue;
pub mod limits;
pub mod openapi;
pub mod rest;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Json};
use axum::routing::get;

use bkg_sql::Engine;
use bkg_sql::SqlState;
use bkg_sql::metrics::Metrics;

#[derive(Clone)]
pub struct HttpState {
    pub engine: Arc<Engine>,
    pub metrics: Arc<Metrics>,
    /// PostgreSQL wire connections open now (for `/metrics`).
    pub pg_active: Arc<dyn Fn() -> usize + Send + Sync>,
    pub started: Instant,
    /// Authenticates the callers `/healthz` shows details to.
    pub rest: crate::rest::RestState,
    /// The OpenAPI document served at `/openapi.json` (every door's routes).
    pub openapi: Arc<String>,
    /// Metrics of the other doors (realtime), appended to `/metrics`.
    pub extra_metrics: Arc<dyn Fn() -> String + Send + Sync>,
    /// The listeners' addresses (`{http, pgwire, flight}`), for the admin overview.
    pub listeners: Arc<serde_json::Value>,
    /// Counters of the other doors, for the admin API's rates.
    pub door_stats: Arc<dyn Fn() -> admin::DoorStats + Send + Sync>,
    /// The admin API's rate samples ([`admin::sample_history`] fills them).
    pub history: Arc<admin::History>,
}

/// The HTTP routes, with `doors` (the routers of `/auth/v1` and realtime) merged in.
pub fn router(state: HttpState, doors: Router) -> Router {
    let rest = state.rest.clone();
    let counters = state.metrics.clone();
    let admin = admin::router(state.clone());
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
        .with_state(state)
        .merge(crate::rest::router(rest))
        .merge(admin)
        .merge(doors)
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(counters, count))
        .layer(axum::middleware::from_fn(trace_request))
}

/// One span per request (`GET /rest/v1/{table}`), the child of the caller's W3C `traceparent`
/// when it sent one, with the method, route and status.
async fn trace_request(req: axum::extract::Request, next: axum::middleware::Next) -> axum::response::Response {
    use bkg_sql::telemetry;
    let traceparent = req.headers().get("traceparent").and_then(|v| v.to_str().ok());
    let span = telemetry::door_span(traceparent, || {
        let route = req.extensions().get::<axum::extract::MatchedPath>().map(|p| p.as_str());
        let method = req.method().as_str();
        let name = format!("{method} {}", route.unwrap_or("(unmatched)"));
        tracing::debug_span!(
            target: telemetry::SPAN_TARGET,
            "http.request",
            otel.name = name.as_str(),
            otel.kind = "server",
            http.request.method = method,
            http.route = route.unwrap_or(""),
            url.path = req.uri().path(),
            http.response.status_code = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
        )
    });
    if span.is_disabled() {
        return next.run(req).await;
    }
    let r = tracing::Instrument::instrument(next.run(req), span.clone()).await;
    span.record("http.response.status_code", i64::from(r.status().as_u16()));
    if r.status().is_server_error() {
        span.record("otel.status_code", "ERROR");
    }
    r
}

/// Counts every request and its answer's status class.
async fn count(
    State(m): State<Arc<Metrics>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    m.http_requests.fetch_add(1, Ordering::Relaxed);
    let started = Instant::now();
    let r = next.run(req).await;
    m.http_latency.observe(started.elapsed());
    if let Some(ErrorCode(code)) = r.extensions().get::<ErrorCode>() {
        m.count_error("http", code);
    }
    if r.status().is_client_error() {
        m.http_client_errors.fetch_add(1, Ordering::Relaxed);
    } else if r.status().is_server_error() {
        m.http_server_errors.fetch_add(1, Ordering::Relaxed);
    }
    r
}

/// The code of an error answer (a SQLSTATE or a PostgREST code), left on the response by the
/// error's conversion so the request counter can count errors by code.
#[derive(Debug, Clone, Copy)]
pub struct ErrorCode(pub &'static str);

async fn not_found(uri: axum::http::Uri) -> crate::rest::RestError {
    crate::rest::RestError::new(
        404,
        SqlState::PgrstPath,
        format!("Invalid path specified in request URL: {}", uri.path()),
    )
}

/// Liveness: status, version and uptime for anyone; the data directory, last checkpoint and
/// recovery too for operators (the service role or an admin-scoped token).
#[utoipa::path(get, path = "/healthz", tag = "operations", security(()),
    responses((status = 200, description = "The server is up", content_type = "application/json")))]
async fn healthz(
    State(s): State<HttpState>,
    axum::extract::ConnectInfo(addr): axum::extract::ConnectInfo<std::net::SocketAddr>,
    headers: axum::http::HeaderMap,
) -> impl IntoResponse {
    let mut out = serde_json::json!({
        "status": "ok",
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_s": s.started.elapsed().as_secs(),
    });
    let credentials = headers.contains_key("apikey") || headers.contains_key(header::AUTHORIZATION);
    let operator = credentials
        && match s.rest.begin(addr, &headers).await {
            Ok(mut ctx) => ctx.session().is_operator(),
            Err(_) => false,
        };
    if !operator {
        return Json(out);
    }
    let cp = s.engine.last_checkpoint();
    let details = serde_json::json!({
        "data_dir": s.engine.data_dir().display().to_string(),
        "last_checkpoint": cp.map(|c| serde_json::json!({
            "checkpoint_ts": c.checkpoint_ts,
            "wall_ms": c.wall_ms,
            "tables": c.tables,
            "rows": c.rows,
            "bytes": c.bytes,
        })),
        "recovery": {
            "records_replayed": s.engine.recovery.records_replayed,
            "torn_bytes_cut": s.engine.recovery.torn_bytes_cut,
        },
    });
    if let (Some(o), serde_json::Value::Object(d)) = (out.as_object_mut(), details) {
        o.extend(d);
    }
    Json(out)
}

/// Prometheus metrics (text exposition format).
#[utoipa::path(get, path = "/metrics", tag = "operations", security(()),
    responses((status = 200, description = "Metrics", content_type = "text/plain")))]
async fn metrics(State(s): State<HttpState>) -> impl IntoResponse {
    let fast = s.engine.fast_path_queries.load(std::sync::atomic::Ordering::Relaxed);
    let mut body = s.metrics.render(&s.engine, (s.pg_active)(), fast);
    body.push_str(&(s.extra_metrics)());
    (StatusCode::OK, [(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body)
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "operations", security(()),
    responses((status = 200, description = "The OpenAPI 3.1 description of the HTTP API", content_type = "application/json")))]
async fn openapi(State(s): State<HttpState>) -> impl IntoResponse {
    (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], s.openapi.as_str().to_owned())
}
