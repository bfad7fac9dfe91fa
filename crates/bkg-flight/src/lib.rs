//! Arrow Flight SQL front door (`--flight-listen`).
//!
//! Every call authenticates (a bearer token from the handshake, a JWT, or HTTP Basic) and runs
//! on a [`Session`] of the caller's role with the caller's claims, the same session and plan
//! path as pgwire and REST, so privileges, scopes, row-level security, limits and transactions
//! behave the same. Query results stream batch by batch from the running plan.
//!
//! Tickets are signed by the server and name the principal that asked for them; another
//! principal cannot redeem them. Prepared statements and transactions live in bounded maps
//! owned by the principal that made them.

mod convert;
mod metadata;
mod reset;

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_server::FlightService;
use arrow_flight::sql::metadata::{SqlInfoData, XdbcTypeInfoData};
use arrow_flight::sql::server::{FlightSqlService, PeekableFlightDataStream};
use arrow_flight::sql::{
    ActionBeginTransactionRequest, ActionBeginTransactionResult, ActionClosePreparedStatementRequest,
    ActionCreatePreparedStatementRequest, ActionCreatePreparedStatementResult, ActionEndTransactionRequest, Any,
    CommandGetCatalogs, CommandGetDbSchemas, CommandGetPrimaryKeys, CommandGetSqlInfo, CommandGetTableTypes,
    CommandGetTables, CommandGetXdbcTypeInfo, CommandPreparedStatementQuery, CommandPreparedStatementUpdate,
    CommandStatementIngest, CommandStatementQuery, CommandStatementUpdate, DoPutPreparedStatementResult,
    EndTransaction, ProstMessageExt, SqlInfo, TableExistsOption, TableNotExistOption, TicketStatementQuery,
};
use arrow_flight::{
    FlightDescriptor, FlightEndpoint, FlightInfo, HandshakeRequest, HandshakeResponse, IpcMessage, SchemaAsIpc, Ticket,
};
use base64::Engine as _;
use bytes::Bytes;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{DataType as ArrowType, Field, Schema, SchemaRef};
use datafusion::arrow::ipc::writer::IpcWriteOptions;
use futures::{Stream, StreamExt, TryStreamExt};
use parking_lot::Mutex;
use prost::Message;
use serde::{Deserialize, Serialize};
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status, Streaming};

use bkg_auth::AuthConfig;
use bkg_auth::CatalogAuth;
use bkg_sql::error::{SqlError, SqlResult, codes};
use bkg_sql::pool::SessionPool;
use bkg_sql::provider::DATABASE_NAME;
use bkg_sql::session::memory_stream;
use bkg_sql::{Engine, Session};

/// Settings of the Flight SQL server.
#[derive(Debug, Clone)]
pub struct FlightConfig {
    /// Largest gRPC message accepted or sent (a DoPut batch, a DoGet batch).
    pub max_message_bytes: usize,
    /// statement_timeout of Flight sessions, in ms (0: none).
    pub statement_timeout_ms: u64,
    /// How long a handshake's bearer token stays valid.
    pub token_ttl: Duration,
    /// How long a ticket can be redeemed after GetFlightInfo.
    pub ticket_ttl: Duration,
    /// How long an open transaction or prepared statement may stay unused.
    pub idle_ttl: Duration,
}

impl Default for FlightConfig {
    fn default() -> Self {
        FlightConfig {
            max_message_bytes: 64 << 20,
            statement_timeout_ms: 0,
            token_ttl: Duration::from_secs(12 * 3600),
            ticket_ttl: Duration::from_secs(3600),
            idle_ttl: Duration::from_secs(3600),
        }
    }
}

/// Most handshake tokens, prepared statements and open transactions kept at once.
pub const TOKENS_MAX: usize = 10_000;
pub const PREPARED_MAX: usize = 4_096;
pub const TRANSACTIONS_MAX: usize = 256;
/// Largest result of a non-query statement carried inside its ticket.
const INLINE_RESULT_MAX: usize = 1 << 20;

/// Who makes a call.
#[derive(Debug, Clone)]
struct Caller {
    role: String,
    claims: Option<serde_json::Value>,
    /// Identity tickets and handles are bound to: the role for password logins, the role and
    /// subject for tokens.
    key: String,
}

struct Issued {
    role: String,
    expires: Instant,
}

struct Prepared {
    owner: String,
    sql: String,
    /// A query runs at DoGet; anything else when its FlightInfo is asked for.
    is_query: bool,
    transaction: Option<Vec<u8>>,
    dataset: SchemaRef,
    params: Option<RecordBatch>,
    used: Instant,
}

struct OpenTxn {
    owner: String,
    session: Arc<tokio::sync::Mutex<Session>>,
    used: Instant,
}

/// What [`BkgFlight::run_rows`] hands back.
struct Ran {
    schema: SchemaRef,
    stream: datafusion::execution::SendableRecordBatchStream,
    /// Rows changed, when the statement counts them.
    changed: Option<u64>,
}

/// What a statement ticket carries (signed; see [`BkgFlight::sign`]).
#[derive(Serialize, Deserialize)]
struct TicketBody {
    /// Principal key.
    p: String,
    /// Expiry, unix seconds.
    e: i64,
    /// The query to run at DoGet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    q: Option<String>,
    /// The transaction it runs in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    t: Option<String>,
    /// A finished statement's rows (Arrow IPC stream, base64).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    r: Option<String>,
}

pub struct BkgFlight {
    engine: Arc<Engine>,
    auth: Arc<AuthConfig>,
    passwords: Arc<CatalogAuth>,
    config: FlightConfig,
    sessions: SessionPool,
    tokens: Mutex<HashMap<String, Issued>>,
    /// Failed password logins per role: a role out of them is refused before its password is
    /// checked, so guessing is slow and costs the server little.
    login_failures: bkg_auth::limits::RateLimiter<String>,
    prepared: Mutex<HashMap<Vec<u8>, Prepared>>,
    txns: Mutex<HashMap<Vec<u8>, OpenTxn>>,
    ticket_key: ring::hmac::Key,
    sql_info: SqlInfoData,
    xdbc: XdbcTypeInfoData,
}

