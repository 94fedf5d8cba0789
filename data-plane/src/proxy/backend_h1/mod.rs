//! Berth's own HTTP/1.1 backend client, for the common request: no body and no upgrade, to a
//! plain-HTTP endpoint at an IP address.
//!
//! For: sending such a request on a pooled connection that the request's own task drives, and
//! streaming the response body back from that connection. hyper-util's pooled client, which
//! Berth uses for everything else (see `forward`), drives each backend connection in a task of
//! its own and passes every request and response across channels; bench/RESULTS.md measures that
//! machinery as costing more per request than the rest of the request path. Here a request takes
//! an idle connection from its worker's list (`pool`: each worker thread runs a runtime of its
//! own, so no lock), writes the head, reads the response head (`response`), and the body streams
//! from the same connection, which goes back to the list once the body has ended and both sides
//! allowed keep-alive.
//!
//! Backends see the same bytes as from hyper's client: the request line in origin form, then the
//! header fields as the request has them (lower-case names, in the map's order), then those the
//! request carries beside its map (`ExtraFields`: the client's fields kept as they came and the
//! forwarded headers the accept phase set late), nothing else added (`forwarded` has set `Host`).
//! Responses are read by the rules hyper's client applies (RFC 9112 §6.3; see `response`).
//! Failures map to the same [`ProxyError`]s as hyper-util's: refused, connect timeout and other
//! connect failures, and anything after the connection was made as a backend failure (which
//! `upstream` may retry).
//! Not for: requests with a body, upgrades, `https` and `h2c` clusters, endpoints named by host
//! name (all hyper-util's: see `forward`); the response-header timeout (the caller's).

mod pool;
mod response;

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

use bytes::BytesMut;
use http::header::UPGRADE;
use http::request::Parts;
use http::uri::{Authority, Scheme};
use http::{Method, Response, Version};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::Sleep;

pub(crate) use response::ResponseBody;

use crate::http1::RawFields;

use super::ProxyError;

/// A backend connection and its buffers, which it keeps from one request to the next (boxed
/// once, when connected, so that a response body holding it stays small).
#[derive(Debug)]
struct Conn {
    stream: TcpStream,
    /// The backend's address, which the pool keeps it under.
    addr: SocketAddr,
    /// Bytes read and not yet consumed.
    read: BytesMut,
    /// The request head being written.
    write: Vec<u8>,
    /// The first-byte timeout of the request in progress (see [`send`]).
    first_byte: Pin<Box<Sleep>>,
}

/// Header fields a request carries beside its header map, written after the map's own: the
/// client's fields kept as they came (`http1::RawFields`, `Connection` left out and names in lower
/// case, as from the map), then the accept phase's late headers (see `accept::LateHeaders`).
#[derive(Debug, Default)]
pub(crate) struct ExtraFields<'a> {
    raw: Option<&'a RawFields>,
    fields: [(&'static str, &'a [u8]); 7],
    len: usize,
}

impl<'a> ExtraFields<'a> {
    /// The client's fields kept as they came, if they were, and no other yet.
    pub(crate) fn new(raw: Option<&'a RawFields>) -> Self {
        Self {
            raw,
            ..Self::default()
        }
    }

    /// The client's fields kept as they came, if they were.
    pub(crate) fn raw(&self) -> Option<&'a RawFields> {
        self.raw
    }

    /// Adds a field. There is room for seven: the accept phase's late headers.
    pub(crate) fn push(&mut self, name: &'static str, value: &'a [u8]) {
        debug_assert!(
            self.len < self.fields.len(),
            "more extra fields than there is room for"
        );
        if let Some(slot) = self.fields.get_mut(self.len) {
            *slot = (name, value);
            self.len += 1;
        }
    }

    pub(crate) fn as_slice(&self) -> &[(&'static str, &'a [u8])] {
        &self.fields[..self.len]
    }
}

/// Where a request may go by this client: the endpoint's socket address when it may, `None` when
/// it is hyper-util's (see the module documentation). `empty` says the request has no body;
/// `socket` is the endpoint's address when it is an IP address.
pub(crate) fn eligible(head: &Parts, empty: bool, socket: Option<SocketAddr>) -> Option<SocketAddr> {
    let plain = head.version == Version::HTTP_11
        && head.uri.scheme() == Some(&Scheme::HTTP)
        && empty
        && head.method != Method::CONNECT
        && !head.headers.contains_key(UPGRADE);
    socket.filter(|_| plain)
}

/// Thirty years: what an unrepresentable deadline becomes.
const FOREVER: Duration = Duration::from_secs(30 * 365 * 24 * 3600);

/// The timeouts of one request to a backend (`forward` works them out for both clients).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timeouts {
    /// How long a new connection may take to open.
    pub connect: Duration,
    /// How long the connection is kept for reuse once the response has ended.
    pub idle: Duration,
    /// How long the response head may take: from the request's start by this client (a new
    /// connection's opening included), from the request body's end by hyper-util's.
    pub first_byte: Duration,
}

