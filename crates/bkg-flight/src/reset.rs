//! Telling a request stream that ended from one the client abandoned.
//!
//! tonic reports a client that cancels a streaming request (HTTP/2 `RST_STREAM` with `CANCEL`,
//! which is what a client sends when it drops the call) as the clean end of the stream. A DoPut
//! whose client went away half-way would then look complete, and its first batches would be
//! committed. [`WatchResets`] wraps the service and watches every request body below tonic: a
//! body that ends in an error marks the request's [`BodyReset`], which the handlers check before
//! they act on what they read.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tonic::codegen::{Service, http};
use tonic::server::NamedService;

/// Set when the request's body ended in an error (a reset) instead of its end of stream.
#[derive(Clone, Debug, Default)]
pub struct BodyReset(Arc<AtomicBool>);

impl BodyReset {
    pub fn is_set(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

struct WatchedBody {
    inner: tonic::body::Body,
    reset: BodyReset,
}

impl Body for WatchedBody {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, tonic::Status>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Err(_))) = &polled {
            self.reset.0.store(true, Ordering::Release);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The service with every request body watched; the request carries its [`BodyReset`] as an
/// extension.
#[derive(Clone)]
pub struct WatchResets<S>(pub S);

impl<S> Service<http::Request<tonic::body::Body>> for WatchResets<S>
where
    S: Service<http::Request<tonic::body::Body>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        let reset = BodyReset::default();
        let (mut parts, body) = req.into_parts();
        parts.extensions.insert(reset.clone());
        let body = tonic::body::Body::new(WatchedBody { inner: body, reset });
        self.0.call(http::Request::from_parts(parts, body))
    }
}

impl<S: NamedService> NamedService for WatchResets<S> {
    const NAME: &'static str = S::NAME;
}