/// Failed password logins a role may have per minute over Flight SQL.
pub const LOGIN_FAILURES_PER_MIN: u32 = 10;

/// A session for one call: pooled for the caller's role, or the one of an open transaction.
enum Lease<'a> {
    Pooled(&'a SessionPool, String, Option<Session>),
    Txn(tokio::sync::OwnedMutexGuard<Session>),
}

impl Lease<'_> {
    fn session(&mut self) -> &mut Session {
        match self {
            Lease::Pooled(_, _, s) => s.as_mut().expect("a lease holds its session until dropped"),
            Lease::Txn(g) => g,
        }
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if let Lease::Pooled(pool, role, s) = self
            && let Some(s) = s.take()
        {
            pool.give(role, s);
        }
    }
}

/// Outside a Flight SQL transaction every call runs on a session as good as new, so a
/// statement that would change the session for later calls is refused (0A000) rather than
/// silently forgotten. Inside one, settings last until it ends.
fn refuse_session_state(stmt: &datafusion::sql::sqlparser::ast::Statement) -> Result<(), Status> {
    use datafusion::sql::sqlparser::ast::Statement as S;
    let what = match stmt {
        S::Set(_) | S::Reset(_) | S::Discard { .. } => "SET, RESET and DISCARD outside a transaction",
        S::StartTransaction { .. } | S::Commit { .. } | S::Rollback { .. } => {
            "transaction control in SQL (use the Flight SQL BeginTransaction and EndTransaction actions)"
        }
        S::Prepare { .. } | S::Execute { .. } | S::Deallocate { .. } => "PREPARE/EXECUTE (use prepared statements)",
        _ => return Ok(()),
    };
    Err(status(SqlError::new(codes::FEATURE_NOT_SUPPORTED, format!("{what} is not supported over Flight SQL"))))
}

/// One error mapping for the whole front door: the SQLSTATE picks the gRPC code, and travels
/// in the message and in the `x-sqlstate` trailer.
pub fn status(e: SqlError) -> Status {
    use tonic::Code;
    let c = e.code;
    let code = match c {
        _ if c.starts_with("28") => Code::Unauthenticated,
        codes::INSUFFICIENT_PRIVILEGE => Code::PermissionDenied,
        codes::UNDEFINED_TABLE | codes::UNDEFINED_OBJECT | codes::UNDEFINED_FUNCTION | "3F000" => Code::NotFound,
        codes::DUPLICATE_TABLE | "23505" | "42P06" | "42710" => Code::AlreadyExists,
        codes::QUERY_CANCELED => Code::Cancelled,
        _ if c.starts_with("40") => Code::Aborted,
        _ if c.starts_with("53") || c == "54000" || c == "54001" => Code::ResourceExhausted,
        _ if c.starts_with("0A") => Code::Unimplemented,
        _ if c.starts_with("23") || c.starts_with("25") || c.starts_with("55") => Code::FailedPrecondition,
        _ if c.starts_with("22") || c.starts_with("42") || c.starts_with("08") || c.starts_with("26") => {
            Code::InvalidArgument
        }
        _ => Code::Internal,
    };
    let mut message = format!("{} (SQLSTATE {c})", e.message);
    if let Some(d) = &e.detail {
        message.push_str(&format!("\nDETAIL: {d}"));
    }
    if let Some(h) = &e.hint {
        message.push_str(&format!("\nHINT: {h}"));
    }
    let mut s = Status::new(code, message);
    if let Ok(v) = c.parse() {
        s.metadata_mut().insert("x-sqlstate", v);
    }
    s
}

fn flight_status(e: FlightError) -> Status {
    match e {
        FlightError::Tonic(s) => *s,
        FlightError::ExternalError(inner) => match inner.downcast::<SqlError>() {
            Ok(s) => status(*s),
            Err(other) => Status::internal(other.to_string()),
        },
        other => Status::internal(other.to_string()),
    }
}

fn invalid(message: impl Into<String>) -> Status {
    status(SqlError::new(codes::PROTOCOL_VIOLATION, message))
}

fn schema_ipc(schema: &Schema) -> Result<Bytes, Status> {
    let IpcMessage(b) = SchemaAsIpc::new(schema, &IpcWriteOptions::default())
        .try_into()
        .map_err(|e: datafusion::arrow::error::ArrowError| status(e.into()))?;
    Ok(b)
}

type DoGetStream = Pin<Box<dyn Stream<Item = Result<arrow_flight::FlightData, Status>> + Send + 'static>>;

fn flight_stream(schema: SchemaRef, batches: datafusion::execution::SendableRecordBatchStream) -> DoGetStream {
    let stream = batches.map_err(|e| FlightError::ExternalError(Box::new(SqlError::from(e))));
    let encoded = FlightDataEncoderBuilder::new().with_schema(schema).build(stream);
    Box::pin(encoded.map_err(flight_status))
}

/// The Arrow messages of a DoPut: a message carrying only the descriptor (as clients send for
/// an update without parameters) holds no data.
fn data_messages(
    stream: PeekableFlightDataStream,
) -> impl Stream<Item = Result<arrow_flight::FlightData, FlightError>> + Send {
    stream.map_err(FlightError::from).try_filter(|d| futures::future::ready(!d.data_header.is_empty()))
}

/// Reads the record batches of a DoPut.
async fn put_batches(request: Request<PeekableFlightDataStream>) -> Result<Vec<RecordBatch>, Status> {
    let reset = request.extensions().get::<reset::BodyReset>().cloned();
    let stream = data_messages(request.into_inner());
    let mut decoded = FlightRecordBatchStream::new_from_flight_data(stream);
    let mut out = Vec::new();
    while let Some(b) = decoded.next().await {
        out.push(b.map_err(|e| invalid(format!("malformed Arrow data: {e}")))?);
    }
    ended_cleanly(reset.as_ref()).map_err(status)?;
    Ok(out)
}

