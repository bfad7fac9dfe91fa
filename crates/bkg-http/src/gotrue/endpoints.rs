//! The endpoints auth-js calls for a user: sign-up, tokens, the user, logout, recovery, settings.

use super::*;

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
        let created = g
            .in_txn(async |s| {
                let user = g.create_user(s, &email, &hash, None, meta.clone(), false).await?;
                s.audit_event(g.event(ANON, Some(&user.id), Some(addr), "auth.signup", &user.id, Outcome::Success))?;
                Ok(user)
            })
            .await;
        let user = match created {
            Ok(u) => u.json(),
            Err(e) if e.code == "user_already_exists" => {
                let refused = g.event(ANON, None, Some(addr), "auth.signup", &email, Outcome::Failure);
                g.engine.audit_now(refused.with_detail(json!({ "reason": "user_already_exists" }))).await;
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
                    banned_until: None,
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
            s.audit_event(g.event(ANON, Some(&user.id), Some(addr), "auth.signup", &user.id, Outcome::Success))?;
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
            let refused = async |user_id: Option<&str>, reason: &str| {
                let object = email.as_deref().unwrap_or_default();
                let event = g.event(ANON, user_id, Some(addr), "auth.signin", object, Outcome::Failure);
                g.engine.audit_now(event.with_detail(json!({ "reason": reason }))).await;
            };
            let Some(user) = user.filter(|_| matches) else {
                refused(None, "invalid_credentials").await;
                return Err(invalid());
            };
            if user.confirmed_at.is_none() {
                refused(Some(&user.id), "email_not_confirmed").await;
                return Err(fail(400, "email_not_confirmed", "Email not confirmed"));
            }
            let banned = Box::pin(s.execute_with_params(
                "SELECT 1 FROM auth.users WHERE id = $1 AND banned_until > now()",
                &[lit(&user.id)],
            ))
            .await?;
            if !text_rows(banned)?.is_empty() {
                refused(Some(&user.id), "user_banned").await;
                return Err(fail(400, "user_banned", "User is banned"));
            }
            let session = g
                .in_txn(async |s| {
                    let event =
                        g.event(&user.role, Some(&user.id), Some(addr), "auth.signin", &user.id, Outcome::Success);
                    s.audit_event(event)?;
                    g.sign_in(s, &user.id).await
                })
                .await?;
            Ok(ok_json(200, session))
        }
        Some("refresh_token") => {
            let presented = str_field(&b, "refresh_token")?
                .filter(|t| !t.is_empty() && t.len() <= 128)
                .ok_or_else(|| fail(400, "validation_failed", "refresh_token required"))?;
            let hash = token_hash(presented);
            enum Refresh {
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
                        let banned = Box::pin(s.execute_with_params(
                            "SELECT 1 FROM auth.users WHERE id = $1 AND banned_until > now()",
                            &[lit(&uid)],
                        ))
                        .await?;
                        if !text_rows(banned)?.is_empty() {
                            return Err(fail(400, "user_banned", "User is banned"));
                        }
                        let user = g.user_by_id(s, &uid).await?;
                        let fresh = new_refresh_token();
                        g.store_refresh(s, &fresh, &sid, &uid).await?;
                        return Ok(Refresh::Rotated(g.session_json(&user, &sid, &fresh)));
                    }
                    let out = Box::pin(s.execute_with_params(
                        "SELECT session_id, user_id FROM auth.refresh_tokens WHERE token_hash = $1",
                        &[lit(&hash)],
                    ))
                    .await?;
                    match text_rows(out)?.into_iter().next() {
                        Some(r) => {
                            // A used token again: the family is compromised; end the session.
                            let sid = r[0].clone().unwrap_or_default();
                            Box::pin(s.execute_with_params("DELETE FROM auth.sessions WHERE id = $1", &[lit(&sid)]))
                                .await?;
                            let uid = r[1].clone();
                            let event =
                                g.event(ANON, uid.as_deref(), Some(addr), "auth.refresh_reuse", &sid, Outcome::Failure);
                            s.audit_event(event.with_detail(json!({ "session_ended": sid })))?;
                            Ok(Refresh::Reused)
                        }
                        None => Ok(Refresh::Unknown),
                    }
                })
                .await?;
            match outcome {
                Refresh::Rotated(v) => Ok(ok_json(200, v)),
                Refresh::Reused => Err(fail(400, "refresh_token_already_used", "Invalid Refresh Token: Already Used")),
                Refresh::Unknown => {
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
pub async fn logout(
    State(g): State<Arc<GoTrue>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Result<Response> {
    g.require_apikey(&headers)?;
    let scope = query_param(&q, "scope").unwrap_or_else(|| "global".into());
    g.in_txn(async |s| {
        let (user, sid) = signed_in_user(&g, s, &headers).await?;
        let event = g.event(&user.role, Some(&user.id), Some(addr), "auth.logout", &user.id, Outcome::Success);
        s.audit_event(event.with_detail(json!({ "scope": scope, "session_id": sid })))?;
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
