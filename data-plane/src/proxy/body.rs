//! The body of a response the proxy sends to a client.
//!
//! For: one type for both kinds of response body — the backend's, streamed through untouched, and
//! a short text the proxy or a middleware wrote itself — plus what must live exactly as long as
//! the response is being sent (an `in_flight_req` slot is given back only when the body is done,
//! as Traefik counts a request in flight until its handler returns), and the record phase's
//! [`Completion`], which counts the bytes sent and records the request when the body is done.
//! Not for: buffering or changing bodies; nothing here reads the bytes beyond counting them.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::{Frame, SizeHint};

use super::forward::BackendBody;
use super::middleware::InFlightSlot;
use super::record::Completion;
use crate::http1::wire::KeptHead;

/// A response body; see the module documentation.
#[derive(Debug)]
pub(crate) struct Body {
    inner: Inner,
    /// Released (dropped) with the body.
    holds: Vec<InFlightSlot>,
    /// Counts the bytes sent; dropped (which records the request) at the body's end or drop.
    /// Boxed: one small allocation per request keeps every `Response<Body>` small.
    done: Option<Box<Completion>>,
}

#[derive(Debug)]
enum Inner {
    Backend(BackendBody),
    Text(Full<Bytes>),
}

impl Body {
    /// The backend's body, streamed through.
    pub(crate) fn backend(body: BackendBody) -> Self {
        Self {
            inner: Inner::Backend(body),
            holds: Vec::new(),
            done: None,
        }
    }

    /// A body the proxy writes itself.
    pub(crate) fn text(text: impl Into<Bytes>) -> Self {
        Self {
            inner: Inner::Text(Full::new(text.into())),
            holds: Vec::new(),
            done: None,
        }
    }

    /// The backend's head as it came, if its fields were kept out of the response (see
    /// `backend_h1::response`): then the writer sends them from it.
    pub(crate) fn take_kept(&mut self) -> Option<Box<KeptHead>> {
        match &mut self.inner {
            Inner::Backend(body) => body.take_kept(),
            Inner::Text(_) => None,
        }
    }

    /// The backend's head as it came, to change before it is written (see
    /// `middleware::run_response`).
    pub(crate) fn kept_mut(&mut self) -> Option<&mut KeptHead> {
        match &mut self.inner {
            Inner::Backend(body) => body.kept_mut(),
            Inner::Text(_) => None,
        }
    }

    /// Records the request with `done` once this body has been sent or dropped.
    pub(crate) fn on_done(&mut self, done: Completion) {
        self.done = Some(Box::new(done));
    }

    /// Keeps `holds` until this body is dropped (sent or abandoned).
    pub(crate) fn hold(&mut self, holds: Vec<InFlightSlot>) {
        if self.holds.is_empty() {
            self.holds = holds;
        } else {
            self.holds.extend(holds);
        }
    }
}

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        let polled = match &mut this.inner {
            Inner::Backend(body) => Pin::new(body).poll_frame(cx),
            Inner::Text(body) => Pin::new(body)
                .poll_frame(cx)
                .map(|frame| frame.map(|result| result.map_err(|never| match never {}))),
        };
        if this.done.is_some() {
            match &polled {
                Poll::Ready(Some(Ok(frame))) => {
                    if let (Some(done), Some(data)) = (this.done.as_mut(), frame.data_ref()) {
                        done.sent(data.len());
                    }
                    // hyper stops polling once the body says it ended.
                    if this.is_end_stream() {
                        this.done = None;
                    }
                }
                Poll::Ready(_) => this.done = None,
                Poll::Pending => {}
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Inner::Backend(body) => body.is_end_stream(),
            Inner::Text(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Backend(body) => body.size_hint(),
            Inner::Text(body) => body.size_hint(),
        }
    }
}
