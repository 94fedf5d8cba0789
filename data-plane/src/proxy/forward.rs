//! Phase 5, forward: send the request to the backend and wait for its response headers.
//!
//! For: choosing the client — Berth's own (`backend_h1`) for the common request (no body, no
//! upgrade, a plain-HTTP endpoint at an IP address), else the pooled hyper-util legacy `Client`s:
//! HTTP/1.1 over plain TCP for `http` clusters, rustls for `https` ones with HTTP/2 or HTTP/1.1
//! chosen by ALPN (one pool), and an HTTP/2-only client for `h2c` clusters (cleartext, prior
//! knowledge: what gRPC backends speak), chosen by the request's version (`forwarded` asks for
//! HTTP/2 for `h2c` clusters only); the connect, response-header (first byte; counted once the
//! request body was sent whole, see `outgoing`) and idle timeouts, the proxy's or a cluster's own
//! (one set of hyper-util clients per distinct connect/idle pair, see [`ClientCache`]), and
//! telling the client *why* a backend failed (refused → 502, timed out → 504, TLS failure → 502
//! naming it).
//! Request and response bodies stream through; nothing is buffered.
//! Not for: deciding where to send (see `route`, `endpoint`) or header changes (see `forwarded`).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http::request::Parts;
use http::uri::Authority;
use http::{Request, Response, Version};
use http_body_util::{Either, Empty};
use hyper::body::{Body as _, Incoming};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;

use super::backend_h1::{self, ExtraFields};
use super::outgoing::{self, Outgoing};
use super::ProxyError;
use crate::http1::wire::KeptHead;
use crate::table::{Endpoint, Timeouts};

/// The body of a request, from the client and on to a backend: the client's, streamed, or an
/// empty one (a request Berth's own HTTP/1.1 server read, which has none, or the retry of a
/// request that had none; see `upstream`).
pub(crate) type RequestBody = http_body_util::Either<Incoming, http_body_util::Empty<bytes::Bytes>>;

/// A backend's response body: from hyper-util's client, or from Berth's own (see `backend_h1`).
#[derive(Debug)]
pub(crate) enum BackendBody {
    Hyper(Incoming),
    Own(super::backend_h1::ResponseBody),
}

impl BackendBody {
    /// The backend's head as it came, if its fields were kept out of the response (see
    /// `backend_h1::response`); the response then has no fields of its own.
    pub(crate) fn take_kept(&mut self) -> Option<Box<KeptHead>> {
        match self {
            Self::Own(body) => body.take_kept(),
            Self::Hyper(_) => None,
        }
    }

    /// The backend's head as it came, to change before it is written (see
    /// `middleware::run_response`).
    pub(crate) fn kept_mut(&mut self) -> Option<&mut KeptHead> {
        match self {
            Self::Own(body) => body.kept_mut(),
            Self::Hyper(_) => None,
        }
    }
}

