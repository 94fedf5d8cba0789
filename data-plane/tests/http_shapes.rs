//! End-to-end tests of every HTTP shape through the real `berth-proxy` binary: keep-alive and
//! pooling, one connection moving from Berth's own HTTP/1.1 loop to hyper's server, pipelining,
//! HTTP/2 from clients (h2c), HTTP/2 to `h2c` backends with trailers both ways, gRPC,
//! WebSocket tunnelling, `Expect: 100-continue`, hop-by-hop headers, and bodies streamed rather
//! than buffered (a GiB each way with the proxy's peak memory checked).
//!
//! The backends are in this file: one "shapes" server speaking HTTP/1.1 and h2c (hyper-util's
//! auto builder, with upgrades) and a tonic gRPC health server.

mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, Version};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use hyper::body::{Body as _, Frame, Incoming};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;

type Body = BoxBody<Bytes, Infallible>;

/// 64 KiB of filler for the streamed bodies (never allocated per chunk).
static CHUNK: [u8; 64 * 1024] = [b'x'; 64 * 1024];

// ---------------------------------------------------------------------------------------------
// The shapes backend

/// A backend speaking HTTP/1.1 and h2c on one port:
/// - `/echo`: JSON with the request's version, headers and body length, answered with
///   hop-by-hop headers of its own (which must not reach the client) and the peer's port;
/// - `/trailers`: reads the whole body and its trailers, answers `{te, trailers}` as JSON and
///   ends with trailers of its own (`grpc-status: 5` and `grpc-message`);
/// - `/upload`: counts the body's bytes as they stream in and answers the count;
/// - `/stall`: reads the whole body and never answers;
/// - `/download?bytes=N`: streams N bytes;
/// - `/ws`: a WebSocket that sends "welcome", then echoes every message.
struct Shapes {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Shapes {
    async fn start() -> Self {
        Self::start_with(None).await
    }

    /// The same over TLS, offering `h2` and `http/1.1` by ALPN, with a certificate for 127.0.0.1
    /// from a fresh CA; returns it and the scratch directory holding the CA's `ca.pem` (for
    /// `--backend-ca`).
    async fn start_tls() -> (Self, ScratchDir) {
        let (acceptor, ca_dir) = backend_tls(&["127.0.0.1"], &["h2", "http/1.1"]);
        (Self::start_with(Some(acceptor)).await, ca_dir)
    }

    async fn start_with(tls: Option<tokio_rustls::TlsAcceptor>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind shapes backend");
        let addr = listener.local_addr().expect("local addr");
        let task = tokio::spawn(async move {
            while let Ok((stream, peer)) = listener.accept().await {
                let tls = tls.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| async move {
                        Ok::<_, Infallible>(shape(req, peer).await)
                    });
                    let server = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    match tls {
                        Some(acceptor) => {
                            let Ok(stream) = acceptor.accept(stream).await else {
                                return;
                            };
                            let _ = server
                                .serve_connection_with_upgrades(TokioIo::new(stream), service)
                                .await;
                        }
                        None => {
                            let _ = server
                                .serve_connection_with_upgrades(TokioIo::new(stream), service)
                                .await;
                        }
                    }
                });
            }
        });
        Self { addr, task }
    }
}

