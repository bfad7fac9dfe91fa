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

use bkg_auth::limits::RateLimiter;
use bkg_auth::{AUTHENTICATED_ROLE, AuthConfig, SERVICE_ROLE};
use bkg_sql::{Engine, Output, Session};

/// Largest request body the auth endpoints read.
pub const BODY_BYTES_MAX: usize = 64 << 10;
/// Shortest password accepted (GoTrue's default).
pub const PASSWORD_CHARS_MIN: usize = 6;
/// Longest password accepted (Argon2 accepts more; nobody needs it).
pub const PASSWORD_BYTES_MAX: usize = 1024;
/// Largest `user_metadata` / `app_metadata`, as JSON text.
pub const METADATA_BYTES_MAX: usize = 16 << 10;
/// Most users one admin list page returns.
pub const PAGE_USERS_MAX: usize = 1000;

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
     last_sign_in_at, created_at, updated_at, encrypted_password";

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

impl GoTrue {
    fn session(&self) -> Session {
        self.engine.session("postgres")
    }

    /// Clients send the project's API key, as through Supabase's gateway.
    fn require_apikey(&self, headers: &HeaderMap) -> Result<()> {
        let key = headers.get("apikey").and_then(|v| v.to_str().ok()).or_else(|| bearer(headers));
        match key {
            Some(k) if self.auth.jwt().verify(k).is_ok() => Ok(()),
            Some(_) => Err(fail(401, "bad_jwt", "Invalid API key")),
            None => Err(fail(401, "no_authorization", "No API key found in request")),
        }
    }

    fn rate(&self, addr: SocketAddr) -> Result<()> {
        self.limiter.check(addr.ip()).map_err(|wait| AuthError {
            retry_after: Some(wait),
            ..fail(429, "over_request_rate_limit", format!("Request rate limit reached; retry in {wait} s"))
        })
    }

    /// The claims of the signed-in user's access token.
    fn user_claims(&self, headers: &HeaderMap) -> Result<Map<String, Value>> {
        let t =
            bearer(headers).ok_or_else(|| fail(401, "no_authorization", "This endpoint requires a Bearer token"))?;
        let claims = self.auth.jwt().verify(t).map_err(|e| fail(403, "bad_jwt", format!("invalid JWT: {e}")))?;
        if claims.get("sub").and_then(Value::as_str).is_none_or(|s| !is_uuid(s)) {
            return Err(fail(403, "bad_jwt", "invalid claim: missing sub claim"));
        }
        Ok(claims)
    }

    fn require_admin(&self, headers: &HeaderMap) -> Result<()> {
        let t =
            bearer(headers).ok_or_else(|| fail(401, "no_authorization", "This endpoint requires a Bearer token"))?;
        let claims = self.auth.jwt().verify(t).map_err(|e| fail(403, "bad_jwt", format!("invalid JWT: {e}")))?;
        if claims.get("role").and_then(Value::as_str) != Some(SERVICE_ROLE) {
            return Err(fail(403, "not_admin", "User not allowed"));
        }
        // A token limited by scopes manages users only with the admin scope.
        if bkg_sql::policy::Scopes::from_claims(&Value::Object(claims)).is_some_and(|s| !s.admin) {
            return Err(fail(403, "not_admin", "User not allowed: the token's scopes do not include admin"));
        }
        Ok(())
    }

    async fn find_user(&self, s: &mut Session, column: &str, value: &str) -> Result<Option<User>> {
        let sql = format!("SELECT {USER_COLUMNS} FROM auth.users WHERE {column} = $1");
        let out = Box::pin(s.execute_with_params(&sql, &[lit(value)])).await?;
        Ok(text_rows(out)?.into_iter().next().map(User::from_row))
    }

    async fn user_by_id(&self, s: &mut Session, id: &str) -> Result<User> {
        let not_found = || fail(404, "user_not_found", "User not found");
        if !is_uuid(id) {
            return Err(not_found());
        }
        self.find_user(s, "id", id).await?.ok_or_else(not_found)
    }

