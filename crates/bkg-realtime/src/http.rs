//! The realtime door's HTTP routes: the WebSocket endpoint, Server-Sent Events and broadcast
//! over REST.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::body::Bytes;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bkg_sql::SqlState;
use serde_json::{Value, json};

use crate::hub::Hub;
use crate::limits::{BROADCAST_MESSAGES_MAX, FRAME_BYTES_MAX};
use crate::protocol::Vsn;
use crate::{rooms, socket};

/// The realtime routes in the OpenAPI document (merged into the server's by `bkg-db`).
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(websocket, crate::sse::sse, broadcast),
    tags((name = "realtime", description = "Committed changes, broadcast and presence over WebSocket (realtime-js)")),
)]
pub struct RealtimeDoc;

/// `/realtime/v1/websocket`, `/realtime/v1/sse` and `/realtime/v1/api/broadcast`.
pub fn router(hub: Arc<Hub>) -> Router {
    Router::new()
        .route("/realtime/v1/websocket", get(websocket))
        .route("/realtime/v1/sse", get(crate::sse::sse))
        .route("/realtime/v1/api/broadcast", post(broadcast).layer(DefaultBodyLimit::max(FRAME_BYTES_MAX)))
        .with_state(hub)
}

/// A refusal: HTTP status, stable code, message (the body is `{"code", "message"}`).
#[derive(Debug)]
pub struct RealtimeError {
    pub status: u16,
    pub code: SqlState,
    pub message: String,
}

impl RealtimeError {
    pub(crate) fn new(code: SqlState, status: u16, message: impl Into<String>) -> RealtimeError {
        RealtimeError { status, code, message: message.into() }
    }
}

impl IntoResponse for RealtimeError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::BAD_REQUEST);
        let body = json!({"code": self.code.code(), "message": self.message});
        (status, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
    }
}

#[derive(serde::Deserialize)]
pub(crate) struct WsQuery {
    apikey: Option<String>,
    vsn: Option<String>,
}

/// The token of a request: `apikey` in the query (browsers cannot set WebSocket headers), the
/// `apikey` header, or `Authorization: Bearer`.
fn token<'a>(query: Option<&'a str>, headers: &'a HeaderMap) -> Option<&'a str> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")));
    bearer.or(query).or_else(|| headers.get("apikey").and_then(|v| v.to_str().ok()))
}

/// Admits a realtime connection (WebSocket or event stream): a key that verifies for a role
/// that may act through a token, and room under the connection limit. Refusals are counted.
pub(crate) fn admit(
    hub: &Arc<Hub>,
    query_key: Option<&str>,
    headers: &HeaderMap,
) -> Result<(socket::Grant, Slot), RealtimeError> {
    let checked = || {
        let Some(token) = token(query_key, headers) else {
            return Err(RealtimeError::new(
                SqlState::PgrstNoCredentials,
                401,
                "an API key is required (apikey query parameter or header)",
            ));
        };
        let grant = socket::grant_of(hub, token).map_err(|e| RealtimeError::new(SqlState::PgrstJwt, 401, e))?;
        // The slot is taken here, atomically, not when the connection registers later: two
        // upgrades at once cannot both pass a count that neither has raised yet.
        let max = hub.config.max_connections as u64;
        if hub
            .metrics
            .connections
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < max).then_some(n + 1))
            .is_err()
        {
            return Err(RealtimeError::new(
                SqlState::TooManyConnections,
                503,
                format!("the server has {} realtime connections, its limit", hub.config.max_connections),
            ));
        }
        Ok((grant, Slot { hub: hub.clone() }))
    };
    checked().inspect_err(|_| {
        hub.metrics.connections_refused.fetch_add(1, Ordering::Relaxed);
    })
}

/// One of the `max_connections` places, taken at admission. Dropped unused (the upgrade never
/// happened, a later check refused), it frees the place; [`Hub::register`] takes it over, and
/// [`Hub::deregister`] frees it when the connection ends.
pub(crate) struct Slot {
    hub: Arc<Hub>,
}

impl Slot {
    /// Hands the place to the registered connection.
    pub(crate) fn keep(self) {
        std::mem::forget(self);
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.hub.metrics.connections.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The realtime WebSocket (Phoenix channels, as realtime-js speaks them).
#[utoipa::path(get, path = "/realtime/v1/websocket", tag = "realtime",
    params(
        ("apikey" = Option<String>, Query, description = "The anon or service key, or a user's JWT (also accepted as the apikey header or Authorization: Bearer)"),
        ("vsn" = Option<String>, Query, description = "Serializer: 1.0.0 (JSON objects, the default) or 2.0.0 (JSON arrays, realtime-js 2.x)"),
    ),
    responses(
        (status = 101, description = "Switched to the WebSocket protocol: send phx_join to join channels"),
        (status = 400, description = "An unknown vsn", content_type = "application/json"),
        (status = 401, description = "No key, or a key that does not verify", content_type = "application/json"),
        (status = 503, description = "The connection limit (BKG_DB_REALTIME_MAX_CONNECTIONS) is reached", content_type = "application/json"),
    ), security(()))]
