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

mod auth;
mod convert;
pub mod limits;
mod metadata;
mod reset;
mod service;
mod statements;
use auth::*;
use statements::*;

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
    ActionBeginSavepointRequest, ActionBeginSavepointResult, ActionBeginTransactionRequest,
    ActionBeginTransactionResult, ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest,
    ActionCreatePreparedStatementResult, ActionEndSavepointRequest, ActionEndTransactionRequest, Any,
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

use crate::limits::{INLINE_RESULT_MAX, LOGIN_FAILURES_PER_MIN, PREPARED_MAX, TOKENS_MAX, TRANSACTIONS_MAX};
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
    /// Connections open now.
    open: Arc<std::sync::atomic::AtomicU64>,
    sql_info: SqlInfoData,
    xdbc: XdbcTypeInfoData,
}

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

/// The SQL name of a Flight SQL savepoint from the tag in its id.
fn savepoint_name(tag: &[u8]) -> String {
    let hex: String = tag.iter().map(|b| format!("{b:02x}")).collect();
    format!("flight_sp_{hex}")
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
    use bkg_sql::sqlstate::GrpcClass as G;
    use tonic::Code;
    let c = e.code;
    let code = match c.grpc_class() {
        G::InvalidArgument => Code::InvalidArgument,
        G::Unauthenticated => Code::Unauthenticated,
        G::PermissionDenied => Code::PermissionDenied,
        G::NotFound => Code::NotFound,
        G::AlreadyExists => Code::AlreadyExists,
        G::Aborted => Code::Aborted,
        G::Cancelled => Code::Cancelled,
        G::Unimplemented => Code::Unimplemented,
        G::ResourceExhausted => Code::ResourceExhausted,
        G::Unavailable => Code::Unavailable,
        G::FailedPrecondition => Code::FailedPrecondition,
        G::Internal => Code::Internal,
    };
    let mut message = format!("{} (SQLSTATE {c})", e.message);
    if let Some(d) = &e.detail {
        message.push_str(&format!("\nDETAIL: {d}"));
    }
    if let Some(h) = &e.hint {
        message.push_str(&format!("\nHINT: {h}"));
    }
    let mut s = Status::new(code, message);
    if let Ok(v) = c.code().parse() {
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
            open: Default::default(),
        }
    }

    /// The count of Flight connections open now (for the admin API).
    pub fn open_connections(&self) -> Arc<std::sync::atomic::AtomicU64> {
        self.open.clone()
    }
}

/// A Flight connection, counted in its server's open connections while it lives.
struct Counted(tokio::net::TcpStream, Arc<std::sync::atomic::AtomicU64>);

impl Counted {
    fn new(tcp: tokio::net::TcpStream, open: Arc<std::sync::atomic::AtomicU64>) -> Counted {
        open.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Counted(tcp, open)
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.1.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

impl tonic::transport::server::Connected for Counted {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.0.connect_info()
    }
}

impl tokio::io::AsyncRead for Counted {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for Counted {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }
}

/// Serves Flight SQL on `listener` until `stop` turns true.
/// One span per RPC (`arrow.flight.protocol.FlightService/DoGet`), the child of the caller's
/// W3C `traceparent` metadata when it sent one.
fn rpc_span(req: &tonic::codegen::http::Request<()>) -> tracing::Span {
    use bkg_sql::telemetry;
    let traceparent = req.headers().get("traceparent").and_then(|v| v.to_str().ok());
    telemetry::door_span(traceparent, || {
        let path = req.uri().path().trim_start_matches('/');
        let (service, method) = path.split_once('/').unwrap_or((path, ""));
        tracing::debug_span!(
            target: telemetry::SPAN_TARGET,
            "rpc",
            otel.name = path,
            otel.kind = "server",
            rpc.system = "grpc",
            rpc.service = service,
            rpc.method = method,
        )
    })
}

pub async fn serve(
    flight: BkgFlight,
    listener: tokio::net::TcpListener,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Result<(), String> {
    let max = flight.config.max_message_bytes;
    let open = flight.open.clone();
    let incoming = futures::StreamExt::map(tonic::transport::server::TcpIncoming::from(listener), move |conn| {
        conn.map(|tcp| Counted::new(tcp, open.clone()))
    });
    let svc = arrow_flight::flight_service_server::FlightServiceServer::new(flight)
        .max_decoding_message_size(max)
        .max_encoding_message_size(max);
    tonic::transport::Server::builder()
        .concurrency_limit_per_connection(64)
        .tcp_nodelay(true)
        .trace_fn(rpc_span)
        .add_service(reset::WatchResets(svc))
        .serve_with_incoming_shutdown(incoming, async move {
            let _ = stop.changed().await;
        })
        .await
        .map_err(|e| e.to_string())
}