    fn access_token(&self, user: &User, session_id: &str) -> (String, u64) {
        let now = now_s();
        let exp = now + self.config.jwt_expiry_s;
        let (jwt_issuer, jwt_audience) = {
            let jwt = self.auth.jwt();
            (jwt.issuer.clone(), jwt.audience.clone())
        };
        let claims = json!({
            // A configured issuer and audience are what every verifier of this server checks.
            "iss": jwt_issuer.unwrap_or_else(|| "bkg-db/auth/v1".to_string()),
            "aud": jwt_audience.unwrap_or_else(|| user.aud.clone()),
            "sub": user.id,
            "exp": exp,
            "iat": now,
            "email": user.email,
            "phone": "",
            "app_metadata": user.app_metadata,
            "user_metadata": user.user_metadata,
            "role": user.role,
            "aal": "aal1",
            "amr": [{"method": "password", "timestamp": now}],
            "session_id": session_id,
            "is_anonymous": false,
        });
        (self.auth.jwt().sign(claims.as_object().expect("an object")), exp)
    }

    /// Starts a session for `user` (inside the open transaction of `s`) and returns the
    /// session object auth-js stores.
    async fn new_session(&self, s: &mut Session, user: &User) -> Result<Value> {
        let sid = new_uuid();
        Box::pin(s.execute_with_params(
            "INSERT INTO auth.sessions (id, user_id, created_at) VALUES ($1, $2, now())",
            &[lit(&sid), lit(&user.id)],
        ))
        .await?;
        let refresh = new_refresh_token();
        self.store_refresh(s, &refresh, &sid, &user.id).await?;
        Ok(self.session_json(user, &sid, &refresh))
    }

    async fn store_refresh(&self, s: &mut Session, token: &str, sid: &str, uid: &str) -> Result<()> {
        Box::pin(s.execute_with_params(
            "INSERT INTO auth.refresh_tokens (token_hash, session_id, user_id, revoked, created_at) \
             VALUES ($1, $2, $3, false, now())",
            &[lit(&token_hash(token)), lit(sid), lit(uid)],
        ))
        .await?;
        Ok(())
    }

    fn session_json(&self, user: &User, sid: &str, refresh: &str) -> Value {
        let (access, exp) = self.access_token(user, sid);
        json!({
            "access_token": access,
            "token_type": "bearer",
            "expires_in": self.config.jwt_expiry_s,
            "expires_at": exp,
            "refresh_token": refresh,
            "user": user.json(),
        })
    }

    /// Runs `f` in one transaction of a fresh superuser session; rolls back on error.
    async fn in_txn<T>(&self, f: impl AsyncFnOnce(&mut Session) -> Result<T>) -> Result<T> {
        let mut s = self.session();
        s.execute_one("BEGIN").await?;
        match f(&mut s).await {
            Ok(v) => {
                s.execute_one("COMMIT").await?;
                Ok(v)
            }
            Err(e) => {
                let _ = s.execute_one("ROLLBACK").await;
                Err(e)
            }
        }
    }

