//! The PostgreSQL wire front door (pgwire 0.42).
//!
//! One [`ConnHandlers`] per connection owns that connection's [`Session`]. Simple queries run
//! statement by statement; the extended protocol parses and describes at Parse time (parameter
//! types inferred by the planner, client-declared types win) and binds parameters as SQL literals
//! into the parsed statement at Execute time: each value is checked against its type and becomes
//! one literal node, so no parameter can change the statement's structure.

mod batch;
use bkg_sql::pg_format as encode;
pub mod frames;
#[cfg(test)]
mod fuzz;

use std::fmt::Debug;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use bytes::{BufMut, BytesMut};
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::sql::sqlparser::ast::Statement;
use futures::stream;
use futures::{Sink, SinkExt};
use pgwire::api::auth::cleartext::CleartextPasswordAuthStartupHandler;
use pgwire::api::auth::sasl::SASLAuthStartupHandler;
use pgwire::api::auth::sasl::scram::{ScramAuth, ScramSecret};
use pgwire::api::auth::{AuthSource, DefaultServerParameterProvider, LoginInfo, Password, StartupHandler};
use pgwire::api::copy::CopyHandler;
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{CopyResponse, FieldFormat, FieldInfo, QueryResponse, Response, Tag};
use pgwire::api::stmt::QueryParser;
use pgwire::api::stmt::StoredStatement;
use pgwire::api::store::{Entry, PortalStore};
use pgwire::api::{ClientInfo, ClientPortalStore, PgWireServerHandlers, Type};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::copy::{CopyData, CopyDone, CopyFail};
use pgwire::messages::data::DataRow;
use pgwire::messages::extendedquery::{
    Bind, BindComplete, Close, CloseComplete, Describe, Execute, Parse, ParseComplete, TARGET_TYPE_BYTE_PORTAL,
    TARGET_TYPE_BYTE_STATEMENT,
};
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use tokio::net::TcpListener;
use tokio::sync::Mutex;

pub use bkg_auth::{CatalogAuth, PasswordHook};
use bkg_sql::describe::bind_params;
use bkg_sql::error::{SqlError, codes};
use bkg_sql::metrics::Metrics;
use bkg_sql::{Engine, Output, Session, TxnEvent};

/// Everything connections share.
pub struct PgServer {
    pub engine: Arc<Engine>,
    pub metrics: Arc<Metrics>,
    pub auth: Arc<PgAuth>,
    pub max_connections: usize,
    pub tls: Option<TlsSettings>,
    active: AtomicUsize,
    /// Open connections per role, for the roles' CONNECTION LIMIT.
    per_role: parking_lot::Mutex<std::collections::HashMap<String, usize>>,
    /// Connections by backend key, for cancel requests.
    cancel: Arc<Cancels>,
}

/// Backend key (process id, secret) → the session a CancelRequest is for. The request goes to
/// the session's [`CancelSignal`](bkg_sql::CancelSignal), which interrupts the statement
/// running then (never a COMMIT); pgwire's own cancel path, which drops the whole query
/// future wherever it is, is not used. One entry per open connection.
#[derive(Default)]
pub struct Cancels {
    by_key: parking_lot::Mutex<std::collections::HashMap<(i32, bytes::Bytes), Arc<bkg_sql::CancelSignal>>>,
}

impl Cancels {
    fn register(&self, key: (i32, bytes::Bytes), signal: Arc<bkg_sql::CancelSignal>) {
        self.by_key.lock().insert(key, signal);
    }

    fn unregister(&self, key: &(i32, bytes::Bytes)) {
        self.by_key.lock().remove(key);
    }
}

#[async_trait]
impl pgwire::api::cancel::CancelHandler for Cancels {
    async fn on_cancel_request(&self, request: pgwire::messages::cancel::CancelRequest) {
        let signal = self.by_key.lock().get(&(request.pid, request.secret_key.to_bytes())).cloned();
        if let Some(signal) = signal {
            signal.cancel();
        }
    }
}

/// TLS on the wire listener.
#[derive(Clone)]
pub struct TlsSettings {
    pub acceptor: pgwire::tokio::TlsAcceptor,
    /// The certificate chain in PEM, for SCRAM channel binding (SCRAM-SHA-256-PLUS).
    pub cert_pem: Vec<u8>,
    /// Ask for the password in cleartext on TLS connections (so a token can be given as the
    /// password); plain connections always use SCRAM.
    pub cleartext_over_tls: bool,
    /// Refuse connections that did not negotiate TLS.
    pub required: bool,
}

impl TlsSettings {
    /// Loads a PEM certificate chain and private key.
    pub fn load(cert: &std::path::Path, key: &std::path::Path) -> Result<TlsSettings, String> {
        use pgwire::tokio::tokio_rustls::rustls;
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let cert_pem = std::fs::read(cert).map_err(|e| format!("cannot read {}: {e}", cert.display()))?;
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
            .collect::<Result<_, _>>()
            .map_err(|e| format!("bad certificate in {}: {e}", cert.display()))?;
        if chain.is_empty() {
            return Err(format!("no certificate in {}", cert.display()));
        }
        let key =
            PrivateKeyDer::from_pem_file(key).map_err(|e| format!("bad private key in {}: {e}", key.display()))?;
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(|e| format!("certificate and key do not fit: {e}"))?;
        Ok(TlsSettings {
            acceptor: pgwire::tokio::TlsAcceptor::from(Arc::new(config)),
            cert_pem,
            cleartext_over_tls: false,
            required: false,
        })
    }
}

