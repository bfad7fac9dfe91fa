//! `/admin/telemetry`: the trace sampling rate, changed while the server runs (admin scope, as
//! `/policy`). A change is an audited event (`settings.sampling_rate`).

use std::net::SocketAddr;
use std::sync::atomic::Ordering;

use axum::extract::{ConnectInfo, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use bkg_audit::{Event, Outcome};
use bkg_sql::SqlState;
use bkg_sql::telemetry::telemetry;
use serde_json::{Value, json};

use super::policy::admin;
use super::{RestError, RestState, read_body};

fn state() -> Value {
    let t = telemetry();
    json!({
        "enabled": t.enabled(),
        "sampling_rate": t.rate(),
        "spans_exported": t.spans_exported.load(Ordering::Relaxed),
        "spans_dropped": t.spans_dropped.load(Ordering::Relaxed),
        "export_failures": t.export_failures.load(Ordering::Relaxed),
    })
}

/// Telemetry settings and export counters
#[utoipa::path(get, path = "/admin/telemetry", tag = "operations", operation_id = "telemetry_get",
    responses(
        (status = 200, description = "{enabled, sampling_rate, spans_exported, spans_dropped, export_failures}", content_type = "application/json"),
        (status = 403, description = "Not the admin scope or the service role", body = super::error::ErrorBody),
    ), security(("apikey" = []), ("bearer" = [])))]
pub async fn get_telemetry(
    State(s): State<RestState>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Result<Response, RestError> {
    admin(&s, addr, &headers)?;
    Ok(axum::Json(state()).into_response())
}

/// Changes the trace sampling rate at runtime (audited)
#[utoipa::path(put, path = "/admin/telemetry", tag = "operations", operation_id = "telemetry_put",
    request_body(description = "{\"sampling_rate\": 0.0–1.0}", content_type = "application/json"),
    responses(
        (status = 200, description = "The settings after the change", content_type = "application/json"),
        (status = 400, description = "Not a rate from 0.0 to 1.0", body = super::error::ErrorBody),
        (status = 403, description = "Not the admin scope or the service role", body = super::error::ErrorBody),
    ), security(("apikey" = []), ("bearer" = [])))]
pub async fn put_telemetry(
    State(s): State<RestState>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<Response, RestError> {
    let p = admin(&s, addr, &headers)?;
    let bytes = read_body(body, s.config.body_bytes_max).await?;
    let bad = |m: String| RestError::new(400, SqlState::PgrstBody, m).hint("Send {\"sampling_rate\": <0.0 to 1.0>}.");
    let v: Value = serde_json::from_slice(&bytes).map_err(|e| bad(format!("the body is not JSON: {e}")))?;
    let rate =
        v.get("sampling_rate").and_then(Value::as_f64).ok_or_else(|| bad("sampling_rate must be a number".into()))?;
    let old = telemetry().rate();
    telemetry().set_rate(rate).map_err(bad)?;
    let event = Event::new(
        super::audit::actor_of(&p, addr),
        "settings.sampling_rate",
        "CAVE_OTEL_SAMPLING_RATE",
        Outcome::Success,
    )
    .with_detail(json!({ "setting": "sampling_rate", "old": old, "new": rate }));
    s.engine.audit_now(event).await;
    Ok(axum::Json(state()).into_response())
}
