//! The REST front door: PostgREST-compatible `/rest/v1`, so `@supabase/postgrest-js` (and the
//! `supabase-js` client built on it) works unmodified.
//!
//! A request is authenticated (apikey / bearer JWT → database role), parsed (URL grammar,
//! Prefer, Range, Accept and profile headers), turned into parameterised SQL and run through
//! the same session path as pgwire, in one transaction. See `docs/bkg-db.md` §REST.

pub mod admin;
pub mod audit;
pub mod error;
pub mod export;
pub mod grammar;
mod methods;
pub mod migrations;
pub mod output;
pub mod policy;
pub mod query;
pub mod table;

use bkg_auth::limits;
use bkg_sql::pool::SessionPool;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value as Json;

use bkg_auth::{AuthConfig, AuthFailure, Principal};
use bkg_sql::SqlState;
use bkg_sql::{Engine, Output, Session};
pub use error::RestError;
use grammar::{Cond, Embed, SelectItem};
use table::{Reader, Rel, RowCells, Sql, quote, run};

/// Settings of the REST API.
#[derive(Debug, Clone)]
pub struct RestConfig {
    /// Schemas requests may name (the first is the default).
    pub schemas: Vec<String>,
    /// Most rows one response returns (None = no limit).
    pub max_rows: Option<usize>,
    /// statement_timeout of REST requests, ms (0 = none).
    pub statement_timeout_ms: u64,
    /// Largest request body, bytes (413 beyond).
    pub body_bytes_max: usize,
    /// Requests per second per client IP (0 = unlimited), and the burst allowed.
    pub rate_per_s: u32,
    pub rate_burst: u32,
    /// Most rows `/query` returns (None = no limit); more is an error, never a silent cut.
    pub query_rows_max: Option<usize>,
    /// Migration files `POST /migrate/apply` applies besides those in its body.
    pub migrations_dir: Option<std::path::PathBuf>,
}

impl Default for RestConfig {
    fn default() -> Self {
        RestConfig {
            schemas: vec!["public".into()],
            max_rows: Some(1000),
            statement_timeout_ms: 30_000,
            body_bytes_max: 10 << 20,
            rate_per_s: 1000,
            rate_burst: 2000,
            query_rows_max: Some(100_000),
            migrations_dir: None,
        }
    }
}

#[derive(Clone)]
pub struct RestState {
    pub engine: Arc<Engine>,
    pub auth: Arc<AuthConfig>,
    pub config: Arc<RestConfig>,
    /// Requests per (client address, principal); `None` counts the requests whose credentials
    /// failed, which the address must stay within before any token of it is verified.
    pub limiter: Arc<limits::RateLimiter<(std::net::IpAddr, Option<String>)>>,
    pub sessions: Arc<SessionPool>,
}

impl RestState {
    pub fn new(engine: Arc<Engine>, auth: Arc<AuthConfig>, config: RestConfig) -> RestState {
        let limiter = Arc::new(limits::RateLimiter::new(config.rate_per_s, config.rate_burst));
        let sessions = Arc::new(SessionPool::new());
        RestState { engine, auth, config: Arc::new(config), limiter, sessions }
    }
}

pub fn router(state: RestState) -> Router {
    Router::new()
        .route("/rest/v1/rpc/{function}", axum::routing::get(rpc_get).post(rpc_post).fallback(rpc))
        .route(
            "/rest/v1/{table}",
            axum::routing::get(rows_get)
                .head(rows_head)
                .post(rows_post)
                .patch(rows_patch)
                .put(rows_put)
                .delete(rows_delete)
                .fallback(table_request),
        )
        .route("/query", axum::routing::post(query::query))
        .route("/export", axum::routing::post(export::export))
        .route("/migrate/apply", axum::routing::post(migrations::apply))
        .route("/migrate/status", axum::routing::get(migrations::status).post(migrations::status))
        .route("/policy", axum::routing::get(policy::list).post(policy::create))
        .route("/policy/explain", axum::routing::post(policy::explain))
        .route("/admin/telemetry", axum::routing::get(admin::get_telemetry).put(admin::put_telemetry))
        .route("/audit", axum::routing::get(audit::list))
        .route("/audit/key", axum::routing::get(audit::key))
        .route("/audit/verify", axum::routing::get(audit::verify))
        .route("/audit/seal", axum::routing::post(audit::seal))
        .route("/audit/rotate-key", axum::routing::post(audit::rotate_key))
        .route(
            "/policy/{table}/{name}",
            axum::routing::get(policy::get_one).patch(policy::update).put(policy::update).delete(policy::remove),
        )
        .with_state(state)
}