/// Connection metadata key under which a hook-verified principal reaches the session. Set by
/// the server only: a startup parameter of the same name is removed.
const CLAIMS_METADATA: &str = "bkg.verified_jwt_claims";

/// The catalog's password checks as pgwire's authentication source.
#[derive(Clone, Debug)]
pub struct PgAuth(pub Arc<CatalogAuth>);

impl PgAuth {
    fn check_database(login: &LoginInfo) -> PgWireResult<()> {
        if login.database().is_some_and(|d| d != bkg_sql::provider::DATABASE_NAME) {
            return Err(user_error(SqlError::new(
                "3D000",
                format!("database \"{}\" does not exist", login.database().unwrap_or_default()),
            )));
        }
        Ok(())
    }
}

#[async_trait]
impl AuthSource for PgAuth {
    async fn get_password(&self, login: &LoginInfo) -> PgWireResult<Password> {
        Err(PgWireError::InvalidPassword(login.user().unwrap_or_default().to_owned()))
    }

    async fn verify_password(&self, login: &LoginInfo, presented: &[u8]) -> PgWireResult<Option<()>> {
        Self::check_database(login)?;
        let user = login.user().unwrap_or_default();
        let presented = std::str::from_utf8(presented).unwrap_or_default();
        if self.0.verifier(user).is_some_and(|v| v.matches(presented)) {
            return Ok(None);
        }
        // A verified token admits its role even when the role cannot log in with a password
        // (the API roles), but never a superuser that cannot.
        if self.0.token_admits(user, presented) {
            return Ok(None);
        }
        Err(PgWireError::InvalidPassword(user.to_owned()))
    }

    async fn get_scram_secret(&self, login: &LoginInfo) -> PgWireResult<(ScramSecret, Option<()>)> {
        Self::check_database(login)?;
        let v = self.0.verifier(login.user().unwrap_or_default()).unwrap_or_else(|| self.0.decoy().clone());
        Ok((
            ScramSecret::Verifier {
                salt: v.salt,
                iterations: v.iterations as usize,
                stored_key: v.stored_key,
                server_key: v.server_key,
            },
            None,
        ))
    }
}

/// Points the session at the role the connection authenticated as.
fn bind_user<C: ClientInfo>(session: &mut Session, client: &C) {
    let Some(user) = client.metadata().get(pgwire::api::METADATA_USER) else { return };
    let claims = client.metadata().get(CLAIMS_METADATA).and_then(|c| serde_json::from_str(c).ok());
    match claims {
        Some(claims) if !session.is_jwt_login() => session.login_with_token(user, claims),
        Some(_) => {}
        None => session.login(user),
    }
}

pub fn user_error(e: SqlError) -> PgWireError {
    PgWireError::UserError(Box::new(error_info(e)))
}

fn error_info(e: SqlError) -> ErrorInfo {
    let mut info = ErrorInfo::new("ERROR".to_string(), e.code.to_string(), e.message);
    info.detail = e.detail;
    info.hint = e.hint;
    info
}

/// One prepared statement of the extended protocol.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub stmt: Option<Statement>,
    pub param_types: Vec<Type>,
    pub fields: Vec<FieldInfo>,
    /// The cached plan of a point query (made at Parse), run with each Bind's values.
    pub point: Option<Arc<bkg_sql::fast_path::PointPlan>>,
}

pub struct BkgQueryParser {
    session: Arc<Mutex<Session>>,
}

fn fields_of(schema: &SchemaRef, format: &Format) -> Vec<FieldInfo> {
    schema
        .fields()
        .iter()
        .enumerate()
        .map(|(i, f)| FieldInfo::new(f.name().clone(), None, None, encode::pg_type(f), format.format_for(i)))
        .collect()
}

/// True when a result's columns differ in number or type from those described at Parse.
fn changed_shape(described: &[FieldInfo], schema: &SchemaRef) -> bool {
    !described.is_empty()
        && (described.len() != schema.fields().len()
            || described.iter().zip(schema.fields().iter()).any(|(d, f)| *d.datatype() != encode::pg_type(f)))
}

fn arrow_to_param_type(t: &datafusion::arrow::datatypes::DataType) -> Type {
    encode::pg_type(&datafusion::arrow::datatypes::Field::new("p", t.clone(), true))
}

#[async_trait]
impl QueryParser for BkgQueryParser {
    type Statement = Prepared;

