//! Berth's own HTTP/1.1 server loop for plain-text client connections: it reads each request
//! head, serves the common request itself, and hands the connection to hyper's server at the
//! first request it does not take.
//!
//! For: the request path's share of the CPU that is hyper's server machinery (bench/RESULTS.md:
//! its connection state machine, body channels and per-request task hand-offs cost more than
//! Berth's own work per request). Here the connection's task reads into one buffer, parses the
//! head in place (`request`), calls the proxy, and writes the response (`response`), gathering the
//! head and a ready body into one write.
//!
//! The loop takes a request when it is HTTP/1.1, its head is complete within
//! `--max-header-bytes` and the header field limit, its method is not `CONNECT`, and it has no body
//! (no `Transfer-Encoding`, no `Content-Length` but a single `0`), no `Upgrade` and no `Expect`.
//! At anything else — HTTP/1.0, HTTP/2's preface, a body, a malformed or oversized head — it
//! returns the connection with the bytes it has read ([`Ended::Handover`]), and hyper serves the
//! rest of the connection from those bytes on, answering exactly as it always did (its 400 and
//! 431 answers included). Requests the loop takes get what hyper would have given them: the
//! same request head (with its fields kept as they came beside the map when nothing on the way
//! reads them: see `request`), the same response bytes (see `response`), keep-alive and pipelining,
//! `Connection: close` from either side, the connection's header-read and idle timeouts (its
//! `Activity`) and graceful shutdown (the request in progress finishes, with
//! `Connection: close`).
//! Not for: TLS connections and HTTP/2 (hyper's, see `listener`).

mod request;
mod response;
pub(crate) mod wire;

#[cfg(test)]
pub(crate) use request::parse_for_test;
pub(crate) use response::KeptHeadSource;
pub(crate) use wire::RawFields;

use std::future::Future;
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use http::{Request, Response};
use http_body_util::{Either, Empty};
use hyper::body::Body;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;

use crate::limits::{Activity, ClientLimits, MIN_HEADER_BYTES};
use crate::proxy::RequestBody;

/// How much room a read asks for.
const READ_SIZE: usize = 8 * 1024;

/// How the loop left a connection.
#[derive(Debug)]
pub(crate) enum Ended<IO> {
    /// Closed (by either side, a timeout or shutdown).
    Closed,
    /// A request the loop does not take: hyper serves the connection from `read` on.
    Handover { io: IO, read: BytesMut },
}

/// Serves requests from `io` with `handle` until the connection ends or a request is not the
/// loop's (see the module documentation). `handle` gets each request with its fields kept as they
/// came, when they were (see `request`: the request's map then holds `Host` alone). `activity` is
/// the connection's (its reads must be watched: see `limits::Watched`); `shutdown` turns true when
/// the proxy stops.
pub(crate) async fn serve<IO, H, F, B>(
    mut io: IO,
    limits: &ClientLimits,
    activity: &Arc<Activity>,
    shutdown: &watch::Receiver<bool>,
    mut handle: H,
) -> Ended<IO>
where
    IO: AsyncRead + AsyncWrite + Unpin,
    H: FnMut(Request<RequestBody>, Option<RawFields>) -> F,
    F: Future<Output = Response<B>>,
    B: Body<Data = Bytes> + Unpin + KeptHeadSource,
    B::Error: std::fmt::Display,
{
    let max_bytes = limits.max_header_bytes.max(MIN_HEADER_BYTES);
    let mut read = BytesMut::with_capacity(READ_SIZE);
    let mut out = Vec::with_capacity(1024);
    let expired = activity.expired();
    tokio::pin!(expired);
    // Waits for shutdown across all of the connection's reads: a wait made anew at each read
    // would join (and leave) the channel's waiter list once per request.
    let mut stop = shutdown.clone();
    let stopping = stop.wait_for(|stop| *stop);
    tokio::pin!(stopping);
    loop {
        let head = loop {
            if !read.is_empty() {
                match request::parse(&mut read, max_bytes, limits.max_headers) {
                    request::Parsed::Taken(head) => break head,
                    request::Parsed::Partial if read.len() < max_bytes => {}
                    _ => return Ended::Handover { io, read },
                }
            }
            // Never more than `max_bytes` in the buffer, as hyper reads: a head that does not fit
            // is handed over at that size, and hyper refuses it as it would have.
            let room = max_bytes - read.len();
            read.reserve(room.min(READ_SIZE));
            let mut limited = (&mut read).limit(room);
            tokio::select! {
                biased;
                n = io.read_buf(&mut limited) => match n {
                    Ok(0) | Err(_) => return Ended::Closed,
                    Ok(_) => {}
                },
                _ = &mut stopping => return Ended::Closed,
                why = &mut expired => {
                    tracing::debug!(reason = ?why, "closing client connection");
                    return Ended::Closed;
                }
            }
        };
        let method = head.parts.method.clone();
        let guard = activity.begin();
        let response = handle(
            Request::from_parts(head.parts, Either::Right(Empty::new())),
            head.raw,
        )
        .await;
        let keep_alive = !head.close && !*shutdown.borrow();
        let written = response::write(&mut io, &mut out, response, &method, keep_alive, head.trailers).await;
        drop(guard);
        match written {
            Ok(true) => {}
            Ok(false) => {
                let _ = io.shutdown().await;
                return Ended::Closed;
            }
            Err(error) => {
                tracing::debug!(%error, "writing to the client failed");
                return Ended::Closed;
            }
        }
    }
}

/// A stream whose first bytes were already read: they are read again first.
#[derive(Debug)]
pub(crate) struct Rewind<IO> {
    read: BytesMut,
    io: IO,
}

impl<IO> Rewind<IO> {
    pub(crate) fn new(read: BytesMut, io: IO) -> Self {
        Self { read, io }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Rewind<IO> {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if !this.read.is_empty() {
            let n = this.read.len().min(buf.remaining());
            buf.put_slice(&this.read.split_to(n));
            return std::task::Poll::Ready(Ok(()));
        }
        std::pin::Pin::new(&mut this.io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Rewind<IO> {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

#[cfg(test)]
mod tests;
