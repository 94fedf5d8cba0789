//! Berth's HTTP/1.1 loop beside hyper's server: the same client bytes in, the same service
//! answers, and the client must read the same bytes back (the `Date` value aside), whether the
//! loop served the requests itself or handed the connection to hyper.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, StatusCode, Version};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::*;
use crate::limits::ClientLimits;

type TestBody = BoxBody<Bytes, Infallible>;

impl KeptHeadSource for TestBody {}
impl KeptHeadSource for Full<Bytes> {}

type Fields = Vec<(&'static str, &'static str)>;

/// What the service answers: a status, header fields, the body's frames (`None`: one whole
/// body of known size), and the response's version and reason phrase.
#[derive(Clone, Debug)]
struct Reply {
    status: u16,
    headers: Fields,
    body: &'static str,
    /// Streamed as these chunks (size unknown), then these trailers.
    chunks: Option<(Vec<&'static str>, Fields)>,
    version: Version,
    reason: Option<&'static str>,
}

fn reply(status: u16, body: &'static str) -> Reply {
    Reply {
        status,
        headers: Vec::new(),
        body,
        chunks: None,
        version: Version::HTTP_11,
        reason: None,
    }
}

impl Reply {
    fn header(mut self, name: &'static str, value: &'static str) -> Self {
        self.headers.push((name, value));
        self
    }

    fn chunks(mut self, chunks: &[&'static str], trailers: &[(&'static str, &'static str)]) -> Self {
        self.chunks = Some((chunks.to_vec(), trailers.to_vec()));
        self
    }

    /// The response, which also tells what request the service saw (`x-saw`).
    fn build<T>(&self, req: &http::Request<T>) -> http::Response<TestBody> {
        let body: TestBody = match &self.chunks {
            None => Full::new(Bytes::from_static(self.body.as_bytes())).boxed(),
            Some((chunks, trailers)) => {
                let mut frames: Vec<Result<Frame<Bytes>, Infallible>> = chunks
                    .iter()
                    .map(|c| Ok(Frame::data(Bytes::from_static(c.as_bytes()))))
                    .collect();
                if !trailers.is_empty() {
                    let mut map = http::HeaderMap::new();
                    for (n, v) in trailers {
                        map.append(*n, HeaderValue::from_static(v));
                    }
                    frames.push(Ok(Frame::trailers(map)));
                }
                StreamBody::new(tokio_stream::iter(frames)).boxed()
            }
        };
        let mut response = http::Response::new(body);
        *response.status_mut() = StatusCode::from_u16(self.status).expect("status");
        *response.version_mut() = self.version;
        for (n, v) in &self.headers {
            response.headers_mut().append(*n, HeaderValue::from_static(v));
        }
        let saw = format!(
            "{} {} {:?} {:?}",
            req.method(),
            req.uri(),
            req.version(),
            req.headers()
        );
        let saw = HeaderValue::from_str(&saw).unwrap_or_else(|_| HeaderValue::from_static("(unprintable)"));
        response.headers_mut().insert("x-saw", saw);
        if let Some(reason) = self.reason {
            response
                .extensions_mut()
                .insert(hyper::ext::ReasonPhrase::try_from(reason.as_bytes()).expect("reason"));
        }
        response
    }
}

fn limits() -> ClientLimits {
    ClientLimits {
        max_header_bytes: 8192,
        max_headers: 16,
        header_read_timeout: Duration::from_secs(10),
        idle_timeout: Duration::from_secs(10),
        max_connections: None,
    }
}

async fn hyper_side(stream: TcpStream, reply: Reply) {
    hyper_serves(stream, reply).await;
}

/// hyper's HTTP/1.1 server on `io`, with the limits of [`limits`].
async fn hyper_serves<IO>(io: IO, reply: Reply)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req| {
        let response = reply.build(&req);
        async move { Ok::<_, Infallible>(response) }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .max_headers(16)
        .max_buf_size(8192)
        .serve_connection(TokioIo::new(io), service)
        .await;
}

/// Every field of the head a request's kept fields came from, in the client's order, as hyper's
/// server would have put them in the request's map.
fn every_field(raw: &RawFields) -> http::HeaderMap {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut request = httparse::Request::new(&mut headers);
    assert!(request.parse(&raw.bytes).expect("a head").is_complete());
    let mut map = http::HeaderMap::new();
    for h in request.headers.iter() {
        map.append(
            http::HeaderName::from_bytes(h.name.as_bytes()).expect("name"),
            HeaderValue::from_bytes(h.value).expect("value"),
        );
    }
    map
}

async fn berth_side(stream: TcpStream, reply: Reply) {
    let limits = limits();
    let activity = Activity::new(&limits);
    let (_stop, shutdown) = watch::channel(false);
    let handle = |mut req: Request<RequestBody>, raw: Option<RawFields>| {
        if let Some(raw) = raw {
            *req.headers_mut() = every_field(&raw);
        }
        let response = reply.build(&req);
        async move { response }
    };
    if let Ended::Handover { io, read } = serve(stream, &limits, &activity, &shutdown, handle).await {
        hyper_serves(Rewind::new(read, io), reply.clone()).await;
    }
}

/// Sends `input` to a server on 127.0.0.1 made by `server` and reads until it closes; the
/// `Date` values are replaced by `<date>`.
async fn exchange<S, Fut>(input: &[u8], reply: &Reply, server: S) -> String
where
    S: FnOnce(TcpStream, Reply) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let mut client = TcpStream::connect(addr).await.expect("connect");
    let (stream, _) = listener.accept().await.expect("accept");
    let served = tokio::spawn(server(stream, reply.clone()));
    client.write_all(input).await.expect("write");
    let mut output = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), client.read_to_end(&mut output)).await;
    assert!(
        read.is_ok(),
        "the server did not close the connection: {:?}",
        String::from_utf8_lossy(&output)
    );
    let _ = served.await;
    let text = String::from_utf8_lossy(&output).into_owned();
    let mut normalized = String::new();
    for line in text.split_inclusive("\r\n") {
        if line.to_ascii_lowercase().starts_with("date: ") {
            normalized.push_str("date: <date>\r\n");
        } else {
            normalized.push_str(line);
        }
    }
    normalized
}

