//! User administration for the service role: `/auth/v1/admin/users`.

use super::*;

/// Lists users (service role), `page` and `per_page`, `filter` on the e-mail address;
/// `x-total-count` gives the total of the filtered list.
#[utoipa::path(get, path = "/auth/v1/admin/users", tag = "auth",
    params(("page" = Option<u32>, Query, description = "From 1"), ("per_page" = Option<u32>, Query, description = "At most 1000"),
        ("filter" = Option<String>, Query, description = "Only users whose e-mail address contains this text (case-insensitive)")),
    responses(
        (status = 200, description = "{users, aud}", content_type = "application/json"),
        (status = 403, description = "Not the service role", body = AuthErrorBody),
    ), security(("bearer" = [])))]
pub async fn admin_list(State(g): State<Arc<GoTrue>>, RawQuery(q): RawQuery, headers: HeaderMap) -> Result<Response> {
    g.require_admin(&headers)?;
    let page: usize = query_param(&q, "page").and_then(|p| p.parse().ok()).filter(|p| *p >= 1).unwrap_or(1);
    let per_page: usize =
        query_param(&q, "per_page").and_then(|p| p.parse().ok()).unwrap_or(50).clamp(1, PAGE_USERS_MAX);
    let filter = query_param(&q, "filter").filter(|f| !f.is_empty());
    if filter.as_ref().is_some_and(|f| f.len() > FILTER_BYTES_MAX) {
        return Err(fail(400, "validation_failed", format!("filter is longer than {FILTER_BYTES_MAX} bytes")));
    }
    // The filter is a LIKE pattern matched literally: its own % and _ are escaped.
    let pattern = filter.map(|f| {
        let escaped = f.to_lowercase().replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
        lit(&format!("%{escaped}%"))
    });
    let (clause, params) = match &pattern {
        Some(p) => (" WHERE lower(email) LIKE $1", vec![p.clone()]),
        None => ("", vec![]),
    };
    let mut s = g.session();
    let count_sql = format!("SELECT count(*) FROM auth.users{clause}");
    let total = text_rows(Box::pin(s.execute_with_params(&count_sql, &params)).await?)?
        .first()
        .and_then(|r| r[0].clone())
        .unwrap_or_default();
    let sql = format!(
        "SELECT {USER_COLUMNS} FROM auth.users{clause} ORDER BY created_at, id LIMIT {per_page} OFFSET {}",
        (page - 1) * per_page
    );
    let users: Vec<Value> = text_rows(Box::pin(s.execute_with_params(&sql, &params)).await?)?
        .into_iter()
        .map(|r| User::from_row(r).json())
        .collect();
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
    let user = g
        .in_txn(async |s| {
            let user = g.create_user(s, &email, &hash, app, meta, confirmed).await?;
            s.audit_event(g.event(SERVICE_ROLE, None, None, "user.create", &user.id, Outcome::Success))?;
            Ok(user)
        })
        .await?;
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

/// Changes a user (service role): email, password, user_metadata, app_metadata (merged),
/// email_confirm, ban_duration (`24h`, `1h30m`; `none` lifts a ban; a ban ends the user's sessions).
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
            // The fields changed, never their values (a password among them).
            let fields: Vec<&String> = b.keys().collect();
            let event = g.event(SERVICE_ROLE, None, None, "user.update", &user.id, Outcome::Success);
            s.audit_event(event.with_detail(json!({ "fields": fields })))?;
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
        s.audit_event(g.event(SERVICE_ROLE, None, None, "user.delete", &user.id, Outcome::Success))?;
        Ok(())
    })
    .await?;
    Ok(ok_json(200, json!({})))
}

/// Longest `filter` of the user list, bytes.
const FILTER_BYTES_MAX: usize = 256;

/// A user's sessions (service role), newest first.
#[utoipa::path(get, path = "/auth/v1/admin/users/{id}/sessions", tag = "auth", operation_id = "admin_user_sessions",
    params(("id" = String, Path, description = "The user's id (uuid)")),
    responses(
        (status = 200, description = "{sessions: [{id, created_at}]}", content_type = "application/json"),
        (status = 404, description = "No such user", body = AuthErrorBody),
    ), security(("bearer" = [])))]
pub async fn admin_sessions(
    State(g): State<Arc<GoTrue>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response> {
    g.require_admin(&headers)?;
    let mut s = g.session();
    let user = g.user_by_id(&mut s, &id).await?;
    let out = Box::pin(s.execute_with_params(
        "SELECT id, created_at FROM auth.sessions WHERE user_id = $1 ORDER BY created_at DESC LIMIT 1000",
        &[lit(&user.id)],
    ))
    .await?;
    let sessions: Vec<Value> =
        text_rows(out)?.into_iter().map(|r| json!({ "id": r[0], "created_at": timestamp(r[1].clone()) })).collect();
    Ok(ok_json(200, json!({ "sessions": sessions })))
}

/// Signs a user out everywhere (service role): ends every session and its refresh tokens.
#[utoipa::path(delete, path = "/auth/v1/admin/users/{id}/sessions", tag = "auth", operation_id = "admin_user_sessions_end",
    params(("id" = String, Path, description = "The user's id (uuid)")),
    responses(
        (status = 200, description = "{ended}: how many sessions ended", content_type = "application/json"),
        (status = 404, description = "No such user", body = AuthErrorBody),
    ), security(("bearer" = [])))]
pub async fn admin_end_sessions(
    State(g): State<Arc<GoTrue>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response> {
    g.require_admin(&headers)?;
    let ended = g
        .in_txn(async |s| {
            let user = g.user_by_id(s, &id).await?;
            let out = Box::pin(
                s.execute_with_params("DELETE FROM auth.sessions WHERE user_id = $1 RETURNING id", &[lit(&user.id)]),
            )
            .await?;
            let ended = text_rows(out)?.len();
            let event = g.event(SERVICE_ROLE, None, None, "user.signout_all", &user.id, Outcome::Success);
            s.audit_event(event.with_detail(json!({ "sessions_ended": ended })))?;
            Ok(ended)
        })
        .await?;
    Ok(ok_json(200, json!({ "ended": ended })))
}