    async fn parse_sql<C>(&self, client: &C, sql: &str, types: &[Option<Type>]) -> PgWireResult<Option<Prepared>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        let mut stmts = Session::parse(sql).map_err(user_error)?;
        if stmts.len() > 1 {
            return Err(user_error(SqlError::syntax("cannot insert multiple commands into a prepared statement")));
        }
        let Some(stmt) = stmts.pop() else {
            return Ok(None);
        };
        let mut session = self.session.lock().await;
        bind_user(&mut session, client);
        let described = if session.in_failed_transaction() {
            Default::default()
        } else {
            session.describe(&stmt).await.unwrap_or_default()
        };
        let n = described.params.len().max(types.len());
        let param_types = (0..n)
            .map(|i| {
                types.get(i).cloned().flatten().filter(|t| *t != Type::UNKNOWN).unwrap_or_else(|| {
                    described.params.get(i).cloned().flatten().map(|t| arrow_to_param_type(&t)).unwrap_or(Type::TEXT)
                })
            })
            .collect();
        let fields = described.schema.map(|s| fields_of(&s, &Format::UnifiedText)).unwrap_or_default();
        let point = match &stmt {
            Statement::Query(q) => {
                bkg_sql::fast_path::plan_point_select(&session, &session.engine.catalog(), q).map(Arc::new)
            }
            _ => None,
        };
        Ok(Some(Prepared { stmt: Some(stmt), param_types, fields, point }))
    }

    fn get_parameter_types(&self, stmt: &Prepared) -> PgWireResult<Vec<Type>> {
        Ok(stmt.param_types.clone())
    }

    fn get_result_schema(&self, stmt: &Prepared, format: Option<&Format>) -> PgWireResult<Vec<FieldInfo>> {
        let format = format.cloned().unwrap_or(Format::UnifiedText);
        Ok(stmt
            .fields
            .iter()
            .enumerate()
            .map(|(i, f)| FieldInfo::new(f.name().to_string(), None, None, f.datatype().clone(), format.format_for(i)))
            .collect())
    }
}

/// Per-connection handlers.
#[derive(Clone)]
pub struct ConnHandlers {
    session: Arc<Mutex<Session>>,
    parser: Arc<BkgQueryParser>,
    server: Arc<PgServer>,
    /// The role whose connection count this connection holds (taken at login).
    slot: Arc<parking_lot::Mutex<Option<String>>>,
    /// Where cancel requests for this connection go, and its backend key once registered.
    cancel: Arc<bkg_sql::CancelSignal>,
    cancel_key: Arc<parking_lot::Mutex<Option<(i32, bytes::Bytes)>>>,
    /// Names of the statements prepared over the extended protocol (Parse) and not yet closed:
    /// pgwire's store cannot list them, and `DISCARD ALL` / `DEALLOCATE ALL` must drop them all
    /// (a pooler such as PgBouncer resets a server connection with `DISCARD ALL` before handing
    /// it to another client).
    prepared: Arc<parking_lot::Mutex<std::collections::BTreeSet<String>>>,
}

impl ConnHandlers {
    /// After `DISCARD ALL` or `DEALLOCATE ALL` succeeded: forget the protocol-level prepared
    /// statements too (and, for DISCARD ALL, the portals), as PostgreSQL does.
    fn forget_prepared<C>(&self, client: &C, outputs: &[&Output])
    where
        C: ClientPortalStore,
        C::PortalStore: PortalStore,
    {
        let mut discard = false;
        let mut deallocate = false;
        for o in outputs {
            if let Output::Command { tag, .. } = o {
                discard |= tag == "DISCARD ALL";
                deallocate |= tag == "DEALLOCATE ALL";
            }
        }
        if !(discard || deallocate) {
            return;
        }
        let names = std::mem::take(&mut *self.prepared.lock());
        for n in &names {
            client.portal_store().rm_statement(n);
        }
        if discard {
            client.portal_store().clear_portals();
        }
    }
}

fn encode_rows(
    schema: &SchemaRef,
    batches: &[RecordBatch],
    fields: &Arc<Vec<FieldInfo>>,
) -> Result<Vec<PgWireResult<DataRow>>, SqlError> {
    let mut rows = Vec::new();
    let binary: Vec<bool> = fields.iter().map(|f| f.format() == FieldFormat::Binary).collect();
    let types: Vec<Type> = fields.iter().map(|f| f.datatype().clone()).collect();
    let _ = schema;
    for b in batches {
        for r in 0..b.num_rows() {
            let mut data = BytesMut::with_capacity(16 * b.num_columns());
            for (c, col) in b.columns().iter().enumerate() {
                if binary[c] {
                    let mut v = BytesMut::new();
                    if encode::binary_value(col.as_ref(), r, &types[c], &mut v)? {
                        data.put_i32(v.len() as i32);
                        data.put_slice(&v);
                    } else {
                        data.put_i32(-1);
                    }
                } else {
                    match encode::text_value(col.as_ref(), r)? {
                        Some(s) => {
                            data.put_i32(s.len() as i32);
                            data.put_slice(s.as_bytes());
                        }
                        None => data.put_i32(-1),
                    }
                }
            }
            rows.push(Ok(DataRow::new(data, b.num_columns() as i16)));
        }
    }
    Ok(rows)
}