    /// Creates a user (confirmed or not); `Err(user_already_exists)` when the email is taken.
    async fn create_user(
        &self,
        s: &mut Session,
        email: &str,
        password_hash: &str,
        app: Option<String>,
        meta: Option<String>,
        confirmed: bool,
    ) -> Result<User> {
        let id = new_uuid();
        let confirmed_at = if confirmed { "now()" } else { "NULL" };
        let sql = format!(
            "INSERT INTO auth.users (id, email, encrypted_password, role, aud, raw_app_meta_data, raw_user_meta_data, \
                 email_confirmed_at, created_at, updated_at) \
             VALUES ($1, $2, $3, 'authenticated', 'authenticated', $4, $5, {confirmed_at}, now(), now())"
        );
        let r = Box::pin(s.execute_with_params(
            &sql,
            &[
                lit(&id),
                lit(email),
                lit(password_hash),
                lit(app.as_deref().unwrap_or(r#"{"provider":"email","providers":["email"]}"#)),
                lit(meta.as_deref().unwrap_or("{}")),
            ],
        ))
        .await;
        match r {
            Err(e) if e.code == "23505" => {
                return Err(fail(422, "user_already_exists", "User already registered"));
            }
            Err(e) => return Err(e.into()),
            Ok(_) => {}
        }
        self.user_by_id(s, &id).await
    }

    /// Merges the members of `new` (a JSON object) into `current` and stores it in `column`.
    async fn merge_metadata(
        &self,
        s: &mut Session,
        user: &User,
        column: &str,
        current: &Value,
        new: &str,
    ) -> Result<()> {
        let mut merged = current.as_object().cloned().unwrap_or_default();
        if let Ok(Value::Object(new)) = serde_json::from_str::<Value>(new) {
            merged.extend(new);
        }
        let sql = format!("UPDATE auth.users SET {column} = $1, updated_at = now() WHERE id = $2");
        Box::pin(s.execute_with_params(&sql, &[lit(&Value::Object(merged).to_string()), lit(&user.id)])).await?;
        Ok(())
    }

    /// Records a sign-in of `user_id` and starts its session (in the open transaction of `s`).
    async fn sign_in(&self, s: &mut Session, user_id: &str) -> Result<Value> {
        Box::pin(s.execute_with_params("UPDATE auth.users SET last_sign_in_at = now() WHERE id = $1", &[lit(user_id)]))
            .await?;
        let user = self.user_by_id(s, user_id).await?;
        self.new_session(s, &user).await
    }

    /// Applies `email`, `password`, metadata changes to a user.
    async fn update_user(&self, s: &mut Session, user: &User, body: &Map<String, Value>, admin: bool) -> Result<User> {
        if let Some(email) = str_field(body, "email")? {
            let email = normalize_email(email)?;
            if email != user.email {
                let r = Box::pin(s.execute_with_params(
                    "UPDATE auth.users SET email = $1, updated_at = now() WHERE id = $2",
                    &[lit(&email), lit(&user.id)],
                ))
                .await;
                match r {
                    Err(e) if e.code == "23505" => {
                        return Err(fail(
                            422,
                            "email_exists",
                            "A user with this email address has already been registered",
                        ));
                    }
                    r => {
                        r?;
                    }
                }
            }
        }
        if let Some(p) = str_field(body, "password")? {
            check_password(p)?;
            let h = hash_password(p)?;
            Box::pin(s.execute_with_params(
                "UPDATE auth.users SET encrypted_password = $1, updated_at = now() WHERE id = $2",
                &[lit(&h), lit(&user.id)],
            ))
            .await?;
        }
        // auth-js sends user metadata as `data`; the admin API as `user_metadata`.
        let meta_key = if admin { "user_metadata" } else { "data" };
        if let Some(meta) = metadata_field(body, meta_key)? {
            self.merge_metadata(s, user, "raw_user_meta_data", &user.user_metadata, &meta).await?;
        }
        if admin && body.get("email_confirm").and_then(Value::as_bool) == Some(true) && user.confirmed_at.is_none() {
            Box::pin(s.execute_with_params(
                "UPDATE auth.users SET email_confirmed_at = now(), updated_at = now() WHERE id = $1",
                &[lit(&user.id)],
            ))
            .await?;
        }
        if admin && let Some(app) = metadata_field(body, "app_metadata")? {
            self.merge_metadata(s, user, "raw_app_meta_data", &user.app_metadata, &app).await?;
        }
        self.user_by_id(s, &user.id).await
    }
}

fn ok_json(status: u16, v: Value) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    (status, [("content-type", "application/json")], v.to_string()).into_response()
}

/// The public keys tokens are verified with (empty with HS256, whose secret is never shown).
#[utoipa::path(get, path = "/auth/v1/.well-known/jwks.json", tag = "auth", security(()),
    responses((status = 200, description = "JWKS: the ES256 or RS256 keys that verify tokens", content_type = "application/json")))]
pub async fn jwks(State(g): State<Arc<GoTrue>>) -> Response {
    ok_json(200, g.auth.jwt().jwks())
}

/// What sign-in methods are on.
#[utoipa::path(get, path = "/auth/v1/settings", tag = "auth", security(()),
    responses((status = 200, description = "Settings (GoTrue's shape)", content_type = "application/json")))]
pub async fn settings(State(g): State<Arc<GoTrue>>) -> Response {
    ok_json(
        200,
        json!({
            "external": {"email": true, "phone": false, "anonymous_users": false},
            "disable_signup": g.config.disable_signup,
            "mailer_autoconfirm": g.config.autoconfirm,
            "phone_autoconfirm": false,
            "sms_provider": "",
            "saml_enabled": false,
        }),
    )
}

