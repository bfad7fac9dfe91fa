//! The connection's read side: every message is framed and checked here before the protocol
//! library decodes it.
//!
//! The library's decoders trust the bytes they are given: a Bind whose counts run past its end
//! panics the connection's task, and a message shorter than its fields reads into the next
//! message. So the bytes of a connection pass through [`Framing`], which releases only whole
//! messages whose layout (lengths, counts, string terminators) is exactly that of a valid
//! message of their type, as PostgreSQL checks it (`invalid message format`), and refuses any
//! message longer than [`MESSAGE_BYTES_MAX`] before it is buffered. A bad message ends the
//! connection with `FATAL 08P01`, as PostgreSQL ends it on a framing error.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::limits::{MESSAGE_BYTES_MAX, STARTUP_BYTES_MAX};
use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Bytes read from the socket at a time.
const READ_CHUNK: usize = 16 << 10;

/// Why a message was refused; carried inside the `io::Error` the read side returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameError(pub String);

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for FrameError {}

/// The refusal inside an error from the read side, if it was one.
pub fn frame_error(e: &io::Error) -> Option<&FrameError> {
    e.get_ref().and_then(|inner| inner.downcast_ref::<FrameError>())
}

fn bad(what: impl Into<String>) -> FrameError {
    FrameError(what.into())
}

/// A cursor over one message's body that fails instead of reading past its end.
struct Body<'a>(&'a [u8]);