impl Drop for Shapes {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn full(body: impl Into<Bytes>) -> Body {
    Full::new(body.into()).boxed()
}

fn headers_json(headers: &HeaderMap) -> serde_json::Value {
    let mut map = serde_json::Map::new();
    for key in headers.keys() {
        let values: Vec<String> = headers
            .get_all(key)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect();
        map.insert(key.to_string(), values.join("\n").into());
    }
    map.into()
}

async fn shape(mut req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
    match req.uri().path() {
        "/echo" => {
            let version = format!("{:?}", req.version());
            let headers = headers_json(req.headers());
            let length = req
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes().len())
                .unwrap_or(0);
            let json = serde_json::json!({
                "version": version, "headers": headers, "length": length, "peer_port": peer.port(),
            });
            let mut response = Response::builder().header("content-type", "application/json");
            if version == "HTTP/1.1" {
                response = response
                    .header("connection", "x-backend-hop")
                    .header("x-backend-hop", "1")
                    .header("keep-alive", "timeout=5")
                    .header("proxy-authenticate", "Basic")
                    .header("upgrade", "h2c");
            }
            response
                .header("x-backend-kept", "1")
                .body(full(json.to_string()))
                .expect("response")
        }
        "/trailers" => {
            let te = req
                .headers()
                .get("te")
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
            let collected = req.into_body().collect().await.expect("request body");
            let trailers = collected.trailers().map(headers_json);
            let json =
                serde_json::json!({ "te": te, "trailers": trailers, "length": collected.to_bytes().len() });
            let mut trailers = HeaderMap::new();
            trailers.insert("grpc-status", HeaderValue::from_static("5"));
            trailers.insert("grpc-message", HeaderValue::from_static("not here"));
            let frames: Vec<Result<Frame<Bytes>, Infallible>> = vec![
                Ok(Frame::data(Bytes::from(json.to_string()))),
                Ok(Frame::trailers(trailers)),
            ];
            Response::builder()
                .header("trailer", "grpc-status, grpc-message")
                .body(BodyExt::boxed(StreamBody::new(futures::stream::iter(frames))))
                .expect("response")
        }
        "/upload" => {
            let mut body = req.into_body();
            let mut total: u64 = 0;
            while let Some(frame) = body.frame().await {
                match frame {
                    Ok(frame) => total += frame.data_ref().map_or(0, |d| d.len() as u64),
                    Err(e) => {
                        return Response::builder()
                            .status(500)
                            .body(full(e.to_string()))
                            .expect("response")
                    }
                }
            }
            Response::new(full(total.to_string()))
        }
        "/stall" => {
            // Reads the whole body, then never answers.
            let _ = req.into_body().collect().await;
            std::future::pending::<()>().await;
            unreachable!("pending never resolves")
        }
        "/download" => {
            let bytes: u64 = req
                .uri()
                .query()
                .and_then(|q| q.strip_prefix("bytes="))
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            Response::builder()
                .header("content-length", bytes)
                .body(BodyExt::boxed(StreamBody::new(filler(bytes))))
                .expect("response")
        }
        "/ws" => {
            let Some(key) = req.headers().get("sec-websocket-key").cloned() else {
                return Response::builder()
                    .status(400)
                    .body(full("not a WebSocket"))
                    .expect("response");
            };
            let upgrade = hyper::upgrade::on(&mut req);
            tokio::spawn(async move {
                let Ok(upgraded) = upgrade.await else { return };
                let mut ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
                    TokioIo::new(upgraded),
                    tokio_tungstenite::tungstenite::protocol::Role::Server,
                    None,
                )
                .await;
                if ws.send(Message::text("welcome")).await.is_err() {
                    return;
                }
                while let Some(Ok(message)) = ws.next().await {
                    if message.is_close() {
                        break;
                    }
                    if (message.is_text() || message.is_binary()) && ws.send(message).await.is_err() {
                        break;
                    }
                }
            });
            let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
            Response::builder()
                .status(StatusCode::SWITCHING_PROTOCOLS)
                .header("connection", "Upgrade")
                .header("upgrade", "websocket")
                .header("sec-websocket-accept", accept)
                .body(full(""))
                .expect("response")
        }
        _ => Response::builder()
            .status(404)
            .body(full("no such shape"))
            .expect("response"),
    }
}

/// `bytes` bytes of filler as a stream of frames.
fn filler(
    bytes: u64,
) -> impl futures::Stream<Item = Result<Frame<Bytes>, Infallible>> + Send + Sync + 'static {
    futures::stream::unfold(bytes, |left| async move {
        if left == 0 {
            return None;
        }
        let n = left.min(CHUNK.len() as u64) as usize;
        Some((Ok(Frame::data(Bytes::from_static(&CHUNK[..n]))), left - n as u64))
    })
}

// ---------------------------------------------------------------------------------------------
// Set-up

/// The cluster of `addr` with this scheme.
fn cluster_with(name: &str, addr: SocketAddr, scheme: &str) -> berth_proto::v1::Cluster {
    let mut c = cluster(name, vec![endpoint(addr)]);
    c.scheme = scheme.into();
    c
}

/// A proxy routing `h1.example` to `shapes` over HTTP/1.1 and `h2.example` to it over h2c, with
/// any extra routes and clusters.
async fn proxy_for(
    shapes: &Shapes,
    routes: Vec<berth_proto::v1::Route>,
    clusters: Vec<berth_proto::v1::Cluster>,
) -> (FakeControlPlane, ProxyProcess) {
    proxy_with(shapes, routes, clusters, &[]).await
}

/// [`proxy_for`] with extra proxy flags.
async fn proxy_with(
    shapes: &Shapes,
    mut routes: Vec<berth_proto::v1::Route>,
    mut clusters: Vec<berth_proto::v1::Cluster>,
    flags: &[&str],
) -> (FakeControlPlane, ProxyProcess) {
    let mut cp = FakeControlPlane::start().await;
    let proxy = ProxyProcess::start(&[cp.url()], flags).await;
    routes.push(route("h1", &["h1.example"], "", "h1"));
    routes.push(route("h2", &["h2.example"], "", "h2"));
    clusters.push(cluster_with("h1", shapes.addr, "http"));
    clusters.push(cluster_with("h2", shapes.addr, "h2c"));
    cp.expect_hello().await;
    cp.push(update("v1", "n1", routes, clusters));
    cp.expect_ack().await;
    (cp, proxy)
}