/// A request that passed authentication and rate limiting. Its session goes back to the pool
/// when the request is done (unless a transaction is still open, e.g. after a cancelled request).
pub struct Ctx {
    pub principal: Principal,
    session: Option<Session>,
    pool: Arc<SessionPool>,
    /// No user token: 42501 becomes 401 rather than 403.
    pub anonymous: bool,
}

impl Ctx {
    pub fn session(&mut self) -> &mut Session {
        self.session.as_mut().expect("a request's session lives until the request ends")
    }
}

impl Drop for Ctx {
    fn drop(&mut self) {
        if let Some(s) = self.session.take() {
            self.pool.give(&self.principal.role, s);
        }
    }
}

impl RestState {
    /// The request's token (`apikey` and/or `Authorization: Bearer`), within the rate limit of
    /// its address and principal. Failed credentials count against the address alone, and an
    /// address out of that budget is refused before its token is looked at.
    pub fn authenticate(&self, addr: SocketAddr, headers: &HeaderMap) -> Result<Principal, RestError> {
        let too_many = |wait_s: u64| {
            let mut e = RestError::new(429, SqlState::PgrstRateLimit, "too many requests").hint(format!(
                "This client may make {} requests per second; retry after {wait_s} s.",
                self.config.rate_per_s
            ));
            e.retry_after = Some(wait_s);
            e
        };
        let failed = (addr.ip(), None);
        self.limiter.peek(failed.clone()).map_err(too_many)?;
        let principal = self.verify_credentials(headers).inspect_err(|_| {
            let _ = self.limiter.check(failed);
        })?;
        let who = principal.claims.get("sub").and_then(|v| v.as_str()).unwrap_or(&principal.role);
        self.limiter.check((addr.ip(), Some(who.to_string()))).map_err(too_many)?;
        Ok(principal)
    }

    fn verify_credentials(&self, headers: &HeaderMap) -> Result<Principal, RestError> {
        let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
        let bearer = match h("authorization") {
            Some(a) => match a.strip_prefix("Bearer ").or_else(|| a.strip_prefix("bearer ")) {
                Some(t) => Some(t.trim()),
                None => {
                    return Err(RestError::new(401, SqlState::PgrstJwt, "Authorization header must be Bearer <token>"));
                }
            },
            None => None,
        };
        let principal = match self.auth.authenticate(h("apikey"), bearer) {
            Ok(p) => p,
            Err(AuthFailure::Missing) => {
                return Err(RestError::new(401, SqlState::PgrstNoCredentials, "No API key found in request")
                    .hint("Send the anon or service key in the apikey header, or a token as Authorization: Bearer."));
            }
            Err(AuthFailure::Invalid(m)) => return Err(RestError::new(401, SqlState::PgrstJwt, m)),
        };
        Ok(principal)
    }

