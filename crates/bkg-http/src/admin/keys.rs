//! `/admin/keys`: the token signing keys and the API keys, for the service role only. The same
//! operations as `bkg-db keys list|rotate|retire|rotate-api-keys`, on `<data-dir>/auth/keys.json`,
//! taking effect at once; each is an audit event. New API keys are answered once and never again.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Path, State};
use axum::http::HeaderMap;
use axum::response::Json;
use bkg_audit::{Event, Outcome};
use bkg_sql::SqlState;
use serde_json::{Value, json};

use crate::HttpState;
use crate::rest::RestError;

/// Key management serialises on this: two rotations at once would both read keys.json.
static KEYS_LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn service_role(s: &HttpState, addr: SocketAddr, headers: &HeaderMap) -> Result<bkg_auth::Principal, RestError> {
    let p = s.rest.authenticate(addr, headers)?;
    // The service role's full power: a service token limited by scopes needs the admin scope
    // too (as everywhere else), or it could mint an unscoped service key here.
    if p.role != bkg_auth::SERVICE_ROLE || !super::is_admin(&p) {
        return Err(RestError::new(
            403,
            SqlState::InsufficientPrivilege,
            "keys are managed with the service role (with the admin scope when the token has scopes)",
        ));
    }
    Ok(p)
}

fn refused(message: String) -> RestError {
    RestError::new(400, SqlState::InvalidParameterValue, message)
}

async fn audit(s: &HttpState, p: &bkg_auth::Principal, addr: SocketAddr, action: &str, object: &str, detail: Value) {
    let event = Event::new(crate::rest::audit::actor_of(p, addr), action, object, Outcome::Success).with_detail(detail);
    s.engine.audit_now(event).await;
}

fn listing(s: &HttpState) -> Value {
    let jwt = s.rest.auth.jwt();
    let signer = jwt.signing_key().map(|k| k.kid.clone());
    let keys: Vec<Value> = jwt
        .keys
        .iter()
        .map(|k| {
            let state = if k.retired {
                "retired"
            } else if Some(&k.kid) == signer.as_ref() {
                "signing"
            } else {
                "verifying"
            };
            json!({
                "kid": k.kid,
                "alg": k.alg.name(),
                "state": state,
                "created_at": chrono::DateTime::from_timestamp(k.created_at as i64, 0)
                    .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
            })
        })
        .collect();
    json!({ "algorithm": jwt.alg.name(), "signing_keys": keys })
}

/// The signing keys (never their private parts)
#[utoipa::path(get, path = "/admin/keys", tag = "operations", operation_id = "admin_keys",
    responses(
        (status = 200, description = "{algorithm, signing_keys: [{kid, alg, state: signing|verifying|retired, created_at}]}", content_type = "application/json"),
        (status = 403, description = "Not the service role", body = crate::rest::error::ErrorBody),
    ), security(("apikey" = []), ("bearer" = [])))]
pub async fn list(
    State(s): State<HttpState>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Result<Json<Value>, RestError> {
    service_role(&s, addr, &headers)?;
    Ok(Json(listing(&s)))
}

/// Adds a signing key that signs from now on (ES256); older keys verify until retired (audited)
#[utoipa::path(post, path = "/admin/keys/rotate", tag = "operations", operation_id = "admin_keys_rotate",
    responses(
        (status = 200, description = "{kid, keys}: the new key's id and the listing", content_type = "application/json"),
        (status = 400, description = "HS256 or RS256 (no key is generated for them)", body = crate::rest::error::ErrorBody),
        (status = 403, description = "Not the service role", body = crate::rest::error::ErrorBody),
    ), security(("apikey" = []), ("bearer" = [])))]
pub async fn rotate(
    State(s): State<HttpState>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Result<Json<Value>, RestError> {
    let p = service_role(&s, addr, &headers)?;
    let _one = KEYS_LOCK.lock().await;
    let mut cfg = (*s.rest.auth).clone();
    let kid = cfg.rotate_signing_key(s.engine.data_dir()).map_err(refused)?;
    audit(&s, &p, addr, "keys.rotate", &kid, json!({ "kid": kid })).await;
    Ok(Json(json!({ "kid": kid, "keys": listing(&s) })))
}

/// Retires a signing key: tokens it signed stop verifying at once (audited)
#[utoipa::path(post, path = "/admin/keys/{kid}/retire", tag = "operations", operation_id = "admin_keys_retire",
    params(("kid" = String, Path, description = "The key's id")),
    responses(
        (status = 200, description = "{keys, api_keys_reissued}: the listing after the change, and the API keys signed again when the retired key had signed them (shown this once), else null", content_type = "application/json"),
        (status = 400, description = "No such key, or the only signing key", body = crate::rest::error::ErrorBody),
        (status = 403, description = "Not the service role", body = crate::rest::error::ErrorBody),
    ), security(("apikey" = []), ("bearer" = [])))]
pub async fn retire(
    State(s): State<HttpState>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Path(kid): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Value>, RestError> {
    let p = service_role(&s, addr, &headers)?;
    let _one = KEYS_LOCK.lock().await;
    let mut cfg = (*s.rest.auth).clone();
    let before = bkg_auth::AuthConfig::stored_anon_key(s.engine.data_dir());
    cfg.retire_signing_key(s.engine.data_dir(), &kid).map_err(refused)?;
    // API keys the retired key signed were signed again: answered this once.
    let reissued = (before.as_deref() != Some(cfg.anon_key.as_str()))
        .then(|| json!({ "anon_key": cfg.anon_key, "service_key": cfg.service_key }));
    let detail = json!({ "kid": kid, "api_keys_reissued": reissued.is_some() });
    audit(&s, &p, addr, "keys.retire", &kid, detail).await;
    Ok(Json(json!({ "keys": listing(&s), "api_keys_reissued": reissued })))
}

/// New anon and service keys, signed by the current key, answered this once (audited)
#[utoipa::path(post, path = "/admin/keys/rotate-api-keys", tag = "operations", operation_id = "admin_keys_rotate_api_keys",
    responses(
        (status = 200, description = "{anon_key, service_key, old_keys}: old_keys says until when the previous keys verify (HS256: until the shared secret changes)", content_type = "application/json"),
        (status = 403, description = "Not the service role", body = crate::rest::error::ErrorBody),
    ), security(("apikey" = []), ("bearer" = [])))]
pub async fn rotate_api_keys(
    State(s): State<HttpState>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Result<Json<Value>, RestError> {
    let p = service_role(&s, addr, &headers)?;
    let _one = KEYS_LOCK.lock().await;
    let mut cfg = (*s.rest.auth).clone();
    cfg.rotate_api_keys(s.engine.data_dir()).map_err(refused)?;
    audit(&s, &p, addr, "keys.rotate_api_keys", "auth/keys.json", json!({})).await;
    // With HS256 every key is signed by the one shared secret: the old keys stay valid until it
    // changes (BKG_DB_JWT_SECRET), which the caller must know.
    let old_keys = if s.rest.auth.jwt().alg == bkg_auth::jwt::Alg::HS256 {
        "valid until the shared HS256 secret changes: set a new BKG_DB_JWT_SECRET to revoke them"
    } else {
        "valid until the signing key that signed them is retired (POST /admin/keys/{kid}/retire)"
    };
    Ok(Json(json!({ "anon_key": cfg.anon_key, "service_key": cfg.service_key, "old_keys": old_keys })))
}
