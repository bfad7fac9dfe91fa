//! `POST /migrate/apply` and `GET|POST /migrate/status` (service role only).
//!
//! Body (optional): `{"migrations": [{"name": "<version>_<name>.sql", "sql": "..."}]}`. The set is
//! the built-in migrations, the files of `BKG_DB_MIGRATIONS_DIR` and those of the body.

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::error::RestError;
use super::{RestState, read_body};
use bkg_sql::SqlState;
use bkg_sql::migrate::{self, MigrateError, Migration};

/// A migration file.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MigrationFile {
    /// `<version>_<name>.sql`, the version at least 8 digits.
    name: String,
    sql: String,
}

/// Migrations to consider besides the built-in ones and BKG_DB_MIGRATIONS_DIR.
#[derive(serde::Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MigrationsRequest {
    #[serde(default)]
    migrations: Vec<MigrationFile>,
}

/// Answer of `/migrate/apply` (`applied` is absent for status).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct MigrationsResponse {
    /// Versions applied by this request.
    applied: Option<Vec<String>>,
    status: Vec<MigrationStatus>,
}

/// Where one migration stands.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct MigrationStatus {
    version: String,
    name: String,
    /// `applied`, `pending`, `edited` (applied, changed since) or `missing` (applied, not given).
    state: String,
    applied_at: Option<String>,
}

fn error(e: MigrateError) -> RestError {
    let mut r = RestError::new(e.code.http_status(false), e.code, e.message.clone());
    r.details = Some(match (&e.file, &e.detail) {
        (Some(f), Some(d)) => format!("{f}: {d}"),
        (Some(f), None) => f.clone(),
        (None, Some(d)) => d.clone(),
        (None, None) => String::new(),
    })
    .filter(|d| !d.is_empty());
    r
}

/// The migration set of a request, after checking that it comes from the service role.
async fn set(s: &RestState, addr: SocketAddr, headers: &HeaderMap, body: Body) -> Result<Vec<Migration>, RestError> {
    let ctx = s.begin(addr, headers).await?;
    if ctx.principal.role != bkg_auth::SERVICE_ROLE {
        return Err(RestError::new(403, SqlState::InsufficientPrivilege, "migrations need the service role"));
    }
    if bkg_sql::policy::Scopes::from_claims(&serde_json::Value::Object(ctx.principal.claims.clone()))
        .is_some_and(|s| !s.admin)
    {
        return Err(RestError::new(403, SqlState::InsufficientPrivilege, "migrations need the admin scope"));
    }
    let bytes = read_body(body, s.config.body_bytes_max).await?;
    let req: MigrationsRequest = if bytes.iter().all(u8::is_ascii_whitespace) {
        MigrationsRequest::default()
    } else {
        serde_json::from_slice(&bytes).map_err(|e| {
            RestError::new(400, SqlState::PgrstBody, "Body must be {\"migrations\": [{\"name\", \"sql\"}]}")
                .details(e.to_string())
        })?
    };
    let mut all = migrate::builtin();
    if let Some(dir) = &s.config.migrations_dir {
        all.extend(migrate::load_dir(dir).map_err(error)?);
    }
    for f in req.migrations {
        all.push(Migration::new(&f.name, &f.sql).map_err(error)?);
    }
    migrate::sort(all).map_err(error)
}

fn json(status: StatusCode, v: serde_json::Value) -> Response {
    (status, axum::Json(v)).into_response()
}

/// Apply the pending migrations, each in its own transaction (service role).
#[utoipa::path(post, path = "/migrate/apply", tag = "migrations",
    request_body(content = MigrationsRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "Applied; the status of every migration", body = MigrationsResponse),
        (status = 400, description = "Bad file name (BKG102), transaction control in a file (BKG103), or the failing statement's error", body = super::error::ErrorBody),
        (status = 403, description = "Not the service role", body = super::error::ErrorBody),
        (status = 409, description = "An applied migration was edited (BKG101)", body = super::error::ErrorBody),
    ),
    security(("apikey" = []), ("bearer" = [])))]
pub async fn apply(
    State(s): State<RestState>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    run(&s, addr, &headers, body, true).await
}

/// List the migrations and their state (service role); POST may add files as for apply.
#[utoipa::path(get, path = "/migrate/status", tag = "migrations",
    responses(
        (status = 200, description = "The status of every migration", body = MigrationsResponse),
        (status = 403, description = "Not the service role", body = super::error::ErrorBody),
    ),
    security(("apikey" = []), ("bearer" = [])))]
pub async fn status(
    State(s): State<RestState>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    run(&s, addr, &headers, body, false).await
}

async fn run(s: &RestState, addr: SocketAddr, headers: &HeaderMap, body: Body, apply: bool) -> Response {
    let go = async {
        let all = set(s, addr, headers, body).await?;
        let applied = match apply {
            true => Some(migrate::apply(&s.engine, &all).await.map_err(error)?),
            false => None,
        };
        let status = migrate::status(&s.engine, &all).await.map_err(error)?;
        let body = match applied {
            Some(a) => serde_json::json!({"applied": a, "status": status}),
            None => serde_json::json!({"status": status}),
        };
        Ok::<_, RestError>(json(StatusCode::OK, body))
    };
    match Box::pin(go).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}
