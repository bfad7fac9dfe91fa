//! `/audit`: the signed audit log for operators and the admin UI (admin scope, as `/policy`).
//! `GET /audit` pages events newest first with filters; `GET /audit/key` publishes the public
//! key that signs segments; `POST /audit/seal` signs the open segment now; `POST
//! /audit/rotate-key` seals and switches to a new key (itself an audited event).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use bkg_audit::{Actor, Event, Outcome};
use bkg_sql::SqlState;
use bkg_sql::audit::Auditor;
use serde::Deserialize;
use serde_json::json;

use super::policy::admin;
use super::{RestError, RestState};

/// Largest page.
const PAGE_MAX: usize = 1000;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditParams {
    /// Events per page (1–1000, default 100).
    limit: Option<usize>,
    /// Only events older than this `seq` (the `next_before` of the previous page).
    before: Option<u64>,
    /// An action or an action family (`policy` matches `policy.create`).
    action: Option<String>,
    /// The actor's role or user id.
    actor: Option<String>,
    /// `success` or `failure`.
    outcome: Option<String>,
    /// RFC 3339 lower bound on the event time.
    since: Option<String>,
    /// RFC 3339 upper bound on the event time.
    until: Option<String>,
}

/// The actor of an event made through an HTTP request: the token's role and claims and the
/// caller's address.
pub(crate) fn actor_of(p: &bkg_auth::Principal, addr: SocketAddr) -> Actor {
    let claim = |n: &str| p.claims.get(n).and_then(|v| v.as_str()).map(str::to_string);
    Actor {
        role: p.role.clone(),
        user_id: claim("sub"),
        token_id: claim("session_id").or_else(|| claim("jti")),
        address: Some(addr.to_string()),
    }
}

fn auditor(s: &RestState) -> Result<Arc<Auditor>, RestError> {
    s.engine
        .auditor()
        .cloned()
        .ok_or_else(|| RestError::new(404, SqlState::UndefinedObject, "the audit log is not on in this server"))
}

fn internal(e: bkg_sql::SqlError) -> RestError {
    tracing::error!("audit log: {}", e.message);
    RestError::new(500, SqlState::InternalError, "the audit log could not be written; see the server log")
}

/// Normalises an RFC 3339 bound to the events' own form (UTC, microseconds) so text comparison
/// orders correctly.
fn time_bound(v: Option<String>, name: &str) -> Result<Option<String>, RestError> {
    v.map(|t| {
        chrono::DateTime::parse_from_rfc3339(&t)
            .map(|d| d.with_timezone(&chrono::Utc).to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
            .map_err(|_| RestError::new(400, SqlState::PgrstQueryString, format!("{name} must be an RFC 3339 time")))
    })
    .transpose()
}

/// Audit events, newest first, a page at a time, with filters
#[utoipa::path(get, path = "/audit", tag = "audit", operation_id = "audit_list", params(AuditParams),
    responses(
        (status = 200, description = "{events: [{seq, id, time, actor, action, object, outcome, detail, prev}], next_before}", content_type = "application/json"),
        (status = 400, description = "A bad filter", body = super::error::ErrorBody),
        (status = 403, description = "Not the admin scope or the service role", body = super::error::ErrorBody),
    ), security(("apikey" = []), ("bearer" = [])))]
pub async fn list(
    State(s): State<RestState>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Query(p): Query<AuditParams>,
) -> Result<Response, RestError> {
    admin(&s, addr, &headers)?;
    let a = auditor(&s)?;
    let outcome = match p.outcome.as_deref() {
        None => None,
        Some("success") => Some(Outcome::Success),
        Some("failure") => Some(Outcome::Failure),
        Some(o) => {
            return Err(RestError::new(400, SqlState::PgrstQueryString, format!("unknown outcome \"{o}\""))
                .hint("success or failure"));
        }
    };
    let q = bkg_audit::Query {
        limit: p.limit.unwrap_or(100).clamp(1, PAGE_MAX),
        before: p.before,
        action: p.action,
        actor: p.actor,
        outcome,
        since: time_bound(p.since, "since")?,
        until: time_bound(p.until, "until")?,
    };
    let dir = a.dir().to_path_buf();
    let page = tokio::task::spawn_blocking(move || bkg_audit::read_page(&dir, &q))
        .await
        .map_err(|e| RestError::new(500, SqlState::InternalError, e.to_string()))?
        .map_err(|e| RestError::new(500, SqlState::InternalError, e.to_string()))?;
    Ok(axum::Json(json!({ "events": page.events, "next_before": page.next_before })).into_response())
}

