//! `berth-bench-ceiling`: how little CPU an HTTP/1.1 forwarder on tokio can spend per request,
//! and which half of hyper's machinery costs what. A measuring instrument, not a proxy.
//!
//! It forwards keep-alive HTTP/1.1 requests without bodies, round robin over `--backend`s, adding
//! `X-Forwarded-For` and dropping `Connection` (what the bench's nginx configuration does), with a
//! runtime and an `SO_REUSEPORT` listener per worker, like berth-proxy. Its two halves are chosen
//! apart, so the designs can be compared side by side under the same load
//! (`bench/proxy.sh --targets "berth-proxy nginx ceiling-raw-raw ceiling-hyper-hyper ..."`):
//!
//! - `--server raw`: the client connection read by this file's own loop (httparse over a reused
//!   buffer, one task per connection); `--server hyper`: hyper's `server::conn::http1`.
//! - `--client raw`: backend connections kept idle in a per-worker list and driven inside the
//!   request's own task (httparse again; responses must carry `Content-Length`); `--client hyper`:
//!   hyper-util's pooled client, the one berth-proxy uses, which drives each backend connection in
//!   a task of its own; `--client conn`: hyper's own HTTP/1.1 client connections
//!   (`client::conn::http1`) in a per-worker list, each driven inside the request's task like the
//!   raw ones (hyper's codec without hyper-util's pool and connection tasks).
//!
//! No routing, no middlewares, no access log or metrics, no request bodies (a request with one is
//! answered 501 and its connection closed), no chunked responses from the raw client (502): the
//! point is the floor under everything berth-proxy adds, not a second proxy. All traffic is
//! whatever the bench sends on 127.0.0.1.

use std::cell::{Cell, RefCell};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::rc::Rc;

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use clap::{Parser, ValueEnum};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Forwards body-less HTTP/1.1 requests round robin over --backend, to measure the least CPU per
/// request a forwarder on tokio needs (bench/proxy.sh's ceiling targets). Not a proxy.
#[derive(Debug, Parser)]
#[command(name = "berth-bench-ceiling", version)]
struct Cli {
    /// Address to listen on
    #[arg(long, value_name = "ADDR")]
    listen: SocketAddr,

    /// Threads, each with its own runtime and SO_REUSEPORT listener
    #[arg(long, value_name = "N", default_value_t = 1)]
    workers: usize,

    /// A backend (plain HTTP/1.1); repeat for round robin
    #[arg(long, value_name = "ADDR", required = true)]
    backend: Vec<SocketAddr>,

    /// Who reads the client's connection
    #[arg(long, value_enum, default_value_t = ServerHalf::Raw)]
    server: ServerHalf,

    /// Who talks to the backends
    #[arg(long, value_enum, default_value_t = ClientHalf::Raw)]
    client: ClientHalf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ServerHalf {
    /// This file's own loop over httparse, one task per connection
    Raw,
    /// hyper's HTTP/1.1 server
    Hyper,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ClientHalf {
    /// This file's own exchange over httparse, driven in the request's task
    Raw,
    /// hyper-util's pooled client (a task per backend connection)
    Hyper,
    /// hyper's client connections, pooled per worker and driven in the request's task
    Conn,
}

/// A request head or a response bigger than this is refused.
const MAX_MESSAGE: usize = 64 * 1024;

fn main() -> Result<()> {
    let cli = Cli::parse();
    anyhow::ensure!(cli.workers >= 1, "--workers must be at least 1");
    let mut threads = Vec::new();
    for worker in 0..cli.workers {
        let (listen, backends, server, client) = (cli.listen, cli.backend.clone(), cli.server, cli.client);
        threads.push(
            std::thread::Builder::new()
                .name(format!("ceiling-{worker}"))
                .spawn(move || run_worker(listen, backends, server, client))?,
        );
    }
    for t in threads {
        match t.join() {
            Ok(result) => result?,
            Err(_) => bail!("a worker panicked"),
        }
    }
    Ok(())
}

fn run_worker(
    listen: SocketAddr,
    backends: Vec<SocketAddr>,
    server: ServerHalf,
    client: ClientHalf,
) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async move {
        let listener = reuseport_listener(listen)?;
        let upstream = Rc::new(Upstream::new(backends, client));
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    eprintln!("berth-bench-ceiling: accept: {e}");
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let upstream = upstream.clone();
            tokio::task::spawn_local(async move {
                let served = match server {
                    ServerHalf::Raw => serve_raw(stream, peer, upstream).await,
                    ServerHalf::Hyper => serve_hyper(stream, peer, upstream).await,
                };
                if let Err(e) = served {
                    eprintln!("berth-bench-ceiling: connection from {peer}: {e:#}");
                }
            });
        }
    })
}

