//! End-to-end tests of the proxy's client-facing edge, against the real `berth-proxy` binary: limits
//! on request heads (size, count, time), idle connections, the connection cap, request smuggling
//! shapes, host confusion, `X-Request-Id`, and memory under floods of never-finished heads.
//! Malformed requests are written by hand on raw TCP connections; HTTP/2 goes through hyper's
//! client. (A forged `X-Forwarded-For` from an untrusted client: see `proxy.rs`,
//! `forwarded_headers_are_trusted_only_from_trusted_ips`.)

mod support;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// How long a raw exchange may wait for the proxy to answer or close.
const ANSWER_WITHIN: Duration = Duration::from_secs(5);

/// A backend that records every request it gets (`METHOD path`) and answers 200 "ok".
struct Recorder {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<String>>>,
    task: JoinHandle<()>,
}

impl Recorder {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let seen_c = seen.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let seen = seen_c.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let seen = seen.clone();
                        async move {
                            let line = format!("{} {}", req.method(), req.uri().path());
                            let _ = req.into_body().collect().await;
                            seen.lock().expect("seen").push(line);
                            Ok::<_, hyper::Error>(Response::new(Full::new(Bytes::from_static(b"ok"))))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self { addr, seen, task }
    }

    fn seen(&self) -> Vec<String> {
        self.seen.lock().expect("seen").clone()
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A proxy routing `edge.example` to an echo backend "edge", `other.example` to one named
/// "other", and `rec.example` to `recorder`, with `extra` flags.
async fn edge_proxy(
    recorder: Option<&Recorder>,
    extra: &[&str],
) -> (FakeControlPlane, ProxyProcess, [Backend; 2]) {
    let edge = Backend::start("edge").await;
    let other = Backend::start("other").await;
    let mut routes = vec![
        route("edge", &["edge.example"], "", "edge"),
        route("other", &["other.example"], "", "other"),
    ];
    let mut clusters = vec![
        cluster("edge", vec![endpoint(edge.addr)]),
        cluster("other", vec![endpoint(other.addr)]),
    ];
    if let Some(recorder) = recorder {
        routes.push(route("rec", &["rec.example"], "", "rec"));
        clusters.push(cluster("rec", vec![endpoint(recorder.addr)]));
    }
    let mut cp = FakeControlPlane::start().await;
    let proxy = ProxyProcess::start(&[cp.url()], extra).await;
    cp.expect_hello().await;
    cp.push(update("v1", "n1", routes, clusters));
    cp.expect_ack().await;
    (cp, proxy, [edge, other])
}

/// What came back on a raw connection.
#[derive(Debug)]
struct Raw {
    /// Everything read.
    text: String,
    /// Whether the proxy closed the connection (end of stream or reset) within [`ANSWER_WITHIN`].
    closed: bool,
}

impl Raw {
    /// The status of the first response, if any.
    fn status(&self) -> Option<u16> {
        let line = self.text.lines().next()?;
        line.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
    }

    /// How many responses came back.
    fn responses(&self) -> usize {
        self.text.matches("HTTP/1.1 ").count()
    }
}

/// Writes `request` on a fresh connection (write errors ignored: the proxy may close first) and
/// reads until the proxy closes, or [`ANSWER_WITHIN`].
async fn exchange(addr: SocketAddr, request: &[u8]) -> Raw {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let _ = stream.write_all(request).await;
    read_to_close(&mut stream, ANSWER_WITHIN).await
}

async fn read_to_close(stream: &mut TcpStream, within: Duration) -> Raw {
    let mut text = Vec::new();
    let mut buf = [0u8; 8192];
    let deadline = tokio::time::Instant::now() + within;
    let closed = loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => break false,
            Ok(Ok(0)) | Ok(Err(_)) => break true,
            Ok(Ok(n)) => text.extend_from_slice(&buf[..n]),
        }
    };
    Raw {
        text: String::from_utf8_lossy(&text).into_owned(),
        closed,
    }
}

