//! A request body on its way to the backend, telling when it has been sent whole.
//!
//! For: starting the first-byte (response header) timeout only once the request body has been
//! written, as Go's `ResponseHeaderTimeout` does, so a large upload that streams for longer than
//! `--request-timeout` is not cut off with a 504 while the backend is still reading it. The
//! frames pass through untouched; a request without a body is not wrapped in a channel at all.
//! Not for: bounding how long an upload may take (the client and the backend set that pace).
//!
//! The wrapper, [`Passthrough`], is generic over what rides along with the body (an [`Rider`]):
//! the listener's `Tracked` response body is the same wrapper holding an in-progress guard.

use std::pin::Pin;
use std::task::{Context, Poll};

use http::Request;
use hyper::body::{Body, Frame, SizeHint};
use tokio::sync::oneshot;

/// A body whose frames pass through untouched, with `rider` kept as long as the body and told
/// when its last frame was taken.
#[derive(Debug)]
pub(crate) struct Passthrough<B, R> {
    inner: B,
    rider: R,
}

/// What rides along with a [`Passthrough`] body.
pub(crate) trait Rider {
    /// Whether [`Rider::ended`] wants calling (else the body's end is not even looked for).
    const WATCHES_END: bool;

    /// The body's last frame was taken (or it ended without one); may be called more than once.
    fn ended(&mut self);
}

impl<B, R> Passthrough<B, R> {
    pub(crate) fn new(inner: B, rider: R) -> Self {
        Self { inner, rider }
    }
}

/// The body as the backend client sends it; see the module documentation. Its rider is fired (or
/// dropped, with the body) once the last frame was taken.
pub(crate) type Outgoing<B> = Passthrough<B, Option<oneshot::Sender<()>>>;

/// Resolves once the request body has been sent whole (or dropped).
pub(crate) type BodySent = oneshot::Receiver<()>;

/// Wraps `req`'s body; `None` for a body that is already complete (nothing to wait for).
pub(crate) fn track<B: Body>(req: Request<B>) -> (Request<Outgoing<B>>, Option<BodySent>) {
    let (sent, body_sent) = if req.body().is_end_stream() {
        (None, None)
    } else {
        let (tx, rx) = oneshot::channel();
        (Some(tx), Some(rx))
    };
    (req.map(|inner| Passthrough::new(inner, sent)), body_sent)
}

impl Rider for Option<oneshot::Sender<()>> {
    const WATCHES_END: bool = true;

    fn ended(&mut self) {
        if let Some(sent) = self.take() {
            let _ = sent.send(());
        }
    }
}

impl<B: Body + Unpin, R: Rider + Unpin> Body for Passthrough<B, R> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if R::WATCHES_END {
            match &polled {
                Poll::Ready(None) => this.rider.ended(),
                Poll::Ready(Some(Ok(_))) if this.inner.is_end_stream() => this.rider.ended(),
                _ => {}
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http_body_util::{BodyExt, Empty, StreamBody};

    #[tokio::test]
    async fn tells_when_the_body_was_sent() {
        let (req, sent) = track(Request::new(Empty::<Bytes>::new()));
        assert!(sent.is_none(), "an empty body has nothing to wait for");
        drop(req);

        let frames: Vec<Result<Frame<Bytes>, std::convert::Infallible>> = vec![
            Ok(Frame::data(Bytes::from_static(b"a"))),
            Ok(Frame::data(Bytes::from_static(b"b"))),
        ];
        let (req, sent) = track(Request::new(StreamBody::new(futures_iter(frames))));
        let mut sent = sent.expect("a body to wait for");
        let mut body = req.into_body();
        let first = body.frame().await.expect("a frame").expect("data");
        assert_eq!(first.into_data().ok(), Some(Bytes::from_static(b"a")));
        assert!(sent.try_recv().is_err(), "not sent yet");
        let _ = body.frame().await;
        assert!(body.frame().await.is_none());
        assert_eq!(sent.try_recv(), Ok(()));
    }

    fn futures_iter<T>(items: Vec<T>) -> tokio_stream::Iter<std::vec::IntoIter<T>> {
        tokio_stream::iter(items)
    }
}