/// Sends the request `head` (no body) to `addr`, the address of `endpoint`, and returns the
/// response once its head has arrived; the body streams from the connection afterwards.
/// `keep`: the common response head may be kept as it came (see `response`).
///
/// The first-byte timeout runs on the connection's own timer, moved to each request's deadline:
/// tokio moves a registered timer to a later deadline without touching its timer wheel, where a
/// timer made for each request is registered and removed again every time.
pub(crate) async fn send(
    head: &Parts,
    extra: &ExtraFields<'_>,
    addr: SocketAddr,
    endpoint: &Authority,
    timeouts: Timeouts,
    keep: bool,
) -> Result<Response<ResponseBody>, ProxyError> {
    let now = tokio::time::Instant::now();
    // A timeout too long to add (a snapshot may say anything) is as good as none.
    let deadline = now
        .checked_add(timeouts.first_byte)
        .unwrap_or_else(|| now + FOREVER);
    let timed_out = || ProxyError::ResponseTimeout {
        endpoint: endpoint.clone(),
        timeout: timeouts.first_byte,
    };
    let mut conn = match pool::checkout(addr) {
        Some(conn) => conn,
        None => tokio::time::timeout_at(deadline, connect(addr, endpoint, timeouts.connect))
            .await
            .map_err(|_| timed_out())??,
    };
    let failed = |error: response::Error| ProxyError::Backend {
        endpoint: endpoint.clone(),
        reason: error.to_string(),
    };
    conn.first_byte.as_mut().reset(deadline);
    let Conn {
        stream,
        read,
        write,
        first_byte,
        ..
    } = &mut *conn;
    write.clear();
    encode(head, extra, write);
    let exchange = async {
        stream.write_all(write).await?;
        response::read_head(stream, read, &head.method, keep).await
    };
    let response = tokio::select! {
        biased;
        response = exchange => response.map_err(failed)?,
        () = first_byte.as_mut() => return Err(timed_out()),
    };
    let reuse = response.keep_alive.then_some(timeouts.idle);
    Ok(response
        .response
        .map(|()| ResponseBody::new(conn, response.decoding, reuse, response.kept)))
}

/// A new connection to `addr`.
async fn connect(addr: SocketAddr, endpoint: &Authority, timeout: Duration) -> Result<Box<Conn>, ProxyError> {
    let endpoint = endpoint.clone();
    let fail = |error: io::Error, endpoint: Authority| match error.kind() {
        io::ErrorKind::ConnectionRefused => ProxyError::Refused { endpoint },
        io::ErrorKind::TimedOut => ProxyError::ConnectTimeout { endpoint, timeout },
        _ => ProxyError::ConnectFailed {
            endpoint,
            reason: error.to_string(),
        },
    };
    let stream = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(error)) => return Err(fail(error, endpoint)),
        Err(_) => return Err(ProxyError::ConnectTimeout { endpoint, timeout }),
    };
    stream.set_nodelay(true).map_err(|e| fail(e, endpoint))?;
    Ok(Box::new(Conn {
        stream,
        addr,
        read: BytesMut::new(),
        write: Vec::new(),
        // Set to each request's deadline before it is first polled.
        first_byte: Box::pin(tokio::time::sleep(Duration::ZERO)),
    }))
}

/// Appends the request head to `out` as hyper's client writes it: the request line with the
/// target in origin form (`/` when the URI has no path), each header field as `name: value` (the
/// map's, then `extra`), and the blank line that ends the head.
pub(super) fn encode(head: &Parts, extra: &ExtraFields<'_>, out: &mut Vec<u8>) {
    let target = head
        .uri
        .path_and_query()
        .map(|pq| pq.as_str())
        .filter(|pq| !pq.is_empty())
        .unwrap_or("/");
    let raw = extra.raw.map_or(0, |raw| raw.bytes.len());
    out.reserve(32 + target.len() + raw + (head.headers.len() + extra.len) * 32);
    out.extend_from_slice(head.method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let field = |out: &mut Vec<u8>, name: &[u8], value: &[u8]| {
        out.extend_from_slice(name);
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    };
    for (name, value) in &head.headers {
        field(out, name.as_str().as_bytes(), value.as_bytes());
    }
    if let Some(raw) = extra.raw {
        for &[n0, n1, v0, v1] in &raw.fields {
            let (n0, n1, v0, v1) = (n0 as usize, n1 as usize, v0 as usize, v1 as usize);
            let name = &raw.bytes[n0..n1];
            // `Connection` lists no more than `close` or `keep-alive` here (see `RawFields`), and
            // goes as the hop-by-hop clean-up removes it.
            if name.eq_ignore_ascii_case(b"connection") {
                continue;
            }
            let start = out.len();
            if &raw.bytes[n1..v0] == b": " {
                // As the client wrote it, which is how the map's writer would: one copy.
                out.extend_from_slice(&raw.bytes[n0..v1]);
                out.extend_from_slice(b"\r\n");
            } else {
                field(out, name, &raw.bytes[v0..v1]);
            }
            out[start..start + name.len()].make_ascii_lowercase();
        }
    }
    for &(name, value) in extra.as_slice() {
        field(out, name.as_bytes(), value);
    }
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests;