fn reuseport_listener(addr: SocketAddr) -> Result<TcpListener> {
    let socket = socket2::Socket::new(socket2::Domain::for_address(addr), socket2::Type::STREAM, None)?;
    socket.set_reuse_port(true)?;
    socket.set_reuse_address(true)?;
    socket
        .bind(&addr.into())
        .with_context(|| format!("binding {addr}"))?;
    socket.listen(1024)?;
    socket.set_nonblocking(true)?;
    Ok(TcpListener::from_std(socket.into())?)
}

/// The backends of one worker, and how it talks to them.
struct Upstream {
    backends: Vec<SocketAddr>,
    authorities: Vec<String>,
    next: Cell<usize>,
    /// `--client raw`: idle connections per backend, used by one request at a time.
    idle: RefCell<Vec<Vec<TcpStream>>>,
    /// `--client hyper`: hyper-util's pooled client (its own pool, one task per connection).
    hyper: Option<Client<HttpConnector, Empty<Bytes>>>,
    /// `--client conn`: idle hyper client connections per backend.
    conns: Option<RefCell<Vec<Vec<HyperConn>>>>,
}

/// One of hyper's HTTP/1.1 client connections: the handle requests are sent on, and the
/// connection's own future, which whoever uses it must poll.
struct HyperConn {
    sender: hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
    conn: hyper::client::conn::http1::Connection<TokioIo<TcpStream>, Empty<Bytes>>,
}

impl Upstream {
    fn new(backends: Vec<SocketAddr>, client: ClientHalf) -> Upstream {
        let conns =
            (client == ClientHalf::Conn).then(|| RefCell::new(backends.iter().map(|_| Vec::new()).collect()));
        let hyper = (client == ClientHalf::Hyper).then(|| {
            let mut connector = HttpConnector::new();
            connector.set_nodelay(true);
            Client::builder(TokioExecutor::new()).build(connector)
        });
        Upstream {
            authorities: backends.iter().map(|b| b.to_string()).collect(),
            idle: RefCell::new(backends.iter().map(|_| Vec::new()).collect()),
            backends,
            next: Cell::new(0),
            hyper,
            conns,
        }
    }

    /// Sends `request` to backend `i` on an idle hyper connection (or a new one), polling the
    /// connection in this task until the response is read whole and the connection is ready for
    /// the next request; then puts it back.
    async fn exchange_conn(
        &self,
        i: usize,
        request: http::Request<Empty<Bytes>>,
    ) -> Result<http::Response<Bytes>> {
        let Some(conns) = &self.conns else {
            bail!("--client conn without its connection list");
        };
        let idle = conns.borrow_mut()[i].pop();
        let HyperConn { mut sender, mut conn } = match idle {
            Some(c) => c,
            None => {
                let stream = self.connect(i).await?;
                let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
                HyperConn { sender, conn }
            }
        };
        let exchange = async {
            let response = sender.send_request(request).await?;
            let (parts, body) = response.into_parts();
            let body = body.collect().await?.to_bytes();
            sender.ready().await?;
            anyhow::Ok(http::Response::from_parts(parts, body))
        };
        let response = tokio::select! {
            biased;
            response = exchange => response?,
            ended = &mut conn => {
                ended?;
                bail!("the backend closed the connection mid-exchange");
            }
        };
        conns.borrow_mut()[i].push(HyperConn { sender, conn });
        Ok(response)
    }

    /// A new connection to backend `i`.
    async fn connect(&self, i: usize) -> Result<TcpStream> {
        let stream = TcpStream::connect(self.backends[i])
            .await
            .with_context(|| format!("connecting to {}", self.backends[i]))?;
        stream.set_nodelay(true)?;
        Ok(stream)
    }

    fn pick(&self) -> usize {
        let i = self.next.get();
        self.next.set((i + 1) % self.backends.len());
        i
    }

    /// Sends the request head in `head` to backend `i` over an idle connection (or a new one)
    /// and reads the whole response into `response`, which it clears first.
    async fn exchange_raw(&self, i: usize, head: &[u8], response: &mut Vec<u8>) -> Result<()> {
        let idle = self.idle.borrow_mut()[i].pop();
        let mut conn = match idle {
            Some(conn) => conn,
            None => self.connect(i).await?,
        };
        conn.write_all(head).await?;
        response.clear();
        let total = loop {
            fill(&mut conn, response, "the backend").await?;
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut parsed = httparse::Response::new(&mut headers);
            if let httparse::Status::Complete(n) =
                parsed.parse(response).context("the backend's response head")?
            {
                let length = content_length(parsed.headers)?
                    .context("the backend's response has no Content-Length")?;
                break n + length;
            }
        };
        while response.len() < total {
            fill(&mut conn, response, "the backend").await?;
        }
        if response.len() > total {
            bail!("the backend sent more than its Content-Length");
        }
        self.idle.borrow_mut()[i].push(conn);
        Ok(())
    }
}