/// Creates a user from `{email, password, data}` and signs it in (sign-ups are confirmed at once).
#[utoipa::path(post, path = "/auth/v1/signup", tag = "auth",
    request_body(description = "{\"email\", \"password\", \"data\": user metadata}", content_type = "application/json"),
    responses(
        (status = 200, description = "A session: access_token, refresh_token, expires_in, expires_at, user", content_type = "application/json"),
        (status = 400, description = "Bad JSON or email", body = AuthErrorBody),
        (status = 422, description = "weak_password, user_already_exists, signup_disabled", body = AuthErrorBody),
        (status = 429, description = "Too many attempts from this address", body = AuthErrorBody),
    ), security(("apikey" = [])))]
pub async fn signup(
    State(g): State<Arc<GoTrue>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response> {
    g.rate(addr)?;
    g.require_apikey(&headers)?;
    if g.config.disable_signup {
        return Err(fail(422, "signup_disabled", "Signups not allowed for this instance"));
    }
    let b = parse_body(&body)?;
    let email = normalize_email(str_field(&b, "email")?.unwrap_or_default())?;
    let password =
        str_field(&b, "password")?.ok_or_else(|| fail(422, "validation_failed", "Signup requires a valid password"))?;
    check_password(password)?;
    let meta = metadata_field(&b, "data")?;
    let hash = hash_password(password)?;
    if !g.config.autoconfirm {
        // The user, unconfirmed, without a session; for a taken email a user object of the same
        // shape that belongs to nobody, so the answer does not tell whether the email exists.
        let created = g.in_txn(async |s| g.create_user(s, &email, &hash, None, meta.clone(), false).await).await;
        let user = match created {
            Ok(u) => u.json(),
            Err(e) if e.code == "user_already_exists" => {
                let now = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string();
                let meta: Value = meta.as_deref().and_then(|m| serde_json::from_str(m).ok()).unwrap_or(json!({}));
                User {
                    id: new_uuid(),
                    email: email.clone(),
                    role: AUTHENTICATED_ROLE.into(),
                    aud: AUTHENTICATED_ROLE.into(),
                    app_metadata: json!({"provider": "email", "providers": ["email"]}),
                    user_metadata: meta,
                    confirmed_at: None,
                    last_sign_in_at: None,
                    created_at: Some(now.clone()),
                    updated_at: Some(now),
                    password_hash: String::new(),
                }
                .json()
            }
            Err(e) => return Err(e),
        };
        return Ok(ok_json(200, user));
    }
    let session = g
        .in_txn(async |s| {
            let user = g.create_user(s, &email, &hash, None, meta, true).await?;
            g.sign_in(s, &user.id).await
        })
        .await?;
    Ok(ok_json(200, session))
}

/// Signs in: `grant_type=password` with `{email, password}`, or `grant_type=refresh_token` with
/// `{refresh_token}` (each refresh token is good once; reusing one ends its session).
#[utoipa::path(post, path = "/auth/v1/token", tag = "auth",
    params(("grant_type" = String, Query, description = "password or refresh_token")),
    request_body(description = "{\"email\", \"password\"} or {\"refresh_token\"}", content_type = "application/json"),
    responses(
        (status = 200, description = "A session", content_type = "application/json"),
        (status = 400, description = "invalid_credentials (the same for an unknown email), refresh_token_already_used, refresh_token_not_found", body = AuthErrorBody),
        (status = 429, description = "Too many attempts from this address", body = AuthErrorBody),
    ), security(("apikey" = [])))]