/// Waits until the proxy closes `stream` (without reading anything meaningful); how long it took.
async fn wait_closed(stream: &mut TcpStream, within: Duration) -> Duration {
    let started = Instant::now();
    let raw = read_to_close(stream, within).await;
    assert!(raw.closed, "the proxy kept the connection open: {raw:?}");
    started.elapsed()
}

/// One request on a fresh raw connection that asks to be closed after.
async fn get_raw(addr: SocketAddr, head: &str) -> Raw {
    exchange(addr, format!("{head}Connection: close\r\n\r\n").as_bytes()).await
}

/// Writes `request` on a fresh connection and checks the proxy answers `status` and closes it.
async fn answered_then_closed(addr: SocketAddr, request: &str, status: u16, what: &str) -> Raw {
    let raw = exchange(addr, request.as_bytes()).await;
    assert_eq!(raw.status(), Some(status), "{what}: {raw:?}");
    assert!(raw.closed, "{what}: the connection is closed after");
    raw
}

/// `count` connections, each sending a request line and `headers`, never the blank line ending the
/// head, then reading until the proxy closes (10 s at most).
fn unfinished_heads(addr: SocketAddr, headers: String, count: usize) -> Vec<JoinHandle<Raw>> {
    let head = Arc::new(format!("GET / HTTP/1.1\r\nHost: edge.example\r\n{headers}"));
    (0..count)
        .map(|_| {
            let head = head.clone();
            tokio::spawn(async move {
                let mut conn = TcpStream::connect(addr).await.expect("connect");
                let _ = conn.write_all(head.as_bytes()).await;
                read_to_close(&mut conn, Duration::from_secs(10)).await
            })
        })
        .collect()
}

/// The proxy's peak and current resident memory (VmHWM, VmRSS), in KiB.
fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .expect("memory field")
    };
    (field("VmHWM:"), field("VmRSS:"))
}