/// A request body of `data` followed by the trailer `x-checksum: <checksum>`.
fn with_trailer(data: &'static [u8], checksum: &'static str) -> Body {
    let mut trailers = HeaderMap::new();
    trailers.insert("x-checksum", HeaderValue::from_static(checksum));
    let frames: Vec<Result<Frame<Bytes>, Infallible>> = vec![
        Ok(Frame::data(Bytes::from_static(data))),
        Ok(Frame::trailers(trailers)),
    ];
    BodyExt::boxed(StreamBody::new(futures::stream::iter(frames)))
}

/// One HTTP/1.1 client connection to `addr`, driven in a task of its own.
async fn h1_client<B>(addr: SocketAddr) -> hyper::client::conn::http1::SendRequest<B>
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("h1 handshake");
    tokio::spawn(conn);
    sender
}

/// A client that speaks HTTP/2 with prior knowledge to `addr`.
async fn h2_client(addr: SocketAddr) -> hyper::client::conn::http2::SendRequest<Body> {
    h2_connect(addr).await.0
}

async fn json_of(response: Response<Incoming>) -> serde_json::Value {
    let body = response.into_body().collect().await.expect("body").to_bytes();
    serde_json::from_slice(&body)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&body)))
}

/// The peak resident memory of a process, in KiB (`VmHWM`).
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc status")
}

// ---------------------------------------------------------------------------------------------
// Tests

/// HTTP/1.1 keep-alive to the client (several requests on one connection) and pooled
/// keep-alive connections to the backend (the backend sees one peer for all of them).
#[tokio::test]
async fn keep_alive_to_clients_and_pooled_backend_connections() {
    let shapes = Shapes::start().await;
    let (_cp, proxy) = proxy_for(&shapes, vec![], vec![]).await;
    let mut sender = h1_client(proxy.http_addr()).await;
    let mut ports = Vec::new();
    for _ in 0..3 {
        sender.ready().await.expect("connection kept alive");
        let request = Request::get("/echo")
            .header("host", "h1.example")
            .body(Empty::<Bytes>::new())
            .expect("request");
        let response = sender
            .send_request(request)
            .await
            .expect("request on the same connection");
        assert_eq!(response.status(), StatusCode::OK);
        let json = json_of(response).await;
        assert_eq!(json["version"], "HTTP/1.1");
        ports.push(json["peer_port"].as_u64().expect("peer port"));
    }
    assert!(
        ports.windows(2).all(|w| w[0] == w[1]),
        "one pooled backend connection: {ports:?}"
    );
}

/// One client connection goes from Berth's own HTTP/1.1 loop to hyper's server at its first
/// request with a body, and both keep answering on it in order; pipelined requests are answered
/// in order too, and `Connection: close` closes the connection after its answer.
#[tokio::test]
async fn a_connection_moves_from_berths_loop_to_hypers_server_and_pipelines() {
    let shapes = Shapes::start().await;
    let (_cp, proxy) = proxy_for(&shapes, vec![], vec![]).await;
    let mut sender = h1_client(proxy.http_addr()).await;
    for (method, path, body, expected) in [
        ("GET", "/echo", "", "\"version\":\"HTTP/1.1\""),
        ("POST", "/upload", "hello", "5"),
        ("GET", "/echo", "", "\"length\":0"),
        ("POST", "/upload", "more bytes", "10"),
    ] {
        sender.ready().await.expect("the connection is kept alive");
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "h1.example")
            .body(Full::new(Bytes::from_static(body.as_bytes())))
            .expect("request");
        let response = sender
            .send_request(request)
            .await
            .expect("answered on the same connection");
        assert_eq!(response.status(), StatusCode::OK, "{method} {path}");
        let text = response.into_body().collect().await.expect("body").to_bytes();
        let text = String::from_utf8_lossy(&text);
        assert!(text.contains(expected), "{method} {path}: {text}");
    }

    let mut stream = TcpStream::connect(proxy.http_addr()).await.expect("connect");
    stream
        .write_all(
            b"GET /echo?n=1 HTTP/1.1\r\nhost: h1.example\r\n\r\n\
              GET /echo?n=2 HTTP/1.1\r\nhost: h1.example\r\nconnection: close\r\n\r\n",
        )
        .await
        .expect("write two requests at once");
    let mut answers = Vec::new();
    tokio::time::timeout(DEADLINE, stream.read_to_end(&mut answers))
        .await
        .expect("the proxy closes the connection after the second answer")
        .expect("read");
    let answers = String::from_utf8_lossy(&answers);
    assert_eq!(answers.matches("HTTP/1.1 200 OK\r\n").count(), 2, "{answers}");
    assert!(answers.contains("connection: close\r\n"), "{answers}");
}

