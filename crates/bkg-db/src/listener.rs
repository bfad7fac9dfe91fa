//! The HTTP listener: Nagle's algorithm off, and a lingering close on every connection.
//!
//! Nagle: a response goes out as a head and a body write; with Nagle on, the body of the next
//! response on a kept-open connection waited for the client's delayed ACK (about 40 ms each).
//!
//! Lingering close ([`bkg_pgwire::linger`]): when the server refuses a request before reading all
//! of it (a body over a limit, 413; a WebSocket frame over the limit, close code 1009) and closes
//! the connection, closing with unread bytes would reset it and the client would lose the
//! refusal. Every connection is handed to the lingering close when the server is done with it.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// Accepts HTTP connections (see the module documentation), counting the open ones in `.1`.
pub struct HttpListener(pub TcpListener, pub Arc<AtomicU64>);

impl axum::serve::Listener for HttpListener {
    type Io = Lingering;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (tcp, addr) = axum::serve::Listener::accept(&mut self.0).await;
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
        self.1.fetch_add(1, Ordering::Relaxed);
        (Lingering(Some(tcp), self.1.clone()), addr)
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.0.local_addr()
    }
}

/// A connection that lingers when dropped (see the module documentation); `.1` counts the
/// listener's open connections.
pub struct Lingering(Option<TcpStream>, Arc<AtomicU64>);

impl Lingering {
    fn tcp(&mut self) -> &mut TcpStream {
        self.0.as_mut().expect("the stream is only taken when dropped")
    }

    /// The socket, for tests and options.
    pub fn get_ref(&self) -> &TcpStream {
        self.0.as_ref().expect("the stream is only taken when dropped")
    }
}

impl Drop for Lingering {
    fn drop(&mut self) {
        self.1.fetch_sub(1, Ordering::Relaxed);
        let (Some(tcp), Ok(rt)) = (self.0.take(), tokio::runtime::Handle::try_current()) else { return };
        rt.spawn(bkg_pgwire::linger::linger(tcp));
    }
}

impl AsyncRead for Lingering {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(self.tcp()).poll_read(cx, buf)
    }
}

impl AsyncWrite for Lingering {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(self.tcp()).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(self.tcp()).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(self.tcp()).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(self.tcp()).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.get_ref().is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use std::time::Duration;

    use axum::serve::Listener;
    use tokio::io::AsyncWriteExt;

    use super::*;

    #[tokio::test]
    async fn connections_have_nagle_off() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let mut l = HttpListener(l, Default::default());
        let _client = TcpStream::connect(addr).await.unwrap();
        let (server_side, _) = l.accept().await;
        assert!(server_side.get_ref().nodelay().unwrap(), "accepted HTTP connections must have TCP_NODELAY");
        assert_eq!(l.1.load(Ordering::Relaxed), 1, "counted open");
        drop(server_side);
        assert_eq!(l.1.load(Ordering::Relaxed), 0, "counted closed");
    }

    /// The server answers before reading what the client sends and drops the connection: the
    /// client can still send what it meant to, then reads the whole answer and the end.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_answer_before_the_body_reaches_the_client() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let mut l = HttpListener(l, Default::default());
        let answer = vec![b'a'; 100 << 10];
        let expected = answer.clone();
        let client = std::thread::spawn(move || {
            let mut c = std::net::TcpStream::connect(addr).unwrap();
            c.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
            c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            // Sends 8 MiB the server never reads as a request: clients such as undici and ws
            // give up on the connection when a write fails, before reading the answer.
            let chunk = vec![b'x'; 1 << 20];
            for _ in 0..8 {
                c.write_all(&chunk)?;
            }
            let mut got = Vec::new();
            c.read_to_end(&mut got).map(|_| got)
        });
        let (mut server_side, _) = l.accept().await;
        server_side.write_all(&answer).await.unwrap();
        drop(server_side);
        let got = tokio::task::spawn_blocking(move || client.join().unwrap()).await.unwrap();
        let got = got.expect("the client writes all, then reads the answer and the end, not a reset");
        assert_eq!(got.len(), expected.len());
        assert!(got == expected);
    }
}