    /// Rate limit, then authentication; opens a session as the token's role.
    pub async fn begin(&self, addr: SocketAddr, headers: &HeaderMap) -> Result<Ctx, RestError> {
        let principal = self.authenticate(addr, headers)?;
        match bkg_auth::token_role(&self.engine, &principal.role) {
            Ok(()) => {}
            Err(bkg_auth::TokenRoleRefusal::Missing(role)) => {
                return Err(RestError::new(401, SqlState::PgrstJwt, format!("role \"{role}\" does not exist")));
            }
            Err(bkg_auth::TokenRoleRefusal::Superuser(role)) => {
                return Err(RestError::new(
                    403,
                    SqlState::PgrstJwt,
                    format!("role \"{role}\" cannot be used through the API"),
                )
                .hint("Use service_role for full access over HTTP."));
            }
        }
        let mut session = self
            .sessions
            .take(&self.engine, &principal.role, self.config.statement_timeout_ms)
            .map_err(|e| RestError::from_sql(e, true))?;
        // The principal policies see: the token's verified claims, as a typed session value.
        session.set_claims(Some(serde_json::Value::Object(principal.claims.clone())));
        session.client_address = Some(addr.to_string());
        let anonymous = principal.role == bkg_auth::ANON_ROLE;
        Ok(Ctx { principal, session: Some(session), pool: self.sessions.clone(), anonymous })
    }
}

/// Query-string parameters, percent-decoded, in order.
fn query_pairs(q: Option<&str>) -> Vec<(String, String)> {
    match q {
        Some(q) => form_urlencoded::parse(q.as_bytes()).into_owned().collect(),
        None => vec![],
    }
}

/// `Prefer` tokens.
#[derive(Debug, Default)]
struct Prefer {
    ret: Option<String>,
    count: bool,
    resolution: Option<String>,
    missing_default: bool,
    applied: Vec<String>,
}

fn prefer(headers: &HeaderMap) -> Prefer {
    let mut p = Prefer::default();
    for v in headers.get_all("prefer") {
        let Ok(v) = v.to_str() else { continue };
        for tok in v.split(',').map(str::trim) {
            match tok.split_once('=') {
                Some(("return", r @ ("minimal" | "representation" | "headers-only"))) => {
                    p.ret = Some(r.to_string());
                    p.applied.push(tok.to_string());
                }
                Some(("count", "exact" | "planned" | "estimated")) => {
                    p.count = true;
                    p.applied.push(tok.to_string());
                }
                Some(("resolution", r @ ("merge-duplicates" | "ignore-duplicates"))) => {
                    p.resolution = Some(r.to_string());
                    p.applied.push(tok.to_string());
                }
                Some(("missing", "default")) => {
                    p.missing_default = true;
                    p.applied.push(tok.to_string());
                }
                _ => {}
            }
        }
    }
    p
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Json,
    Object,
    Csv,
}

fn accept(headers: &HeaderMap) -> Result<Format, RestError> {
    let Some(a) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else {
        return Ok(Format::Json);
    };
    for part in a.split(',') {
        let m = part.split(';').next().unwrap_or("").trim().to_lowercase();
        match m.as_str() {
            "application/vnd.pgrst.object+json" | "application/vnd.pgrst.object" => return Ok(Format::Object),
            "text/csv" => return Ok(Format::Csv),
            "application/json" | "*/*" | "application/*" | "" => return Ok(Format::Json),
            _ => {}
        }
    }
    Err(RestError::new(406, SqlState::PgrstMediaType, format!("None of these media types are available: {a}"))
        .hint("Use application/json, application/vnd.pgrst.object+json or text/csv."))
}

/// The schema a request addresses (Accept-Profile for reads, Content-Profile for writes).
fn schema_of(cfg: &RestConfig, headers: &HeaderMap, method: &Method) -> Result<String, RestError> {
    let name = if matches!(*method, Method::GET | Method::HEAD) { "accept-profile" } else { "content-profile" };
    match headers.get(name).and_then(|v| v.to_str().ok()) {
        None => Ok(cfg.schemas.first().cloned().unwrap_or_else(|| "public".into())),
        Some(s) if cfg.schemas.iter().any(|x| x == s) => Ok(s.to_string()),
        Some(s) => Err(RestError::new(
            406,
            SqlState::PgrstSchema,
            format!("The schema must be one of the following: {}", cfg.schemas.join(", ")),
        )
        .details(format!("schema \"{s}\" is not exposed"))),
    }
}