fn to_response(out: Output, format: &Format) -> Response {
    match out {
        Output::CopyIn { columns } => Response::CopyIn(CopyResponse::new(0, columns, stream::empty())),
        Output::CopyOut { schema, batches, opts } => match bkg_sql::copy::encode_rows(&schema, &batches, &opts) {
            Ok(lines) => {
                let n = schema.fields().len();
                let data = lines.into_iter().map(|l| Ok(CopyData::new(bytes::Bytes::from(l))));
                Response::CopyOut(CopyResponse::new(0, n, stream::iter(data)))
            }
            Err(e) => Response::Error(Box::new(error_info(e))),
        },
        Output::Rows { schema, batches, tag } => {
            let fields = Arc::new(fields_of(&schema, format));
            let n: usize = batches.iter().map(|b| b.num_rows()).sum();
            match encode_rows(&schema, &batches, &fields) {
                Ok(rows) => {
                    let mut resp = QueryResponse::new(fields, stream::iter(rows));
                    // pgwire appends the row count itself.
                    let _ = n;
                    let tag = if tag == "INSERT" { "INSERT 0".to_string() } else { tag };
                    resp.set_command_tag(&tag);
                    Response::Query(resp)
                }
                Err(e) => Response::Error(Box::new(error_info(e))),
            }
        }
        Output::Command { tag, rows, txn } => {
            let mut t = Tag::new(&tag);
            if tag == "INSERT" {
                t = t.with_oid(0);
            }
            if let Some(n) = rows {
                t = t.with_rows(n as usize);
            }
            match txn {
                Some(TxnEvent::Begin) => Response::TransactionStart(t),
                Some(TxnEvent::Commit | TxnEvent::Rollback) => Response::TransactionEnd(t),
                None => Response::Execution(t),
            }
        }
    }
}

#[async_trait]
impl SimpleQueryHandler for ConnHandlers {
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        // DEALLOCATE name drops a statement prepared over the extended protocol (psycopg does this).
        let words: Vec<&str> = query.trim().trim_end_matches(';').split_whitespace().collect();
        if let Some(first) = words.first()
            && first.eq_ignore_ascii_case("deallocate")
        {
            let name = words.iter().skip(1).find(|w| !w.eq_ignore_ascii_case("prepare")).map(|w| w.trim_matches('"'));
            if let Some(n) = name.filter(|n| !n.eq_ignore_ascii_case("all")) {
                client.portal_store().rm_statement(n);
                self.prepared.lock().remove(n);
            }
        }
        let mut session = self.session.lock().await;
        bind_user(&mut session, client);
        let mut results = session.execute(query).await;
        self.forget_prepared(client, &results.iter().filter_map(|r| r.as_ref().ok()).collect::<Vec<_>>());
        // A statement that failed and ended the transaction (a COMMIT that could not commit):
        // as in PostgreSQL the connection is then idle, not in a failed transaction. pgwire
        // would mark it failed, so the answers before it go out here and the error takes the
        // error path with the status set to idle.
        let ended = matches!(results.last(), Some(Err(_)))
            && !session.in_transaction()
            && client.transaction_status() != pgwire::messages::response::TransactionStatus::Idle;
        if ended {
            use futures::SinkExt;
            let Some(Err(last)) = results.pop() else { unreachable!("checked above") };
            for r in results {
                self.server.metrics.queries.fetch_add(1, Ordering::Relaxed);
                match r {
                    Ok(o) => match to_response(o, &Format::UnifiedText) {
                        Response::Query(q) => pgwire::api::query::send_query_response(client, q, true).await?,
                        Response::Execution(tag) | Response::TransactionStart(tag) | Response::TransactionEnd(tag) => {
                            pgwire::api::query::send_execution_response(client, tag).await?
                        }
                        _ => {}
                    },
                    Err(e) => client.feed(PgWireBackendMessage::ErrorResponse(error_info(e).into())).await?,
                }
            }
            self.server.metrics.queries.fetch_add(1, Ordering::Relaxed);
            self.server.metrics.query_errors.fetch_add(1, Ordering::Relaxed);
            client.set_transaction_status(pgwire::messages::response::TransactionStatus::Idle);
            return Err(user_error(last));
        }
        let mut out = Vec::with_capacity(results.len());
        for r in results {
            self.server.metrics.queries.fetch_add(1, Ordering::Relaxed);
            match r {
                Ok(o) => out.push(to_response(o, &Format::UnifiedText)),
                Err(e) => {
                    self.server.metrics.query_errors.fetch_add(1, Ordering::Relaxed);
                    out.push(Response::Error(Box::new(error_info(e))));
                }
            }
        }
        Ok(out)
    }
}

#[async_trait]
impl ExtendedQueryHandler for ConnHandlers {
    type Statement = Prepared;
    type QueryParser = BkgQueryParser;

    fn query_parser(&self) -> Arc<Self::QueryParser> {
        self.parser.clone()
    }