/// A client speaking HTTP/2 with prior knowledge (h2c) gets its answers, from an HTTP/1.1
/// backend and from an h2c one.
#[tokio::test]
async fn h2c_clients() {
    let shapes = Shapes::start().await;
    let (_cp, proxy) = proxy_for(&shapes, vec![], vec![]).await;
    let mut client = h2_client(proxy.http_addr()).await;
    for (authority, backend_version) in [("h1.example", "HTTP/1.1"), ("h2.example", "HTTP/2.0")] {
        let request = Request::post(format!("http://{authority}/echo"))
            .version(Version::HTTP_2)
            .body(full("twelve bytes"))
            .expect("request");
        let response = client.send_request(request).await.expect("h2 request");
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.version(), Version::HTTP_2);
        let json = json_of(response).await;
        assert_eq!(json["version"], backend_version, "{authority}");
        assert_eq!(json["length"], 12);
    }
}

/// Over h2c to the backend, `TE: trailers` reaches it, request trailers reach it, and its
/// response trailers (a non-OK `grpc-status`) reach the client, from an HTTP/2 client and from
/// an HTTP/1.1 one that accepts trailers.
#[tokio::test]
async fn trailers_pass_both_ways_over_h2c() {
    let shapes = Shapes::start().await;
    let (_cp, proxy) = proxy_for(&shapes, vec![], vec![]).await;
    let mut client = h2_client(proxy.http_addr()).await;
    let request = Request::post("http://h2.example/trailers")
        .version(Version::HTTP_2)
        .header("te", "trailers")
        .header("content-type", "application/grpc")
        .body(with_trailer(b"hello", "abc"))
        .expect("request");
    let response = client.send_request(request).await.expect("h2 request");
    assert_eq!(response.status(), StatusCode::OK);
    let collected = response.into_body().collect().await.expect("body");
    let trailers = collected
        .trailers()
        .cloned()
        .expect("response trailers reach the client");
    assert_eq!(trailers["grpc-status"], "5");
    assert_eq!(trailers["grpc-message"], "not here");
    let json: serde_json::Value = serde_json::from_slice(&collected.to_bytes()).expect("JSON");
    assert_eq!(json["te"], "trailers", "TE: trailers reaches an h2 backend");
    assert_eq!(
        json["trailers"]["x-checksum"], "abc",
        "request trailers reach the backend"
    );
    assert_eq!(json["length"], 5);

    // An HTTP/1.1 client announcing its trailers (`Trailer`) sends them chunked and gets the
    // backend's announced ones, whether the backend speaks HTTP/1.1 or HTTP/2.
    for host in ["h1.example", "h2.example"] {
        let stream = TcpStream::connect(proxy.http_addr()).await.expect("connect");
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .expect("h1 handshake");
        tokio::spawn(conn);
        let request = Request::post("/trailers")
            .header("host", host)
            .header("te", "trailers")
            .header("trailer", "x-checksum")
            .body(with_trailer(b"hi", "def"))
            .expect("request");
        let response = sender.send_request(request).await.expect("h1 request");
        assert_eq!(response.status(), StatusCode::OK);
        let collected = response.into_body().collect().await.expect("body");
        let trailers = collected
            .trailers()
            .cloned()
            .unwrap_or_else(|| panic!("{host}: chunked trailers reach an HTTP/1.1 client"));
        assert_eq!(trailers["grpc-status"], "5", "{host}");
        let json: serde_json::Value = serde_json::from_slice(&collected.to_bytes()).expect("JSON");
        assert_eq!(json["te"], "trailers", "{host}");
        assert_eq!(json["trailers"]["x-checksum"], "def", "{host}: request trailers");
    }
}

/// An `https` cluster whose backend offers `h2` by ALPN is spoken to over HTTP/2, trailers
/// included.
#[tokio::test]
async fn https_backends_get_http2_by_alpn() {
    let (tls_shapes, ca_dir) = Shapes::start_tls().await;
    let mut cp = FakeControlPlane::start().await;
    let ca = ca_dir.file("ca.pem").to_string_lossy().into_owned();
    let proxy = ProxyProcess::start(&[cp.url()], &["--backend-ca", &ca]).await;
    cp.expect_hello().await;
    cp.push(update(
        "v1",
        "n1",
        vec![route("tls", &["tls.example"], "", "tls")],
        vec![cluster_with("tls", tls_shapes.addr, "https")],
    ));
    cp.expect_ack().await;
    let (status, _, body) = must_get(proxy.http_addr(), "tls.example", "/echo").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(json["version"], "HTTP/2.0", "ALPN chose h2");

    let mut client = h2_client(proxy.http_addr()).await;
    let request = Request::post("http://tls.example/trailers")
        .version(Version::HTTP_2)
        .header("te", "trailers")
        .body(full("hi"))
        .expect("request");
    let response = client.send_request(request).await.expect("h2 request");
    let collected = response.into_body().collect().await.expect("body");
    let trailers = collected
        .trailers()
        .cloned()
        .expect("trailers from an h2-by-ALPN backend");
    assert_eq!(trailers["grpc-status"], "5");
}