/// What the query string asks for.
#[derive(Default)]
struct Request {
    select: Vec<SelectItem>,
    conds: Vec<Cond>,
    order: Vec<grammar::OrderTerm>,
    limit: Option<usize>,
    offset: Option<usize>,
    on_conflict: Option<Vec<String>>,
    columns: Option<Vec<String>>,
}

fn parse_usize(k: &str, v: &str) -> Result<usize, RestError> {
    v.trim().parse().map_err(|_| {
        RestError::new(400, SqlState::PgrstQueryString, format!("{k} must be a non-negative integer, not \"{v}\""))
    })
}

fn parse_request(pairs: &[(String, String)]) -> Result<Request, RestError> {
    let mut r = Request::default();
    // Embedded filters wait until select= is known.
    let mut embedded: Vec<(Vec<String>, String, String)> = Vec::new();
    let mut embedded_order: Vec<(Vec<String>, String)> = Vec::new();
    for (k, v) in pairs {
        match k.as_str() {
            "select" => r.select = grammar::select(v)?,
            "order" => r.order = grammar::order(v)?,
            "limit" => r.limit = Some(parse_usize(k, v)?),
            "offset" => r.offset = Some(parse_usize(k, v)?),
            "on_conflict" => r.on_conflict = Some(v.split(',').map(|c| c.trim().to_string()).collect()),
            "columns" => r.columns = Some(v.split(',').map(|c| c.trim().trim_matches('"').to_string()).collect()),
            "or" | "and" | "not.or" | "not.and" => r.conds.push(grammar::logic(k, v)?),
            _ => {
                // `rel.col`, `rel.or`, `rel.order` address an embedding.
                let (path, last) = split_embedded_key(k);
                if path.is_empty() {
                    r.conds.push(grammar::filter(k, v)?);
                } else if last == "order" {
                    embedded_order.push((path, v.clone()));
                } else {
                    embedded.push((path, last, v.clone()));
                }
            }
        }
    }
    for (path, last, v) in embedded {
        let e = find_embed(&mut r.select, &path)?;
        e.filters.push(match last.as_str() {
            "or" | "and" | "not.or" | "not.and" => grammar::logic(&last, &v)?,
            _ => grammar::filter(&last, &v)?,
        });
    }
    if !embedded_order.is_empty() {
        return Err(RestError::new(400, SqlState::PgrstQueryString, "ordering embedded resources is not supported")
            .hint("Order the embedded rows on the client."));
    }
    Ok(r)
}

/// `a.b.col` → (["a","b"], "col"); `col` → ([], "col"); `a.not.or` → (["a"], "not.or").
fn split_embedded_key(k: &str) -> (Vec<String>, String) {
    if k.starts_with('"') || !k.contains('.') || k.contains("->") {
        return (vec![], k.to_string());
    }
    let mut parts: Vec<&str> = k.split('.').collect();
    let last = if parts.len() >= 2 && parts[parts.len() - 2] == "not" && matches!(parts[parts.len() - 1], "or" | "and")
    {
        let l = format!("not.{}", parts[parts.len() - 1]);
        parts.truncate(parts.len() - 2);
        l
    } else {
        parts.pop().unwrap_or_default().to_string()
    };
    (parts.into_iter().map(str::to_string).collect(), last)
}

fn find_embed<'a>(items: &'a mut [SelectItem], path: &[String]) -> Result<&'a mut Embed, RestError> {
    let missing = || {
        RestError::new(
            400,
            SqlState::PgrstNotEmbedded,
            format!("'{}' is not an embedded resource in this request", path.join(".")),
        )
        .hint("Add it to select= to filter it.")
    };
    let (first, rest) = path.split_first().ok_or_else(missing)?;
    for it in items.iter_mut() {
        if let SelectItem::Embed(e) = it
            && e.name() == first
        {
            if rest.is_empty() {
                return Ok(e);
            }
            return find_embed(&mut e.items, rest).map_err(|_| missing());
        }
    }
    Err(missing())
}