    async fn on_parse<C>(&self, client: &mut C, message: Parse) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let name = message.name.clone().unwrap_or_else(|| pgwire::api::DEFAULT_NAME.to_owned());
        match StoredStatement::parse(client, &message, self.query_parser()).await? {
            Some(stmt) => client.portal_store().put_statement(Arc::new(stmt)),
            None => client.portal_store().put_empty_statement(&name),
        }
        self.prepared.lock().insert(name);
        client.send(PgWireBackendMessage::ParseComplete(ParseComplete::new())).await?;
        Ok(())
    }

    async fn on_close<C>(&self, client: &mut C, message: Close) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let name = message.name.as_deref().unwrap_or(pgwire::api::DEFAULT_NAME);
        match message.target_type {
            TARGET_TYPE_BYTE_STATEMENT => {
                client.portal_store().rm_statement(name);
                self.prepared.lock().remove(name);
            }
            TARGET_TYPE_BYTE_PORTAL => client.portal_store().rm_portal(name),
            _ => {}
        }
        client.send(PgWireBackendMessage::CloseComplete(CloseComplete::new())).await?;
        Ok(())
    }

    // Replies to Parse, Bind, Describe and Execute wait in the buffer for Sync or Flush.
    async fn on_bind<C>(&self, client: &mut C, message: Bind) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let statement_name = message.statement_name.as_deref().unwrap_or(pgwire::api::DEFAULT_NAME);
        let portal_name = message.portal_name.as_deref().unwrap_or(pgwire::api::DEFAULT_NAME);
        match client.portal_store().get_statement(statement_name) {
            Some(Entry::Value(statement)) => {
                let portal = Portal::try_new(&message, statement)?;
                client.portal_store().put_portal(Arc::new(portal));
            }
            Some(Entry::Empty) => {
                if !message.parameters.is_empty() {
                    return Err(user_error(SqlError::new(
                        codes::PROTOCOL_VIOLATION,
                        format!(
                            "bind message supplies {} parameters, but prepared statement \"{statement_name}\" requires 0",
                            message.parameters.len()
                        ),
                    )));
                }
                client.portal_store().put_empty_portal(portal_name);
            }
            None => return Err(PgWireError::StatementNotFound(statement_name.to_owned())),
        }
        client.feed(PgWireBackendMessage::BindComplete(BindComplete::new())).await?;
        Ok(())
    }

    async fn on_describe<C>(&self, client: &mut C, message: Describe) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        self._on_describe(&mut batch::Batched::new(client), message).await
    }

    async fn on_execute<C>(&self, client: &mut C, message: Execute) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        self._on_execute(&mut batch::Batched::new(client), message).await
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<Self::Statement>,
        _max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let prepared = &portal.statement.statement;
        let Some(stmt) = &prepared.stmt else {
            return Ok(Response::EmptyQuery);
        };
        self.server.metrics.queries.fetch_add(1, Ordering::Relaxed);
        if let Some(plan) = &prepared.point {
            let param = |i: usize, dt: &bkg_kernel::DataType| {
                let ty = prepared.param_types.get(i).cloned().unwrap_or(Type::TEXT);
                let raw = portal.parameters.get(i).cloned().flatten();
                encode::param_value(raw.as_deref(), &ty, portal.parameter_format.is_binary(i), dt)
            };
            let mut session = self.session.lock().await;
            bind_user(&mut session, client);
            match session.execute_point(plan, &param) {
                Some(Ok(o)) => return Ok(to_response(o, &portal.result_column_format)),
                Some(Err(e)) => {
                    self.server.metrics.query_errors.fetch_add(1, Ordering::Relaxed);
                    return Err(user_error(e));
                }
                None => {}
            }
        }
        let mut stmt = stmt.clone();
        let mut values = Vec::with_capacity(portal.parameters.len());
        for (i, p) in portal.parameters.iter().enumerate() {
            let ty = prepared.param_types.get(i).cloned().unwrap_or(Type::TEXT);
            let lit = encode::param_literal_at(p.as_deref(), &ty, portal.parameter_format.is_binary(i), i + 1)
                .map_err(user_error)?;
            let expr = datafusion::sql::sqlparser::parser::Parser::new(
                &datafusion::sql::sqlparser::dialect::PostgreSqlDialect {},
            )
            .try_with_sql(&lit)
            .and_then(|mut p| p.parse_expr())
            .map_err(|e| user_error(SqlError::from(e)))?;
            values.push(expr);
        }
        bind_params(&mut stmt, &values).map_err(user_error)?;
        let mut session = self.session.lock().await;
        bind_user(&mut session, client);
        match session.execute_statement(stmt).await {
            Ok(Output::Rows { schema, .. }) if changed_shape(&prepared.fields, &schema) => {
                // The client described the statement with other columns (a table changed since
                // Parse): answering with rows of another shape would be misread.
                self.server.metrics.query_errors.fetch_add(1, Ordering::Relaxed);
                Err(user_error(
                    SqlError::new(codes::FEATURE_NOT_SUPPORTED, "cached plan must not change result type")
                        .with_hint("Prepare the statement again."),
                ))
            }
            Ok(o) => {
                self.forget_prepared(client, &[&o]);
                Ok(to_response(o, &portal.result_column_format))
            }
            Err(e) => {
                self.server.metrics.query_errors.fetch_add(1, Ordering::Relaxed);
                if !session.in_transaction() {
                    // A failed COMMIT ends the transaction: the connection is idle, not failed.
                    client.set_transaction_status(pgwire::messages::response::TransactionStatus::Idle);
                }
                Err(user_error(e))
            }
        }
    }
}