/// A DoPut stream that ended because the client reset it (see [`reset`]) was abandoned, not
/// finished: what came of it must not be used.
fn ended_cleanly(reset: Option<&reset::BodyReset>) -> SqlResult<()> {
    if reset.is_some_and(reset::BodyReset::is_set) {
        return Err(SqlError::new(codes::QUERY_CANCELED, "the client cancelled the upload before its end"));
    }
    Ok(())
}

impl BkgFlight {
    pub fn new(engine: Arc<Engine>, auth: Arc<AuthConfig>, passwords: Arc<CatalogAuth>, config: FlightConfig) -> Self {
        let key: [u8; 32] = rand::random();
        BkgFlight {
            engine,
            auth,
            passwords,
            config,
            sessions: SessionPool::new(),
            tokens: Mutex::new(HashMap::new()),
            login_failures: bkg_auth::limits::RateLimiter::per_minute(LOGIN_FAILURES_PER_MIN),
            prepared: Mutex::new(HashMap::new()),
            txns: Mutex::new(HashMap::new()),
            ticket_key: ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &key),
            sql_info: metadata::sql_info(),
            xdbc: metadata::xdbc_types(),
        }
    }

    /// The caller of a request: `authorization: Bearer <handshake token or JWT>` or `Basic`.
    fn caller(&self, md: &MetadataMap) -> Result<Caller, Status> {
        let header = md
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| Status::unauthenticated("authorization required: Basic (handshake) or Bearer token"))?;
        if let Some(basic) = header.strip_prefix("Basic ").or_else(|| header.strip_prefix("basic ")) {
            return self.password_login(basic.trim());
        }
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .ok_or_else(|| Status::unauthenticated("authorization must be Basic or Bearer"))?
            .trim();
        if let Some(role) = self.issued_role(token) {
            return Ok(Caller { key: format!("pw:{role}"), role, claims: None });
        }
        let principal = self.auth.authenticate(None, Some(token)).map_err(|e| match e {
            bkg_auth::AuthFailure::Missing => Status::unauthenticated("no token"),
            bkg_auth::AuthFailure::Invalid(m) => Status::unauthenticated(m),
        })?;
        match bkg_auth::token_role(&self.engine, &principal.role) {
            Ok(()) => {}
            Err(bkg_auth::TokenRoleRefusal::Missing(role)) => {
                return Err(Status::unauthenticated(format!("role \"{role}\" does not exist")));
            }
            Err(bkg_auth::TokenRoleRefusal::Superuser(role)) => {
                return Err(Status::permission_denied(format!(
                    "role \"{role}\" cannot be used with a token; log in with its password"
                )));
            }
        }
        let sub = principal.claims.get("sub").and_then(|v| v.as_str()).unwrap_or("");
        Ok(Caller {
            key: format!("jwt:{}:{sub}", principal.role),
            role: principal.role,
            claims: Some(serde_json::Value::Object(principal.claims)),
        })
    }

    fn password_login(&self, basic: &str) -> Result<Caller, Status> {
        // Padding is optional: some clients (the Go Flight client) leave it out.
        let engine = base64::engine::GeneralPurpose::new(
            &base64::alphabet::STANDARD,
            base64::engine::GeneralPurposeConfig::new()
                .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
        );
        let raw = engine
            .decode(basic)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| Status::unauthenticated("malformed Basic credentials"))?;
        let (user, password) =
            raw.split_once(':').ok_or_else(|| Status::unauthenticated("malformed Basic credentials"))?;
        if let Err(wait_s) = self.login_failures.peek(user.to_string()) {
            return Err(Status::resource_exhausted(format!(
                "too many failed logins for role \"{user}\"; retry after {wait_s} s"
            )));
        }
        if !self.passwords.password_matches(user, password) {
            let _ = self.login_failures.check(user.to_string());
            return Err(status(SqlError::new(
                codes::INVALID_PASSWORD,
                format!("password authentication failed for user \"{user}\""),
            )));
        }
        Ok(Caller { key: format!("pw:{user}"), role: user.to_string(), claims: None })
    }

    fn issued_role(&self, token: &str) -> Option<String> {
        let mut tokens = self.tokens.lock();
        let issued = tokens.get(token)?;
        if issued.expires < Instant::now() {
            tokens.remove(token);
            return None;
        }
        Some(issued.role.clone())
    }

    fn issue_token(&self, role: &str) -> String {
        let raw: [u8; 32] = rand::random();
        let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw);
        let mut tokens = self.tokens.lock();
        let now = Instant::now();
        tokens.retain(|_, t| t.expires > now);
        if tokens.len() >= TOKENS_MAX {
            // The oldest goes first.
            if let Some(k) = tokens.iter().min_by_key(|(_, t)| t.expires).map(|(k, _)| k.clone()) {
                tokens.remove(&k);
            }
        }
        tokens.insert(token.clone(), Issued { role: role.to_string(), expires: now + self.config.token_ttl });
        token
    }

    /// A session for `caller`: the transaction's when `txn` names one (it must be the
    /// caller's), else a pooled one with the caller's claims.
    async fn lease(&self, caller: &Caller, txn: Option<&[u8]>) -> Result<Lease<'_>, Status> {
        if let Some(id) = txn.filter(|t| !t.is_empty()) {
            let session = {
                let mut txns = self.txns.lock();
                let t = txns.get_mut(id).ok_or_else(|| {
                    status(SqlError::new(codes::NO_ACTIVE_SQL_TRANSACTION, "unknown or finished transaction"))
                })?;
                if t.owner != caller.key {
                    return Err(status(SqlError::new(
                        codes::INSUFFICIENT_PRIVILEGE,
                        "the transaction belongs to another principal",
                    )));
                }
                t.used = Instant::now();
                t.session.clone()
            };
            return Ok(Lease::Txn(session.lock_owned().await));
        }
        let mut session =
            self.sessions.take(&self.engine, &caller.role, self.config.statement_timeout_ms).map_err(status)?;
        session.set_claims(caller.claims.clone());
        Ok(Lease::Pooled(&self.sessions, caller.role.clone(), Some(session)))
    }

    fn sign(&self, body: &TicketBody) -> Bytes {
        let mut bytes = serde_json::to_vec(body).expect("ticket body serialises");
        let tag = ring::hmac::sign(&self.ticket_key, &bytes);
        bytes.extend_from_slice(tag.as_ref());
        Bytes::from(bytes)
    }

    /// The body of a ticket this server signed for `caller`.
    fn open_ticket(&self, handle: &[u8], caller: &Caller) -> Result<TicketBody, Status> {
        let bad = || invalid("invalid ticket");
        if handle.len() < 32 {
            return Err(bad());
        }
        let (body, tag) = handle.split_at(handle.len() - 32);
        ring::hmac::verify(&self.ticket_key, body, tag).map_err(|_| bad())?;
        let body: TicketBody = serde_json::from_slice(body).map_err(|_| bad())?;
        if body.p != caller.key {
            return Err(status(SqlError::new(
                codes::INSUFFICIENT_PRIVILEGE,
                "the ticket was issued to another principal",
            )));
        }
        if body.e < chrono::Utc::now().timestamp() {
            return Err(invalid("the ticket has expired; ask for a new FlightInfo"));
        }
        Ok(body)
    }

    fn ticket_info(
        &self,
        schema: &Schema,
        body: TicketBody,
        descriptor: FlightDescriptor,
    ) -> Result<FlightInfo, Status> {
        let ticket = TicketStatementQuery { statement_handle: self.sign(&body) };
        let endpoint = FlightEndpoint::new().with_ticket(Ticket::new(ticket.as_any().encode_to_vec()));
        FlightInfo::new()
            .try_with_schema(schema)
            .map_err(|e| status(e.into()))
            .map(|i| i.with_endpoint(endpoint).with_descriptor(descriptor).with_ordered(true))
    }

    fn expiry(&self) -> i64 {
        chrono::Utc::now().timestamp() + self.config.ticket_ttl.as_secs() as i64
    }

    /// Runs a statement that is not a query now (clients only fetch results they expect), with
    /// each parameter row once, and answers with a FlightInfo whose ticket carries its (small)
    /// result and whose total_records is the count of rows it changed.
    async fn command_info(
        &self,
        caller: &Caller,
        txn: Option<&[u8]>,
        sql: &str,
        params: &[RecordBatch],
        descriptor: FlightDescriptor,
    ) -> Result<FlightInfo, Status> {
        let ran = self.run_rows(caller, txn, sql, params).await?;
        let batches: Vec<RecordBatch> = ran.stream.try_collect().await.map_err(|e| status(e.into()))?;
        let rows = inline_rows(&ran.schema, &batches).map_err(status)?;
        let body = TicketBody { p: caller.key.clone(), e: self.expiry(), q: None, t: None, r: Some(rows) };
        let info = self.ticket_info(&ran.schema, body, descriptor)?;
        Ok(match ran.changed {
            Some(n) => info.with_total_records(n as i64),
            None => info,
        })
    }

    fn one_statement(sql: &str) -> Result<datafusion::sql::sqlparser::ast::Statement, Status> {
        let sql = numbered_placeholders(sql);
        let mut stmts = Session::parse(&sql).map_err(status)?;
        match stmts.len() {
            1 => Ok(stmts.remove(0)),
            0 => Err(status(SqlError::syntax("empty statement"))),
            _ => Err(status(SqlError::syntax("one statement per call"))),
        }
    }

    /// Runs `sql` once per parameter row (once when there are none) on one session of the
    /// caller. A single run's rows stream as the plan produces them; several runs are collected
    /// and follow each other, and the rows they changed add up.
    async fn run_rows(
        &self,
        caller: &Caller,
        txn: Option<&[u8]>,
        sql: &str,
        params: &[RecordBatch],
    ) -> Result<Ran, Status> {
        let stmt = Self::one_statement(sql)?;
        let mut lease = self.lease(caller, txn).await?;
        if matches!(lease, Lease::Pooled(..)) {
            refuse_session_state(&stmt)?;
        }
        let session = lease.session();
        let runs: Vec<Option<(&RecordBatch, usize)>> = match params.iter().map(|b| b.num_rows()).sum::<usize>() {
            0 => vec![None],
            _ => params.iter().flat_map(|b| (0..b.num_rows()).map(move |r| Some((b, r)))).collect(),
        };
        let single = runs.len() == 1;
        let (mut schema, mut changed, mut batches) = (None, None, Vec::new());
        for run in runs {
            let mut s = stmt.clone();
            if let Some((b, r)) = run {
                bkg_sql::describe::bind_params(&mut s, &convert::param_exprs(b, r).map_err(status)?).map_err(status)?;
            }
            let out = session.execute_streaming(s).await.map_err(status)?;
            if single {
                return Ok(Ran { schema: out.schema, stream: out.stream, changed: out.rows });
            }
            if let Some(n) = out.rows {
                changed = Some(changed.unwrap_or(0) + n);
            }
            schema.get_or_insert(out.schema);
            batches.extend(out.stream.try_collect::<Vec<_>>().await.map_err(|e| status(e.into()))?);
        }
        let schema: SchemaRef = schema.expect("at least one run");
        Ok(Ran { stream: memory_stream(schema.clone(), batches), schema, changed })
    }

    fn prepared_entry<R>(
        &self,
        handle: &[u8],
        caller: &Caller,
        f: impl FnOnce(&mut Prepared) -> R,
    ) -> Result<R, Status> {
        let mut map = self.prepared.lock();
        let p = map.get_mut(handle).ok_or_else(|| {
            status(SqlError::new("26000", "unknown prepared statement handle (closed, expired or never made)"))
        })?;
        if p.owner != caller.key {
            return Err(status(SqlError::new(
                codes::INSUFFICIENT_PRIVILEGE,
                "the prepared statement belongs to another principal",
            )));
        }
        p.used = Instant::now();
        Ok(f(p))
    }

    /// Drops prepared statements and transactions left unused for too long.
    fn sweep(&self) {
        let now = Instant::now();
        let ttl = self.config.idle_ttl;
        self.prepared.lock().retain(|_, p| now.duration_since(p.used) < ttl);
        self.txns.lock().retain(|_, t| now.duration_since(t.used) < ttl);
    }

    async fn ingest(
        &self,
        caller: &Caller,
        cmd: CommandStatementIngest,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        if cmd.temporary {
            return Err(status(SqlError::unsupported("temporary tables")));
        }
        if cmd.catalog.as_deref().is_some_and(|c| c != DATABASE_NAME) {
            return Err(status(SqlError::new(
                "3D000",
                format!("database \"{}\" does not exist", cmd.catalog.unwrap_or_default()),
            )));
        }
        let opts = cmd.table_definition_options.unwrap_or_default();
        let if_not_exist = TableNotExistOption::try_from(opts.if_not_exist).unwrap_or(TableNotExistOption::Unspecified);
        let if_exists = TableExistsOption::try_from(opts.if_exists).unwrap_or(TableExistsOption::Unspecified);
        let txn = cmd.transaction_id.clone();
        let mut lease = self.lease(caller, txn.as_deref()).await?;
        let session = lease.session();
        let schema_name = cmd.schema.clone().unwrap_or_else(|| session.current_schema());
        let qualified = format!("{}.{}", convert::quote_ident(&schema_name), convert::quote_ident(&cmd.table));
        // One transaction: the table's creation and every row, or nothing.
        let own = !session.in_transaction();
        if own {
            session.execute_one("BEGIN").await.map_err(status)?;
        }
        let r = self.ingest_rows(session, &schema_name, &cmd.table, &qualified, if_not_exist, if_exists, request).await;
        match r {
            Ok(n) => {
                if own {
                    session.execute_one("COMMIT").await.map_err(status)?;
                }
                Ok(n)
            }
            Err(e) => {
                if own {
                    let _ = session.execute_one("ROLLBACK").await;
                }
                Err(status(e))
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn ingest_rows(
        &self,
        session: &mut Session,
        schema_name: &str,
        table: &str,
        qualified: &str,
        if_not_exist: TableNotExistOption,
        if_exists: TableExistsOption,
        request: Request<PeekableFlightDataStream>,
    ) -> SqlResult<i64> {
        let reset = request.extensions().get::<reset::BodyReset>().cloned();
        let stream = data_messages(request.into_inner());
        let mut decoded = FlightRecordBatchStream::new_from_flight_data(stream);
        let first = decoded
            .next()
            .await
            .transpose()
            .map_err(|e| SqlError::new(codes::PROTOCOL_VIOLATION, format!("malformed Arrow data: {e}")))?;
        let incoming: SchemaRef = match (&first, decoded.schema()) {
            (Some(b), _) => b.schema(),
            (None, Some(s)) => s.clone(),
            (None, None) => {
                return Err(SqlError::new(codes::PROTOCOL_VIOLATION, "the ingest stream carries no schema"));
            }
        };
        let find = |s: &Session| s.with_txn(|t| Ok(t.catalog().find_table(schema_name, table).cloned()));
        let exists = find(session)?.is_some();
        match (exists, if_exists, if_not_exist) {
            (true, TableExistsOption::Append, _) => {}
            (true, TableExistsOption::Replace, _) => {
                session.execute_one(&format!("DROP TABLE {qualified}")).await?;
                session.execute_one(&convert::create_table_sql(qualified, incoming.fields())?).await?;
            }
            (true, _, _) => {
                return Err(SqlError::new(codes::DUPLICATE_TABLE, format!("relation \"{table}\" already exists"))
                    .with_hint("Ingest with mode append or replace."));
            }
            (false, _, TableNotExistOption::Create) => {
                session.execute_one(&convert::create_table_sql(qualified, incoming.fields())?).await?;
            }
            (false, _, _) => {
                return Err(SqlError::new(codes::UNDEFINED_TABLE, format!("relation \"{table}\" does not exist")));
            }
        }
        let def = find(session)?.ok_or_else(|| SqlError::internal("the ingested table vanished"))?;
        session.require_relation(def.id, bkg_kernel::privilege::INSERT)?;
        // The stream's columns by name.
        let target: Vec<usize> = incoming
            .fields()
            .iter()
            .map(|f| {
                def.column_index(f.name()).ok_or_else(|| {
                    SqlError::new(
                        codes::UNDEFINED_COLUMN,
                        format!("column \"{}\" of relation \"{table}\" does not exist", f.name()),
                    )
                    .with_hint("The ingested batches must use the table's column names.")
                })
            })
            .collect::<SqlResult<_>>()?;
        let mut total = 0i64;
        let mut next = first;
        while let Some(batch) = next {
            if batch.schema().fields() != incoming.fields() {
                return Err(SqlError::new(codes::DATATYPE_MISMATCH, "the batches of one ingest must share one schema"));
            }
            total += bkg_sql::dml::insert_batches(session, def.id, Some(target.clone()), &[batch]).await? as i64;
            next = decoded
                .next()
                .await
                .transpose()
                .map_err(|e| SqlError::new(codes::PROTOCOL_VIOLATION, format!("malformed Arrow data: {e}")))?;
        }
        ended_cleanly(reset.as_ref())?;
        Ok(total)
    }
}

#[tonic::async_trait]
impl FlightSqlService for BkgFlight {
    type FlightService = BkgFlight;

    async fn do_handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<Pin<Box<dyn Stream<Item = Result<HandshakeResponse, Status>> + Send>>>, Status> {
        let header = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| Status::unauthenticated("the handshake needs authorization: Basic <user:password>"))?;
        let caller = match header.strip_prefix("Basic ").or_else(|| header.strip_prefix("basic ")) {
            Some(b) => self.password_login(b.trim())?,
            // A JWT is its own bearer token: hand it back.
            None => self.caller(request.metadata())?,
        };
        let token = match caller.claims {
            None => self.issue_token(&caller.role),
            Some(_) => header.trim_start_matches("Bearer ").trim_start_matches("bearer ").trim().to_string(),
        };
        let payload = Bytes::from(token.clone());
        let output = futures::stream::iter(vec![Ok(HandshakeResponse { protocol_version: 0, payload })]);
        let mut resp: Response<Pin<Box<dyn Stream<Item = Result<HandshakeResponse, Status>> + Send>>> =
            Response::new(Box::pin(output));
        let value = format!("Bearer {token}").parse().map_err(|_| Status::internal("token header"))?;
        resp.metadata_mut().insert("authorization", value);
        Ok(resp)
    }

    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let caller = self.caller(request.metadata())?;
        let stmt = Self::one_statement(&query.query)?;
        let descriptor = request.into_inner();
        if !matches!(stmt, datafusion::sql::sqlparser::ast::Statement::Query(_)) {
            let info =
                self.command_info(&caller, query.transaction_id.as_deref(), &query.query, &[], descriptor).await?;
            return Ok(Response::new(info));
        }
        let described = {
            let mut lease = self.lease(&caller, query.transaction_id.as_deref()).await?;
            lease.session().describe(&stmt).await.map_err(status)?
        };
        let schema = described.schema.unwrap_or_else(|| Arc::new(Schema::empty()));
        let txn = query.transaction_id.as_deref().filter(|t| !t.is_empty()).map(hex_of);
        let body = TicketBody { p: caller.key.clone(), e: self.expiry(), q: Some(query.query), t: txn, r: None };
        Ok(Response::new(self.ticket_info(&schema, body, descriptor)?))
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let caller = self.caller(request.metadata())?;
        let body = self.open_ticket(&ticket.statement_handle, &caller)?;
        if let Some(rows) = body.r {
            let bytes =
                base64::engine::general_purpose::STANDARD.decode(rows).map_err(|_| invalid("invalid ticket"))?;
            let reader = datafusion::arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes), None)
                .map_err(|e| status(e.into()))?;
            let schema = reader.schema();
            let batches = reader.collect::<Result<Vec<_>, _>>().map_err(|e| status(e.into()))?;
            return Ok(Response::new(flight_stream(schema.clone(), memory_stream(schema, batches))));
        }
        let sql = body.q.ok_or_else(|| invalid("invalid ticket"))?;
        let txn = body.t.as_deref().map(unhex).transpose().map_err(|_| invalid("invalid ticket"))?;
        let ran = self.run_rows(&caller, txn.as_deref(), &sql, &[]).await?;
        Ok(Response::new(flight_stream(ran.schema, ran.stream)))
    }

    async fn get_flight_info_prepared_statement(
        &self,
        cmd: CommandPreparedStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let caller = self.caller(request.metadata())?;
        let (schema, is_query, sql, txn, params) =
            self.prepared_entry(&cmd.prepared_statement_handle, &caller, |p| {
                (p.dataset.clone(), p.is_query, p.sql.clone(), p.transaction.clone(), p.params.clone())
            })?;
        if !is_query {
            let params = params.as_slice();
            let info = self.command_info(&caller, txn.as_deref(), &sql, params, request.into_inner()).await?;
            return Ok(Response::new(info));
        }
        let endpoint = FlightEndpoint::new().with_ticket(Ticket::new(cmd.as_any().encode_to_vec()));
        let info = FlightInfo::new()
            .try_with_schema(&schema)
            .map_err(|e| status(e.into()))?
            .with_endpoint(endpoint)
            .with_descriptor(request.into_inner())
            .with_ordered(true);
        Ok(Response::new(info))
    }

    async fn do_get_prepared_statement(
        &self,
        cmd: CommandPreparedStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let caller = self.caller(request.metadata())?;
        let (sql, txn, params) = self.prepared_entry(&cmd.prepared_statement_handle, &caller, |p| {
            (p.sql.clone(), p.transaction.clone(), p.params.clone())
        })?;
        let ran = self.run_rows(&caller, txn.as_deref(), &sql, params.as_slice()).await?;
        Ok(Response::new(flight_stream(ran.schema, ran.stream)))
    }

    async fn do_put_statement_update(
        &self,
        cmd: CommandStatementUpdate,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        let caller = self.caller(request.metadata())?;
        let ran = self.run_rows(&caller, cmd.transaction_id.as_deref(), &cmd.query, &[]).await?;
        Ok(ran.changed.unwrap_or(0) as i64)
    }

    async fn do_put_statement_ingest(
        &self,
        cmd: CommandStatementIngest,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        let caller = self.caller(request.metadata())?;
        self.ingest(&caller, cmd, request).await
    }

    async fn do_put_prepared_statement_query(
        &self,
        cmd: CommandPreparedStatementQuery,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<DoPutPreparedStatementResult, Status> {
        let caller = self.caller(request.metadata())?;
        // Checked before reading the data, so a stranger's handle learns nothing.
        self.prepared_entry(&cmd.prepared_statement_handle, &caller, |_| ())?;
        let batches = put_batches(request).await?;
        let params = match batches.as_slice() {
            [] => None,
            [b] => Some(b.clone()),
            many => Some(
                datafusion::arrow::compute::concat_batches(&many[0].schema(), many).map_err(|e| status(e.into()))?,
            ),
        };
        self.prepared_entry(&cmd.prepared_statement_handle, &caller, |p| p.params = params)?;
        Ok(DoPutPreparedStatementResult { prepared_statement_handle: Some(cmd.prepared_statement_handle) })
    }

    async fn do_put_prepared_statement_update(
        &self,
        cmd: CommandPreparedStatementUpdate,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        let caller = self.caller(request.metadata())?;
        let (sql, txn, stored) = self.prepared_entry(&cmd.prepared_statement_handle, &caller, |p| {
            (p.sql.clone(), p.transaction.clone(), p.params.clone())
        })?;
        let mut params = put_batches(request).await?;
        if params.iter().all(|b| b.num_rows() == 0) {
            params = stored.into_iter().collect();
        }
        let ran = self.run_rows(&caller, txn.as_deref(), &sql, &params).await?;
        Ok(ran.changed.unwrap_or(0) as i64)
    }

    async fn do_action_create_prepared_statement(
        &self,
        query: ActionCreatePreparedStatementRequest,
        request: Request<arrow_flight::Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        let caller = self.caller(request.metadata())?;
        self.sweep();
        let stmt = Self::one_statement(&query.query)?;
        let described = {
            let mut lease = self.lease(&caller, query.transaction_id.as_deref()).await?;
            lease.session().describe(&stmt).await.map_err(status)?
        };
        let dataset = described.schema.unwrap_or_else(|| Arc::new(Schema::empty()));
        let nparams = bkg_sql::describe::count_placeholders(&stmt).max(described.params.len());
        let param_fields: Vec<Field> = (0..nparams)
            .map(|i| {
                let dt = described.params.get(i).cloned().flatten().unwrap_or(ArrowType::Utf8);
                Field::new(format!("${}", i + 1), dt, true)
            })
            .collect();
        let handle: [u8; 16] = rand::random();
        {
            let mut map = self.prepared.lock();
            if map.len() >= PREPARED_MAX {
                return Err(status(SqlError::new(
                    "53400",
                    format!("too many prepared statements (at most {PREPARED_MAX}); close some"),
                )));
            }
            map.insert(
                handle.to_vec(),
                Prepared {
                    owner: caller.key.clone(),
                    sql: query.query,
                    is_query: matches!(stmt, datafusion::sql::sqlparser::ast::Statement::Query(_)),
                    transaction: query.transaction_id.map(|t| t.to_vec()).filter(|t| !t.is_empty()),
                    dataset: dataset.clone(),
                    params: None,
                    used: Instant::now(),
                },
            );
        }
        Ok(ActionCreatePreparedStatementResult {
            prepared_statement_handle: Bytes::from(handle.to_vec()),
            dataset_schema: schema_ipc(&dataset)?,
            parameter_schema: schema_ipc(&Schema::new(param_fields))?,
        })
    }

    async fn do_action_close_prepared_statement(
        &self,
        query: ActionClosePreparedStatementRequest,
        request: Request<arrow_flight::Action>,
    ) -> Result<(), Status> {
        let caller = self.caller(request.metadata())?;
        self.prepared_entry(&query.prepared_statement_handle, &caller, |_| ())?;
        self.prepared.lock().remove(query.prepared_statement_handle.as_ref());
        Ok(())
    }

    async fn do_action_begin_transaction(
        &self,
        _query: ActionBeginTransactionRequest,
        request: Request<arrow_flight::Action>,
    ) -> Result<ActionBeginTransactionResult, Status> {
        let caller = self.caller(request.metadata())?;
        self.sweep();
        let mut session =
            self.sessions.take(&self.engine, &caller.role, self.config.statement_timeout_ms).map_err(status)?;
        session.set_claims(caller.claims.clone());
        session.execute_one("BEGIN").await.map_err(status)?;
        let id: [u8; 16] = rand::random();
        let mut txns = self.txns.lock();
        if txns.len() >= TRANSACTIONS_MAX {
            return Err(status(SqlError::new(
                codes::TOO_MANY_CONNECTIONS,
                format!("too many open Flight transactions (at most {TRANSACTIONS_MAX})"),
            )));
        }
        txns.insert(
            id.to_vec(),
            OpenTxn { owner: caller.key, session: Arc::new(tokio::sync::Mutex::new(session)), used: Instant::now() },
        );
        Ok(ActionBeginTransactionResult { transaction_id: Bytes::from(id.to_vec()) })
    }

    async fn do_action_end_transaction(
        &self,
        query: ActionEndTransactionRequest,
        request: Request<arrow_flight::Action>,
    ) -> Result<(), Status> {
        let caller = self.caller(request.metadata())?;
        let sql = match EndTransaction::try_from(query.action) {
            Ok(EndTransaction::Commit) => "COMMIT",
            Ok(EndTransaction::Rollback) => "ROLLBACK",
            _ => return Err(invalid("end transaction: action must be commit or rollback")),
        };
        let mut lease = self.lease(&caller, Some(&query.transaction_id)).await?;
        self.txns.lock().remove(query.transaction_id.as_ref());
        let out = lease.session().execute_one(sql).await.map_err(status)?;
        if sql == "COMMIT" && out.tag_text() == "ROLLBACK" {
            return Err(status(SqlError::new(
                codes::IN_FAILED_TRANSACTION,
                "the transaction had failed and was rolled back",
            )));
        }
        Ok(())
    }

    async fn get_flight_info_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.caller(request.metadata())?;
        self.metadata_info(query.as_any(), &query.into_builder().schema(), request.into_inner())
    }

    async fn do_get_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        self.caller(request.metadata())?;
        let mut b = query.into_builder();
        b.append(DATABASE_NAME);
        self.metadata_stream(b.build().map_err(flight_status))
    }

    async fn get_flight_info_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.caller(request.metadata())?;
        let schema = query.clone().into_builder().schema();
        self.metadata_info(query.as_any(), &schema, request.into_inner())
    }

    async fn do_get_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let caller = self.caller(request.metadata())?;
        let cat = self.engine.catalog();
        let v = self.visible(&cat, &caller);
        self.metadata_stream(metadata::db_schemas(&v, query).map_err(status))
    }

    async fn get_flight_info_tables(
        &self,
        query: CommandGetTables,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.caller(request.metadata())?;
        let schema = query.clone().into_builder().schema();
        self.metadata_info(query.as_any(), &schema, request.into_inner())
    }

    async fn do_get_tables(
        &self,
        query: CommandGetTables,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let caller = self.caller(request.metadata())?;
        let cat = self.engine.catalog();
        let v = self.visible(&cat, &caller);
        self.metadata_stream(metadata::tables(&v, query).map_err(status))
    }

    async fn get_flight_info_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.caller(request.metadata())?;
        self.metadata_info(query.as_any(), &query.into_builder().schema(), request.into_inner())
    }

    async fn do_get_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        self.caller(request.metadata())?;
        let mut b = query.into_builder();
        b.append("TABLE");
        b.append("VIEW");
        self.metadata_stream(b.build().map_err(flight_status))
    }

    async fn get_flight_info_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.caller(request.metadata())?;
        let schema = query.clone().into_builder(&self.sql_info).schema();
        self.metadata_info(query.as_any(), &schema, request.into_inner())
    }

    async fn do_get_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        self.caller(request.metadata())?;
        self.metadata_stream(query.into_builder(&self.sql_info).build().map_err(flight_status))
    }

    async fn get_flight_info_primary_keys(
        &self,
        query: CommandGetPrimaryKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.caller(request.metadata())?;
        self.metadata_info(query.as_any(), &metadata::primary_keys_schema(), request.into_inner())
    }

    async fn do_get_primary_keys(
        &self,
        query: CommandGetPrimaryKeys,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let caller = self.caller(request.metadata())?;
        let cat = self.engine.catalog();
        let v = self.visible(&cat, &caller);
        self.metadata_stream(metadata::primary_keys(&v, &query, "public").map_err(status))
    }

    async fn get_flight_info_xdbc_type_info(
        &self,
        query: CommandGetXdbcTypeInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.caller(request.metadata())?;
        let schema = query.into_builder(&self.xdbc).schema();
        self.metadata_info(query.as_any(), &schema, request.into_inner())
    }

    async fn do_get_xdbc_type_info(
        &self,
        query: CommandGetXdbcTypeInfo,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        self.caller(request.metadata())?;
        self.metadata_stream(query.into_builder(&self.xdbc).build().map_err(flight_status))
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}