pub async fn token(
    State(g): State<Arc<GoTrue>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response> {
    g.rate(addr)?;
    g.require_apikey(&headers)?;
    let b = parse_body(&body)?;
    match query_param(&q, "grant_type").as_deref() {
        Some("password") => {
            let invalid = || fail(400, "invalid_credentials", "Invalid login credentials");
            let email = str_field(&b, "email")?.map(normalize_email).transpose().map_err(|_| invalid())?;
            let password = str_field(&b, "password")?.unwrap_or_default();
            let mut s = g.session();
            let user = match &email {
                Some(e) => g.find_user(&mut s, "email", e).await?,
                None => None,
            };
            // The same work and the same answer whether or not the email exists.
            let hash = user.as_ref().map(|u| u.password_hash.as_str()).unwrap_or(g.decoy_hash.as_str());
            let matches = password_matches(hash, password);
            let Some(user) = user.filter(|_| matches) else { return Err(invalid()) };
            if user.confirmed_at.is_none() {
                return Err(fail(400, "email_not_confirmed", "Email not confirmed"));
            }
            let session = g.in_txn(async |s| g.sign_in(s, &user.id).await).await?;
            Ok(ok_json(200, session))
        }
        Some("refresh_token") => {
            let presented = str_field(&b, "refresh_token")?
                .filter(|t| !t.is_empty() && t.len() <= 128)
                .ok_or_else(|| fail(400, "validation_failed", "refresh_token required"))?;
            let hash = token_hash(presented);
            enum Outcome {
                Rotated(Value),
                Reused,
                Unknown,
            }
            let outcome = g
                .in_txn(async |s| {
                    let out = Box::pin(s.execute_with_params(
                        "UPDATE auth.refresh_tokens SET revoked = true WHERE token_hash = $1 AND NOT revoked \
                         RETURNING session_id, user_id",
                        &[lit(&hash)],
                    ))
                    .await?;
                    if let Some(r) = text_rows(out)?.into_iter().next() {
                        let (sid, uid) = (r[0].clone().unwrap_or_default(), r[1].clone().unwrap_or_default());
                        let user = g.user_by_id(s, &uid).await?;
                        let fresh = new_refresh_token();
                        g.store_refresh(s, &fresh, &sid, &uid).await?;
                        return Ok(Outcome::Rotated(g.session_json(&user, &sid, &fresh)));
                    }
                    let out = Box::pin(s.execute_with_params(
                        "SELECT session_id FROM auth.refresh_tokens WHERE token_hash = $1",
                        &[lit(&hash)],
                    ))
                    .await?;
                    match text_rows(out)?.into_iter().next() {
                        Some(r) => {
                            // A used token again: the family is compromised; end the session.
                            let sid = r[0].clone().unwrap_or_default();
                            Box::pin(s.execute_with_params("DELETE FROM auth.sessions WHERE id = $1", &[lit(&sid)]))
                                .await?;
                            Ok(Outcome::Reused)
                        }
                        None => Ok(Outcome::Unknown),
                    }
                })
                .await?;
            match outcome {
                Outcome::Rotated(v) => Ok(ok_json(200, v)),
                Outcome::Reused => Err(fail(400, "refresh_token_already_used", "Invalid Refresh Token: Already Used")),
                Outcome::Unknown => {
                    Err(fail(400, "refresh_token_not_found", "Invalid Refresh Token: Refresh Token Not Found"))
                }
            }
        }
        _ => Err(fail(400, "unsupported_grant_type", "unsupported_grant_type: use password or refresh_token")),
    }
}

/// The user of a valid access token whose session is still open.
async fn signed_in_user(g: &GoTrue, s: &mut Session, headers: &HeaderMap) -> Result<(User, String)> {
    let claims = g.user_claims(headers)?;
    let uid = claims.get("sub").and_then(Value::as_str).unwrap_or_default().to_string();
    let sid = claims.get("session_id").and_then(Value::as_str).unwrap_or_default().to_string();
    let open = if is_uuid(&sid) {
        let out = Box::pin(s.execute_with_params("SELECT 1 FROM auth.sessions WHERE id = $1", &[lit(&sid)])).await?;
        !text_rows(out)?.is_empty()
    } else {
        false
    };
    if !open {
        return Err(fail(403, "session_not_found", "Session from session_id claim in JWT does not exist"));
    }
    let user = g
        .find_user(s, "id", &uid)
        .await?
        .ok_or_else(|| fail(403, "user_not_found", "User from sub claim in JWT does not exist"))?;
    Ok((user, sid))
}

/// The signed-in user.
#[utoipa::path(get, path = "/auth/v1/user", tag = "auth",
    responses(
        (status = 200, description = "The user", content_type = "application/json"),
        (status = 401, description = "No token", body = AuthErrorBody),
        (status = 403, description = "Bad token, or its session has ended", body = AuthErrorBody),
    ), security(("apikey" = [], "bearer" = [])))]
pub async fn get_user(State(g): State<Arc<GoTrue>>, headers: HeaderMap) -> Result<Response> {
    g.require_apikey(&headers)?;
    let mut s = g.session();
    let (user, _) = signed_in_user(&g, &mut s, &headers).await?;
    Ok(ok_json(200, user.json()))
}

