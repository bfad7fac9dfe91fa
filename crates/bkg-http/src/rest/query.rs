//! `POST /query`: SQL over HTTP with positional parameters, answered as JSON, CSV or an Arrow
//! IPC stream. It runs as the token's role through the same session path as every front door.
//!
//! Body: `{"query": "SELECT ... $1", "params": [..]}`, or `{"batch": [{"query", "params"}, ...]}`
//! to run several statements in one transaction (all or nothing). A query text with several
//! statements and no parameters also runs as one transaction, as the simple query protocol does.
//! Session and transaction control (SET, RESET, BEGIN, COMMIT, ...) is refused: the request
//! decides the transaction and the server its limits.

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::sql::sqlparser::ast::{self, Statement};
use serde_json::Value as Json;

use super::error::RestError;
use super::output::{csv_field, row_object};
use super::{RestState, read_body};
use crate::limits::{BATCH_STATEMENTS_MAX, PARAMS_MAX};
use bkg_sql::SqlState;
use bkg_sql::pg_format::{pg_type, text_value};
use bkg_sql::{Output, Session};

/// One statement with its `$1, $2, ...` parameters.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QueryStatement {
    query: String,
    /// JSON values: numbers, strings, booleans, null (objects and arrays as JSON text).
    #[serde(default)]
    #[schema(value_type = Vec<Object>)]
    params: Vec<Json>,
}

/// `{"query", "params"}`, or `{"batch": [...]}` to run several statements in one transaction.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QueryRequest {
    query: Option<String>,
    #[serde(default)]
    #[schema(value_type = Vec<Object>)]
    params: Vec<Json>,
    batch: Option<Vec<QueryStatement>>,
}

/// One statement's outcome in a JSON answer.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct QueryResult {
    /// The command tag: `SELECT 2`, `INSERT 0 1`, `CREATE TABLE`.
    command: String,
    /// Name and PostgreSQL type name of each column (statements that return rows).
    #[schema(value_type = Option<Vec<Object>>)]
    columns: Option<Vec<Json>>,
    /// The rows as objects.
    #[schema(value_type = Option<Vec<Object>>)]
    rows: Option<Vec<Json>>,
}

/// The JSON answer of `/query`.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct QueryResponse {
    results: Vec<QueryResult>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Json,
    Csv,
    Arrow,
}

fn format(headers: &HeaderMap) -> Result<Format, RestError> {
    let Some(a) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else { return Ok(Format::Json) };
    for part in a.split(',') {
        match part.split(';').next().unwrap_or("").trim().to_lowercase().as_str() {
            "application/json" | "*/*" | "" => return Ok(Format::Json),
            "text/csv" => return Ok(Format::Csv),
            "application/vnd.apache.arrow.stream" => return Ok(Format::Arrow),
            _ => {}
        }
    }
    Err(RestError::new(406, SqlState::PgrstMediaType, format!("None of these media types are available: {a}"))
        .hint("Use application/json, text/csv or application/vnd.apache.arrow.stream."))
}

/// A JSON parameter as a SQL literal expression.
fn literal(v: &Json) -> ast::Expr {
    match v {
        Json::Null => ast::Expr::value(ast::Value::Null),
        Json::Bool(b) => ast::Expr::value(ast::Value::Boolean(*b)),
        Json::Number(n) => ast::Expr::value(ast::Value::Number(n.to_string(), false)),
        Json::String(s) => ast::Expr::value(ast::Value::SingleQuotedString(s.clone())),
        other => ast::Expr::value(ast::Value::SingleQuotedString(other.to_string())),
    }
}

/// Statements `/query` runs: queries and DML for every role, DDL and privileges too (checked by
/// the session as over pgwire); never session or transaction control.
fn allowed(stmt: &Statement) -> Result<(), RestError> {
    let refused = match stmt {
        Statement::Set(_) | Statement::Reset(_) | Statement::ShowVariable { .. } => Some("SET, RESET and SHOW"),
        Statement::StartTransaction { .. } | Statement::Commit { .. } | Statement::Rollback { .. } => {
            Some("transaction control (send a batch to run statements in one transaction)")
        }
        Statement::Savepoint { .. } | Statement::ReleaseSavepoint { .. } => Some("savepoints"),
        Statement::Copy { .. } => Some("COPY (use the PostgreSQL wire)"),
        Statement::Prepare { .. } | Statement::Execute { .. } | Statement::Deallocate { .. } => {
            Some("PREPARE/EXECUTE (send parameters instead)")
        }
        Statement::Discard { .. } => Some("DISCARD"),
        _ => None,
    };
    match refused {
        Some(what) => {
            Err(RestError::new(400, SqlState::FeatureNotSupported, format!("{what} is not allowed in /query")))
        }
        None => Ok(()),
    }
}