/// Real gRPC (tonic's health service) through the proxy to an h2c backend: a unary call, a
/// non-OK status, and a server stream that follows status changes.
#[tokio::test]
async fn grpc_through_the_proxy_to_an_h2c_backend() {
    use tonic_health::pb::health_check_response::ServingStatus as Answer;
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::ServingStatus;

    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("berth.Echo", ServingStatus::Serving)
        .await;
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind gRPC backend");
    let grpc_addr = listener.local_addr().expect("local addr");
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(health)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let shapes = Shapes::start().await;
    let (_cp, proxy) = proxy_for(
        &shapes,
        vec![rule("grpc", prefix("/grpc.health.v1.Health/"), "grpc")],
        vec![cluster_with("grpc", grpc_addr, "h2c")],
    )
    .await;

    let channel = tonic::transport::Channel::from_shared(format!("http://{}", proxy.http_addr()))
        .expect("channel URI")
        .connect()
        .await
        .expect("gRPC channel to the proxy");
    let mut client = HealthClient::new(channel);
    let check = |service: &str| {
        tonic::Request::new(HealthCheckRequest {
            service: service.into(),
        })
    };
    let answer = client
        .check(check("berth.Echo"))
        .await
        .expect("Check through the proxy");
    assert_eq!(answer.into_inner().status, Answer::Serving as i32);
    let status = client
        .check(check("berth.Missing"))
        .await
        .expect_err("unknown service");
    assert_eq!(status.code(), tonic::Code::NotFound, "{status:?}");

    let mut watch = client
        .watch(check("berth.Echo"))
        .await
        .expect("Watch")
        .into_inner();
    let first = watch.message().await.expect("first update").expect("a message");
    assert_eq!(first.status, Answer::Serving as i32);
    reporter
        .set_service_status("berth.Echo", ServingStatus::NotServing)
        .await;
    let second = watch.message().await.expect("second update").expect("a message");
    assert_eq!(second.status, Answer::NotServing as i32);
    server.abort();
}

/// A WebSocket through the proxy: the backend's greeting and echoes of text and binary
/// messages come back over the tunnel, and hop-by-hop handling left the handshake intact.
#[tokio::test]
async fn websocket_echo_through_the_proxy() {
    let shapes = Shapes::start().await;
    let (_cp, proxy) = proxy_for(&shapes, vec![], vec![]).await;
    let stream = TcpStream::connect(proxy.http_addr()).await.expect("connect");
    let (mut ws, response) = tokio::time::timeout(
        DEADLINE,
        tokio_tungstenite::client_async("ws://h1.example/ws", stream),
    )
    .await
    .expect("handshake in time")
    .expect("WebSocket handshake through the proxy");
    assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
    assert_eq!(next_message(&mut ws).await, Message::text("welcome"));
    ws.send(Message::text("hello")).await.expect("send");
    assert_eq!(next_message(&mut ws).await, Message::text("hello"));
    let big: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
    ws.send(Message::binary(big.clone())).await.expect("send");
    assert_eq!(next_message(&mut ws).await, Message::binary(big));
    ws.close(None).await.expect("close");

    // The same route still answers plain requests.
    let (status, _, _) = must_get(proxy.http_addr(), "h1.example", "/echo").await;
    assert_eq!(status, StatusCode::OK);
}

/// The next WebSocket message, within the deadline.
async fn next_message(ws: &mut tokio_tungstenite::WebSocketStream<TcpStream>) -> Message {
    tokio::time::timeout(DEADLINE, ws.next())
        .await
        .expect("a message in time")
        .expect("the tunnel open")
        .expect("a good message")
}

/// A client sending `Expect: 100-continue` gets `100 Continue` before it sends the body, and
/// then its answer.
#[tokio::test]
async fn expect_100_continue() {
    let shapes = Shapes::start().await;
    let (_cp, proxy) = proxy_for(&shapes, vec![], vec![]).await;
    for host in ["h1.example", "h2.example"] {
        let mut stream = TcpStream::connect(proxy.http_addr()).await.expect("connect");
        let head = format!(
            "POST /upload HTTP/1.1\r\nHost: {host}\r\nContent-Length: 5000\r\nExpect: 100-continue\r\n\r\n"
        );
        stream.write_all(head.as_bytes()).await.expect("write head");
        let interim = read_until(&mut stream, b"\r\n\r\n").await;
        assert!(
            interim.starts_with("HTTP/1.1 100 Continue\r\n"),
            "{host}: expected 100 Continue, got {interim:?}"
        );
        stream.write_all(&CHUNK[..5000]).await.expect("write body");
        let answer = read_until(&mut stream, b"5000").await;
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{host}: {answer:?}");
    }
}