/// The public key that signs new audit segments
#[utoipa::path(get, path = "/audit/key", tag = "audit", operation_id = "audit_key",
    responses(
        (status = 200, description = "{key_id, public_key}: the PEM public key signing new segments (cosign verify-blob --key, openssl dgst -verify)", content_type = "application/json"),
    ), security(("apikey" = []), ("bearer" = [])))]
pub async fn key(
    State(s): State<RestState>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Result<Response, RestError> {
    admin(&s, addr, &headers)?;
    let k = auditor(&s)?.public_key();
    Ok(axum::Json(json!({ "key_id": k.key_id, "public_key": k.public_pem })).into_response())
}

/// Signs the open audit segment now and starts a new one
#[utoipa::path(post, path = "/audit/seal", tag = "audit", operation_id = "audit_seal",
    responses(
        (status = 200, description = "{sealed}: the segment signed now, or null when every line was already signed", content_type = "application/json"),
    ), security(("apikey" = []), ("bearer" = [])))]
pub async fn seal(
    State(s): State<RestState>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Result<Response, RestError> {
    admin(&s, addr, &headers)?;
    let sealed = auditor(&s)?.seal().await.map_err(internal)?;
    let name = sealed.and_then(|p| p.file_name().map(|f| f.to_string_lossy().into_owned()));
    Ok(axum::Json(json!({ "sealed": name })).into_response())
}

/// Seals the open segment and signs what follows with a new key
#[utoipa::path(post, path = "/audit/rotate-key", tag = "audit", operation_id = "audit_rotate_key",
    responses(
        (status = 200, description = "{key_id, public_key, previous_key_id}: the open segment was sealed with the previous key", content_type = "application/json"),
    ), security(("apikey" = []), ("bearer" = [])))]
pub async fn rotate_key(
    State(s): State<RestState>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Result<Response, RestError> {
    let p = admin(&s, addr, &headers)?;
    let a = auditor(&s)?;
    let previous = a.public_key().key_id;
    let k = a.rotate_key().await.map_err(internal)?;
    let event = Event::new(actor_of(&p, addr), "audit.key_rotate", &k.key_id, Outcome::Success)
        .with_detail(json!({ "previous_key_id": previous, "key_id": k.key_id }));
    s.engine.audit_now(event).await;
    Ok(axum::Json(json!({ "key_id": k.key_id, "public_key": k.public_pem, "previous_key_id": previous }))
        .into_response())
}

/// Verifies the chain and the signatures of the whole audit log now
#[utoipa::path(get, path = "/audit/verify", tag = "audit", operation_id = "audit_verify",
    responses(
        (status = 200, description = "{ok, segments, signed, events, head_seq, head_hash, open_segment, first_bad: {segment, line, reason} | null}; ok false names the first bad place", content_type = "application/json"),
        (status = 403, description = "Not the admin scope or the service role", body = super::error::ErrorBody),
    ), security(("apikey" = []), ("bearer" = [])))]
pub async fn verify(
    State(s): State<RestState>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Result<Response, RestError> {
    admin(&s, addr, &headers)?;
    let body = match auditor(&s)?.verify().await.map_err(internal)? {
        Ok(r) => json!({
            "ok": true,
            "segments": r.segments,
            "signed": r.signed,
            "events": r.lines,
            "head_seq": r.head_seq,
            "head_hash": r.head_hash,
            "open_segment": r.open_segment,
            "first_bad": null,
        }),
        Err(bkg_audit::AuditError::Tampered { file, line, reason }) => json!({
            "ok": false,
            "first_bad": { "segment": file, "line": line, "reason": reason },
        }),
        Err(other) => json!({
            "ok": false,
            "first_bad": { "segment": null, "line": null, "reason": other.to_string() },
        }),
    };
    Ok(axum::Json(body).into_response())
}