pub(crate) async fn websocket(
    State(hub): State<Arc<Hub>>,
    Query(q): Query<WsQuery>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Result<Response, RealtimeError> {
    let vsn = Vsn::parse(q.vsn.as_deref()).map_err(|e| {
        hub.metrics.connections_refused.fetch_add(1, Ordering::Relaxed);
        RealtimeError::new(SqlState::PgrstQueryString, 400, e.message)
    })?;
    let (grant, slot) = admit(&hub, q.apikey.as_deref(), &headers)?;
    Ok(ws
        .max_message_size(FRAME_BYTES_MAX)
        .max_frame_size(FRAME_BYTES_MAX)
        .on_upgrade(move |socket| socket::run(hub, socket, vsn, grant, slot)))
}

/// Broadcast over REST: `{"messages": [{"topic", "event", "payload"}]}` goes to
/// every member of each topic; 202 when queued.
#[utoipa::path(post, path = "/realtime/v1/api/broadcast", tag = "realtime",
    request_body(content_type = "application/json", description = "{\"messages\": [{\"topic\": \"room\", \"event\": \"e\", \"payload\": {}}]} (at most 100 messages)"),
    responses(
        (status = 202, description = "Queued to every member of each topic"),
        (status = 400, description = "A body that is not {messages: [...]}", content_type = "application/json"),
        (status = 401, description = "No key, or a key that does not verify", content_type = "application/json"),
        (status = 403, description = "A private message (`private: true`) the sender's INSERT policies on realtime.messages do not allow", content_type = "application/json"),
        (status = 413, description = "A payload over BKG_DB_REALTIME_PAYLOAD_MAX_KB", content_type = "application/json"),
    ), security(("apikey" = []), ("bearer" = [])))]
pub(crate) async fn broadcast(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode, RealtimeError> {
    let Some(token) = token(None, &headers) else {
        return Err(RealtimeError::new(SqlState::PgrstNoCredentials, 401, "an API key is required"));
    };
    let grant = socket::grant_of(&hub, token).map_err(|e| RealtimeError::new(SqlState::PgrstJwt, 401, e))?;
    let bad = |m: String| RealtimeError::new(SqlState::PgrstBody, 400, m);
    let body: Value = serde_json::from_slice(&body).map_err(|e| bad(format!("the body is not JSON: {e}")))?;
    let Some(messages) = body.get("messages").and_then(Value::as_array) else {
        return Err(bad("the body must be {\"messages\": [{\"topic\", \"event\", \"payload\"}]}".into()));
    };
    if messages.len() > BROADCAST_MESSAGES_MAX {
        return Err(bad(format!("more than {BROADCAST_MESSAGES_MAX} messages")));
    }
    let mut out = Vec::with_capacity(messages.len());
    for (i, m) in messages.iter().enumerate() {
        let text = |k: &str| m.get(k).and_then(Value::as_str).filter(|s| !s.is_empty() && s.len() <= 255);
        let (Some(topic), Some(event)) = (text("topic"), text("event")) else {
            return Err(bad(format!("message {i} needs a topic and an event (1 to 255 bytes)")));
        };
        let private = m.get("private").and_then(Value::as_bool) == Some(true);
        let payload = m.get("payload").cloned().unwrap_or(json!({}));
        if payload.to_string().len() > hub.config.payload_bytes_max {
            return Err(RealtimeError::new(
                SqlState::PgrstTooLarge,
                413,
                format!("message {i}'s payload is over {} bytes", hub.config.payload_bytes_max),
            ));
        }
        let topic = if topic.starts_with("realtime:") { topic.to_string() } else { format!("realtime:{topic}") };
        if private {
            // A private channel takes only what its INSERT policies on realtime.messages allow.
            let name = socket::channel_name(&topic);
            let allowed = hub
                .engine
                .channel_access(&grant.viewer, name, "broadcast")
                .map_err(|e| RealtimeError::new(e.code, 403, format!("Unauthorized: {}", e.message)))?;
            if !allowed.write {
                return Err(RealtimeError::new(
                    SqlState::InsufficientPrivilege,
                    403,
                    format!("Unauthorized: You do not have permissions to write to this Channel topic: {name}"),
                ));
            }
        }
        out.push((rooms::room(&topic, private), json!({"type": "broadcast", "event": event, "payload": payload})));
    }
    for (room, payload) in out {
        hub.fan_out(&room, None, "broadcast", payload);
    }
    Ok(StatusCode::ACCEPTED)
}
