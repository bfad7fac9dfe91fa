//! Users, sessions and refresh tokens in the `auth` schema, worked on as the superuser.

use super::*;
use bkg_audit::{Actor, Event, Outcome};
use bkg_sql::SqlState;

impl GoTrue {
    pub(super) fn session(&self) -> Session {
        self.engine.session("postgres")
    }

    /// An audit event of this door: `role` and `user_id` are the user's, not the superuser
    /// session's that does the work.
    pub(super) fn event(
        &self,
        role: &str,
        user_id: Option<&str>,
        addr: Option<SocketAddr>,
        action: &str,
        object: &str,
        outcome: Outcome,
    ) -> Event {
        let actor = Actor {
            role: role.to_string(),
            user_id: user_id.map(str::to_string),
            token_id: None,
            address: addr.map(|a| a.to_string()),
        };
        Event::new(actor, action, object, outcome)
    }

    /// Clients send the project's API key, as through Supabase's gateway.
    pub(super) fn require_apikey(&self, headers: &HeaderMap) -> Result<()> {
        let key = headers.get("apikey").and_then(|v| v.to_str().ok()).or_else(|| bearer(headers));
        match key {
            Some(k) if self.auth.jwt().verify(k).is_ok() => Ok(()),
            Some(_) => Err(fail(401, "bad_jwt", "Invalid API key")),
            None => Err(fail(401, "no_authorization", "No API key found in request")),
        }
    }

    pub(super) fn rate(&self, addr: SocketAddr) -> Result<()> {
        self.limiter.check(addr.ip()).map_err(|wait| AuthError {
            retry_after: Some(wait),
            ..fail(429, "over_request_rate_limit", format!("Request rate limit reached; retry in {wait} s"))
        })
    }

    /// The claims of the signed-in user's access token.
    pub(super) fn user_claims(&self, headers: &HeaderMap) -> Result<Map<String, Value>> {
        let t =
            bearer(headers).ok_or_else(|| fail(401, "no_authorization", "This endpoint requires a Bearer token"))?;
        let claims = self.auth.jwt().verify(t).map_err(|e| fail(403, "bad_jwt", format!("invalid JWT: {e}")))?;
        if claims.get("sub").and_then(Value::as_str).is_none_or(|s| !is_uuid(s)) {
            return Err(fail(403, "bad_jwt", "invalid claim: missing sub claim"));
        }
        Ok(claims)
    }

