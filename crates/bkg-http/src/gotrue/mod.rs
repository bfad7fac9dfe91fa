//! Users at `/auth/v1`: the subset of the GoTrue API that `@supabase/auth-js` uses for email and
//! password accounts, with the request and answer shapes it parses.
//!
//! - `POST /signup`, `POST /token?grant_type=password|refresh_token`, `GET`/`PUT /user`,
//!   `POST /logout`, `POST /recover`, `GET /settings`; `GET`/`POST /admin/users` and
//!   `GET`/`PUT`/`DELETE /admin/users/{id}` for the service role.
//! - Passwords are hashed with Argon2id (PHC strings). Users, sessions and refresh tokens live in
//!   `auth.users`, `auth.sessions` and `auth.refresh_tokens` (built-in migration), which no API
//!   role can read: this module works on them as the superuser.
//! - Access tokens are the server's JWTs (`sub`, `role`, `aud`, `exp`, `iat`, `email`,
//!   `app_metadata`, `user_metadata`, `session_id`, ...), so REST, pgwire and row-level security
//!   see the user as `auth.uid()`.
//! - Refresh tokens rotate: each is good once. Presenting a used one again revokes its whole
//!   session (the token family), as a stolen token would be replayed.
//! - Wrong password and unknown email give the same answer (and take the same time: the hash
//!   of a decoy is checked); `/recover` always answers 200. Signup, token and recover are
//!   rate-limited per client address (429).
//! - Errors are GoTrue's `{code, error_code, msg}`.
//!
//! The accounts and sessions ([`accounts`]) are used by the public endpoints ([`endpoints`])
//! and the service role's user administration ([`admin`]).

mod accounts;
mod admin;
mod endpoints;

pub use admin::*;
pub use endpoints::*;

use std::net::SocketAddr;
use std::sync::Arc;

use argon2::Argon2;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use axum::Router;
use axum::extract::{ConnectInfo, Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use datafusion::arrow::array::{Array, StringArray};
use datafusion::sql::sqlparser::ast;
use serde_json::{Map, Value, json};

use crate::limits::{BODY_BYTES_MAX, METADATA_BYTES_MAX, PAGE_USERS_MAX, PASSWORD_BYTES_MAX, PASSWORD_CHARS_MIN};
use bkg_audit::Outcome;
use bkg_auth::limits::RateLimiter;
use bkg_auth::{ANON_ROLE as ANON, AUTHENTICATED_ROLE, AuthConfig, SERVICE_ROLE};
use bkg_sql::{Engine, Output, Session};

/// Settings of the auth endpoints.
#[derive(Debug, Clone)]
pub struct GoTrueConfig {
    /// Lifetime of access tokens, seconds.
    pub jwt_expiry_s: u64,
    /// Refuse `POST /signup` (users are then made by the service role).
    pub disable_signup: bool,
    /// Requests per minute per client address on signup, token and recover (0 = unlimited).
    pub rate_per_min: u32,
    /// Sign-ups are confirmed at once and get a session (GoTrue's `mailer_autoconfirm`). When
    /// off, a sign-up answers with the user only, the same for a taken email, and the user can
    /// sign in once the service role confirmed it (`email_confirm`).
    pub autoconfirm: bool,
}

impl Default for GoTrueConfig {
    fn default() -> Self {
        GoTrueConfig { jwt_expiry_s: 3600, disable_signup: false, rate_per_min: 30, autoconfirm: true }
    }
}

pub struct GoTrue {
    engine: Arc<Engine>,
    auth: Arc<AuthConfig>,
    config: GoTrueConfig,
    limiter: RateLimiter,
    /// The hash checked when an email is unknown, so both cases cost the same.
    decoy_hash: String,
}

/// The error body of `/auth/v1` (GoTrue's shape).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct AuthErrorBody {
    /// The HTTP status.
    code: u16,
    /// A stable code: invalid_credentials, weak_password, user_already_exists, validation_failed,
    /// refresh_token_already_used, refresh_token_not_found, session_not_found, not_admin,
    /// over_request_rate_limit, bad_json, bad_jwt, no_authorization, user_not_found, ...
    error_code: String,
    msg: String,
}

/// A GoTrue error answer.
#[derive(Debug)]
pub struct AuthError {
    status: u16,
    code: &'static str,
    msg: String,
    /// Seconds, for 429.
    retry_after: Option<u64>,
}

fn fail(status: u16, code: &'static str, msg: impl Into<String>) -> AuthError {
    AuthError { status, code, msg: msg.into(), retry_after: None }
}