const CLOSE: &str = "GET /last HTTP/1.1\r\nhost: a.example\r\nconnection: close\r\n\r\n";

#[tokio::test]
async fn clients_read_what_hypers_server_writes() {
    let get = "GET /a?b=c HTTP/1.1\r\nHost: a.example\r\nX-A: 1\r\nx-a: 2\r\n\r\n";
    let cases: Vec<(String, Reply)> = vec![
        // Served by the loop.
        (format!("{get}{CLOSE}"), reply(200, "hello")),
        (format!("{get}{CLOSE}"), reply(200, "sized").header("content-length", "5")),
        (format!("{get}{CLOSE}"), reply(404, "").header("x-b", "1").header("x-b", "2")),
        (format!("HEAD / HTTP/1.1\r\nhost: a\r\n\r\n{CLOSE}"), reply(200, "body").header("content-length", "4")),
        (format!("HEAD / HTTP/1.1\r\nhost: a\r\n\r\n{CLOSE}"), reply(200, "")),
        (format!("{get}{CLOSE}"), reply(204, "")),
        (format!("{get}{CLOSE}"), reply(304, "").header("content-length", "10")),
        (format!("{get}{CLOSE}"), reply(200, "").chunks(&["ab", "", "cde", "0123456789abcdef0123456789abcdef"], &[])),
        (
            format!("GET / HTTP/1.1\r\nhost: a\r\nte: trailers\r\n\r\n{CLOSE}"),
            reply(200, "").header("trailer", "x-t, x-u").chunks(&["ab"], &[("x-t", "1"), ("x-v", "2")]),
        ),
        (
            format!("{get}{CLOSE}"),
            reply(200, "").header("trailer", "x-t").chunks(&["ab"], &[("x-t", "1")]),
        ),
        (
            format!("{get}{CLOSE}"),
            reply(200, "").header("transfer-encoding", "gzip").chunks(&["zz"], &[]),
        ),
        (format!("{get}{get}"), reply(200, "").chunks(&["until close"], &[]).header("connection", "close")),
        (format!("{get}{CLOSE}"), reply(200, "x").header("connection", "keep-alive").header("connection", "x-y")),
        (format!("{get}{CLOSE}"), reply(200, "x").header("date", "Thu, 01 Jan 1970 00:00:00 GMT")),
        (format!("{get}{CLOSE}"), Reply { reason: Some("Fine"), ..reply(200, "x") }),
        (format!("{get}{CLOSE}"), Reply { reason: Some("Odd"), ..reply(599, "x") }),
        (format!("{get}{CLOSE}"), Reply { version: Version::HTTP_10, ..reply(200, "").chunks(&["old"], &[]) }),
        (format!("{get}{CLOSE}"), reply(200, "").header("content-length", "3").chunks(&["abc"], &[])),
        (format!("GET http://b.example/x HTTP/1.1\r\nhost: a\r\n\r\n{CLOSE}"), reply(200, "abs")),
        (format!("GET / HTTP/1.1\r\nhost: a\r\ncontent-length: 0\r\n\r\n{CLOSE}"), reply(200, "cl0")),
        (format!("GET / HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n{get}"), reply(200, "once")),
        (CLOSE.to_owned(), reply(500, "").header("connection", "close")),
        // Handed to hyper: a body, HTTP/1.0, upgrade, expect, malformed and oversized heads.
        (
            format!("{get}POST /p HTTP/1.1\r\nhost: a\r\ncontent-length: 5\r\n\r\nhello{CLOSE}"),
            reply(201, "made"),
        ),
        (format!("{get}GET /h HTTP/1.0\r\nhost: a\r\n\r\n"), reply(200, "old client")),
        (
            format!("{get}POST / HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n{CLOSE}"),
            reply(200, "chunked in"),
        ),
        (format!("GET / HTTP/1.1\r\nhost: a\r\nexpect: 100-continue\r\ncontent-length: 0\r\n\r\n{CLOSE}"), reply(200, "e")),
        (format!("GET / HTTP/1.1\r\nhost: a\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n{CLOSE}"), reply(200, "u")),
        (format!("{get}GET / HTTP/1.1\r\nbad header\r\n\r\n"), reply(200, "x")),
        (format!("{get}GET /a b HTTP/1.1\r\nhost: a\r\n\r\n"), reply(200, "x")),
        (
            format!("{get}GET / HTTP/1.1\r\nhost: a\r\nx: {}\r\n\r\n{CLOSE}", "y".repeat(20_000)),
            reply(200, "x"),
        ),
        (
            format!("{get}GET / HTTP/1.1\r\n{}\r\n", "x-many: 1\r\n".repeat(20)),
            reply(200, "x"),
        ),
        (format!("{get}GET / HTTP/1.1\r\nhost: a\r\ncontent-length: 0\r\ncontent-length: 0\r\n\r\n{CLOSE}"), reply(200, "x")),
        ("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_owned(), reply(200, "x")),
    ];
    for (input, reply) in &cases {
        eprintln!("request bytes {input:?}");
        let ours = exchange(input.as_bytes(), reply, berth_side).await;
        let theirs = exchange(input.as_bytes(), reply, hyper_side).await;
        assert_eq!(ours, theirs, "request bytes {input:?}, reply {reply:?}");
    }
}

#[test]
fn only_fields_nothing_reads_on_the_way_are_kept_as_they_came() {
    let raw = |fields: &str| {
        let mut buf = BytesMut::from(format!("GET / HTTP/1.1\r\n{fields}\r\n").as_bytes());
        match request::parse(&mut buf, 8192, 16) {
            request::Parsed::Taken(head) => {
                if head.raw.is_some() {
                    let names: Vec<&str> = head.parts.headers.keys().map(|n| n.as_str()).collect();
                    assert_eq!(names, ["host"], "{fields:?}: Host alone in the map");
                } else {
                    assert!(
                        head.parts.headers.len() > 1 || fields.matches("\r\n").count() <= 1,
                        "{fields:?}"
                    );
                }
                head.raw.map(|raw| {
                    raw.iter()
                        .map(|(n, v)| {
                            format!("{}={}", String::from_utf8_lossy(n), String::from_utf8_lossy(v))
                        })
                        .collect::<Vec<_>>()
                })
            }
            other => panic!("{fields:?}: {other:?}"),
        }
    };
    assert_eq!(raw("Host: a\r\n"), Some(vec![]));
    assert_eq!(
        raw("Accept: */*\r\nHost: a\r\nConnection: Keep-Alive\r\nX-A: 1\r\nx-a: 2\r\nCookie: c=1\r\n"),
        Some(vec![
            "Accept=*/*".into(),
            "Connection=Keep-Alive".into(),
            "X-A=1".into(),
            "x-a=2".into(),
            "Cookie=c=1".into()
        ])
    );
    assert!(raw("Host: a\r\nConnection: close\r\n").is_some());
    for other in [
        "Accept: */*\r\n",
        "Host: a\r\nHost: b\r\n",
        "Host: a\r\nContent-Length: 0\r\n",
        "Host: a\r\nConnection: keep-alive, x-a\r\n",
        "Host: a\r\nTE: trailers\r\n",
        "Host: a\r\nKeep-Alive: timeout=5\r\n",
        "Host: a\r\nProxy-Authorization: Basic eA==\r\n",
        "Host: a\r\nX-Forwarded-For: 1.1.1.1\r\n",
        "Host: a\r\nx_forwarded_proto: https\r\n",
        "Host: a\r\nX-Forwarded-Anything: 1\r\n",
        "Host: a\r\nX-Real-IP: 1.1.1.1\r\n",
        "Host: a\r\nX-Scheme: https\r\n",
        "Host: a\r\nX-Request-Id: abc\r\n",
        "Host: a\r\nConnection: close\r\nClose: 1\r\n",
    ] {
        assert_eq!(raw(other), None, "{other:?}");
    }
}

/// The fields kept as they came are not checked again (see `request::build_raw`): every name and
/// value httparse takes must be one `http` takes too.
#[test]
fn httparse_takes_no_field_http_refuses() {
    // The second field of `GET / HTTP/1.1`, Host, then `field`, if httparse takes the head.
    let second = |field: &[u8]| {
        let head = [&b"GET / HTTP/1.1\r\nHost: a\r\n"[..], field, b"\r\n\r\n"].concat();
        let mut headers = [httparse::EMPTY_HEADER; 4];
        match httparse::Request::new(&mut headers).parse(&head) {
            Ok(httparse::Status::Complete(_)) => {
                Some((headers[1].name.to_owned(), headers[1].value.to_vec()))
            }
            _ => None,
        }
    };
    for b in 0..=255u8 {
        if let Some((name, _)) = second(&[b'x', b, b':', b' ', b'v']) {
            assert!(
                http::HeaderName::from_bytes(name.as_bytes()).is_ok(),
                "name byte {b:#x}: {name:?}"
            );
        }
        if let Some((_, value)) = second(&[b'x', b':', b' ', b'v', b, b'v']) {
            assert!(
                HeaderValue::from_bytes(&value).is_ok(),
                "value byte {b:#x}: {value:?}"
            );
        }
    }
}

#[tokio::test]
async fn the_loop_takes_the_common_requests_and_leaves_the_rest() {
    let taken = |input: &str| {
        let mut buf = BytesMut::from(input.as_bytes());
        matches!(request::parse(&mut buf, 8192, 16), request::Parsed::Taken(_))
    };
    assert!(taken("GET / HTTP/1.1\r\nhost: a\r\n\r\n"));
    assert!(taken(
        "DELETE /x?y HTTP/1.1\r\nhost: a\r\ncontent-length: 0\r\n\r\n"
    ));
    assert!(!taken("GET / HTTP/1.0\r\nhost: a\r\n\r\n"));
    assert!(!taken("POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 1\r\n\r\nx"));
    assert!(!taken("CONNECT a:443 HTTP/1.1\r\nhost: a:443\r\n\r\n"));
    let mut partial = BytesMut::from(&b"GET / HTTP/1.1\r\nhost"[..]);
    assert!(matches!(
        request::parse(&mut partial, 8192, 16),
        request::Parsed::Partial
    ));
    // What is left for hyper is left whole.
    let text = "GET http:// HTTP/1.1\r\nhost: a\r\n\r\nGET / HTTP/1.1\r\n\r\n";
    let mut left = BytesMut::from(text.as_bytes());
    let _ = request::parse(&mut left, 8192, 16);
    assert_eq!(&left[..], text.as_bytes());
}

#[tokio::test]
async fn shutdown_closes_an_idle_connection_and_ends_the_request_in_progress_with_close() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let mut client = TcpStream::connect(addr).await.expect("connect");
    let (stream, _) = listener.accept().await.expect("accept");
    let (stop, shutdown) = watch::channel(false);
    let (entered_tx, entered) = tokio::sync::oneshot::channel::<()>();
    let (release, released) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        let limits = limits();
        let activity = Activity::new(&limits);
        let mut entered_tx = Some(entered_tx);
        let mut released = Some(released);
        let handle = |_req: Request<RequestBody>, _raw: Option<RawFields>| {
            let (entered, released) = (entered_tx.take(), released.take());
            async move {
                if let (Some(entered), Some(released)) = (entered, released) {
                    let _ = entered.send(());
                    let _ = released.await;
                }
                http::Response::new(Full::new(Bytes::from_static(b"done")))
            }
        };
        matches!(
            serve(stream, &limits, &activity, &shutdown, handle).await,
            Ended::Closed
        )
    });
    client
        .write_all(b"GET / HTTP/1.1\r\nhost: a\r\n\r\n")
        .await
        .expect("write");
    entered.await.expect("the request reached the service");
    stop.send(true).expect("shutdown");
    release.send(()).expect("release");
    let mut output = Vec::new();
    client.read_to_end(&mut output).await.expect("read");
    let text = String::from_utf8_lossy(&output);
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(text.contains("connection: close\r\n"), "{text}");
    assert!(text.ends_with("\r\n\r\ndone"), "{text}");
    assert!(server.await.expect("server"), "closed, not handed over");
}