/// Changes the signed-in user's email, password or metadata (`data`, merged).
#[utoipa::path(put, path = "/auth/v1/user", tag = "auth",
    request_body(description = "{\"email\", \"password\", \"data\"}", content_type = "application/json"),
    responses(
        (status = 200, description = "The user", content_type = "application/json"),
        (status = 403, description = "Bad token, or its session has ended", body = AuthErrorBody),
        (status = 422, description = "weak_password, email_exists", body = AuthErrorBody),
    ), security(("apikey" = [], "bearer" = [])))]
pub async fn put_user(State(g): State<Arc<GoTrue>>, headers: HeaderMap, body: axum::body::Bytes) -> Result<Response> {
    g.require_apikey(&headers)?;
    let b = parse_body(&body)?;
    let user = g
        .in_txn(async |s| {
            let (user, _) = signed_in_user(&g, s, &headers).await?;
            g.update_user(s, &user, &b, false).await
        })
        .await?;
    Ok(ok_json(200, user.json()))
}

/// Ends sessions: `scope=global` (default, all of the user's), `local` or `others`.
#[utoipa::path(post, path = "/auth/v1/logout", tag = "auth",
    params(("scope" = Option<String>, Query, description = "global, local or others")),
    responses(
        (status = 204, description = "Signed out"),
        (status = 403, description = "Bad token, or its session has ended", body = AuthErrorBody),
    ), security(("apikey" = [], "bearer" = [])))]
pub async fn logout(State(g): State<Arc<GoTrue>>, RawQuery(q): RawQuery, headers: HeaderMap) -> Result<Response> {
    g.require_apikey(&headers)?;
    let scope = query_param(&q, "scope").unwrap_or_else(|| "global".into());
    g.in_txn(async |s| {
        let (user, sid) = signed_in_user(&g, s, &headers).await?;
        let (sql, arg) = match scope.as_str() {
            "local" => ("DELETE FROM auth.sessions WHERE id = $1", sid),
            "others" => {
                Box::pin(s.execute_with_params(
                    "DELETE FROM auth.sessions WHERE user_id = $1 AND id <> $2",
                    &[lit(&user.id), lit(&sid)],
                ))
                .await?;
                return Ok(());
            }
            _ => ("DELETE FROM auth.sessions WHERE user_id = $1", user.id.clone()),
        };
        Box::pin(s.execute_with_params(sql, &[lit(&arg)])).await?;
        Ok(())
    })
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Password recovery: always 200, whether or not the address has an account (no mail is sent).
#[utoipa::path(post, path = "/auth/v1/recover", tag = "auth",
    request_body(description = "{\"email\"}", content_type = "application/json"),
    responses(
        (status = 200, description = "Accepted", content_type = "application/json"),
        (status = 429, description = "Too many attempts from this address", body = AuthErrorBody),
    ), security(("apikey" = [])))]
pub async fn recover(
    State(g): State<Arc<GoTrue>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response> {
    g.rate(addr)?;
    g.require_apikey(&headers)?;
    let b = parse_body(&body)?;
    normalize_email(str_field(&b, "email")?.unwrap_or_default())?;
    // No mail is sent (no mailer is configured), and the answer never tells whether the
    // address has an account.
    Ok(ok_json(200, json!({})))
}

/// Lists users (service role), `page` and `per_page`; `x-total-count` gives the total.
#[utoipa::path(get, path = "/auth/v1/admin/users", tag = "auth",
    params(("page" = Option<u32>, Query, description = "From 1"), ("per_page" = Option<u32>, Query, description = "At most 1000")),
    responses(
        (status = 200, description = "{users, aud}", content_type = "application/json"),
        (status = 403, description = "Not the service role", body = AuthErrorBody),
    ), security(("bearer" = [])))]
pub async fn admin_list(State(g): State<Arc<GoTrue>>, RawQuery(q): RawQuery, headers: HeaderMap) -> Result<Response> {
    g.require_admin(&headers)?;
    let page: usize = query_param(&q, "page").and_then(|p| p.parse().ok()).filter(|p| *p >= 1).unwrap_or(1);
    let per_page: usize =
        query_param(&q, "per_page").and_then(|p| p.parse().ok()).unwrap_or(50).clamp(1, PAGE_USERS_MAX);
    let mut s = g.session();
    let total = text_rows(s.execute_one("SELECT count(*) FROM auth.users").await?)?
        .first()
        .and_then(|r| r[0].clone())
        .unwrap_or_default();
    let sql = format!(
        "SELECT {USER_COLUMNS} FROM auth.users ORDER BY created_at, id LIMIT {per_page} OFFSET {}",
        (page - 1) * per_page
    );
    let users: Vec<Value> =
        text_rows(s.execute_one(&sql).await?)?.into_iter().map(|r| User::from_row(r).json()).collect();
    let mut resp = ok_json(200, json!({"users": users, "aud": AUTHENTICATED_ROLE}));
    if let Ok(v) = HeaderValue::from_str(&total) {
        resp.headers_mut().insert("x-total-count", v);
    }
    Ok(resp)
}