impl IntoResponse for AuthError {
    fn into_response(self) -> Response {
        let body = json!({"code": self.status, "error_code": self.code, "msg": self.msg});
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut r = (status, [("content-type", "application/json")], body.to_string()).into_response();
        if let Some(s) = self.retry_after.and_then(|s| HeaderValue::from_str(&s.to_string()).ok()) {
            r.headers_mut().insert("retry-after", s);
        }
        r
    }
}

impl From<bkg_sql::SqlError> for AuthError {
    fn from(e: bkg_sql::SqlError) -> AuthError {
        tracing::error!(error = %e, "auth storage error");
        fail(500, "unexpected_failure", "the auth store failed; see the server log")
    }
}

type Result<T> = std::result::Result<T, AuthError>;

pub fn router(engine: Arc<Engine>, auth: Arc<AuthConfig>, config: GoTrueConfig) -> Router {
    let limiter = RateLimiter::per_minute(config.rate_per_min);
    let decoy_hash = hash_password("decoy password that matches nothing").unwrap_or_default();
    let state = Arc::new(GoTrue { engine, auth, config, limiter, decoy_hash });
    Router::new()
        .route("/auth/v1/settings", get(settings))
        .route("/auth/v1/.well-known/jwks.json", get(jwks))
        .route("/auth/v1/signup", post(signup))
        .route("/auth/v1/token", post(token))
        .route("/auth/v1/user", get(get_user).put(put_user))
        .route("/auth/v1/logout", post(logout))
        .route("/auth/v1/recover", post(recover))
        .route("/auth/v1/admin/users", get(admin_list).post(admin_create))
        .route("/auth/v1/admin/users/{id}", get(admin_get).put(admin_update).delete(admin_delete))
        .route("/auth/v1/admin/users/{id}/sessions", get(admin_sessions).delete(admin_end_sessions))
        .layer(axum::extract::DefaultBodyLimit::max(BODY_BYTES_MAX))
        .with_state(state)
}

fn hash_password(password: &str) -> Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| fail(500, "unexpected_failure", format!("cannot hash the password: {e}")))
}

fn password_matches(hash: &str, password: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
}

fn check_password(p: &str) -> Result<()> {
    if p.chars().count() < PASSWORD_CHARS_MIN {
        return Err(fail(
            422,
            "weak_password",
            format!("Password should be at least {PASSWORD_CHARS_MIN} characters."),
        ));
    }
    if p.len() > PASSWORD_BYTES_MAX {
        return Err(fail(422, "weak_password", format!("Password should be at most {PASSWORD_BYTES_MAX} bytes.")));
    }
    Ok(())
}

fn normalize_email(e: &str) -> Result<String> {
    let e = e.trim().to_lowercase();
    let valid = e.len() <= 255
        && e.split_once('@').is_some_and(|(l, d)| !l.is_empty() && d.contains('.') && !d.starts_with('.'))
        && !e.chars().any(|c| c.is_whitespace() || c.is_control());
    if !valid {
        return Err(fail(400, "validation_failed", "Unable to validate email address: invalid format"));
    }
    Ok(e)
}