impl hyper::body::Body for BackendBody {
    type Data = bytes::Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<bytes::Bytes>, Self::Error>>> {
        match self.get_mut() {
            Self::Hyper(body) => Pin::new(body).poll_frame(cx).map_err(Into::into),
            Self::Own(body) => Pin::new(body).poll_frame(cx).map_err(Into::into),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Hyper(body) => body.is_end_stream(),
            Self::Own(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        match self {
            Self::Hyper(body) => body.size_hint(),
            Self::Own(body) => body.size_hint(),
        }
    }
}

/// The clients for one connect and idle timeout: HTTP/1.1 or TLS (ALPN), and h2c.
#[derive(Debug, Clone)]
struct Clients {
    client: Client<HttpsConnector<BareConnector>, Outgoing<RequestBody>>,
    /// For `h2c` clusters: HTTP/2 with prior knowledge, one multiplexed connection per endpoint.
    h2c: Client<BareConnector, Outgoing<RequestBody>>,
}

impl Clients {
    fn new(connect_timeout: Duration, idle_timeout: Duration, tls: rustls::ClientConfig) -> Self {
        let mut tcp = HttpConnector::new();
        tcp.set_connect_timeout(Some(connect_timeout));
        tcp.set_nodelay(true);
        let h2c = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(idle_timeout)
            .timer(TokioTimer::new())
            .http2_only(true)
            .set_host(false)
            .build(BareConnector(tcp.clone()));
        tcp.enforce_http(false);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(BareConnector(tcp));
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(idle_timeout)
            // `forwarded::request` always sets Host.
            .set_host(false)
            .build(connector);
        Self { client, h2c }
    }
}

/// Clients by (connect timeout, idle timeout), for clusters whose timeouts differ from the
/// proxy's. hyper-util's pooled client has one connect and one idle timeout for its whole pool,
/// so each distinct pair gets its own clients (and pools), made on first use and kept: a
/// snapshot names few distinct pairs. Looking one up takes no lock (an `ArcSwap` of a map that is
/// replaced whole, under a mutex, when a pair is new). The first-byte timeout needs no client of
/// its own: it is a timer around each request.
type ClientCache = std::collections::HashMap<(Duration, Duration), Clients>;

#[derive(Debug)]
pub(crate) struct Forwarder {
    default: Clients,
    custom: arc_swap::ArcSwap<ClientCache>,
    adding: std::sync::Mutex<()>,
    tls: rustls::ClientConfig,
    connect_timeout: Duration,
    request_timeout: Duration,
    idle_timeout: Duration,
}

impl Forwarder {
    pub(crate) fn new(
        connect_timeout: Duration,
        request_timeout: Duration,
        idle_timeout: Duration,
        tls: rustls::ClientConfig,
    ) -> Self {
        Self {
            default: Clients::new(connect_timeout, idle_timeout, tls.clone()),
            custom: arc_swap::ArcSwap::from_pointee(ClientCache::new()),
            adding: std::sync::Mutex::new(()),
            tls,
            connect_timeout,
            request_timeout,
            idle_timeout,
        }
    }

    /// Sends the request `head` and `body` (its URI already points at `endpoint`) with the
    /// cluster's `timeouts` and returns the response once its headers arrived; the body streams
    /// afterwards. A request without a body or an upgrade to a plain-HTTP endpoint at an IP
    /// address goes by Berth's own client (`backend_h1`), everything else by hyper-util's.
    /// `extra`: fields sent after the head's own (see `backend_h1::ExtraFields`).
    pub(crate) async fn send(
        &self,
        mut head: Parts,
        extra: &ExtraFields<'_>,
        body: RequestBody,
        endpoint: &Endpoint,
        timeouts: &Timeouts,
        keep: bool,
    ) -> Result<Response<BackendBody>, ProxyError> {
        let empty = body.is_end_stream();
        if let Some(addr) = backend_h1::eligible(&head, empty, endpoint.socket) {
            let sent = self.send_own(&head, extra, addr, endpoint, timeouts, keep).await;
            crate::header_maps::give(head.headers);
            return sent;
        }
        add_extra(&mut head, extra);
        // Boxed: hyper-util's futures are large, and every request path's future would otherwise
        // hold room for them (and copy it at each move), own-client requests included.
        Box::pin(self.send_pooled(Request::from_parts(head, body), endpoint, timeouts)).await
    }

    /// Sends a request without a body from its `head`, which stays the caller's to send again
    /// (see `upstream`'s retries): Berth's own client writes it from the head as it is, and
    /// hyper-util's, which takes a request whole, gets a copy.
    pub(crate) async fn send_head(
        &self,
        head: &Parts,
        extra: &ExtraFields<'_>,
        endpoint: &Endpoint,
        timeouts: &Timeouts,
        keep: bool,
    ) -> Result<Response<BackendBody>, ProxyError> {
        if let Some(addr) = backend_h1::eligible(head, true, endpoint.socket) {
            return self.send_own(head, extra, addr, endpoint, timeouts, keep).await;
        }
        let mut copy = copy_head(head);
        add_extra(&mut copy, extra);
        let req = Request::from_parts(copy, Either::Right(Empty::new()));
        Box::pin(self.send_pooled(req, endpoint, timeouts)).await
    }

    /// By Berth's own client, to `addr`; `keep`: the response head may be kept as it came (see
    /// `backend_h1::response`).
    async fn send_own(
        &self,
        head: &Parts,
        extra: &ExtraFields<'_>,
        addr: SocketAddr,
        endpoint: &Endpoint,
        timeouts: &Timeouts,
        keep: bool,
    ) -> Result<Response<BackendBody>, ProxyError> {
        let timeouts = self.timeouts(timeouts);
        let response = backend_h1::send(head, extra, addr, &endpoint.authority, timeouts, keep).await?;
        Ok(response.map(BackendBody::Own))
    }

    /// By hyper-util's pooled clients.
    async fn send_pooled(
        &self,
        req: Request<RequestBody>,
        endpoint: &Endpoint,
        timeouts: &Timeouts,
    ) -> Result<Response<BackendBody>, ProxyError> {
        let backend_h1::Timeouts {
            connect: connect_timeout,
            idle: idle_timeout,
            first_byte: request_timeout,
        } = self.timeouts(timeouts);
        let authority = &endpoint.authority;
        let custom;
        let clients = if (connect_timeout, idle_timeout) == (self.connect_timeout, self.idle_timeout) {
            &self.default
        } else {
            custom = self.clients_for(connect_timeout, idle_timeout);
            &custom
        };
        // The first-byte timeout starts once the request body has been sent whole (see `outgoing`).
        let (req, body_sent) = outgoing::track(req);
        let sent = if req.version() == Version::HTTP_2 {
            clients.h2c.request(req)
        } else {
            clients.client.request(req)
        };
        let answered = match body_sent {
            None => tokio::time::timeout(request_timeout, sent).await,
            Some(body_sent) => {
                tokio::pin!(sent);
                tokio::select! {
                    biased;
                    answered = &mut sent => Ok(answered),
                    _ = body_sent => tokio::time::timeout(request_timeout, sent).await,
                }
            }
        };
        match answered {
            Ok(Ok(response)) => Ok(response.map(BackendBody::Hyper)),
            Ok(Err(error)) => Err(classify(&error, authority, connect_timeout)),
            Err(_) => Err(ProxyError::ResponseTimeout {
                endpoint: authority.clone(),
                timeout: request_timeout,
            }),
        }
    }

    /// The connect, idle and first-byte timeouts for a cluster's `timeouts`: its own where it
    /// sets them, else the proxy's.
    fn timeouts(&self, timeouts: &Timeouts) -> backend_h1::Timeouts {
        backend_h1::Timeouts {
            connect: timeouts.connect.unwrap_or(self.connect_timeout),
            idle: timeouts.idle.unwrap_or(self.idle_timeout),
            first_byte: timeouts.first_byte.unwrap_or(self.request_timeout),
        }
    }

    /// The clients for a timeout pair other than the proxy's (see [`ClientCache`]).
    fn clients_for(&self, connect: Duration, idle: Duration) -> Clients {
        if let Some(clients) = self.custom.load().get(&(connect, idle)) {
            return clients.clone();
        }
        let _adding = self
            .adding
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let current = self.custom.load_full();
        if let Some(clients) = current.get(&(connect, idle)) {
            return clients.clone();
        }
        let clients = Clients::new(connect, idle, self.tls.clone());
        let mut next = (*current).clone();
        next.insert((connect, idle), clients.clone());
        self.custom.store(std::sync::Arc::new(next));
        clients
    }
}

/// Puts `extra` in the head's map for hyper-util's client, which writes only the map. The request
/// path puts what the context holds for the map (the client's fields kept as they came, the
/// accept phase's late headers) in it before a request goes this way (see `forwarded::request`),
/// so `extra` is empty here; should it not be, the backend still gets every field.
fn add_extra(head: &mut Parts, extra: &ExtraFields<'_>) {
    if let Some(raw) = extra.raw() {
        // Less `Connection`, as Berth's own client writes them.
        raw.append_to(&mut head.headers, false);
    }
    for &(name, value) in extra.as_slice() {
        let name = http::HeaderName::from_bytes(name.as_bytes());
        if let (Ok(name), Ok(value)) = (name, http::HeaderValue::from_bytes(value)) {
            head.headers.append(name, value);
        }
    }
}

/// hyper-util's TCP connector, less the connection details (`HttpInfo`: both addresses) it has
/// the pooled client copy into every response's extensions: nothing reads them, and copying
/// them costs three allocations per request (the extensions map, its table, the entry).
#[derive(Debug, Clone)]
struct BareConnector(HttpConnector);

impl tower_service::Service<http::Uri> for BareConnector {
    type Response = Bare;
    type Error = <HttpConnector as tower_service::Service<http::Uri>>::Error;
    type Future = BareConnecting<<HttpConnector as tower_service::Service<http::Uri>>::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, destination: http::Uri) -> Self::Future {
        BareConnecting(self.0.call(destination))
    }
}

/// A connection being made by [`BareConnector`].
struct BareConnecting<F>(F);

impl<F, E> Future for BareConnecting<F>
where
    F: Future<Output = Result<TokioIo<TcpStream>, E>> + Unpin,
{
    type Output = Result<Bare, E>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0).poll(cx).map_ok(Bare)
    }
}

