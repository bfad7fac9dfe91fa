//! Fewer writes per extended-protocol round trip.
//!
//! pgwire flushes the socket after BindComplete, RowDescription, CommandComplete and
//! ReadyForQuery, so a prepared statement's Bind/Describe/Execute/Sync cost four writes (and
//! four wake-ups of the client). PostgreSQL writes its replies when the client waits for them:
//! at Sync or Flush. [`Batched`] lends a connection to pgwire's handlers with flushes turned
//! into no-ops; the replies stay in the connection's buffer until Sync (or Flush) writes them.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::Sink;
use pgwire::api::{ClientInfo, ClientPortalStore, PgWireConnectionState, SessionExtensions};
use pgwire::messages::PgWireBackendMessage;
use pgwire::messages::ProtocolVersion;
use pgwire::messages::response::TransactionStatus;
use pgwire::messages::startup::SecretKey;
use pgwire::tokio::tokio_rustls::rustls::pki_types::CertificateDer;

/// A connection whose flushes are deferred to the next Sync or Flush message, except after a
/// message the client waits for before it sends anything else: a COPY response (the client
/// sends its data, or reads it, before any Sync), as PostgreSQL flushes it.
pub struct Batched<'a, C>(pub &'a mut C, pub bool);

impl<'a, C> Batched<'a, C> {
    pub fn new(client: &'a mut C) -> Batched<'a, C> {
        Batched(client, false)
    }
}

impl<C: ClientInfo> ClientInfo for Batched<'_, C> {
    fn socket_addr(&self) -> SocketAddr {
        self.0.socket_addr()
    }
    fn is_secure(&self) -> bool {
        self.0.is_secure()
    }
    fn protocol_version(&self) -> ProtocolVersion {
        self.0.protocol_version()
    }
    fn set_protocol_version(&mut self, version: ProtocolVersion) {
        self.0.set_protocol_version(version)
    }
    fn pid_and_secret_key(&self) -> (i32, SecretKey) {
        self.0.pid_and_secret_key()
    }
    fn set_pid_and_secret_key(&mut self, pid: i32, secret_key: SecretKey) {
        self.0.set_pid_and_secret_key(pid, secret_key)
    }
    fn state(&self) -> PgWireConnectionState {
        self.0.state()
    }
    fn set_state(&mut self, new_state: PgWireConnectionState) {
        self.0.set_state(new_state)
    }
    fn transaction_status(&self) -> TransactionStatus {
        self.0.transaction_status()
    }
    fn set_transaction_status(&mut self, new_status: TransactionStatus) {
        self.0.set_transaction_status(new_status)
    }
    fn metadata(&self) -> &HashMap<String, String> {
        self.0.metadata()
    }
    fn metadata_mut(&mut self) -> &mut HashMap<String, String> {
        self.0.metadata_mut()
    }
    fn session_extensions(&self) -> &SessionExtensions {
        self.0.session_extensions()
    }
    fn sni_server_name(&self) -> Option<&str> {
        self.0.sni_server_name()
    }
    fn client_certificates<'a>(&self) -> Option<&[CertificateDer<'a>]> {
        self.0.client_certificates()
    }
}

impl<C: ClientPortalStore> ClientPortalStore for Batched<'_, C> {
    type PortalStore = C::PortalStore;
    fn portal_store(&self) -> &Self::PortalStore {
        self.0.portal_store()
    }
}

impl<C: Sink<PgWireBackendMessage> + Unpin> Sink<PgWireBackendMessage> for Batched<'_, C> {
    type Error = C::Error;

    fn poll_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Pin::new(&mut *self.0).poll_ready(cx)
    }

    fn start_send(mut self: Pin<&mut Self>, item: PgWireBackendMessage) -> Result<(), Self::Error> {
        if matches!(
            item,
            PgWireBackendMessage::CopyInResponse(_)
                | PgWireBackendMessage::CopyOutResponse(_)
                | PgWireBackendMessage::CopyBothResponse(_)
        ) {
            self.1 = true;
        }
        Pin::new(&mut *self.0).start_send(item)
    }

    /// Deferred: the buffer is written at the next Sync or Flush (or when it fills up, which
    /// `poll_ready` of the framed connection handles), unless a COPY response waits in it.
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if !self.1 {
            return Poll::Ready(Ok(()));
        }
        let r = Pin::new(&mut *self.0).poll_flush(cx);
        if matches!(r, Poll::Ready(Ok(()))) {
            self.1 = false;
        }
        r
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Pin::new(&mut *self.0).poll_close(cx)
    }
}