/// `Range: 0-9` (items) → (offset, limit).
fn range(headers: &HeaderMap) -> Result<(Option<usize>, Option<usize>), RestError> {
    let Some(r) = headers.get(header::RANGE).and_then(|v| v.to_str().ok()) else { return Ok((None, None)) };
    let spec = r.trim().strip_prefix("items=").unwrap_or(r.trim());
    let bad = || RestError::new(416, SqlState::PgrstRange, format!("Requested range not satisfiable: {r}"));
    let (a, b) = spec.split_once('-').ok_or_else(bad)?;
    let start: usize = a.trim().parse().map_err(|_| bad())?;
    if b.trim().is_empty() {
        return Ok((Some(start), None));
    }
    let end: usize = b.trim().parse().map_err(|_| bad())?;
    if end < start {
        return Err(bad());
    }
    Ok((Some(start), Some(end - start + 1)))
}

fn content_range(offset: usize, n: usize, total: Option<u64>) -> String {
    let t = total.map(|t| t.to_string()).unwrap_or_else(|| "*".into());
    if n == 0 { format!("*/{t}") } else { format!("{}-{}/{t}", offset, offset + n - 1) }
}

async fn read_body(body: Body, max: usize) -> Result<bytes::Bytes, RestError> {
    axum::body::to_bytes(body, max).await.map_err(|_| {
        RestError::new(413, SqlState::PgrstTooLarge, format!("request body is larger than {max} bytes"))
            .hint("Split the request, or raise BKG_DB_REST_BODY_MAX_MB.")
    })
}

fn parse_json(bytes: &[u8]) -> Result<Json, RestError> {
    serde_json::from_slice(bytes)
        .map_err(|e| RestError::new(400, SqlState::PgrstBody, "Empty or invalid json").details(e.to_string()))
}

/// A documented handler that forwards to the method-agnostic one (`table_request`, `rpc`):
/// one function per method, so each gets its own OpenAPI operation.
macro_rules! forward {
    ($(#[$attr:meta])* $name:ident => $target:ident) => {
        $(#[$attr])*
        async fn $name(
            s: State<RestState>,
            c: ConnectInfo<SocketAddr>,
            m: Method,
            p: Path<String>,
            q: RawQuery,
            h: HeaderMap,
            b: Body,
        ) -> Response {
            $target(s, c, m, p, q, h, b).await
        }
    };
}

/// Query-string parameters of `/rest/v1/{table}` besides the column filters.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct TableParams {
    /// Columns, aliases (`alias:col`), casts (`col::text`), JSON paths (`data->a->>b`) and
    /// embedded resources over foreign keys (`author:users(name)`, `posts!inner(*)`).
    select: Option<String>,
    /// `col.desc.nullslast,other`.
    order: Option<String>,
    limit: Option<u64>,
    offset: Option<u64>,
    /// Columns of the unique constraint an upsert resolves on (default: the primary key).
    on_conflict: Option<String>,
    /// Columns taken from the body of an insert.
    columns: Option<String>,
    /// `(a.eq.1,and(b.gt.2,c.is.null))`; also `and`, `not.or`, `not.and`. Any other parameter
    /// is a filter `column=[not.]op.value` with op one of eq neq gt gte lt lte like ilike match
    /// imatch in is isdistinct, or `embedded.column=...` for an embedded resource.
    or: Option<String>,
}

/// Headers of `/rest/v1/{table}`.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)]
pub struct TableHeaders {
    /// `return=minimal|representation|headers-only`, `count=exact`,
    /// `resolution=merge-duplicates|ignore-duplicates`, `missing=default`.
    #[param(rename = "Prefer")]
    prefer: Option<String>,
    /// `0-9`: rows 0 to 9 (with `Range-Unit: items`).
    #[param(rename = "Range")]
    range: Option<String>,
    /// Schema to read from (one of BKG_DB_REST_SCHEMAS).
    #[param(rename = "Accept-Profile")]
    accept_profile: Option<String>,
    /// Schema to write to.
    #[param(rename = "Content-Profile")]
    content_profile: Option<String>,
}

forward! {
    /// Read rows.
    #[utoipa::path(get, path = "/rest/v1/{table}", tag = "rest",
        params(("table" = String, Path, description = "Table or view"), TableParams, TableHeaders),
        responses(
            (status = 200, description = "Rows as a JSON array (or one object with Accept: application/vnd.pgrst.object+json, or CSV with Accept: text/csv); Content-Range gives the range and, with Prefer: count=exact, the total"),
            (status = 206, description = "Part of the rows (a range of a counted total)"),
            (status = 400, description = "Bad filter, select or value", body = error::ErrorBody),
            (status = 401, description = "No or invalid key, or the role lacks the privilege (anon)", body = error::ErrorBody),
            (status = 404, description = "No such table", body = error::ErrorBody),
            (status = 406, description = "Not exactly one row for the single-object type, or an unknown media type", body = error::ErrorBody),
            (status = 416, description = "Offset beyond the counted total", body = error::ErrorBody),
            (status = 429, description = "Too many requests from this client", body = error::ErrorBody),
        ),
        security(("apikey" = []), ("bearer" = [])))]
    rows_get => table_request
}