/// A backend TCP connection that tells the pool nothing but that it is one.
#[derive(Debug)]
struct Bare(TokioIo<TcpStream>);

impl Connection for Bare {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl hyper::rt::Read for Bare {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for Bare {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }
}

/// A copy of a request head (its extensions are not copied: nothing after the middlewares
/// reads them).
fn copy_head(head: &Parts) -> Parts {
    let mut req = Request::new(());
    *req.method_mut() = head.method.clone();
    *req.uri_mut() = head.uri.clone();
    *req.version_mut() = head.version;
    *req.headers_mut() = head.headers.clone();
    req.into_parts().0
}

fn classify(
    error: &hyper_util::client::legacy::Error,
    endpoint: &Authority,
    connect_timeout: Duration,
) -> ProxyError {
    let endpoint = endpoint.clone();
    if error.is_connect() {
        match io_error_kind(error) {
            Some(io::ErrorKind::TimedOut) => ProxyError::ConnectTimeout {
                endpoint,
                timeout: connect_timeout,
            },
            Some(io::ErrorKind::ConnectionRefused) => ProxyError::Refused { endpoint },
            _ => ProxyError::ConnectFailed {
                endpoint,
                reason: describe(error),
            },
        }
    } else {
        ProxyError::Backend {
            endpoint,
            reason: describe(error),
        }
    }
}

/// The kind of the first I/O error in the error's source chain.
fn io_error_kind(error: &(dyn std::error::Error + 'static)) -> Option<io::ErrorKind> {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(io) = e.downcast_ref::<io::Error>() {
            return Some(io.kind());
        }
        current = e.source();
    }
    None
}

/// The innermost useful message of an error chain (hyper-util's outer messages are generic).
fn describe(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut current = error.source();
    while let Some(e) = current {
        text = e.to_string();
        current = e.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_copies_keep_what_is_sent() {
        let mut head = crate::proxy::middleware::testing::head("GET", "/a?b");
        head.headers.insert("x-a", http::HeaderValue::from_static("1"));
        let copy = copy_head(&head);
        assert_eq!(
            (copy.method, copy.uri, copy.version, copy.headers),
            (head.method, head.uri, head.version, head.headers)
        );
    }
}