impl BkgFlight {
    fn visible<'a>(&self, cat: &'a bkg_kernel::Catalog, caller: &Caller) -> metadata::Visible<'a> {
        // An unknown role sees nothing (oid 0 holds no privileges).
        let role = cat.find_role(&caller.role).map(|r| r.oid).unwrap_or(0);
        metadata::Visible { cat, role }
    }

    /// A metadata command's FlightInfo: the command itself is the ticket.
    fn metadata_info(
        &self,
        cmd: Any,
        schema: &Schema,
        descriptor: FlightDescriptor,
    ) -> Result<Response<FlightInfo>, Status> {
        let endpoint = FlightEndpoint::new().with_ticket(Ticket::new(cmd.encode_to_vec()));
        let info = FlightInfo::new()
            .try_with_schema(schema)
            .map_err(|e| status(e.into()))?
            .with_endpoint(endpoint)
            .with_descriptor(descriptor);
        Ok(Response::new(info))
    }

    fn metadata_stream(&self, batch: Result<RecordBatch, Status>) -> Result<Response<DoGetStream>, Status> {
        let batch = batch?;
        let schema = batch.schema();
        Ok(Response::new(flight_stream(schema.clone(), memory_stream(schema, vec![batch]))))
    }
}

/// Flight SQL clients write parameters as `?` (JDBC style); PostgreSQL numbers them. Each `?`
/// token becomes `$1`, `$2`, … in order; text in literals, identifiers and comments is kept.
fn numbered_placeholders(sql: &str) -> std::borrow::Cow<'_, str> {
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};
    if !sql.contains('?') {
        return sql.into();
    }
    let Ok(tokens) = Tokenizer::new(&PostgreSqlDialect {}, sql).tokenize() else { return sql.into() };
    let is_mark = |t: &Token| matches!(t, Token::Question) || matches!(t, Token::Placeholder(p) if p == "?");
    if !tokens.iter().any(is_mark) {
        return sql.into();
    }
    let mut n = 0;
    let mut out = String::with_capacity(sql.len() + 8);
    for t in &tokens {
        if is_mark(t) {
            n += 1;
            out.push_str(&format!("${n}"));
        } else {
            out.push_str(&t.to_string());
        }
    }
    out.into()
}