forward! {
    /// Count or check rows without a body (same parameters as GET).
    #[utoipa::path(head, path = "/rest/v1/{table}", tag = "rest",
        params(("table" = String, Path, description = "Table or view"), TableParams, TableHeaders),
        responses(
            (status = 200, description = "Headers only (Content-Range)"),
            (status = 206, description = "Headers only, partial range"),
            (status = 400, description = "Bad filter or value (no body)"),
            (status = 401, description = "No or invalid key, or no privilege (no body)"),
        ),
        security(("apikey" = []), ("bearer" = [])))]
    rows_head => table_request
}

forward! {
    /// Insert rows (a JSON object or an array of objects); upsert with Prefer: resolution=...
    #[utoipa::path(post, path = "/rest/v1/{table}", tag = "rest",
        params(("table" = String, Path, description = "Table"), TableParams, TableHeaders),
        request_body(content = Object, description = "One object or an array of objects with the same keys", content_type = "application/json"),
        responses(
            (status = 201, description = "Created; the rows with Prefer: return=representation, a Location with return=headers-only"),
            (status = 400, description = "Bad body or value", body = error::ErrorBody),
            (status = 409, description = "Unique or foreign key violation", body = error::ErrorBody),
            (status = 413, description = "Body too large", body = error::ErrorBody),
        ),
        security(("apikey" = []), ("bearer" = [])))]
    rows_post => table_request
}

forward! {
    /// Update the rows matching the filters (at least one filter is required).
    #[utoipa::path(patch, path = "/rest/v1/{table}", tag = "rest",
        params(("table" = String, Path, description = "Table"), TableParams, TableHeaders),
        request_body(content = Object, description = "Columns to set", content_type = "application/json"),
        responses(
            (status = 200, description = "The changed rows (Prefer: return=representation)"),
            (status = 204, description = "Changed"),
            (status = 400, description = "No filter (21000), bad body or value", body = error::ErrorBody),
        ),
        security(("apikey" = []), ("bearer" = [])))]
    rows_patch => table_request
}

forward! {
    /// Insert or replace one row addressed by its whole primary key (`id=eq.1`).
    #[utoipa::path(put, path = "/rest/v1/{table}", tag = "rest",
        params(("table" = String, Path, description = "Table"), TableParams, TableHeaders),
        request_body(content = Object, description = "The row", content_type = "application/json"),
        responses(
            (status = 200, description = "The row (Prefer: return=representation)"),
            (status = 204, description = "Written"),
            (status = 405, description = "The filters are not exactly the primary key with eq", body = error::ErrorBody),
        ),
        security(("apikey" = []), ("bearer" = [])))]
    rows_put => table_request
}