#[async_trait]
impl CopyHandler for ConnHandlers {
    async fn on_copy_data<C>(&self, _client: &mut C, copy_data: CopyData) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        self.session.lock().await.copy_data(&copy_data.data).await;
        Ok(())
    }

    async fn on_copy_done<C>(&self, client: &mut C, _done: CopyDone) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        use futures::SinkExt;
        let mut session = self.session.lock().await;
        let n = session.copy_done().await.map_err(user_error)?;
        let status = if session.in_failed_transaction() {
            pgwire::messages::response::TransactionStatus::Error
        } else if session.in_transaction() {
            pgwire::messages::response::TransactionStatus::Transaction
        } else {
            pgwire::messages::response::TransactionStatus::Idle
        };
        drop(session);
        client.set_transaction_status(status);
        client.send(PgWireBackendMessage::CommandComplete(Tag::new("COPY").with_rows(n as usize).into())).await?;
        Ok(())
    }

    async fn on_copy_fail<C>(&self, _client: &mut C, fail: CopyFail) -> PgWireError
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        user_error(self.session.lock().await.copy_fail(&fail.message))
    }
}

impl PgWireServerHandlers for ConnHandlers {
    fn copy_handler(&self) -> Arc<impl CopyHandler> {
        Arc::new(self.clone())
    }

    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        Arc::new(self.clone())
    }

    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        Arc::new(self.clone())
    }

    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        let server_version = self.server.engine.config.server_version.clone();
        let params_of = || {
            let mut p = DefaultServerParameterProvider::default();
            p.server_version = server_version.clone();
            p
        };
        let scram = ScramAuth::new(self.server.auth.clone());
        // On TLS connections SCRAM-SHA-256-PLUS binds the exchange to the certificate.
        let scram_tls = self.server.tls.as_ref().map(|tls| {
            let mut s = ScramAuth::new(self.server.auth.clone());
            if let Err(e) = s.configure_certificate(&tls.cert_pem) {
                tracing::warn!(error = %e, "SCRAM channel binding is off: the certificate was not usable for it");
            }
            SASLAuthStartupHandler::new(Arc::new(params_of())).with_scram(s)
        });
        let cleartext = self
            .server
            .tls
            .as_ref()
            .is_some_and(|t| t.cleartext_over_tls)
            .then(|| CleartextPasswordAuthStartupHandler::new((*self.server.auth).clone(), params_of()));
        Arc::new(BkgStartup {
            scram: SASLAuthStartupHandler::new(Arc::new(params_of())).with_scram(scram),
            cleartext,
            cancel: self.cancel.clone(),
            cancel_key: self.cancel_key.clone(),
            scram_tls,
            tls_required: self.server.tls.as_ref().is_some_and(|t| t.required),
            hook: self.server.auth.0.hook().cloned(),
            server: self.server.clone(),
            slot: self.slot.clone(),
            sasl_started: Default::default(),
        })
    }

    fn cancel_handler(&self) -> Arc<impl pgwire::api::cancel::CancelHandler> {
        self.server.cancel.clone()
    }
}

/// Chooses how a connection authenticates: SCRAM-SHA-256, or a cleartext password on TLS
/// connections when that is configured; refuses plain connections when TLS is required.
struct BkgStartup {
    scram: SASLAuthStartupHandler<DefaultServerParameterProvider>,
    cleartext: Option<CleartextPasswordAuthStartupHandler<PgAuth, DefaultServerParameterProvider>>,
    scram_tls: Option<SASLAuthStartupHandler<DefaultServerParameterProvider>>,
    tls_required: bool,
    hook: Option<Arc<dyn PasswordHook>>,
    server: Arc<PgServer>,
    slot: Arc<parking_lot::Mutex<Option<String>>>,
    cancel: Arc<bkg_sql::CancelSignal>,
    cancel_key: Arc<parking_lot::Mutex<Option<(i32, bytes::Bytes)>>>,
    /// A SCRAM exchange's first message (SASLInitialResponse) has arrived.
    sasl_started: std::sync::atomic::AtomicBool,
}