/// Creates a user (service role): `{email, password, email_confirm, user_metadata, app_metadata}`.
#[utoipa::path(post, path = "/auth/v1/admin/users", tag = "auth",
    request_body(description = "The new user", content_type = "application/json"),
    responses(
        (status = 200, description = "The user", content_type = "application/json"),
        (status = 403, description = "Not the service role", body = AuthErrorBody),
        (status = 422, description = "user_already_exists, weak_password", body = AuthErrorBody),
    ), security(("bearer" = [])))]
pub async fn admin_create(
    State(g): State<Arc<GoTrue>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response> {
    g.require_admin(&headers)?;
    let b = parse_body(&body)?;
    let email = normalize_email(str_field(&b, "email")?.unwrap_or_default())?;
    let hash = match str_field(&b, "password")? {
        Some(p) => {
            check_password(p)?;
            hash_password(p)?
        }
        // No password: password sign-in is impossible until one is set.
        None => "!".to_string(),
    };
    let meta = metadata_field(&b, "user_metadata")?;
    let app = metadata_field(&b, "app_metadata")?;
    let confirmed = g.config.autoconfirm || b.get("email_confirm").and_then(Value::as_bool) == Some(true);
    let user = g.in_txn(async |s| g.create_user(s, &email, &hash, app, meta, confirmed).await).await?;
    Ok(ok_json(200, user.json()))
}

/// One user (service role).
#[utoipa::path(get, path = "/auth/v1/admin/users/{id}", tag = "auth",
    params(("id" = String, Path, description = "The user's id (uuid)")),
    responses(
        (status = 200, description = "The user", content_type = "application/json"),
        (status = 404, description = "No such user", body = AuthErrorBody),
    ), security(("bearer" = [])))]
pub async fn admin_get(State(g): State<Arc<GoTrue>>, Path(id): Path<String>, headers: HeaderMap) -> Result<Response> {
    g.require_admin(&headers)?;
    let mut s = g.session();
    Ok(ok_json(200, g.user_by_id(&mut s, &id).await?.json()))
}

/// Changes a user (service role): email, password, user_metadata, app_metadata (merged).
#[utoipa::path(put, path = "/auth/v1/admin/users/{id}", tag = "auth",
    params(("id" = String, Path, description = "The user's id (uuid)")),
    request_body(description = "The changes", content_type = "application/json"),
    responses(
        (status = 200, description = "The user", content_type = "application/json"),
        (status = 404, description = "No such user", body = AuthErrorBody),
    ), security(("bearer" = [])))]
pub async fn admin_update(
    State(g): State<Arc<GoTrue>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response> {
    g.require_admin(&headers)?;
    let b = parse_body(&body)?;
    let user = g
        .in_txn(async |s| {
            let user = g.user_by_id(s, &id).await?;
            g.update_user(s, &user, &b, true).await
        })
        .await?;
    Ok(ok_json(200, user.json()))
}

/// Deletes a user and its sessions (service role).
#[utoipa::path(delete, path = "/auth/v1/admin/users/{id}", tag = "auth",
    params(("id" = String, Path, description = "The user's id (uuid)")),
    responses(
        (status = 200, description = "Deleted", content_type = "application/json"),
        (status = 404, description = "No such user", body = AuthErrorBody),
    ), security(("bearer" = [])))]
pub async fn admin_delete(
    State(g): State<Arc<GoTrue>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response> {
    g.require_admin(&headers)?;
    g.in_txn(async |s| {
        let user = g.user_by_id(s, &id).await?;
        Box::pin(s.execute_with_params("DELETE FROM auth.sessions WHERE user_id = $1", &[lit(&user.id)])).await?;
        Box::pin(s.execute_with_params("DELETE FROM auth.users WHERE id = $1", &[lit(&user.id)])).await?;
        Ok(())
    })
    .await?;
    Ok(ok_json(200, json!({})))
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