forward! {
    /// Delete the rows matching the filters (at least one filter is required).
    #[utoipa::path(delete, path = "/rest/v1/{table}", tag = "rest",
        params(("table" = String, Path, description = "Table"), TableParams, TableHeaders),
        responses(
            (status = 200, description = "The deleted rows (Prefer: return=representation)"),
            (status = 204, description = "Deleted"),
            (status = 400, description = "No filter (21000)", body = error::ErrorBody),
            (status = 409, description = "Still referenced by a foreign key", body = error::ErrorBody),
        ),
        security(("apikey" = []), ("bearer" = [])))]
    rows_delete => table_request
}

async fn table_request(
    State(s): State<RestState>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    method: Method,
    Path(table): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match Box::pin(handle_table(&s, addr, &method, &table, q.as_deref(), &headers, body)).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn handle_table(
    s: &RestState,
    addr: SocketAddr,
    method: &Method,
    table: &str,
    q: Option<&str>,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, RestError> {
    let mut ctx = s.begin(addr, headers).await?;
    let schema = schema_of(&s.config, headers, method)?;
    let format = accept(headers)?;
    let req = parse_request(&query_pairs(q))?;
    let pref = prefer(headers);
    // The newest catalog (a pooled session's own view may be older).
    let cat = s.engine.catalog();
    let rel = Rel::resolve(&cat, &schema, table)?;
    let body = if matches!(*method, Method::POST | Method::PATCH | Method::PUT) {
        Some(read_body(body, s.config.body_bytes_max).await?)
    } else {
        None
    };
    // One transaction per request: reads see one snapshot, writes commit or roll back whole.
    let begin =
        if matches!(*method, Method::GET | Method::HEAD) { "BEGIN ISOLATION LEVEL REPEATABLE READ" } else { "BEGIN" };
    tx(ctx.session(), begin).await?;
    let result = Box::pin(methods::dispatch(s, &mut ctx, method, headers, &rel, req, &pref, format, body, cat)).await;
    match result {
        Ok(resp) => {
            // A foreign key race lost at COMMIT (23503) is reported like any statement error.
            tx(ctx.session(), "COMMIT").await?;
            let mut resp = resp;
            if !pref.applied.is_empty()
                && let Ok(v) = HeaderValue::from_str(&pref.applied.join(", "))
            {
                resp.headers_mut().insert("preference-applied", v);
            }
            Ok(resp)
        }
        Err(e) => {
            let _ = tx(ctx.session(), "ROLLBACK").await;
            Err(e)
        }
    }
}

async fn tx(session: &mut Session, sql: &str) -> Result<(), RestError> {
    for r in session.execute(sql).await {
        r.map_err(|e| RestError::from_sql(e, false))?;
    }
    Ok(())
}

forward! {
    /// Call a function of the engine with the arguments of the JSON body, in order.
    #[utoipa::path(post, path = "/rest/v1/rpc/{function}", tag = "rest",
        params(("function" = String, Path, description = "Function name")),
        request_body(content = Object, description = "Arguments, e.g. {\"a\": 2, \"b\": 10}", content_type = "application/json"),
        responses(
            (status = 200, description = "The function's value as JSON"),
            (status = 404, description = "No such function (PGRST202)", body = error::ErrorBody),
        ),
        security(("apikey" = []), ("bearer" = [])))]
    rpc_post => rpc
}

forward! {
    /// Call a function with the arguments in the query string.
    #[utoipa::path(get, path = "/rest/v1/rpc/{function}", tag = "rest",
        params(("function" = String, Path, description = "Function name")),
        responses(
            (status = 200, description = "The function's value as JSON"),
            (status = 404, description = "No such function (PGRST202)", body = error::ErrorBody),
        ),
        security(("apikey" = []), ("bearer" = [])))]
    rpc_get => rpc
}