    pub(super) fn require_admin(&self, headers: &HeaderMap) -> Result<()> {
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

    pub(super) async fn find_user(&self, s: &mut Session, column: &str, value: &str) -> Result<Option<User>> {
        let sql = format!("SELECT {USER_COLUMNS} FROM auth.users WHERE {column} = $1");
        let out = Box::pin(s.execute_with_params(&sql, &[lit(value)])).await?;
        Ok(text_rows(out)?.into_iter().next().map(User::from_row))
    }

    pub(super) async fn user_by_id(&self, s: &mut Session, id: &str) -> Result<User> {
        let not_found = || fail(404, "user_not_found", "User not found");
        if !is_uuid(id) {
            return Err(not_found());
        }
        self.find_user(s, "id", id).await?.ok_or_else(not_found)
    }

    pub(super) fn access_token(&self, user: &User, session_id: &str) -> (String, u64) {
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
    pub(super) async fn new_session(&self, s: &mut Session, user: &User) -> Result<Value> {
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

    pub(super) async fn store_refresh(&self, s: &mut Session, token: &str, sid: &str, uid: &str) -> Result<()> {
        Box::pin(s.execute_with_params(
            "INSERT INTO auth.refresh_tokens (token_hash, session_id, user_id, revoked, created_at) \
             VALUES ($1, $2, $3, false, now())",
            &[lit(&token_hash(token)), lit(sid), lit(uid)],
        ))
        .await?;
        Ok(())
    }

    pub(super) fn session_json(&self, user: &User, sid: &str, refresh: &str) -> Value {
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
    pub(super) async fn in_txn<T>(&self, f: impl AsyncFnOnce(&mut Session) -> Result<T>) -> Result<T> {
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
    pub(super) async fn create_user(
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
            Err(e) if e.code == SqlState::UniqueViolation => {
                return Err(fail(422, "user_already_exists", "User already registered"));
            }
            Err(e) => return Err(e.into()),
            Ok(_) => {}
        }
        self.user_by_id(s, &id).await
    }

    /// Merges the members of `new` (a JSON object) into `current` and stores it in `column`.
    pub(super) async fn merge_metadata(
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
    pub(super) async fn sign_in(&self, s: &mut Session, user_id: &str) -> Result<Value> {
        // In the sign-in's own transaction: a ban committed after an earlier check still wins.
        let out = Box::pin(s.execute_with_params(
            "UPDATE auth.users SET last_sign_in_at = now() WHERE id = $1 AND (banned_until IS NULL OR banned_until <= now())",
            &[lit(user_id)],
        ))
        .await?;
        if matches!(out, Output::Command { rows: Some(0), .. }) {
            return Err(fail(400, "user_banned", "User is banned"));
        }
        let user = self.user_by_id(s, user_id).await?;
        self.new_session(s, &user).await
    }

    /// Applies `email`, `password`, metadata changes to a user.
    pub(super) async fn update_user(
        &self,
        s: &mut Session,
        user: &User,
        body: &Map<String, Value>,
        admin: bool,
    ) -> Result<User> {
        if let Some(email) = str_field(body, "email")? {
            let email = normalize_email(email)?;
            if email != user.email {
                let r = Box::pin(s.execute_with_params(
                    "UPDATE auth.users SET email = $1, updated_at = now() WHERE id = $2",
                    &[lit(&email), lit(&user.id)],
                ))
                .await;
                match r {
                    Err(e) if e.code == SqlState::UniqueViolation => {
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
        if admin && let Some(d) = str_field(body, "ban_duration")? {
            let until = match d {
                "none" => None,
                d => {
                    let secs = parse_duration_s(d).ok_or_else(|| {
                        fail(400, "validation_failed", "ban_duration must be \"none\" or a duration such as 24h or 90m")
                    })?;
                    let until = chrono::Utc::now() + chrono::Duration::seconds(secs);
                    Some(until.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
                }
            };
            Box::pin(s.execute_with_params(
                "UPDATE auth.users SET banned_until = CAST($1 AS timestamptz), updated_at = now() WHERE id = $2",
                &[until.as_deref().map_or(null(), lit), lit(&user.id)],
            ))
            .await?;
            if until.is_some() {
                // A ban ends every session: no refresh token of the user works any more.
                Box::pin(s.execute_with_params("DELETE FROM auth.sessions WHERE user_id = $1", &[lit(&user.id)]))
                    .await?;
            }
        }
        if admin && let Some(app) = metadata_field(body, "app_metadata")? {
            self.merge_metadata(s, user, "raw_app_meta_data", &user.app_metadata, &app).await?;
        }
        self.user_by_id(s, &user.id).await
    }
}

/// A duration as `ban_duration` gives it: a sequence of numbers with units h, m, s (`24h`,
/// `1h30m`), as Go's time.ParseDuration reads them; at most a hundred years.
pub(super) fn parse_duration_s(text: &str) -> Option<i64> {
    const MAX_S: i64 = 100 * 366 * 24 * 3600;
    let (mut total, mut number, mut any) = (0i64, String::new(), false);
    for c in text.trim().chars() {
        match c {
            '0'..='9' => number.push(c),
            'h' | 'm' | 's' => {
                let n: i64 = number.parse().ok()?;
                number.clear();
                let unit = match c {
                    'h' => 3600,
                    'm' => 60,
                    _ => 1,
                };
                total = total.checked_add(n.checked_mul(unit)?)?;
                any = true;
            }
            _ => return None,
        }
    }
    (any && number.is_empty() && total > 0 && total <= MAX_S).then_some(total)
}