/// One statement's outcome.
struct Result1 {
    command: String,
    rows: Option<(SchemaRef, Vec<RecordBatch>)>,
}

/// Run SQL with positional parameters.
#[utoipa::path(post, path = "/query", tag = "sql",
    request_body(content = QueryRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "JSON results (or, by Accept, the last result set as text/csv or application/vnd.apache.arrow.stream)", body = QueryResponse),
        (status = 400, description = "Bad body or SQL; SET, transaction control and COPY are refused (0A000)", body = super::error::ErrorBody),
        (status = 401, description = "No or invalid key, or the role lacks a privilege", body = super::error::ErrorBody),
        (status = 406, description = "Unknown media type", body = super::error::ErrorBody),
        (status = 413, description = "Body, statement count or result rows over the limits (54000)", body = super::error::ErrorBody),
    ),
    security(("apikey" = []), ("bearer" = [])))]
pub async fn query(
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
    let fmt = format(headers)?;
    let bytes = read_body(body, s.config.body_bytes_max).await?;
    let req: QueryRequest = serde_json::from_slice(&bytes).map_err(|e| {
        RestError::new(
            400,
            SqlState::PgrstBody,
            "Body must be {\"query\": ..., \"params\": [...]} or {\"batch\": [...]}",
        )
        .details(e.to_string())
    })?;
    let items: Vec<QueryStatement> = match (req.query, req.batch) {
        (Some(q), None) => vec![QueryStatement { query: q, params: req.params }],
        (None, Some(b)) if !b.is_empty() && req.params.is_empty() => b,
        _ => {
            return Err(RestError::new(
                400,
                SqlState::PgrstBody,
                "Give either query (with params) or a non-empty batch",
            ));
        }
    };
    if items.len() > BATCH_STATEMENTS_MAX {
        return Err(RestError::new(
            413,
            SqlState::ProgramLimitExceeded,
            format!("more than {BATCH_STATEMENTS_MAX} statements in one request"),
        ));
    }
    // Parse and check everything before running anything.
    let mut plan: Vec<(Statement, Vec<ast::Expr>, &str)> = Vec::new();
    for one in &items {
        if one.params.len() > PARAMS_MAX {
            return Err(RestError::new(
                413,
                SqlState::ProgramLimitExceeded,
                format!("more than {PARAMS_MAX} parameters"),
            ));
        }
        let stmts = Session::parse(&one.query).map_err(|e| RestError::from_sql(e, ctx.anonymous))?;
        if stmts.len() > 1 && !one.params.is_empty() {
            return Err(RestError::new(
                400,
                SqlState::SyntaxError,
                "cannot insert multiple commands into a prepared statement",
            )
            .hint("Send statements with parameters one by one in a batch."));
        }
        for st in stmts {
            allowed(&st)?;
            plan.push((st, one.params.iter().map(literal).collect(), one.query.as_str()));
        }
    }
    if plan.is_empty() {
        return Err(RestError::new(400, SqlState::SyntaxError, "no statement to run"));
    }
    let anonymous = ctx.anonymous;
    let role = ctx.principal.role.clone();
    let session = ctx.session();
    let block = plan.len() > 1;
    if block {
        super::tx(session, "BEGIN").await?;
    }
    let mut results = Vec::new();
    let mut rows_total = 0usize;
    for (mut st, params, text) in plan {
        let n = bkg_sql::describe::count_placeholders(&st);
        if n > params.len() {
            if block {
                let _ = super::tx(session, "ROLLBACK").await;
            }
            return Err(RestError::new(
                400,
                SqlState::ProtocolViolation,
                format!("the statement needs {n} parameters, {} given", params.len()),
            ));
        }
        let run = async {
            bkg_sql::describe::bind_params(&mut st, &params)?;
            Box::pin(session.execute_statement(st)).await
        };
        let started = std::time::Instant::now();
        let outcome = run.await;
        let code = outcome.as_ref().err().map(|e| e.code.code());
        s.engine.slow.record("rest", &role, text, started.elapsed(), code);
        match outcome {
            Ok(out) => {
                let command = out.tag_text();
                let rows = match out {
                    Output::Rows { schema, batches, .. } => {
                        rows_total += batches.iter().map(|b| b.num_rows()).sum::<usize>();
                        Some((schema, batches))
                    }
                    Output::CopyOut { schema, batches, .. } => Some((schema, batches)),
                    _ => None,
                };
                if let Some(max) = s.config.query_rows_max
                    && rows_total > max
                {
                    if block {
                        let _ = super::tx(session, "ROLLBACK").await;
                    }
                    return Err(RestError::new(
                        413,
                        SqlState::ProgramLimitExceeded,
                        format!("the result has more than {max} rows"),
                    )
                    .hint("Add a LIMIT, or raise BKG_DB_QUERY_MAX_ROWS."));
                }
                results.push(Result1 { command, rows });
            }
            Err(e) => {
                if block {
                    let _ = super::tx(session, "ROLLBACK").await;
                }
                return Err(RestError::from_sql(e, anonymous));
            }
        }
    }
    if block {
        super::tx(session, "COMMIT").await?;
    }
    match fmt {
        Format::Json => json_response(&results),
        Format::Csv => csv_response(&results),
        Format::Arrow => arrow_response(&results),
    }
}

