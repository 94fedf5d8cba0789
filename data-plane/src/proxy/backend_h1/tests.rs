//! Berth's own client against scripted backends on 127.0.0.1, and beside hyper's client on the
//! same bytes: what the backend receives, how each response is read, when connections are reused.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use super::*;

/// A backend answering each request head with the next scripted reply, then closing the
/// connection if the reply says so. Every request head it read is sent on `heads`.
struct Script {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    heads: mpsc::UnboundedReceiver<Vec<u8>>,
    /// Told when a connection's reading ended (the peer closed it, or the script did).
    closed: mpsc::UnboundedReceiver<()>,
}

async fn script(replies: &[(&'static [u8], bool)]) -> Script {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let accepted = Arc::new(AtomicUsize::new(0));
    let replies = Arc::new(Mutex::new(replies.iter().copied().collect::<VecDeque<_>>()));
    let (heads_tx, heads) = mpsc::unbounded_channel();
    let (closed_tx, closed) = mpsc::unbounded_channel();
    let counter = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            let (replies, heads_tx, closed_tx) = (replies.clone(), heads_tx.clone(), closed_tx.clone());
            tokio::spawn(async move {
                let mut buf = Vec::new();
                loop {
                    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                        let mut chunk = [0u8; 4096];
                        match stream.read(&mut chunk).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                        continue;
                    };
                    let head: Vec<u8> = buf.drain(..end + 4).collect();
                    let _ = heads_tx.send(head);
                    let Some((reply, close)) = replies.lock().expect("replies").pop_front() else {
                        break;
                    };
                    if stream.write_all(reply).await.is_err() || close {
                        break;
                    }
                }
                let _ = closed_tx.send(());
            });
        }
    });
    Script {
        addr,
        accepted,
        heads,
        closed,
    }
}

fn head(uri: &str, method: &str, headers: &[(&'static str, &'static str)]) -> Parts {
    let mut req = Request::builder().method(method).uri(uri);
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    req.body(()).expect("request").into_parts().0
}

const SECOND: Duration = Duration::from_secs(1);

/// A second for each timeout, and `idle` for the connection's reuse.
fn timeouts(idle: Duration) -> Timeouts {
    Timeouts {
        connect: SECOND,
        idle,
        first_byte: SECOND,
    }
}

/// What a client made of a response: status, version, headers, reason, body, trailers; or that
/// it failed.
#[derive(Debug, PartialEq)]
#[allow(clippy::large_enum_variant)]
enum Read {
    Ok {
        status: StatusCode,
        version: http::Version,
        headers: HeaderMap,
        reason: Option<Vec<u8>>,
        body: Bytes,
        trailers: Option<HeaderMap>,
    },
    Failed,
}

async fn collect<B>(response: http::Response<B>) -> Read
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
{
    let (parts, mut body) = response.into_parts();
    let mut data = Vec::new();
    let mut trailers = None;
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else {
            return Read::Failed;
        };
        match frame.into_data() {
            Ok(chunk) => data.extend_from_slice(&chunk),
            Err(frame) => trailers = frame.into_trailers().ok(),
        }
    }
    Read::Ok {
        status: parts.status,
        version: parts.version,
        headers: parts.headers,
        reason: parts
            .extensions
            .get::<hyper::ext::ReasonPhrase>()
            .map(|r| r.as_bytes().to_vec()),
        body: data.into(),
        trailers,
    }
}

async fn ours(reply: &'static [u8], method: &str) -> (Read, Vec<u8>) {
    let mut backend = script(&[(reply, true)]).await;
    let uri = format!("http://{}/path?q=1", backend.addr);
    let req = head(
        &uri,
        method,
        &[("host", "a.example"), ("x-a", "1"), ("x-b", "2"), ("x-a", "3")],
    );
    let endpoint = Authority::try_from(backend.addr.to_string()).expect("authority");
    let read = match send_plain(&req, backend.addr, &endpoint, timeouts(SECOND), true).await {
        Ok(mut response) => {
            // A head kept as it came is read as a header map would hold it.
            if let Some(kept) = response.body_mut().take_kept() {
                for (name, value) in kept.iter() {
                    response.headers_mut().append(
                        http::HeaderName::from_bytes(name).expect("a kept name"),
                        http::HeaderValue::from_bytes(value).expect("a kept value"),
                    );
                }
            }
            collect(response).await
        }
        Err(_) => Read::Failed,
    };
    (read, backend.heads.recv().await.expect("a request head"))
}