#[async_trait]
impl StartupHandler for BkgStartup {
    async fn on_startup<C>(&self, client: &mut C, message: PgWireFrontendMessage) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if self.tls_required && !client.is_secure() {
            let mut info = ErrorInfo::new("FATAL".into(), "28000".into(), "SSL connection is required".into());
            info.hint = Some("Connect with sslmode=require.".into());
            return Err(PgWireError::UserError(Box::new(info)));
        }
        let startup = matches!(message, PgWireFrontendMessage::Startup(_));
        // The first password message of a SCRAM exchange is a SASLInitialResponse, which the
        // library decodes without bounds checks: its layout is checked here first.
        let scram = !(self.cleartext.is_some() && client.is_secure());
        if let PgWireFrontendMessage::PasswordMessageFamily(pgwire::messages::startup::PasswordMessageFamily::Raw(body)) =
            &message
            && scram
            && !self.sasl_started.swap(true, Ordering::Relaxed)
            && let Err(e) = frames::check_sasl_initial(body)
        {
            return Err(PgWireError::UserError(Box::new(ErrorInfo::new("FATAL".into(), "08P01".into(), e.0))));
        }
        // A token given as the cleartext password: its claims become the session's principal.
        if let (Some(_), Some(hook), PgWireFrontendMessage::PasswordMessageFamily(p)) =
            (&self.cleartext, &self.hook, &message)
            && client.is_secure()
            && let Some(password) = cleartext_password(p)
        {
            let user = client.metadata().get(pgwire::api::METADATA_USER).cloned().unwrap_or_default();
            if let Some(claims) = hook.verify(&user, &password) {
                client.metadata_mut().insert(CLAIMS_METADATA.into(), claims.to_string());
            }
        }
        let r = match (&self.cleartext, &self.scram_tls) {
            (Some(c), _) if client.is_secure() => c.on_startup(client, message).await,
            (_, Some(s)) if client.is_secure() => s.on_startup(client, message).await,
            _ => self.scram.on_startup(client, message).await,
        };
        if startup {
            // Startup parameters land in the metadata: none may pose as a verified principal.
            client.metadata_mut().remove(CLAIMS_METADATA);
        }
        // Count the connection against its role's CONNECTION LIMIT as soon as the role is named
        // (before ReadyForQuery, so the client sees the refusal as a failed login).
        if startup && r.is_ok() && self.slot.lock().is_none() {
            let user = client.metadata().get(pgwire::api::METADATA_USER).cloned().unwrap_or_default();
            if let Err(e) = self.server.take_role_slot(&user) {
                return Err(PgWireError::UserError(Box::new(ErrorInfo::new("FATAL".into(), e.code.into(), e.message))));
            }
            *self.slot.lock() = Some(user);
        }
        // Once authentication handed out the backend key, cancel requests may name it.
        if r.is_ok() && self.cancel_key.lock().is_none() {
            let (pid, secret) = client.pid_and_secret_key();
            let key = (pid, secret.to_bytes());
            if key != (0, pgwire::messages::startup::SecretKey::default().to_bytes()) {
                self.server.cancel.register(key.clone(), self.cancel.clone());
                *self.cancel_key.lock() = Some(key);
            }
        }
        match r {
            // PostgreSQL's wording, with the user's name (the SCRAM exchange does not know it).
            Err(PgWireError::InvalidPassword(_)) => {
                let user = client.metadata().get(pgwire::api::METADATA_USER).cloned().unwrap_or_default();
                let message = format!("password authentication failed for user \"{user}\"");
                Err(PgWireError::UserError(Box::new(ErrorInfo::new(
                    "FATAL".into(),
                    codes::INVALID_PASSWORD.into(),
                    message,
                ))))
            }
            other => other,
        }
    }
}

/// The password of a cleartext password message (a NUL-terminated string).
fn cleartext_password(p: &pgwire::messages::startup::PasswordMessageFamily) -> Option<String> {
    use pgwire::messages::startup::PasswordMessageFamily as P;
    match p {
        P::Password(pw) => Some(pw.password.clone()),
        P::Raw(body) => {
            let end = body.iter().position(|b| *b == 0).unwrap_or(body.len());
            String::from_utf8(body[..end].to_vec()).ok()
        }
        _ => None,
    }
}

impl PgServer {
    pub fn new(
        engine: Arc<Engine>,
        metrics: Arc<Metrics>,
        auth: Arc<CatalogAuth>,
        max_connections: usize,
        tls: Option<TlsSettings>,
    ) -> Arc<PgServer> {
        Arc::new(PgServer {
            engine,
            metrics,
            auth: Arc::new(PgAuth(auth)),
            max_connections,
            tls,
            active: AtomicUsize::new(0),
            per_role: parking_lot::Mutex::new(Default::default()),
            cancel: Arc::default(),
        })
    }