fn last_rows(results: &[Result1]) -> Result<&(SchemaRef, Vec<RecordBatch>), RestError> {
    results.iter().rev().find_map(|r| r.rows.as_ref()).ok_or_else(|| {
        RestError::new(406, SqlState::PgrstMediaType, "no statement returned rows").hint("Ask for application/json.")
    })
}

fn json_response(results: &[Result1]) -> Result<Response, RestError> {
    let mut out = String::from("{\"results\":[");
    for (i, r) in results.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&format!("{{\"command\":{}", serde_json::to_string(&r.command).unwrap_or_default()));
        if let Some((schema, batches)) = &r.rows {
            out.push_str(",\"columns\":[");
            for (j, f) in schema.fields().iter().enumerate() {
                if j > 0 {
                    out.push(',');
                }
                out.push_str(&format!(
                    "{{\"name\":{},\"type\":{}}}",
                    serde_json::to_string(f.name()).unwrap_or_default(),
                    serde_json::to_string(pg_type(f).name()).unwrap_or_default()
                ));
            }
            out.push_str("],\"rows\":[");
            let mut first = true;
            for b in batches {
                for row in 0..b.num_rows() {
                    if !first {
                        out.push(',');
                    }
                    first = false;
                    row_object(b, row, &mut out).map_err(|e| RestError::from_sql(e, false))?;
                }
            }
            out.push(']');
        }
        out.push('}');
    }
    out.push_str("]}");
    Ok(typed(StatusCode::OK, "application/json; charset=utf-8", out.into_bytes()))
}

fn csv_response(results: &[Result1]) -> Result<Response, RestError> {
    let (schema, batches) = last_rows(results)?;
    let mut out = String::new();
    for (j, f) in schema.fields().iter().enumerate() {
        if j > 0 {
            out.push(',');
        }
        csv_field(Some(f.name()), &mut out);
    }
    for b in batches {
        for row in 0..b.num_rows() {
            out.push('\n');
            for j in 0..b.num_columns() {
                if j > 0 {
                    out.push(',');
                }
                let t = text_value(b.column(j).as_ref(), row).map_err(|e| RestError::from_sql(e, false))?;
                csv_field(t.as_deref(), &mut out);
            }
        }
    }
    Ok(typed(StatusCode::OK, "text/csv; charset=utf-8", out.into_bytes()))
}

fn arrow_response(results: &[Result1]) -> Result<Response, RestError> {
    let (schema, batches) = last_rows(results)?;
    let mut buf = Vec::new();
    {
        let mut w = datafusion::arrow::ipc::writer::StreamWriter::try_new(&mut buf, schema)
            .map_err(|e| RestError::from_sql(e.into(), false))?;
        for b in batches {
            w.write(b).map_err(|e| RestError::from_sql(e.into(), false))?;
        }
        w.finish().map_err(|e| RestError::from_sql(e.into(), false))?;
    }
    Ok(typed(StatusCode::OK, "application/vnd.apache.arrow.stream", buf))
}

fn typed(status: StatusCode, ctype: &'static str, body: Vec<u8>) -> Response {
    let mut r = (status, body).into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    r
}