async fn hypers(reply: &'static [u8], method: &str) -> (Read, Vec<u8>) {
    let mut backend = script(&[(reply, true)]).await;
    let stream = TcpStream::connect(backend.addr).await.expect("connect");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    let mut req = Request::builder().method(method).uri("/path?q=1");
    for (name, value) in [("host", "a.example"), ("x-a", "1"), ("x-b", "2"), ("x-a", "3")] {
        req = req.header(name, value);
    }
    let req = req.body(Empty::<Bytes>::new()).expect("request");
    let read = match sender.send_request(req).await {
        Ok(response) => collect(response).await,
        Err(_) => Read::Failed,
    };
    (read, backend.heads.recv().await.expect("a request head"))
}

#[tokio::test]
async fn reads_every_response_as_hypers_client_does_and_writes_the_same_request() {
    let cases: &[(&str, &[u8])] = &[
        ("GET", b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nx-r: 1\r\nx-r: 2\r\n\r\nhello"),
        ("GET", b"HTTP/1.1 200 OK\r\nServer: t\r\nDate: Sat, 28 Nov 2026 17:00:00 GMT\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok"),
        ("GET", b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\nConnection: close\r\nX-A: 1\r\n\r\ndown"),
        ("GET", b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: x-hop\r\nx-hop: 1\r\n\r\nok"),
        ("GET", b"HTTP/1.1 201 Made\r\nContent-Length: 2, 2\r\n\r\nhi"),
        ("GET", b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ntrailer: x-t\r\n\r\n5;ext=1\r\nhello\r\n1\r\n!\r\n0\r\nx-t: done\r\n\r\n"),
        ("GET", b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"),
        ("GET", b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\n\r\nuntil the end"),
        ("GET", b"HTTP/1.1 200 OK\r\n\r\nclose-delimited"),
        ("GET", b"HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\nok"),
        ("HEAD", b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n"),
        ("GET", b"HTTP/1.1 204 No Content\r\n\r\n"),
        ("GET", b"HTTP/1.1 304 Not Modified\r\ncontent-length: 10\r\n\r\n"),
        ("GET", b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\nx"),
        ("GET", b"HTTP/1.1 599 Whatever\r\ncontent-length: 0\r\n\r\n"),
        ("POST", b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"),
        // Failures: both clients refuse.
        ("GET", b"HTTP/1.1 200 OK\r\ncontent-length: 2, 3\r\n\r\nhi"),
        ("GET", b"HTTP/1.1 200 OK\r\ncontent-length: +2\r\n\r\nhi"),
        ("GET", b"HTTP/1.0 200 OK\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n"),
        ("GET", b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nshort"),
        ("GET", b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n"),
        ("GET", b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabcXY"),
        ("GET", b"HTTP/1.1 200 OK\r\nbad header\r\n\r\n"),
        ("GET", b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\n"),
        ("GET", b""),
    ];
    for (method, reply) in cases {
        let (our_read, our_head) = ours(reply, method).await;
        let (their_read, their_head) = hypers(reply, method).await;
        let reply = String::from_utf8_lossy(reply);
        assert_eq!(our_read, their_read, "{method} answered with {reply:?}");
        assert_eq!(
            String::from_utf8_lossy(&our_head),
            String::from_utf8_lossy(&their_head),
            "{method} answered with {reply:?}"
        );
    }
}

/// [`send`] with no extra fields.
async fn send_plain(
    req: &Parts,
    addr: SocketAddr,
    endpoint: &Authority,
    timeouts: Timeouts,
    keep: bool,
) -> Result<Response<ResponseBody>, ProxyError> {
    send(req, &ExtraFields::default(), addr, endpoint, timeouts, keep).await
}

#[test]
fn the_request_target_is_in_origin_form() {
    let mut out = Vec::new();
    encode(
        &head("http://10.0.0.1:80", "GET", &[]),
        &ExtraFields::default(),
        &mut out,
    );
    assert_eq!(out, b"GET / HTTP/1.1\r\n\r\n");
    out.clear();
    encode(
        &head("http://10.0.0.1:80/a/b?c=d", "DELETE", &[("host", "x")]),
        &ExtraFields::default(),
        &mut out,
    );
    assert_eq!(out, b"DELETE /a/b?c=d HTTP/1.1\r\nhost: x\r\n\r\n");
}

#[test]
fn extra_fields_follow_the_maps_own() {
    let mut extra = ExtraFields::default();
    extra.push("x-real-ip", b"192.0.2.9");
    extra.push("x-forwarded-proto", b"http");
    let mut out = Vec::new();
    encode(
        &head("http://10.0.0.1:80/", "GET", &[("host", "x"), ("accept", "*/*")]),
        &extra,
        &mut out,
    );
    assert_eq!(
        String::from_utf8_lossy(&out),
        "GET / HTTP/1.1\r\nhost: x\r\naccept: */*\r\nx-real-ip: 192.0.2.9\r\nx-forwarded-proto: http\r\n\r\n"
    );
}

#[test]
fn takes_only_the_requests_it_is_for() {
    let addr: SocketAddr = "10.0.0.1:80".parse().expect("address");
    let get = |uri: &str, headers: &[(&'static str, &'static str)]| head(uri, "GET", headers);
    assert_eq!(
        eligible(&get("http://10.0.0.1/", &[]), true, Some(addr)),
        Some(addr)
    );
    assert_eq!(
        eligible(&get("http://10.0.0.1/", &[]), true, None),
        None,
        "a host name"
    );
    assert_eq!(eligible(&get("https://10.0.0.1/", &[]), true, Some(addr)), None);
    assert_eq!(
        eligible(
            &get("http://10.0.0.1/", &[("upgrade", "websocket")]),
            true,
            Some(addr)
        ),
        None
    );
    let mut h2 = get("http://10.0.0.1/", &[]);
    h2.version = http::Version::HTTP_2;
    assert_eq!(eligible(&h2, true, Some(addr)), None);
    assert_eq!(
        eligible(&head("http://10.0.0.1/", "POST", &[]), false, Some(addr)),
        None,
        "a body"
    );
    assert_eq!(
        eligible(&head("http://10.0.0.1/", "CONNECT", &[]), true, Some(addr)),
        None
    );
}

/// Sends a GET for `/n` to `backend` and reads the response whole.
async fn get(backend: &Script, n: usize, keep: Duration) -> Result<Read, ProxyError> {
    Ok(collect(send_get(backend.addr, &format!("/{n}"), keep).await?).await)
}

/// Sends a GET for `path` to `addr` by this client; the response once its head has arrived.
async fn send_get(
    addr: SocketAddr,
    path: &str,
    idle: Duration,
) -> Result<http::Response<ResponseBody>, ProxyError> {
    let req = head(&format!("http://{addr}{path}"), "GET", &[("host", "a")]);
    let endpoint = Authority::try_from(addr.to_string()).expect("authority");
    send_plain(&req, addr, &endpoint, timeouts(idle), true).await
}

fn body(read: &Read) -> &[u8] {
    match read {
        Read::Ok { body, .. } => body,
        Read::Failed => b"(failed)",
    }
}

#[tokio::test]
async fn a_connection_is_reused_only_when_both_sides_allow_it() {
    const OK: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
    let backend = script(&[
        (OK, false),
        (
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n1\r\na\r\n0\r\n\r\n",
            false,
        ),
        (
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
            false,
        ),
        (OK, false),
        (b"HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\nok", false),
        (OK, false),
        (b"HTTP/1.1 200 OK\r\n\r\nuntil closed", true),
        (OK, false),
    ])
    .await;
    let accepted = || backend.accepted.load(Ordering::SeqCst);
    assert_eq!(body(&get(&backend, 1, SECOND).await.expect("1")), b"ok");
    assert_eq!(body(&get(&backend, 2, SECOND).await.expect("2")), b"a");
    assert_eq!(
        accepted(),
        1,
        "a length-framed and a chunked response keep the connection"
    );
    assert_eq!(pool::idle_count(backend.addr), 1);
    assert_eq!(body(&get(&backend, 3, SECOND).await.expect("3")), b"ok");
    assert_eq!(
        pool::idle_count(backend.addr),
        0,
        "`connection: close` is not reused"
    );
    assert_eq!(body(&get(&backend, 4, SECOND).await.expect("4")), b"ok");
    assert_eq!(accepted(), 2);
    assert_eq!(body(&get(&backend, 5, SECOND).await.expect("5")), b"ok");
    assert_eq!(
        pool::idle_count(backend.addr),
        0,
        "HTTP/1.0 without keep-alive is not reused"
    );
    assert_eq!(body(&get(&backend, 6, SECOND).await.expect("6")), b"ok");
    assert_eq!(body(&get(&backend, 7, SECOND).await.expect("7")), b"until closed");
    assert_eq!(
        pool::idle_count(backend.addr),
        0,
        "a close-delimited body ends the connection"
    );
    assert_eq!(body(&get(&backend, 8, SECOND).await.expect("8")), b"ok");
    assert_eq!(accepted(), 4);
    assert_eq!(pool::idle_count(backend.addr), 1);
}

#[tokio::test]
async fn a_body_dropped_before_its_end_closes_the_connection() {
    let backend = script(&[
        (b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nfive.", false),
        (b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok", false),
    ])
    .await;
    let response = send_get(backend.addr, "/", SECOND).await.expect("response");
    drop(response);
    assert_eq!(pool::idle_count(backend.addr), 0);
    assert_eq!(body(&get(&backend, 2, SECOND).await.expect("2")), b"ok");
    assert_eq!(backend.accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn idle_connections_close_past_their_timeout_or_once_the_backend_closed_them() {
    const OK: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
    // The backend closes its end after answering: the sweeper drops the connection.
    let mut closing = script(&[(OK, true), (OK, false)]).await;
    assert_eq!(body(&get(&closing, 1, SECOND * 60).await.expect("1")), b"ok");
    closing.closed.recv().await.expect("the backend closed");
    eventually(|| pool::idle_count(closing.addr) == 0).await;
    assert_eq!(body(&get(&closing, 2, SECOND * 60).await.expect("2")), b"ok");
    assert_eq!(closing.accepted.load(Ordering::SeqCst), 2);

    // Idle past its timeout: closed by the sweeper, which the backend sees.
    let mut idle = script(&[(OK, false)]).await;
    let since = Instant::now();
    assert_eq!(
        body(&get(&idle, 1, Duration::from_millis(200)).await.expect("1")),
        b"ok"
    );
    idle.closed
        .recv()
        .await
        .expect("the proxy closed the idle connection");
    assert!(
        since.elapsed() >= Duration::from_millis(200),
        "closed before its idle timeout"
    );
    assert_eq!(pool::idle_count(idle.addr), 0);
}

#[tokio::test]
async fn failures_are_told_apart() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let closed = listener.local_addr().expect("address");
    drop(listener);
    let error = send_get(closed, "/", SECOND).await.expect_err("refused");
    assert!(matches!(error, ProxyError::Refused { .. }), "{error}");

    let backend = script(&[(b"HTTP/1.1 200 OK\r\ncontent-length: x\r\n\r\n", false)]).await;
    let error = send_get(backend.addr, "/", SECOND).await.expect_err("invalid");
    assert!(
        matches!(&error, ProxyError::Backend { reason, .. } if reason.contains("Content-Length")),
        "{error}"
    );
    let error = send_get(backend.addr, "/", SECOND).await.expect_err("closed");
    assert!(
        matches!(&error, ProxyError::Backend { reason, .. } if reason.contains("before the response headers")),
        "{error}"
    );
}

#[tokio::test]
async fn an_unusual_reason_phrase_is_kept() {
    let (read, _) = ours(b"HTTP/1.1 200 Fine Thanks\r\ncontent-length: 0\r\n\r\n", "GET").await;
    let Read::Ok { reason, .. } = read else {
        panic!("failed");
    };
    assert_eq!(reason.as_deref(), Some(&b"Fine Thanks"[..]));
}

/// Waits until `done` holds, for at most five seconds.
async fn eventually(done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !done() {
        assert!(Instant::now() < deadline, "not done within five seconds");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Whether the response to a GET answered with `reply` comes with its head kept as it came.
async fn kept(reply: &'static [u8], method: &str) -> bool {
    let backend = script(&[(reply, true)]).await;
    let req = head(&format!("http://{}/", backend.addr), method, &[("host", "a")]);
    let endpoint = Authority::try_from(backend.addr.to_string()).expect("authority");
    let mut response = send_plain(&req, backend.addr, &endpoint, timeouts(SECOND), true)
        .await
        .expect("a response");
    let kept = response.body_mut().take_kept();
    if kept.is_some() {
        assert!(response.headers().is_empty(), "{:?}", response.headers());
    }
    kept.is_some()
}

#[tokio::test]
async fn keeps_the_common_head_as_it_came_and_maps_every_other() {
    let common: &[&[u8]] = &[
        b"HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Type: text/plain\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok",
        b"HTTP/1.1 404 Not Found\r\ncontent-length: 1\r\nconnection: close\r\n\r\nx",
        b"HTTP/1.1 200 OK\r\nset-cookie: a=1\r\nset-cookie: b=2\r\ncontent-length: 1\r\n\r\nx",
    ];
    for reply in common {
        assert!(kept(reply, "GET").await, "{}", String::from_utf8_lossy(reply));
    }
    let others: &[(&str, &[u8])] = &[
        ("HEAD", b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n"),
        ("GET", b"HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\nok"),
        ("GET", b"HTTP/1.1 200 Fine\r\ncontent-length: 2\r\n\r\nok"),
        ("GET", b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"),
        (
            "GET",
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 2\r\n\r\nok",
        ),
        ("GET", b"HTTP/1.1 200 OK\r\ncontent-length: 2, 2\r\n\r\nok"),
        ("GET", b"HTTP/1.1 200 OK\r\n\r\nuntil close"),
        (
            "GET",
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n",
        ),
        (
            "GET",
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ntrailer: x-t\r\n\r\nok",
        ),
        (
            "GET",
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nkeep-alive: timeout=5\r\n\r\nok",
        ),
        (
            "GET",
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: keep-alive, x-hop\r\n\r\nok",
        ),
        ("GET", b"HTTP/1.1 304 Not Modified\r\ncontent-length: 2\r\n\r\n"),
    ];
    for (method, reply) in others {
        assert!(
            !kept(reply, method).await,
            "{method} {}",
            String::from_utf8_lossy(reply)
        );
    }
}

/// A backend that answers the first request on each connection and never the next ones (the
/// connection stays open); how many connections it accepted.
async fn answers_once() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let (mut read, mut answered) = (Vec::new(), false);
                let mut chunk = [0u8; 4096];
                while let Ok(n @ 1..) = stream.read(&mut chunk).await {
                    read.extend_from_slice(&chunk[..n]);
                    if !answered && read.windows(4).any(|w| w == b"\r\n\r\n") {
                        answered = true;
                        let reply = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                        if stream.write_all(reply).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    (addr, accepted)
}

/// The first-byte timeout runs on the pooled connection's own timer, moved to each request's
/// deadline: a request on a reused connection times out at its own deadline, whether that is
/// earlier or later than the one the timer was last set to, and never before it.
#[tokio::test]
async fn a_reused_connection_times_out_at_each_requests_own_deadline() {
    for (first, second) in [
        (SECOND, Duration::from_millis(200)),
        (Duration::from_millis(100), Duration::from_millis(600)),
    ] {
        let (addr, accepted) = answers_once().await;
        let req = head(&format!("http://{addr}/"), "GET", &[("host", "a")]);
        let endpoint = Authority::try_from(addr.to_string()).expect("authority");
        let with = |first_byte| Timeouts {
            first_byte,
            ..timeouts(SECOND)
        };
        let response = send_plain(&req, addr, &endpoint, with(first), true)
            .await
            .expect("the first request is answered");
        assert_eq!(body(&collect(response).await), b"ok");
        let started = Instant::now();
        match send_plain(&req, addr, &endpoint, with(second), true).await {
            Err(ProxyError::ResponseTimeout { timeout, .. }) => assert_eq!(timeout, second),
            other => panic!(
                "expected a first-byte timeout, got {:?}",
                other.map(|r| r.status())
            ),
        }
        assert!(
            started.elapsed() >= second,
            "timed out after {:?}, before {second:?}",
            started.elapsed()
        );
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            1,
            "the second request reused the connection"
        );
    }
}
