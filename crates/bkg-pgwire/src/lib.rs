//! The PostgreSQL wire front door (pgwire 0.42).
//!
//! One [`ConnHandlers`] per connection owns that connection's [`Session`]. Simple queries run
//! statement by statement; the extended protocol parses and describes at Parse time (parameter
//! types inferred by the planner, client-declared types win) and binds parameters as SQL literals
//! into the parsed statement at Execute time: each value is checked against its type and becomes
//! one literal node, so no parameter can change the statement's structure.

mod auth;
mod batch;
pub mod limits;
pub mod linger;
mod query;
use auth::*;
use bkg_sql::pg_format as encode;
use query::*;
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
                let mut session = server.engine.session("postgres");
                session.client_address = Some(peer.to_string());
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
                let (socket, mut notice) = match socket.into_std().and_then(|s| {
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
                        tracing::info!(%peer, code = code.code(), "{message}");
                        send_fatal(&mut notice, code.code(), message).await;
                    }
                }
                if let Some(role) = slot.lock().take() {
                    server.release_role_slot(&role);
                }
                if let Some(key) = cancel_key.lock().take() {
                    server.cancel.unregister(&key);
                }
                server.active.fetch_sub(1, Ordering::SeqCst);
                // The last handle on the socket: a FATAL sent before the client's input was read
                // (an oversize message) must not be lost to a reset.
                linger::linger(notice).await;
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
async fn send_fatal(socket: &mut tokio::net::TcpStream, code: &str, message: &str) {
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
        socket.write_all(&fatal_frame(codes::TOO_MANY_CONNECTIONS.code(), "sorry, too many clients already")).await?;
        socket.shutdown().await
    };
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), fut).await;
}