/// Appends an HTTP/1.1 message head to `out`: the start line (`first`, its parts joined), each
/// header as `name: value`, and the blank line that ends the head.
fn write_head<'a>(out: &mut Vec<u8>, first: &[&[u8]], headers: impl Iterator<Item = (&'a [u8], &'a [u8])>) {
    for part in first {
        out.extend_from_slice(part);
    }
    out.extend_from_slice(b"\r\n");
    for (name, value) in headers {
        out.extend_from_slice(name);
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// Reads more of a message into `buf`; an error at end of stream or past [`MAX_MESSAGE`].
async fn fill(conn: &mut TcpStream, buf: &mut Vec<u8>, from: &str) -> Result<()> {
    if buf.len() >= MAX_MESSAGE {
        bail!("{from} sent a message over {MAX_MESSAGE} bytes");
    }
    buf.reserve(4096);
    if conn.read_buf(buf).await? == 0 {
        bail!("{from} closed the connection mid-message");
    }
    Ok(())
}

fn content_length(headers: &[httparse::Header<'_>]) -> Result<Option<usize>> {
    let Some(h) = headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
    else {
        return Ok(None);
    };
    let text = std::str::from_utf8(h.value).context("Content-Length is not text")?;
    Ok(Some(text.trim().parse().with_context(|| {
        format!("Content-Length {text:?} is not a number")
    })?))
}

fn has_body(headers: &[httparse::Header<'_>]) -> Result<bool> {
    let chunked = headers
        .iter()
        .any(|h| h.name.eq_ignore_ascii_case("transfer-encoding"));
    Ok(chunked || content_length(headers)?.unwrap_or(0) > 0)
}

/// `--server raw`: one request after another from the client's connection, each forwarded and
/// answered before the next is read.
async fn serve_raw(mut client: TcpStream, peer: SocketAddr, upstream: Rc<Upstream>) -> Result<()> {
    let forwarded_for = peer.ip().to_string();
    let mut input: Vec<u8> = Vec::with_capacity(8192);
    let mut head: Vec<u8> = Vec::with_capacity(4096);
    let mut response: Vec<u8> = Vec::with_capacity(16384);
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut request = httparse::Request::new(&mut headers);
        let consumed = match request.parse(&input) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => {
                if input.len() >= MAX_MESSAGE {
                    client
                        .write_all(b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                        .await?;
                    return Ok(());
                }
                input.reserve(4096);
                if client.read_buf(&mut input).await? == 0 {
                    return Ok(()); // the client is done
                }
                continue;
            }
            Err(e) => {
                client
                    .write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                    .await?;
                bail!("a malformed request: {e}");
            }
        };
        if has_body(request.headers)? {
            client
                .write_all(b"HTTP/1.1 501 Not Implemented\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                .await?;
            return Ok(());
        }
        let (Some(method), Some(path)) = (request.method, request.path) else {
            bail!("httparse completed a request without a method or path");
        };
        let i = upstream.pick();
        if upstream.hyper.is_some() || upstream.conns.is_some() {
            let uri = if upstream.hyper.is_some() {
                format!("http://{}{}", upstream.authorities[i], path)
            } else {
                path.to_owned()
            };
            let mut builder = http::Request::builder().method(method).uri(uri);
            for h in request.headers.iter() {
                if !h.name.eq_ignore_ascii_case("connection") {
                    builder = builder.header(h.name, h.value);
                }
            }
            let outgoing = builder
                .header("x-forwarded-for", peer.ip().to_string())
                .body(Empty::new())?;
            input.drain(..consumed);
            let (parts, body) = if upstream.hyper.is_some() {
                let (parts, body) = forward_hyper(&upstream, outgoing).await?.into_parts();
                (parts, body.collect().await?.to_bytes())
            } else {
                upstream.exchange_conn(i, outgoing).await?.into_parts()
            };
            response.clear();
            let reason = parts.status.canonical_reason().unwrap_or("Unknown");
            write_head(
                &mut response,
                &[
                    b"HTTP/1.1 ",
                    parts.status.as_str().as_bytes(),
                    b" ",
                    reason.as_bytes(),
                ],
                parts
                    .headers
                    .iter()
                    .map(|(n, v)| (n.as_str().as_bytes(), v.as_bytes())),
            );
            response.extend_from_slice(&body);
        } else {
            head.clear();
            let kept = request
                .headers
                .iter()
                .filter(|h| !h.name.eq_ignore_ascii_case("connection"));
            write_head(
                &mut head,
                &[method.as_bytes(), b" ", path.as_bytes(), b" HTTP/1.1"],
                kept.map(|h| (h.name.as_bytes(), h.value)).chain(std::iter::once((
                    &b"X-Forwarded-For"[..],
                    forwarded_for.as_bytes(),
                ))),
            );
            input.drain(..consumed);
            if let Err(e) = upstream.exchange_raw(i, &head, &mut response).await {
                client
                    .write_all(b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                    .await?;
                return Err(e);
            }
        }
        client.write_all(&response).await?;
    }
}

async fn forward_hyper(
    upstream: &Upstream,
    request: http::Request<Empty<Bytes>>,
) -> Result<http::Response<Incoming>> {
    let Some(client) = &upstream.hyper else {
        bail!("--client hyper without hyper's client");
    };
    Ok(client.request(request).await?)
}

/// The body of a response `--server hyper` sends: streamed from hyper-util's client, or whole
/// from the raw one.
type Answer = http_body_util::Either<Incoming, Full<Bytes>>;

/// `--server hyper`: hyper's HTTP/1.1 server calls [`answer`] for each request.
async fn serve_hyper(client: TcpStream, peer: SocketAddr, upstream: Rc<Upstream>) -> Result<()> {
    let forwarded_for = http::HeaderValue::from_str(&peer.ip().to_string())?;
    let service = hyper::service::service_fn(move |request: http::Request<Incoming>| {
        let upstream = upstream.clone();
        let forwarded_for = forwarded_for.clone();
        async move {
            Ok::<_, Infallible>(match answer(&upstream, request, forwarded_for).await {
                Ok(response) => response,
                Err(e) => {
                    eprintln!("berth-bench-ceiling: {e:#}");
                    let mut bad = http::Response::new(Answer::Right(Full::new(Bytes::new())));
                    *bad.status_mut() = http::StatusCode::BAD_GATEWAY;
                    bad
                }
            })
        }
    });
    hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(client), service)
        .await?;
    Ok(())
}

async fn answer(
    upstream: &Upstream,
    request: http::Request<Incoming>,
    forwarded_for: http::HeaderValue,
) -> Result<http::Response<Answer>> {
    let (mut parts, _body) = request.into_parts();
    parts.headers.remove(http::header::CONNECTION);
    parts.headers.insert("x-forwarded-for", forwarded_for);
    let i = upstream.pick();
    if upstream.hyper.is_some() {
        let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        parts.uri = format!("http://{}{}", upstream.authorities[i], path).parse()?;
        let outgoing = http::Request::from_parts(parts, Empty::new());
        return Ok(forward_hyper(upstream, outgoing).await?.map(Answer::Left));
    }
    if upstream.conns.is_some() {
        let outgoing = http::Request::from_parts(parts, Empty::new());
        let response = upstream.exchange_conn(i, outgoing).await?;
        return Ok(response.map(|body| Answer::Right(Full::new(body))));
    }
    let mut head = Vec::with_capacity(1024);
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    write_head(
        &mut head,
        &[
            parts.method.as_str().as_bytes(),
            b" ",
            path.as_bytes(),
            b" HTTP/1.1",
        ],
        parts
            .headers
            .iter()
            .map(|(n, v)| (n.as_str().as_bytes(), v.as_bytes())),
    );
    let mut raw = Vec::with_capacity(16384);
    upstream.exchange_raw(i, &head, &mut raw).await?;
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut parsed = httparse::Response::new(&mut headers);
    let httparse::Status::Complete(n) = parsed.parse(&raw)? else {
        bail!("exchange_raw returned a partial head");
    };
    let mut response = http::Response::builder().status(parsed.code.unwrap_or(502));
    for h in parsed.headers.iter() {
        response = response.header(h.name, h.value);
    }
    let body = Bytes::copy_from_slice(&raw[n..]);
    Ok(response.body(Answer::Right(Full::new(body)))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header<'a>(name: &'a str, value: &'a [u8]) -> httparse::Header<'a> {
        httparse::Header { name, value }
    }

    #[test]
    fn content_length_is_read_or_refused() {
        assert_eq!(
            content_length(&[header("Content-Length", b" 12 ")]).ok(),
            Some(Some(12))
        );
        assert_eq!(content_length(&[header("x", b"1")]).ok(), Some(None));
        let err = content_length(&[header("content-length", b"12a")]).unwrap_err();
        assert!(err.to_string().contains("\"12a\" is not a number"), "{err}");
    }

    #[test]
    fn requests_with_a_body_are_told_apart() {
        assert!(!has_body(&[]).unwrap());
        assert!(!has_body(&[header("content-length", b"0")]).unwrap());
        assert!(has_body(&[header("Content-Length", b"3")]).unwrap());
        assert!(has_body(&[header("Transfer-Encoding", b"chunked")]).unwrap());
    }
}
