//! Closing a TCP connection without losing what was sent last.
//!
//! A socket closed while bytes the peer sent are still unread makes the kernel answer with a
//! reset, and a reset makes the peer drop what it had received but not yet read, and fail its
//! pending writes: the FATAL or 413 the server sent just before is lost, and the client reports
//! a broken connection instead. So a connection the server is done with first sends its end
//! (FIN), then reads and discards what the peer still sends until the peer closes too, for at
//! most [`LINGER_TIME`] and [`LINGER_BYTES_MAX`] bytes, and only then closes. A peer that closed
//! first costs one read that returns at once. Used by the PostgreSQL and the HTTP listeners.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long a closing connection is drained at most.
pub const LINGER_TIME: Duration = Duration::from_secs(2);
/// How many bytes a closing connection may still send before it is closed anyway.
pub const LINGER_BYTES_MAX: usize = 64 << 20;

/// Ends `tcp` as the module documentation says.
pub async fn linger(mut tcp: TcpStream) {
    let _ = tcp.shutdown().await;
    let mut buf = vec![0u8; 64 << 10];
    let mut left = LINGER_BYTES_MAX;
    let drain = async {
        while left > 0 {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    };
    let _ = tokio::time::timeout(LINGER_TIME, drain).await;
}