/// Reads from `stream` until `end` was seen (within the deadline); returns what was read.
async fn read_until(stream: &mut TcpStream, end: &[u8]) -> String {
    read_while(stream, |seen| !seen.windows(end.len()).any(|w| w == end)).await
}

/// Reads from `stream` while `more` says the bytes read so far are not all that is wanted.
async fn read_while(stream: &mut TcpStream, more: impl Fn(&[u8]) -> bool) -> String {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    let start = Instant::now();
    while more(&seen) {
        let left = DEADLINE.saturating_sub(start.elapsed());
        let n = tokio::time::timeout(left, stream.read(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("timed out; read so far: {:?}", String::from_utf8_lossy(&seen)))
            .expect("read");
        assert!(
            n > 0,
            "connection closed; read: {:?}",
            String::from_utf8_lossy(&seen)
        );
        seen.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&seen).into_owned()
}

/// Hop-by-hop headers are removed both ways: those named by `Connection` and the standard set,
/// with `TE: trailers` kept; end-to-end headers pass.
#[tokio::test]
async fn hop_by_hop_headers_removed_both_ways() {
    let shapes = Shapes::start().await;
    let (_cp, proxy) = proxy_for(&shapes, vec![], vec![]).await;
    let (status, headers, body) = get(
        proxy.http_addr(),
        "h1.example",
        "/echo",
        &[
            ("connection", "keep-alive, x-client-hop"),
            ("x-client-hop", "1"),
            ("keep-alive", "timeout=5"),
            ("proxy-authorization", "Basic eDp5"),
            ("proxy-connection", "keep-alive"),
            ("te", "gzip, trailers"),
            ("upgrade", "websocket"),
            ("x-client-kept", "1"),
        ],
    )
    .await
    .expect("request through the proxy");
    assert_eq!(status, StatusCode::OK);
    let json: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    let sent = &json["headers"];
    for gone in [
        "x-client-hop",
        "keep-alive",
        "proxy-authorization",
        "proxy-connection",
        "upgrade",
    ] {
        assert!(sent.get(gone).is_none(), "{gone} reached the backend: {sent}");
    }
    assert!(
        sent.get("connection")
            .is_none_or(|c| c != "keep-alive, x-client-hop"),
        "{sent}"
    );
    assert_eq!(sent["te"], "trailers");
    assert_eq!(sent["x-client-kept"], "1");
    for gone in ["x-backend-hop", "keep-alive", "proxy-authenticate", "upgrade"] {
        assert!(
            !headers.contains_key(gone),
            "{gone} reached the client: {headers:?}"
        );
    }
    assert!(
        headers
            .get("connection")
            .is_none_or(|c| !c.as_bytes().eq_ignore_ascii_case(b"x-backend-hop")),
        "{headers:?}"
    );
    assert_eq!(headers["x-backend-kept"], "1");

    // Without `trailers` in TE, no TE at all.
    let (_, _, body) = get(proxy.http_addr(), "h1.example", "/echo", &[("te", "gzip")])
        .await
        .expect("request through the proxy");
    let json: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert!(json["headers"].get("te").is_none(), "{json}");
}

/// A GiB up and a GiB down stream through the proxy while its peak memory stays far below
/// either: nothing is buffered whole.
#[tokio::test]
async fn bodies_stream_through_without_buffering() {
    const SIZE: u64 = 1 << 30;
    const PEAK_LIMIT_KIB: u64 = 100 * 1024;
    const TIME_LIMIT: Duration = Duration::from_secs(240);
    let shapes = Shapes::start().await;
    let (_cp, proxy) = proxy_for(&shapes, vec![], vec![]).await;
    let addr = proxy.http_addr();
    let client: Client<_, Body> = Client::builder(TokioExecutor::new()).build_http();

    let upload = async {
        let request = Request::post(format!("http://{addr}/upload"))
            .header("host", "h1.example")
            .header("content-length", SIZE)
            .body(BodyExt::boxed(StreamBody::new(filler(SIZE))))
            .expect("request");
        let response = client.request(request).await.expect("upload through the proxy");
        assert_eq!(response.status(), StatusCode::OK);
        let body = response.into_body().collect().await.expect("body").to_bytes();
        assert_eq!(
            String::from_utf8_lossy(&body),
            SIZE.to_string(),
            "every byte reached the backend"
        );
    };
    let started = Instant::now();
    tokio::time::timeout(TIME_LIMIT, upload)
        .await
        .expect("1 GiB upload in time");
    eprintln!("upload: {:?}", started.elapsed());

    let download = async {
        let request = Request::get(format!("http://{addr}/download?bytes={SIZE}"))
            .header("host", "h1.example")
            .body(Empty::new().boxed())
            .expect("request");
        let response = client.request(request).await.expect("download through the proxy");
        assert_eq!(response.status(), StatusCode::OK);
        let mut body = response.into_body();
        let mut total = 0u64;
        while let Some(frame) = body.frame().await {
            total += frame
                .expect("body frame")
                .data_ref()
                .map_or(0, |d| d.len() as u64);
        }
        assert!(body.is_end_stream());
        assert_eq!(total, SIZE, "every byte reached the client");
    };
    let started = Instant::now();
    tokio::time::timeout(TIME_LIMIT, download)
        .await
        .expect("1 GiB download in time");
    eprintln!("download: {:?}", started.elapsed());

    let peak = peak_rss_kib(proxy.pid());
    eprintln!("proxy peak RSS: {peak} KiB");
    assert!(peak < PEAK_LIMIT_KIB, "the proxy's peak RSS was {peak} KiB");
}

/// The response timeout (`--request-timeout`) starts once the request body has been sent whole:
/// an upload that streams for longer than it succeeds, and a backend that stays silent after
/// reading the body still gets the 504.
#[tokio::test]
async fn the_response_timeout_starts_after_the_upload() {
    let shapes = Shapes::start().await;
    let (_cp, proxy) = proxy_with(&shapes, vec![], vec![], &["--request-timeout", "1s"]).await;
    let addr = proxy.http_addr();
    let client: Client<_, Body> = Client::builder(TokioExecutor::new()).build_http();
    let slow_body = |path: &str| {
        // Five chunks 400 ms apart: 1.6 s of upload against a 1 s timeout.
        let chunks = futures::stream::unfold(0u32, |i| async move {
            if i == 5 {
                return None;
            }
            if i > 0 {
                tokio::time::sleep(Duration::from_millis(400)).await;
            }
            Some((
                Ok::<_, Infallible>(Frame::data(Bytes::from_static(&CHUNK[..1000]))),
                i + 1,
            ))
        });
        Request::post(format!("http://{addr}{path}"))
            .header("host", "h1.example")
            .body(BodyExt::boxed(StreamBody::new(chunks)))
            .expect("request")
    };
    let started = Instant::now();
    let response = client.request(slow_body("/upload")).await.expect("slow upload");
    assert_eq!(response.status(), StatusCode::OK);
    let body = response.into_body().collect().await.expect("body").to_bytes();
    assert_eq!(String::from_utf8_lossy(&body), "5000");
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "the upload was paced"
    );

    let response = tokio::time::timeout(DEADLINE, client.request(slow_body("/stall")))
        .await
        .expect("an answer in time")
        .expect("a response");
    assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
}