/// A finished statement's rows as ticket payload (Arrow IPC stream, base64).
fn inline_rows(schema: &SchemaRef, batches: &[RecordBatch]) -> SqlResult<String> {
    let mut buf = Vec::new();
    {
        let mut w = datafusion::arrow::ipc::writer::StreamWriter::try_new(&mut buf, schema)?;
        for b in batches {
            w.write(b)?;
            if w.get_ref().len() > INLINE_RESULT_MAX {
                return Err(SqlError::new(
                    "54000",
                    "the statement's result is too large to return here; run it as a query",
                ));
            }
        }
        w.finish()?;
    }
    Ok(base64::engine::general_purpose::STANDARD.encode(buf))
}

fn hex_of(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Result<Vec<u8>, ()> {
    if !s.len().is_multiple_of(2) {
        return Err(());
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).map_err(|_| ())).collect()
}

/// Serves Flight SQL on `listener` until `stop` turns true.
pub async fn serve(
    flight: BkgFlight,
    listener: tokio::net::TcpListener,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Result<(), String> {
    let max = flight.config.max_message_bytes;
    let svc = arrow_flight::flight_service_server::FlightServiceServer::new(flight)
        .max_decoding_message_size(max)
        .max_encoding_message_size(max);
    tonic::transport::Server::builder()
        .concurrency_limit_per_connection(64)
        .tcp_nodelay(true)
        .add_service(reset::WatchResets(svc))
        .serve_with_incoming_shutdown(tonic::transport::server::TcpIncoming::from(listener), async move {
            let _ = stop.changed().await;
        })
        .await
        .map_err(|e| e.to_string())
}