#[tokio::test]
async fn slow_header_clients_are_cut_off_while_others_are_served() {
    let (_cp, proxy, _b) = edge_proxy(None, &["--header-read-timeout", "1s"]).await;
    let addr = proxy.http_addr();

    // A client that stops halfway through its head.
    let mut stalled = TcpStream::connect(addr).await.expect("connect");
    stalled
        .write_all(b"GET / HTTP/1.1\r\nHost: edge.example\r\nX-Slow: ")
        .await
        .expect("write");
    // A client that keeps sending, one byte every 100ms: the timer counts from its first byte.
    let mut trickler = TcpStream::connect(addr).await.expect("connect");
    trickler
        .write_all(b"GET / HTTP/1.1\r\nHost: edge.example\r\n")
        .await
        .expect("write");
    let (mut read_half, mut write_half) = trickler.into_split();
    let trickle = tokio::spawn(async move {
        loop {
            if write_half
                .write_all(b"X-Trickle-Header-Name: a\r\n")
                .await
                .is_err()
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let started = Instant::now();

    // Others are served meanwhile.
    for _ in 0..5 {
        let (status, _, body) = must_get(addr, "edge.example", "/").await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }

    let stalled_after = started.elapsed() + wait_closed(&mut stalled, ANSWER_WITHIN).await;
    assert!(
        stalled_after >= Duration::from_millis(900),
        "closed before --header-read-timeout: {stalled_after:?}"
    );
    let mut buf = [0u8; 1024];
    let trickler_closed = tokio::time::timeout(ANSWER_WITHIN, async {
        loop {
            match read_half.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(trickler_closed.is_ok(), "a trickling client is cut off too");
    trickle.abort();

    let (status, _, _) = must_get(addr, "edge.example", "/").await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn oversized_heads_are_answered_431() {
    let (_cp, proxy, _b) = edge_proxy(None, &[]).await;
    let addr = proxy.http_addr();

    // Under the default 64KiB: served.
    let big = "a".repeat(60 * 1024);
    let ok = get_raw(
        addr,
        &format!("GET / HTTP/1.1\r\nHost: edge.example\r\nX-Big: {big}\r\n"),
    )
    .await;
    assert_eq!(ok.status(), Some(200), "{}", &ok.text[..ok.text.len().min(300)]);

    // Over it: 431, connection closed.
    let huge = "a".repeat(70 * 1024);
    let head = format!("GET / HTTP/1.1\r\nHost: edge.example\r\nX-Huge: {huge}\r\n\r\n");
    answered_then_closed(addr, &head, 431, "a 70KiB header").await;

    // A long request line counts towards the same limit.
    let head = format!("GET /{huge} HTTP/1.1\r\nHost: edge.example\r\n\r\n");
    answered_then_closed(addr, &head, 431, "a 70KiB request line").await;

    // More than the default 100 header fields.
    let many: String = (0..101).map(|i| format!("X-H{i}: v\r\n")).collect();
    let head = format!("GET / HTTP/1.1\r\nHost: edge.example\r\n{many}\r\n");
    answered_then_closed(addr, &head, 431, "101 header fields").await;
    // 80 are fine (the proxy adds its own before forwarding).
    let some: String = (0..80).map(|i| format!("X-H{i}: v\r\n")).collect();
    let raw = get_raw(addr, &format!("GET / HTTP/1.1\r\nHost: edge.example\r\n{some}")).await;
    assert_eq!(raw.status(), Some(200), "{raw:?}");

    // HTTP/2: too many header fields, 431 on that stream.
    let (mut sender, _conn) = h2_connect(addr).await;
    let mut request = Request::get("http://edge.example/").version(http::Version::HTTP_2);
    for i in 0..101 {
        request = request.header(format!("x-h{i}"), "v");
    }
    let response = sender
        .send_request(request.body(Empty::<Bytes>::new()).expect("request"))
        .await
        .expect("h2 request");
    assert_eq!(response.status(), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    assert_eq!(response.headers()["x-berth-error"], "headers-too-large");

    // And the proxy still serves.
    let (status, _, _) = must_get(addr, "edge.example", "/").await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn idle_connections_are_closed() {
    let (_cp, proxy, _b) = edge_proxy(
        None,
        &["--client-idle-timeout", "2s", "--header-read-timeout", "1s"],
    )
    .await;
    let addr = proxy.http_addr();

    // A connection that never sends a byte.
    let mut silent = TcpStream::connect(addr).await.expect("connect");
    let waited = wait_closed(&mut silent, Duration::from_secs(8)).await;
    assert!(waited >= Duration::from_millis(1900), "{waited:?}");

    // Keep-alive: open past --header-read-timeout between requests, closed after the idle timeout.
    let mut conn = TcpStream::connect(addr).await.expect("connect");
    let request = b"GET / HTTP/1.1\r\nHost: edge.example\r\n\r\n";
    conn.write_all(request).await.expect("write");
    read_one_response(&mut conn).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    conn.write_all(request).await.expect("second request");
    read_one_response(&mut conn).await;
    let waited = wait_closed(&mut conn, Duration::from_secs(8)).await;
    assert!(waited >= Duration::from_millis(1900), "{waited:?}");

    // HTTP/2: once its last stream is done, the connection is closed (GOAWAY) when idle.
    let (mut sender, conn) = h2_connect(addr).await;
    // Quiet past --header-read-timeout before its first request: HTTP/2 has no head timer.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let response = sender
        .send_request(
            Request::get("http://edge.example/")
                .version(http::Version::HTTP_2)
                .body(Empty::<Bytes>::new())
                .expect("request"),
        )
        .await
        .expect("h2 request");
    assert_eq!(response.status(), StatusCode::OK);
    let _ = response.into_body().collect().await;
    let started = Instant::now();
    let ended = tokio::time::timeout(Duration::from_secs(8), conn).await;
    assert!(ended.is_ok(), "the idle HTTP/2 connection was not closed");
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
}

/// Reads one response with a body of known length from a keep-alive connection.
async fn read_one_response(conn: &mut TcpStream) {
    let mut text = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let n = tokio::time::timeout(ANSWER_WITHIN, conn.read(&mut buf))
            .await
            .expect("a response in time")
            .expect("read");
        assert!(n > 0, "closed before the response was complete");
        text.extend_from_slice(&buf[..n]);
        let s = String::from_utf8_lossy(&text);
        let Some(end) = s.find("\r\n\r\n") else { continue };
        let length: usize = s[..end]
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length:")
                    .map(|v| v.trim().to_owned())
            })
            .and_then(|v| v.parse().ok())
            .expect("content-length");
        if text.len() >= end + 4 + length {
            assert!(s.starts_with("HTTP/1.1 200"), "{s}");
            return;
        }
    }
}

#[tokio::test]
async fn connections_over_the_cap_are_closed() {
    let (_cp, proxy, _b) = edge_proxy(None, &["--max-connections", "2"]).await;
    let addr = proxy.http_addr();

    let mut held = Vec::new();
    for _ in 0..2 {
        let mut conn = TcpStream::connect(addr).await.expect("connect");
        // A request served proves the connection holds a slot.
        conn.write_all(b"GET / HTTP/1.1\r\nHost: edge.example\r\n\r\n")
            .await
            .expect("write");
        read_one_response(&mut conn).await;
        held.push(conn);
    }
    let refused = exchange(addr, b"GET / HTTP/1.1\r\nHost: edge.example\r\n\r\n").await;
    assert!(refused.closed, "{refused:?}");
    assert_eq!(refused.responses(), 0, "{refused:?}");

    drop(held.pop());
    eventually("a slot to be given back", || async {
        let raw = get_raw(addr, "GET / HTTP/1.1\r\nHost: edge.example\r\n").await;
        (raw.status() == Some(200)).then_some(())
    })
    .await;
    assert!(
        proxy
            .logs()
            .iter()
            .any(|l| l.contains("--max-connections are open")),
        "the refusal is logged"
    );
}

#[tokio::test]
async fn request_smuggling_shapes_are_refused() {
    let recorder = Recorder::start().await;
    let (_cp, proxy, _b) = edge_proxy(Some(&recorder), &[]).await;
    let addr = proxy.http_addr();
    let smuggled = "GET /smuggled HTTP/1.1\r\nHost: rec.example\r\n\r\n";

    // Refused outright with 400, connection closed.
    let refused = [
        (
            "two different Content-Length",
            format!("POST /a HTTP/1.1\r\nHost: rec.example\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcd{smuggled}"),
        ),
        (
            "a Content-Length list",
            format!("POST /a HTTP/1.1\r\nHost: rec.example\r\nContent-Length: 4, 5\r\n\r\nabcd{smuggled}"),
        ),
        (
            "a signed Content-Length",
            format!("POST /a HTTP/1.1\r\nHost: rec.example\r\nContent-Length: +4\r\n\r\nabcd{smuggled}"),
        ),
        (
            "chunked not last",
            format!("POST /a HTTP/1.1\r\nHost: rec.example\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n{smuggled}"),
        ),
        (
            "a second Transfer-Encoding undoing chunked",
            format!("POST /a HTTP/1.1\r\nHost: rec.example\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\nContent-Length: 4\r\n\r\n0\r\n\r\n{smuggled}"),
        ),
        (
            "an unknown transfer coding",
            format!("POST /a HTTP/1.1\r\nHost: rec.example\r\nTransfer-Encoding: xchunked\r\nContent-Length: 4\r\n\r\nabcd{smuggled}"),
        ),
        (
            "Transfer-Encoding in HTTP/1.0",
            format!("POST /a HTTP/1.0\r\nHost: rec.example\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{smuggled}"),
        ),
        (
            "obs-fold",
            format!("GET /a HTTP/1.1\r\nHost: rec.example\r\nX-Folded: a\r\n b\r\n\r\n{smuggled}"),
        ),
        (
            "space before the colon",
            format!("GET /a HTTP/1.1\r\nHost: rec.example\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n{smuggled}"),
        ),
        (
            "a bare CR in a value",
            format!("GET /a HTTP/1.1\r\nHost: rec.example\r\nX-A: a\rb\r\n\r\n{smuggled}"),
        ),
    ];
    for (shape, request) in &refused {
        let raw = answered_then_closed(addr, request, 400, shape).await;
        assert_eq!(raw.responses(), 1, "{shape}: {raw:?}");
    }

    // Content-Length with Transfer-Encoding: chunked wins (RFC 9112 §6.3), and the connection is
    // closed after the response, so the bytes after the chunked body are never read as a request.
    let raw = exchange(
        addr,
        format!("POST /cl-te HTTP/1.1\r\nHost: rec.example\r\nContent-Length: 40\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{smuggled}").as_bytes(),
    )
    .await;
    assert!(raw.closed, "{raw:?}");
    assert_eq!(raw.responses(), 1, "{raw:?}");
    assert!(matches!(raw.status(), Some(200 | 400)), "{raw:?}");
    let raw = exchange(
        addr,
        format!("POST /te-cl HTTP/1.1\r\nHost: rec.example\r\nTransfer-Encoding: chunked\r\nContent-Length: 40\r\n\r\n0\r\n\r\n{smuggled}").as_bytes(),
    )
    .await;
    assert!(raw.closed, "{raw:?}");
    assert_eq!(raw.responses(), 1, "{raw:?}");

    let seen = recorder.seen();
    assert!(!seen.iter().any(|s| s.contains("smuggled")), "{seen:?}");
    assert!(
        seen.iter().all(|s| s == "POST /cl-te" || s == "POST /te-cl"),
        "only the CL+TE requests, as chunked, reach the backend: {seen:?}"
    );
}

#[tokio::test]
async fn host_confusion_is_refused() {
    let (_cp, proxy, _b) = edge_proxy(None, &[]).await;
    let addr = proxy.http_addr();

    // HTTP/1.1, two Host headers (even the same one twice).
    for second in ["other.example", "edge.example"] {
        let raw = get_raw(
            addr,
            &format!("GET / HTTP/1.1\r\nHost: edge.example\r\nHost: {second}\r\n"),
        )
        .await;
        assert_eq!(raw.status(), Some(400), "{raw:?}");
        assert!(
            raw.text.to_ascii_lowercase().contains("x-berth-error: bad-host"),
            "{raw:?}"
        );
    }
    // HTTP/1.1 without Host.
    let raw = get_raw(addr, "GET / HTTP/1.1\r\n").await;
    assert_eq!(raw.status(), Some(400), "{raw:?}");

    // Absolute form: the target's authority wins, for routing and for the backend.
    let raw = get_raw(
        addr,
        "GET http://edge.example/abs HTTP/1.1\r\nHost: other.example\r\n",
    )
    .await;
    assert_eq!(raw.status(), Some(200), "{raw:?}");
    let body = &raw.text[raw.text.find("\r\n\r\n").expect("head end") + 4..];
    let seen = echo(body);
    assert_eq!(seen["backend"], "edge");
    assert_eq!(seen["headers"]["host"], "edge.example");

    // HTTP/2, `host` differing from `:authority`.
    let (mut sender, _conn) = h2_connect(addr).await;
    let h2 = |host: &'static str| {
        Request::get("http://edge.example/")
            .version(http::Version::HTTP_2)
            .header("host", host)
            .body(Empty::<Bytes>::new())
            .expect("request")
    };
    let response = sender
        .send_request(h2("other.example"))
        .await
        .expect("h2 request");
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(response.headers()["x-berth-error"], "bad-host");
    // The same host (case aside) is fine, and the backend gets it.
    let response = sender.send_request(h2("EDGE.example")).await.expect("h2 request");
    assert_eq!(response.status(), StatusCode::OK);
    let body = response.into_body().collect().await.expect("body").to_bytes();
    let seen = echo(&String::from_utf8_lossy(&body));
    assert_eq!(seen["headers"]["host"], "edge.example");
}

#[tokio::test]
async fn request_ids_reach_the_backend() {
    let (_cp, proxy, _b) = edge_proxy(None, &[]).await;
    let addr = proxy.http_addr();

    let (status, headers, body) = must_get(addr, "edge.example", "/").await;
    assert_eq!(status, StatusCode::OK);
    let id = echo(&body)["headers"]["x-request-id"]
        .as_str()
        .expect("an id")
        .to_owned();
    assert_eq!(id.len(), 32, "{id}");
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
    assert!(headers.get("x-request-id").is_none(), "not echoed, as Envoy");
    let (_, _, body) = must_get(addr, "edge.example", "/").await;
    assert_ne!(
        echo(&body)["headers"]["x-request-id"],
        id.as_str(),
        "a new one each time"
    );

    let (_, _, body) = get(addr, "edge.example", "/", &[("x-request-id", "trace-42")])
        .await
        .expect("request");
    assert_eq!(
        echo(&body)["headers"]["x-request-id"],
        "trace-42",
        "the client's is kept"
    );
    let (_, _, body) = get(addr, "edge.example", "/", &[("x-request-id", "not an id")])
        .await
        .expect("request");
    assert_eq!(
        echo(&body)["headers"]["x-request-id"].as_str().map(str::len),
        Some(32),
        "an implausible one is replaced"
    );
}

/// Hundreds of clients each sending about 400KB of headers that never end, and hundreds holding
/// heads just under the limit: the proxy's peak memory stays bounded, every flood connection is
/// answered or closed, and other clients are served meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_stays_bounded_under_floods_of_unfinished_heads() {
    const FLOODERS: usize = 300;
    const HOLDERS: usize = 200;
    /// The bound on the proxy's peak resident memory.
    const PEAK_BOUND_KIB: u64 = 64 * 1024;

    let (_cp, proxy, _b) = edge_proxy(None, &["--header-read-timeout", "3s"]).await;
    let addr = proxy.http_addr();
    let (before, _) = memory_kib(proxy.pid());

    // Over the limit: each is answered 431 and closed once it passed 64KiB.
    let line = format!("X-Flood: {}\r\n", "f".repeat(1000));
    let tasks = unfinished_heads(addr, line.repeat(400), FLOODERS);
    // Under the limit, never finished: held until --header-read-timeout.
    let holders = unfinished_heads(addr, line.repeat(50), HOLDERS);
    // Others are served meanwhile.
    for _ in 0..10 {
        let (status, _, _) = must_get(addr, "edge.example", "/").await;
        assert_eq!(status, StatusCode::OK);
    }
    let mut answered_431 = 0;
    for task in tasks {
        let raw = task.await.expect("flooder");
        assert!(raw.closed, "a flood connection was left open");
        if raw.status() == Some(431) {
            answered_431 += 1;
        }
    }
    for task in holders {
        let raw = task.await.expect("holder");
        assert!(raw.closed, "a held head outlived --header-read-timeout");
    }
    let (peak, after) = memory_kib(proxy.pid());
    eprintln!(
        "proxy memory: before {before} KiB, peak {peak} KiB, after the floods closed {after} KiB; \
         {answered_431} of {FLOODERS} flooders read their 431 before the reset"
    );
    assert!(
        peak < PEAK_BOUND_KIB,
        "peak {peak} KiB over the bound {PEAK_BOUND_KIB} KiB"
    );
    let (status, _, _) = must_get(addr, "edge.example", "/").await;
    assert_eq!(status, StatusCode::OK);
}
