//! User administration for the service role: `/auth/v1/admin/users`.

use super::*;

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
