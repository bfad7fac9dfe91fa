//! `POST /export`: a query's rows (or a table's) written as Parquet or CSV to a file under the
//! export directory or to an allowed S3 prefix, on the same path as `COPY … TO '<url>'`.

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use datafusion::sql::sqlparser::ast::Statement;

use super::error::RestError;
use super::{RestState, read_body};
use bkg_sql::Session;
use bkg_sql::SqlState;
use bkg_sql::copy::CopyOptions;

/// What to export and where.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExportRequest {
    /// A query (one SELECT); or give `table`.
    query: Option<String>,
    /// A table or view, `name` or `schema.name`.
    table: Option<String>,
    /// `file://…` or a path (inside the export directory), or `s3://bucket/key` under an
    /// allowed prefix.
    url: String,
    /// `parquet` (default; `csv` when the URL ends in .csv).
    format: Option<String>,
    /// CSV only: a header line.
    #[serde(default)]
    header: bool,
}

/// The outcome of an export.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct ExportResponse {
    rows: u64,
    url: String,
    format: String,
}

/// Export a query's rows (or a table's) as Parquet or CSV to a file or S3.
///
/// The same path as `COPY … TO '<target>'`: one snapshot, the caller's privileges and row-level
/// security, and the object appears only once complete.
#[utoipa::path(post, path = "/export", tag = "sql",
    request_body(content = ExportRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "Written: the row count", body = ExportResponse),
        (status = 400, description = "Bad body, SQL or URL (42601, 22023, 0A000)", body = super::error::ErrorBody),
        (status = 401, description = "No or invalid key", body = super::error::ErrorBody),
        (status = 403, description = "Not allowed: exports need the service role or the admin scope, and a target inside the export directory or an allowed prefix (42501)", body = super::error::ErrorBody),
    ),
    security(("apikey" = []), ("bearer" = [])))]
pub async fn export(
    State(s): State<RestState>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match Box::pin(handle(&s, addr, &headers, body)).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn handle(s: &RestState, addr: SocketAddr, headers: &HeaderMap, body: Body) -> Result<Response, RestError> {
    let mut ctx = s.begin(addr, headers).await?;
    let bytes = read_body(body, s.config.body_bytes_max).await?;
    let req: ExportRequest = serde_json::from_slice(&bytes).map_err(|e| {
        RestError::new(400, SqlState::PgrstBody, "Body must be {\"query\" or \"table\", \"url\", \"format\"?}")
            .details(e.to_string())
    })?;
    let anonymous = ctx.anonymous;
    let sql_err = |e| RestError::from_sql(e, anonymous);
    let text = match (&req.query, &req.table) {
        (Some(q), None) => q.clone(),
        (None, Some(t)) => {
            let name = t.split('.').map(bkg_sql::ddl::quote_ident).collect::<Vec<_>>().join(".");
            format!("SELECT * FROM {name}")
        }
        _ => return Err(RestError::new(400, SqlState::PgrstBody, "Give either query or table")),
    };
    let mut stmts = Session::parse(&text).map_err(sql_err)?;
    let query = match (stmts.len(), stmts.pop()) {
        (1, Some(q @ Statement::Query(_))) => q,
        _ => return Err(RestError::new(400, SqlState::SyntaxError, "query must be one SELECT")),
    };
    let csv = CopyOptions { csv: true, delimiter: b',', null: String::new(), header: req.header, ..Default::default() };
    let name = bkg_sql::export::format_name(&req.url, req.format.as_deref());
    let format = bkg_sql::export::format_of(&name, csv).map_err(sql_err)?;
    let name = format.name().to_string();
    let rows = ctx.session().export(query, &req.url, format).await.map_err(sql_err)?;
    Ok(axum::Json(ExportResponse { rows, url: req.url, format: name }).into_response())
}