    /// Accepts connections until `shutdown` resolves.
    pub async fn serve(self: Arc<Self>, listener: TcpListener, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                _ = shutdown.changed() => break,
            };
            let (socket, peer) = match accepted {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    continue;
                }
            };
            let _ = socket.set_nodelay(true);
            let server = self.clone();
            if server.active.fetch_add(1, Ordering::SeqCst) >= server.max_connections {
                server.active.fetch_sub(1, Ordering::SeqCst);
                tokio::spawn(reject_too_many(socket));
                continue;
            }
            server.metrics.connections.fetch_add(1, Ordering::Relaxed);
            let mut stop = shutdown.clone();
            tokio::spawn(async move {
                let session = server.engine.session("postgres");
                let cancel = session.cancel_signal();
                let session = Arc::new(Mutex::new(session));
                let slot = Arc::new(parking_lot::Mutex::new(None));
                let cancel_key = Arc::new(parking_lot::Mutex::new(None));
                let handlers = Arc::new(ConnHandlers {
                    parser: Arc::new(BkgQueryParser { session: session.clone() }),
                    session: session.clone(),
                    server: server.clone(),
                    slot: slot.clone(),
                    cancel,
                    cancel_key: cancel_key.clone(),
                    prepared: Default::default(),
                });
                // At shutdown a connection is closed as soon as no statement is running on it;
                // an open transaction block is rolled back with the session.
                let idle_at_shutdown = async {
                    let _ = stop.changed().await;
                    while session.try_lock().is_err() {
                        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    }
                };
                // A second handle on the socket, to say why an idle connection is closed.
                let (socket, notice) = match socket.into_std().and_then(|s| {
                    let dup = s.try_clone()?;
                    Ok((tokio::net::TcpStream::from_std(s)?, tokio::net::TcpStream::from_std(dup)?))
                }) {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::warn!(%peer, error = %e, "cannot set up the connection");
                        server.active.fetch_sub(1, Ordering::SeqCst);
                        return;
                    }
                };
                let idle_timeout = async {
                    loop {
                        let wait = match session.try_lock() {
                            Ok(s) => match s.idle_deadline() {
                                Some((at, code, message)) if std::time::Instant::now() >= at => {
                                    return (code, message);
                                }
                                Some((at, ..)) => at.saturating_duration_since(std::time::Instant::now()),
                                None => std::time::Duration::from_secs(1),
                            },
                            // A statement is running.
                            Err(_) => std::time::Duration::from_secs(1),
                        };
                        tokio::time::sleep(wait.min(std::time::Duration::from_secs(1))).await;
                    }
                };
                tokio::select! {
                    r = frames::process_socket(socket, server.tls.as_ref().map(|t| t.acceptor.clone()), handlers) => {
                        if let Err(e) = r {
                            tracing::debug!(%peer, error = %e, "connection ended with an error");
                        }
                    }
                    _ = idle_at_shutdown => tracing::debug!(%peer, "connection closed for shutdown"),
                    (code, message) = idle_timeout => {
                        tracing::info!(%peer, code, "{message}");
                        send_fatal(notice, code, message).await;
                    }
                }
                if let Some(role) = slot.lock().take() {
                    server.release_role_slot(&role);
                }
                if let Some(key) = cancel_key.lock().take() {
                    server.cancel.unregister(&key);
                }
                server.active.fetch_sub(1, Ordering::SeqCst);
            });
        }
    }

    /// Takes a connection of `role` against its CONNECTION LIMIT (superusers are not limited).
    fn take_role_slot(&self, role: &str) -> Result<(), SqlError> {
        let cat = self.engine.catalog();
        let limit = cat.find_role(role).filter(|r| !r.superuser && r.connection_limit >= 0).map(|r| r.connection_limit);
        let mut counts = self.per_role.lock();
        let n = counts.entry(role.to_string()).or_insert(0);
        if let Some(limit) = limit
            && *n >= limit as usize
        {
            return Err(SqlError::new(
                codes::TOO_MANY_CONNECTIONS,
                format!("too many connections for role \"{role}\""),
            ));
        }
        *n += 1;
        Ok(())
    }

    fn release_role_slot(&self, role: &str) {
        let mut counts = self.per_role.lock();
        if let Some(n) = counts.get_mut(role) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                counts.remove(role);
            }
        }
    }

    pub fn active_connections(&self) -> usize {
        self.active.load(Ordering::SeqCst)
    }
}

/// An ErrorResponse of severity FATAL.
fn fatal_frame(code: &str, message: &str) -> BytesMut {
    let mut msg = BytesMut::new();
    for (k, v) in [(b'S', "FATAL"), (b'V', "FATAL"), (b'C', code), (b'M', message)] {
        msg.put_u8(k);
        msg.put_slice(v.as_bytes());
        msg.put_u8(0);
    }
    msg.put_u8(0);
    let mut out = BytesMut::new();
    out.put_u8(b'E');
    out.put_i32(msg.len() as i32 + 4);
    out.put_slice(&msg);
    out
}

/// Tells the client why its connection ends, then closes it.
async fn send_fatal(mut socket: tokio::net::TcpStream, code: &str, message: &str) {
    use tokio::io::AsyncWriteExt;
    let fut = async {
        socket.write_all(&fatal_frame(code, message)).await?;
        socket.shutdown().await
    };
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), fut).await;
}

/// Answers a connection beyond the limit with FATAL 53300, as PostgreSQL does.
async fn reject_too_many(mut socket: tokio::net::TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let read_packet = async |s: &mut tokio::net::TcpStream| -> std::io::Result<Vec<u8>> {
        let len = s.read_i32().await?;
        if !(8..=10_000).contains(&len) {
            return Err(std::io::Error::other("bad startup length"));
        }
        let mut body = vec![0u8; len as usize - 4];
        s.read_exact(&mut body).await?;
        Ok(body)
    };
    let fut = async {
        let mut body = read_packet(&mut socket).await?;
        if body.len() == 4 && u32::from_be_bytes(body[..4].try_into().expect("4")) == 80_877_103 {
            socket.write_all(b"N").await?;
            body = read_packet(&mut socket).await?;
        }
        let _ = body;
        socket.write_all(&fatal_frame(codes::TOO_MANY_CONNECTIONS, "sorry, too many clients already")).await?;
        socket.shutdown().await
    };
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), fut).await;
}

impl std::fmt::Debug for ConnHandlers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnHandlers").finish()
    }
}