/// A backend that answers every request on a connection with `reply`, as it is.
async fn scripted_backend(reply: &'static [u8]) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut read = Vec::new();
                let mut buf = [0u8; 4096];
                loop {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => read.extend_from_slice(&buf[..n]),
                    }
                    while let Some(end) = read.windows(4).position(|w| w == b"\r\n\r\n") {
                        read.drain(..end + 4);
                        if stream.write_all(reply).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    addr
}

/// A common response, as `scripted_backend` sends it.
const COMMON_REPLY: &[u8] = b"HTTP/1.1 200 OK\r\nServer: scripted\r\nDate: Sat, 28 Nov 2026 17:00:00 GMT\r\nContent-Type: text/plain\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\nX-Empty: \r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok";

/// A response head's status line and fields, the fields in a stable order by name (the order of
/// different names means nothing in HTTP; a name's values keep theirs), and the body.
fn by_name(response: &str) -> (String, Vec<String>, String) {
    let (head, body) = response.split_once("\r\n\r\n").expect("a whole response");
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap_or_default().to_owned();
    let mut fields: Vec<String> = lines.map(str::to_owned).collect();
    fields.sort_by_key(|f| f.split(':').next().unwrap_or_default().to_owned());
    (status, fields, body.to_owned())
}

/// Sends `request` on `stream` and reads one response to it, whose body is `body_len` bytes.
async fn exchange_raw(stream: &mut TcpStream, request: &str, body_len: usize) -> String {
    stream.write_all(request.as_bytes()).await.expect("write");
    read_while(stream, |seen| {
        seen.windows(4)
            .position(|w| w == b"\r\n\r\n")
            .is_none_or(|end| seen.len() < end + 4 + body_len)
    })
    .await
}

/// The common response (one `Content-Length`, no hop-by-hop field but `Connection`) goes from
/// Berth's own backend client to its own server loop as the backend's head, without a header
/// map between: the client must read the same bytes as from a route whose `headers` middleware
/// (which changes nothing here, but names a field only a header map may change) makes the proxy
/// build the map, names in lower case, the backend's `Connection` left out and its `Date` kept,
/// and `Connection: close` added when the client asks for it.
#[tokio::test]
async fn a_common_response_reaches_the_client_as_from_a_header_map() {
    let backend = scripted_backend(COMMON_REPLY).await;
    let mut cp = FakeControlPlane::start().await;
    let proxy = ProxyProcess::start(&[cp.url()], &[]).await;
    let headers = berth_proto::v1::middleware::Kind::Headers(berth_proto::v1::Headers {
        request: vec![],
        response: vec![header_change("Connection", "")],
    });
    cp.expect_hello().await;
    cp.push(update(
        "v1",
        "n1",
        vec![
            route("plain", &["plain.example"], "", "scripted"),
            chain(
                route("mapped", &["mapped.example"], "", "scripted"),
                vec![("noop", headers)],
            ),
        ],
        vec![cluster("scripted", vec![endpoint(backend)])],
    ));
    cp.expect_ack().await;

    let expected = "HTTP/1.1 200 OK\r\nserver: scripted\r\ndate: Sat, 28 Nov 2026 17:00:00 GMT\r\ncontent-type: text/plain\r\nset-cookie: a=1\r\nset-cookie: b=2\r\nx-empty: \r\ncontent-length: 2\r\n\r\nok";
    for host in ["plain.example", "mapped.example"] {
        let mut client = TcpStream::connect(proxy.http_addr()).await.expect("connect");
        let first = exchange_raw(&mut client, &format!("GET / HTTP/1.1\r\nhost: {host}\r\n\r\n"), 2).await;
        assert_eq!(first, expected, "through {host}");
        let last = exchange_raw(
            &mut client,
            &format!("GET / HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n\r\n"),
            2,
        )
        .await;
        let closing = expected.replace(
            "content-length: 2\r\n",
            "content-length: 2\r\nconnection: close\r\n",
        );
        assert_eq!(last, closing, "through {host}, closing");
    }
}

/// A `headers` middleware's response changes (a header set, one removed, one added) are made to
/// a common response kept as the backend's head as they are to one in a header map: the client
/// gets the same fields through a route where another change (to `Connection`, which only a map
/// may take) makes the proxy build the map. A set header replaces every one of the backend's
/// values, a removed one is gone.
#[tokio::test]
async fn response_changes_to_a_kept_head_are_those_to_a_header_map() {
    let backend = scripted_backend(COMMON_REPLY).await;
    let mut cp = FakeControlPlane::start().await;
    let proxy = ProxyProcess::start(&[cp.url()], &[]).await;
    let changes = vec![
        header_change("Server", "berth"),
        header_change("Set-Cookie", ""),
        header_change("X-Frame-Options", "DENY"),
    ];
    let mut mapped = changes.clone();
    mapped.push(header_change("Connection", ""));
    let headers = |response| {
        berth_proto::v1::middleware::Kind::Headers(berth_proto::v1::Headers {
            request: vec![],
            response,
        })
    };
    cp.expect_hello().await;
    cp.push(update(
        "v1",
        "n1",
        vec![
            chain(
                route("kept", &["kept.example"], "", "scripted"),
                vec![("edit", headers(changes))],
            ),
            chain(
                route("mapped", &["mapped.example"], "", "scripted"),
                vec![("edit", headers(mapped))],
            ),
        ],
        vec![cluster("scripted", vec![endpoint(backend)])],
    ));
    cp.expect_ack().await;

    let mut seen = Vec::new();
    for host in ["kept.example", "mapped.example"] {
        let mut client = TcpStream::connect(proxy.http_addr()).await.expect("connect");
        let response = exchange_raw(&mut client, &format!("GET / HTTP/1.1\r\nhost: {host}\r\n\r\n"), 2).await;
        seen.push(by_name(&response));
    }
    let (status, fields, body) = &seen[0];
    assert_eq!((status.as_str(), body.as_str()), ("HTTP/1.1 200 OK", "ok"));
    assert_eq!(
        fields,
        &[
            "content-length: 2",
            "content-type: text/plain",
            "date: Sat, 28 Nov 2026 17:00:00 GMT",
            "server: berth",
            "x-empty: ",
            "x-frame-options: DENY",
        ],
        "through the kept head"
    );
    assert_eq!(seen[0], seen[1], "kept head against header map");
}