fn new_uuid() -> String {
    let mut b: [u8; 16] = rand::random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

fn is_uuid(s: &str) -> bool {
    s.len() == 36
        && s.char_indices().all(|(i, c)| if [8, 13, 18, 23].contains(&i) { c == '-' } else { c.is_ascii_hexdigit() })
}

fn new_refresh_token() -> String {
    use base64::Engine as _;
    let b: [u8; 32] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

fn token_hash(t: &str) -> String {
    ring::digest::digest(&ring::digest::SHA256, t.as_bytes()).as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

fn now_s() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn lit(s: &str) -> ast::Expr {
    ast::Expr::value(ast::Value::SingleQuotedString(s.to_string()))
}

fn null() -> ast::Expr {
    ast::Expr::value(ast::Value::Null)
}

/// Rows of a statement's answer as text (NULL as None).
fn text_rows(out: Output) -> Result<Vec<Vec<Option<String>>>> {
    let Output::Rows { batches, .. } = out else { return Ok(vec![]) };
    let mut rows = Vec::new();
    for b in &batches {
        let cols: Vec<Arc<dyn Array>> = b
            .columns()
            .iter()
            .map(|c| datafusion::arrow::compute::cast(c, &datafusion::arrow::datatypes::DataType::Utf8))
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| fail(500, "unexpected_failure", e.to_string()))?;
        for r in 0..b.num_rows() {
            rows.push(
                cols.iter()
                    .map(|c| {
                        let s = c.as_any().downcast_ref::<StringArray>().expect("cast to Utf8");
                        (!s.is_null(r)).then(|| s.value(r).to_string())
                    })
                    .collect(),
            );
        }
    }
    Ok(rows)
}

const USER_COLUMNS: &str = "id, email, role, aud, raw_app_meta_data, raw_user_meta_data, email_confirmed_at, \
     last_sign_in_at, created_at, updated_at, encrypted_password, banned_until";

/// A row of `auth.users`.
#[derive(Debug, Clone)]
struct User {
    id: String,
    email: String,
    role: String,
    aud: String,
    app_metadata: Value,
    user_metadata: Value,
    confirmed_at: Option<String>,
    last_sign_in_at: Option<String>,
    created_at: Option<String>,
    updated_at: Option<String>,
    password_hash: String,
    banned_until: Option<String>,
}

fn timestamp(t: Option<String>) -> Option<String> {
    // "2026-11-26T10:00:00.123456Z" as RFC 3339 with a zone.
    t.map(|t| if t.ends_with('Z') || t.contains('+') { t } else { format!("{t}Z") })
}

impl User {
    fn from_row(r: Vec<Option<String>>) -> User {
        let json = |v: &Option<String>| v.as_deref().and_then(|s| serde_json::from_str(s).ok()).unwrap_or(json!({}));
        let mut app = json(&r[4]);
        if let Some(m) = app.as_object_mut() {
            m.entry("provider").or_insert(json!("email"));
            m.entry("providers").or_insert(json!(["email"]));
        }
        User {
            id: r[0].clone().unwrap_or_default(),
            email: r[1].clone().unwrap_or_default(),
            role: r[2].clone().unwrap_or_else(|| AUTHENTICATED_ROLE.into()),
            aud: r[3].clone().unwrap_or_else(|| AUTHENTICATED_ROLE.into()),
            app_metadata: app,
            user_metadata: json(&r[5]),
            confirmed_at: timestamp(r[6].clone()),
            last_sign_in_at: timestamp(r[7].clone()),
            created_at: timestamp(r[8].clone()),
            updated_at: timestamp(r[9].clone()),
            password_hash: r[10].clone().unwrap_or_default(),
            banned_until: timestamp(r.get(11).cloned().flatten()),
        }
    }

    /// The user object auth-js parses.
    fn json(&self) -> Value {
        json!({
            "id": self.id,
            "aud": self.aud,
            "role": self.role,
            "email": self.email,
            "email_confirmed_at": self.confirmed_at,
            "phone": "",
            "confirmed_at": self.confirmed_at,
            "last_sign_in_at": self.last_sign_in_at,
            "app_metadata": self.app_metadata,
            "user_metadata": self.user_metadata,
            "identities": [],
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "banned_until": self.banned_until,
            "is_anonymous": false,
        })
    }
}

fn parse_body(body: &[u8]) -> Result<Map<String, Value>> {
    if body.is_empty() {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(fail(400, "bad_json", "Could not parse request body as JSON: a JSON object is expected")),
    }
}

fn str_field<'a>(m: &'a Map<String, Value>, k: &str) -> Result<Option<&'a str>> {
    match m.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(fail(400, "validation_failed", format!("{k} must be a string"))),
    }
}

fn metadata_field(m: &Map<String, Value>, k: &str) -> Result<Option<String>> {
    match m.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(v @ Value::Object(_)) => {
            let t = v.to_string();
            if t.len() > METADATA_BYTES_MAX {
                return Err(fail(400, "validation_failed", format!("{k} is larger than {METADATA_BYTES_MAX} bytes")));
            }
            Ok(Some(t))
        }
        Some(_) => Err(fail(400, "validation_failed", format!("{k} must be a JSON object"))),
    }
}

fn query_param(q: &Option<String>, name: &str) -> Option<String> {
    form_urlencoded::parse(q.as_deref().unwrap_or_default().as_bytes()).find(|(k, _)| k == name).map(|(_, v)| v.into())
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let a = headers.get("authorization")?.to_str().ok()?;
    a.strip_prefix("Bearer ").or_else(|| a.strip_prefix("bearer ")).map(str::trim)
}

fn ok_json(status: u16, v: Value) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    (status, [("content-type", "application/json")], v.to_string()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_hash_and_verify() {
        let h = hash_password("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(password_matches(&h, "correct horse"));
        assert!(!password_matches(&h, "wrong"));
        assert!(!password_matches("!", "anything"));
    }

    #[test]
    fn emails_and_ids() {
        assert_eq!(normalize_email(" Ann@Example.COM ").unwrap(), "ann@example.com");
        for bad in ["", "ann", "@example.com", "ann@localhost", "a b@example.com"] {
            assert!(normalize_email(bad).is_err(), "{bad}");
        }
        let id = new_uuid();
        assert!(is_uuid(&id), "{id}");
        assert!(!is_uuid("../../etc/passwd"));
        assert_ne!(new_refresh_token(), new_refresh_token());
    }
}