async fn rpc(
    State(s): State<RestState>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    method: Method,
    Path(function): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match Box::pin(handle_rpc(&s, addr, &method, &function, q.as_deref(), &headers, body)).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

/// Arguments of an RPC in the order the body gives them.
struct OrderedArgs(Vec<(String, Json)>);

impl<'de> serde::Deserialize<'de> for OrderedArgs {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = OrderedArgs;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object of arguments")
            }
            fn visit_map<M: serde::de::MapAccess<'de>>(self, mut m: M) -> Result<OrderedArgs, M::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = m.next_entry::<String, Json>()? {
                    if out.len() >= 100 {
                        return Err(serde::de::Error::custom("more than 100 arguments"));
                    }
                    out.push((k, v));
                }
                Ok(OrderedArgs(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// `POST /rest/v1/rpc/{function}` (and GET with arguments in the query string): calls a
/// function the engine has, with the arguments in the order given, and returns its value.
async fn handle_rpc(
    s: &RestState,
    addr: SocketAddr,
    method: &Method,
    function: &str,
    q: Option<&str>,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, RestError> {
    let mut ctx = s.begin(addr, headers).await?;
    let args: Vec<(String, Json)> = match *method {
        Method::POST => {
            let b = read_body(body, s.config.body_bytes_max).await?;
            if b.iter().all(u8::is_ascii_whitespace) {
                vec![]
            } else {
                serde_json::from_slice::<OrderedArgs>(&b)
                    .map_err(|e| {
                        RestError::new(400, SqlState::PgrstBody, "Empty or invalid json").details(e.to_string())
                    })?
                    .0
            }
        }
        // Query-string arguments are text; numbers and booleans are passed as such (the engine's
        // functions have no named, typed parameters to convert them by).
        Method::GET | Method::HEAD => query_pairs(q)
            .into_iter()
            .map(|(k, v)| {
                let j = match serde_json::from_str::<Json>(&v) {
                    Ok(n @ (Json::Number(_) | Json::Bool(_))) => n,
                    _ => Json::String(v),
                };
                (k, j)
            })
            .collect(),
        _ => return Err(RestError::new(405, SqlState::PgrstMethod, format!("Unsupported HTTP method: {method}"))),
    };
    let known = ctx.session().statement_state().scalar_functions().contains_key(&function.to_lowercase());
    if !known || !function.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        let names: Vec<&str> = args.iter().map(|(k, _)| k.as_str()).collect();
        return Err(RestError::new(
            404,
            SqlState::PgrstNoFunction,
            format!("Could not find the function public.{function}({}) in the schema cache", names.join(", ")),
        ));
    }
    let mut sql = Sql::default();
    let vals: Vec<String> = args
        .iter()
        .map(|(_, v)| match v {
            Json::Number(n) if n.is_i64() => sql.value(Some(&n.to_string()), Some(&bkg_kernel::DataType::Int64)),
            Json::Number(n) => sql.value(Some(&n.to_string()), Some(&bkg_kernel::DataType::Float64)),
            Json::Bool(b) => sql.value(Some(&b.to_string()), Some(&bkg_kernel::DataType::Bool)),
            Json::Null => sql.value(None, None),
            Json::String(t) => sql.value(Some(t), None),
            other => sql.value(Some(&other.to_string()), None),
        })
        .collect();
    sql.text = format!("SELECT {}({}) AS \"{function}\"", function.to_lowercase(), vals.join(", "));
    let anonymous = ctx.anonymous;
    let out = run(ctx.session(), sql, anonymous).await?;
    let Output::Rows { batches, .. } = out else {
        return Err(RestError::new(500, SqlState::InternalError, "internal error"));
    };
    let mut j = String::from("null");
    if let Some(b) = batches.iter().find(|b| b.num_rows() > 0) {
        j.clear();
        let json = output::field_is_json(b.schema().field(0));
        output::json_value(b.column(0).as_ref(), 0, json, &mut j).map_err(|e| RestError::from_sql(e, false))?;
    }
    let mut r = (StatusCode::OK, j).into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json; charset=utf-8"));
    Ok(r)
}