impl<'a> Body<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], FrameError> {
        if n > self.0.len() {
            return Err(bad("insufficient data left in message"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn i16(&mut self) -> Result<i16, FrameError> {
        Ok(i16::from_be_bytes(self.take(2)?.try_into().expect("two bytes")))
    }

    fn i32(&mut self) -> Result<i32, FrameError> {
        Ok(i32::from_be_bytes(self.take(4)?.try_into().expect("four bytes")))
    }

    fn count(&mut self) -> Result<usize, FrameError> {
        usize::try_from(self.i16()?).map_err(|_| bad("negative count in message"))
    }

    /// A NUL-terminated string.
    fn cstr(&mut self) -> Result<&'a [u8], FrameError> {
        let end = self.0.iter().position(|b| *b == 0).ok_or_else(|| bad("invalid string in message"))?;
        let s = &self.0[..end];
        self.0 = &self.0[end + 1..];
        Ok(s)
    }

    fn end(&self) -> Result<(), FrameError> {
        if self.0.is_empty() { Ok(()) } else { Err(bad("invalid message format")) }
    }
}

/// Checks the first message of a connection (after TLS negotiation): a startup message or a
/// cancel request. `frame` is the whole message, length field included.
pub fn check_startup(frame: &[u8]) -> Result<(), FrameError> {
    let mut b = Body(frame.get(4..).ok_or_else(|| bad("invalid length of startup packet"))?);
    let code = b.i32().map_err(|_| bad("invalid length of startup packet"))?;
    match code {
        // CancelRequest: process id and a key of 4 (protocol 3.0) to 256 bytes (3.2).
        80_877_102 => {
            b.i32()?;
            if !(4..=256).contains(&b.0.len()) {
                return Err(bad("invalid length of cancel request packet"));
            }
            Ok(())
        }
        // A second SSL or GSS request: the library answers it.
        80_877_103 | 80_877_104 => b.end(),
        _ => {
            // Name and value pairs, then a NUL.
            loop {
                if b.cstr()?.is_empty() {
                    return b.end().map_err(|_| bad("invalid startup packet layout: expected terminator as last byte"));
                }
                b.cstr().map_err(|_| bad("invalid startup packet layout: expected terminator as last byte"))?;
            }
        }
    }
}

/// Checks one message after the startup: its type byte, then its body's layout. `frame` is the
/// whole message (type byte and length included).
pub fn check_message(frame: &[u8]) -> Result<(), FrameError> {
    let Some((&kind, rest)) = frame.split_first() else {
        return Err(bad("invalid message format"));
    };
    let mut b = Body(rest.get(4..).ok_or_else(|| bad("invalid message format"))?);
    match kind {
        // Query, CopyFail.
        b'Q' | b'f' => {
            b.cstr()?;
            b.end()
        }
        // Parse: name, query, parameter type OIDs.
        b'P' => {
            b.cstr()?;
            b.cstr()?;
            let n = b.count()?;
            b.take(n * 4)?;
            b.end()
        }
        // Bind: portal, statement, parameter formats, parameters, result formats.
        b'B' => {
            b.cstr()?;
            b.cstr()?;
            let formats = b.count()?;
            b.take(formats * 2)?;
            for _ in 0..b.count()? {
                match b.i32()? {
                    -1 => {}
                    len if len >= 0 => {
                        b.take(len as usize)?;
                    }
                    _ => return Err(bad("invalid parameter length in Bind message")),
                }
            }
            let results = b.count()?;
            b.take(results * 2)?;
            b.end()
        }
        // Execute: portal, row limit.
        b'E' => {
            b.cstr()?;
            b.i32()?;
            b.end()
        }
        // Describe, Close: 'S'tatement or 'P'ortal, then its name.
        b'D' | b'C' => {
            match b.take(1)?[0] {
                b'S' | b'P' => {}
                other => return Err(bad(format!("invalid message subtype {other}"))),
            }
            b.cstr()?;
            b.end()
        }
        // Sync, Flush, Terminate, CopyDone: no body.
        b'S' | b'H' | b'X' | b'c' => b.end(),
        // CopyData, and the password family (its form depends on the authentication in
        // progress; the startup handler checks the SASL forms): any bytes.
        b'd' | b'p' => Ok(()),
        other => Err(bad(format!("invalid frontend message type {other}"))),
    }
}

/// Checks a SASLInitialResponse body (mechanism, then a length-prefixed response or -1).
pub fn check_sasl_initial(body: &[u8]) -> Result<(), FrameError> {
    let mut b = Body(body);
    b.cstr()?;
    match b.i32()? {
        -1 => {}
        len if len >= 0 => {
            b.take(len as usize)?;
        }
        _ => return Err(bad("invalid SASL response length")),
    }
    b.end().map_err(|_| bad("malformed SASLInitialResponse message"))
}

/// The byte stream of one connection, released to the protocol decoder one checked message at
/// a time. Writes pass through.
pub struct Framing<T> {
    inner: T,
    /// Bytes read and not yet framed (at most one incomplete message).
    staged: BytesMut,
    /// Checked whole messages, not yet handed to the decoder.
    pub(crate) ready: BytesMut,
    /// The next message is the connection's first (untyped) one.
    pub(crate) startup: bool,
    failed: Option<FrameError>,
}

impl<T> Framing<T> {
    /// `pending`: bytes the TLS negotiation already read past its own messages.
    pub fn new(inner: T, pending: BytesMut) -> Framing<T> {
        Framing { inner, staged: pending, ready: BytesMut::new(), startup: true, failed: None }
    }

    pub fn get_ref(&self) -> &T {
        &self.inner
    }

    /// Moves every whole message at the front of `staged` to `ready`, checking each.
    pub(crate) fn frame(&mut self) -> Result<(), FrameError> {
        loop {
            let offset = usize::from(!self.startup);
            let Some(len_bytes) = self.staged.get(offset..offset + 4) else { return Ok(()) };
            let len = i32::from_be_bytes(len_bytes.try_into().expect("four bytes"));
            let max = if self.startup { STARTUP_BYTES_MAX } else { MESSAGE_BYTES_MAX };
            let len = usize::try_from(len).ok().filter(|l| *l >= 4).ok_or_else(|| bad("invalid message length"))?;
            if len > max {
                return Err(bad(format!("message of {len} bytes exceeds the limit of {max} bytes")));
            }
            let whole = offset + len;
            if self.staged.len() < whole {
                // Room for the rest of this message, as it arrives.
                self.staged.reserve((whole - self.staged.len()).min(READ_CHUNK));
                return Ok(());
            }
            let frame = &self.staged[..whole];
            if self.startup {
                check_startup(frame)?;
                // A repeated SSL or GSS request is followed by another untyped message.
                self.startup = matches!(frame.get(4..8), Some([0x04, 0xd2, 0x16, 0x2f] | [0x04, 0xd2, 0x16, 0x30]));
            } else {
                check_message(frame)?;
            }
            let frame = self.staged.split_to(whole);
            self.ready.unsplit(frame);
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Framing<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            if !this.ready.is_empty() {
                let n = this.ready.len().min(buf.remaining());
                buf.put_slice(&this.ready[..n]);
                this.ready.advance(n);
                return Poll::Ready(Ok(()));
            }
            if let Some(e) = &this.failed {
                return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, e.clone())));
            }
            if let Err(e) = this.frame() {
                this.failed = Some(e);
                continue;
            }
            if !this.ready.is_empty() {
                continue;
            }
            // Read more.
            if this.staged.capacity() - this.staged.len() < 512 {
                this.staged.reserve(READ_CHUNK);
            }
            match tokio_util::io::poll_read_buf(Pin::new(&mut this.inner), cx, &mut this.staged) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                // End of stream: whatever is staged is an incomplete message, which the decoder
                // is never shown.
                Poll::Ready(Ok(0)) => return Poll::Ready(Ok(())),
                Poll::Ready(Ok(_)) => {}
            }
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Framing<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Serves one client connection as `pgwire::tokio::process_socket` does, with the connection's
/// bytes read through [`Framing`]: TLS negotiation, a startup timeout, then every message to
/// its handler until the client leaves or a FATAL error ends the session.
pub async fn process_socket<H>(
    socket: tokio::net::TcpStream,
    tls: Option<pgwire::tokio::TlsAcceptor>,
    handlers: H,
) -> io::Result<()>
where
    H: pgwire::api::PgWireServerHandlers,
{
    use futures::{SinkExt, StreamExt};
    use pgwire::api::{ClientInfo, ErrorHandler, PgWireConnectionState};
    use pgwire::error::{ErrorInfo, PgWireError};
    use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
    use pgwire::tokio::server::{negotiate_tls, process_error, process_message};
    use tokio_util::codec::{Framed, FramedParts};

    let startup_timeout = tokio::time::sleep(std::time::Duration::from_secs(60));
    tokio::pin!(startup_timeout);
    let negotiated = tokio::select! {
        _ = &mut startup_timeout => return Ok(()),
        s = negotiate_tls(socket, tls) => s?,
    };
    // A direct TLS handshake without TLS configured.
    let Some(negotiated) = negotiated else { return Ok(()) };
    let old = negotiated.into_parts();
    let mut parts = FramedParts::new(Framing::new(old.io, old.read_buf), old.codec);
    parts.write_buf = old.write_buf;
    let mut socket = Framed::from_parts(parts);

    let startup_handler = handlers.startup_handler();
    let simple = handlers.simple_query_handler();
    let extended = handlers.extended_query_handler();
    let copy = handlers.copy_handler();
    let cancel = handlers.cancel_handler();
    let on_error = handlers.error_handler();
    loop {
        let authenticating = matches!(
            socket.state(),
            PgWireConnectionState::AwaitingStartup | PgWireConnectionState::AuthenticationInProgress
        );
        let next = if authenticating {
            tokio::select! {
                _ = &mut startup_timeout => None,
                m = socket.next() => m,
            }
        } else {
            socket.next().await
        };
        let msg = match next {
            Some(Ok(m)) => m,
            Some(Err(PgWireError::IoError(e))) if frame_error(&e).is_some() => {
                let refusal = frame_error(&e).map(ToString::to_string).unwrap_or_default();
                tracing::debug!(peer = %socket.socket_addr(), "refused a malformed message: {refusal}");
                let info = ErrorInfo::new("FATAL".into(), bkg_sql::SqlState::ProtocolViolation.to_string(), refusal);
                let _ = socket.send(PgWireBackendMessage::ErrorResponse(info.into())).await;
                break;
            }
            Some(Err(_)) | None => break,
        };
        if matches!(msg, PgWireFrontendMessage::Terminate(_)) {
            break;
        }
        let in_extended = match socket.state() {
            PgWireConnectionState::CopyInProgress(extended) => extended,
            _ => msg.is_extended_query(),
        };
        let is_cancel = matches!(msg, PgWireFrontendMessage::CancelRequest(_));
        let handled = process_message(
            msg,
            &mut socket,
            startup_handler.clone(),
            simple.clone(),
            extended.clone(),
            copy.clone(),
            cancel.clone(),
        )
        .await;
        if let Err(mut e) = handled {
            on_error.on_error(&socket, &mut e);
            let fatal = e.is_fatal();
            process_error(&mut socket, e, in_extended).await?;
            if fatal {
                break;
            }
        }
        if is_cancel {
            break;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn msg(kind: u8, body: &[u8]) -> Vec<u8> {
        let mut m = vec![kind];
        m.extend(((body.len() + 4) as i32).to_be_bytes());
        m.extend_from_slice(body);
        m
    }

    #[test]
    fn message_layouts_are_checked_exactly() {
        let mut bind = b"\0s1\0".to_vec();
        bind.extend([0, 1, 0, 1, 0, 1, 0, 0, 0, 4, 0, 0, 0, 7, 0, 0]);
        assert_eq!(check_message(&msg(b'B', &bind)), Ok(()));
        // One parameter byte short, one too many, a count running past the end, a bad length.
        let short = &bind[..bind.len() - 3];
        assert!(check_message(&msg(b'B', short)).is_err());
        let mut long = bind.clone();
        long.push(0);
        assert!(check_message(&msg(b'B', &long)).is_err());
        assert!(check_message(&msg(b'B', b"\0s1\0\x7f\xff")).is_err());
        assert!(check_message(&msg(b'B', b"\0\0\0\0\0\x01\xff\xff\xff\xfe\0\0")).is_err());
        assert_eq!(check_message(&msg(b'Q', b"SELECT 1\0")), Ok(()));
        assert!(check_message(&msg(b'Q', b"SELECT 1")).is_err());
        assert!(check_message(&msg(b'Q', b"SELECT 1\0\0")).is_err());
        assert_eq!(check_message(&msg(b'P', b"\0SELECT $1\0\0\x01\0\0\0\x17")), Ok(()));
        assert!(check_message(&msg(b'P', b"\0SELECT $1\0\0\x02\0\0\0\x17")).is_err());
        assert!(check_message(&msg(b'D', b"X\0")).is_err());
        assert!(check_message(&msg(b'S', b"x")).is_err());
        assert!(check_message(&msg(b'F', b"")).is_err());
        assert_eq!(check_message(&msg(b'd', b"anything\0at all")), Ok(()));
        assert_eq!(check_sasl_initial(b"SCRAM-SHA-256\0\0\0\0\x03abc"), Ok(()));
        assert_eq!(check_sasl_initial(b"SCRAM-SHA-256\0\xff\xff\xff\xff"), Ok(()));
        assert!(check_sasl_initial(b"SCRAM-SHA-256\0\0\0\x03\xe8abc").is_err());
        assert!(check_sasl_initial(b"SCRAM-SHA-256").is_err());
    }

    #[tokio::test]
    async fn the_stream_releases_checked_messages_and_refuses_the_rest() {
        let (mut client, server) = tokio::io::duplex(1 << 16);
        let mut framing = Framing::new(server, BytesMut::new());
        let mut startup = 196_608i32.to_be_bytes().to_vec();
        startup.extend(b"user\0u\0\0");
        let mut first = ((startup.len() + 4) as i32).to_be_bytes().to_vec();
        first.extend(startup);
        let query = msg(b'Q', b"SELECT 1\0");
        // Sent in pieces: nothing of a message is released before all of it is there.
        let mut all = first.clone();
        all.extend(&query);
        client.write_all(&all[..5]).await.unwrap();
        let mut got = vec![0u8; all.len()];
        let pending = tokio::time::timeout(std::time::Duration::from_millis(50), framing.read(&mut got)).await;
        assert!(pending.is_err(), "part of a message was released");
        client.write_all(&all[5..]).await.unwrap();
        framing.read_exact(&mut got).await.unwrap();
        assert_eq!(got, all);
        // A message longer than the limit is refused from its header alone.
        let mut huge = vec![b'Q'];
        huge.extend(((MESSAGE_BYTES_MAX + 1) as i32).to_be_bytes());
        client.write_all(&huge).await.unwrap();
        let e = framing.read(&mut got).await.unwrap_err();
        assert!(frame_error(&e).is_some_and(|f| f.0.contains("exceeds the limit")), "{e}");
    }
}
