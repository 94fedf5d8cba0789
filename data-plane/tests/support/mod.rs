//! Test fixtures: a scriptable control plane, HTTP backends, and the real `berth-proxy` binary run
//! as a child process. Everything listens on 127.0.0.1 only.

#![allow(dead_code)]

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use berth_proto::v1::route_discovery_server::{RouteDiscovery, RouteDiscoveryServer};
use berth_proto::v1::{
    header_matcher, host_matcher, matcher, middleware, path_matcher, proxy_message, query_matcher,
    route_update, Ack, ClientIpMatcher, Cluster, Endpoint, HeaderMatcher, Hello, HostMatcher, Matcher,
    MatcherList, Middleware, Nack, PathMatcher, ProxyMessage, QueryMatcher, Route, RouteUpdate, Snapshot,
    UpToDate,
};
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use hyper::body::Frame;
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tokio_stream::Stream;

pub const DEADLINE: Duration = Duration::from_secs(15);

/// Polls `check` until it returns `Some`, failing the test after [`DEADLINE`].
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Snapshot builders

pub fn endpoint(addr: SocketAddr) -> Endpoint {
    Endpoint {
        address: addr.ip().to_string(),
        port: u32::from(addr.port()),
        weight: 1,
        id: addr.to_string(),
    }
}

pub fn cluster(name: &str, endpoints: Vec<Endpoint>) -> Cluster {
    Cluster {
        name: name.into(),
        endpoints,
        ..Default::default()
    }
}

fn matcher(kind: matcher::Kind) -> Matcher {
    Matcher { kind: Some(kind) }
}

pub fn host(h: &str) -> Matcher {
    matcher(matcher::Kind::Host(HostMatcher {
        kind: Some(host_matcher::Kind::Exact(h.into())),
    }))
}

pub fn prefix(p: &str) -> Matcher {
    matcher(matcher::Kind::Path(PathMatcher {
        kind: Some(path_matcher::Kind::Prefix(p.into())),
    }))
}

pub fn method(m: &str) -> Matcher {
    matcher(matcher::Kind::Method(m.into()))
}

pub fn header(name: &str, value: &str) -> Matcher {
    matcher(matcher::Kind::Header(HeaderMatcher {
        name: name.into(),
        value: Some(header_matcher::Value::Exact(value.into())),
    }))
}

pub fn query(name: &str, value: &str) -> Matcher {
    matcher(matcher::Kind::Query(QueryMatcher {
        name: name.into(),
        value: Some(query_matcher::Value::Exact(value.into())),
    }))
}

pub fn client_ip(ranges: &[&str]) -> Matcher {
    matcher(matcher::Kind::ClientIp(ClientIpMatcher {
        ranges: ranges.iter().map(|r| r.to_string()).collect(),
    }))
}

pub fn all(matchers: Vec<Matcher>) -> Matcher {
    matcher(matcher::Kind::All(MatcherList { matchers }))
}

pub fn any(matchers: Vec<Matcher>) -> Matcher {
    matcher(matcher::Kind::Any(MatcherList { matchers }))
}

/// A route taking requests for any of `hosts` whose path starts with `path_prefix` (as the first
/// route model did).
pub fn route(name: &str, hosts: &[&str], path_prefix: &str, cluster: &str) -> Route {
    let hosts = any(hosts.iter().map(|h| host(h)).collect());
    let m = if path_prefix.is_empty() {
        hosts
    } else {
        all(vec![hosts, prefix(path_prefix)])
    };
    rule(name, m, cluster)
}

/// A route with this matcher.
pub fn rule(name: &str, matcher: Matcher, cluster: &str) -> Route {
    Route {
        name: name.into(),
        matcher: Some(matcher),
        cluster: cluster.into(),
        service: name.into(),
        ..Default::default()
    }
}

/// `route` with a priority.
pub fn prioritized(mut route: Route, priority: i64) -> Route {
    route.priority = priority;
    route
}

/// A header for a `headers` middleware to set (an empty value removes it).
pub fn header_change(name: &str, value: &str) -> berth_proto::v1::HeaderValue {
    berth_proto::v1::HeaderValue {
        name: name.into(),
        value: value.into(),
    }
}

/// `route` with a middleware chain.
pub fn chain(mut route: Route, middlewares: Vec<(&str, middleware::Kind)>) -> Route {
    route.middlewares = middlewares
        .into_iter()
        .map(|(name, kind)| Middleware {
            name: name.into(),
            kind: Some(kind),
        })
        .collect();
    route
}

/// An update carrying these routes and clusters, every `requires` filled with what it uses.
pub fn update(version: &str, nonce: &str, mut routes: Vec<Route>, mut clusters: Vec<Cluster>) -> RouteUpdate {
    berth_model::fill_requires(&mut routes, &mut clusters);
    raw_update(version, nonce, routes, clusters)
}

/// An update carrying these routes and clusters as they are.
pub fn raw_update(version: &str, nonce: &str, routes: Vec<Route>, clusters: Vec<Cluster>) -> RouteUpdate {
    RouteUpdate {
        version: version.into(),
        nonce: nonce.into(),
        body: Some(route_update::Body::Snapshot(Snapshot { routes, clusters })),
    }
}

// ---------------------------------------------------------------------------------------------
// Control plane

/// What the fake control plane saw from proxies.
#[derive(Debug, Clone)]
pub enum Seen {
    Hello(Hello),
    Ack(Ack),
    Nack(Nack),
}

/// A RouteDiscovery server that sends the latest pushed update to every stream (like the real one:
/// latest state only, `up_to_date` when the Hello names the current version).
pub struct FakeControlPlane {
    pub addr: SocketAddr,
    current: watch::Sender<Option<RouteUpdate>>,
    kill: watch::Sender<bool>,
    seen: mpsc::UnboundedReceiver<Seen>,
    server: JoinHandle<()>,
}

struct Service {
    current: watch::Receiver<Option<RouteUpdate>>,
    kill: watch::Receiver<bool>,
    seen: mpsc::UnboundedSender<Seen>,
}

type UpdateStream = Pin<Box<dyn Stream<Item = Result<RouteUpdate, tonic::Status>> + Send>>;

#[tonic::async_trait]
impl RouteDiscovery for Service {
    type StreamStream = UpdateStream;

    async fn stream(
        &self,
        request: tonic::Request<tonic::Streaming<ProxyMessage>>,
    ) -> Result<tonic::Response<UpdateStream>, tonic::Status> {
        let mut inbound = request.into_inner();
        let hello = match inbound.message().await?.and_then(|m| m.kind) {
            Some(proxy_message::Kind::Hello(hello)) => hello,
            _ => return Err(tonic::Status::invalid_argument("first message must be a Hello")),
        };
        let _ = self.seen.send(Seen::Hello(hello.clone()));
        let seen = self.seen.clone();
        tokio::spawn(async move {
            while let Ok(Some(message)) = inbound.message().await {
                let event = match message.kind {
                    Some(proxy_message::Kind::Ack(ack)) => Seen::Ack(ack),
                    Some(proxy_message::Kind::Nack(nack)) => Seen::Nack(nack),
                    Some(proxy_message::Kind::Hello(hello)) => Seen::Hello(hello),
                    None => continue,
                };
                let _ = seen.send(event);
            }
        });
        let (tx, rx) = mpsc::channel(4);
        let mut current = self.current.clone();
        let mut kill = self.kill.clone();
        tokio::spawn(async move {
            let mut first = true;
            loop {
                let update = current.borrow_and_update().clone();
                if let Some(mut update) = update {
                    if first && update.version == hello.version {
                        update.body = Some(route_update::Body::UpToDate(UpToDate {}));
                        update.nonce = format!("{}-up-to-date", update.nonce);
                    }
                    if tx.send(Ok(update)).await.is_err() {
                        return;
                    }
                }
                first = false;
                tokio::select! {
                    changed = current.changed() => if changed.is_err() { return },
                    _ = async { let _ = kill.wait_for(|k| *k).await; } => {
                        let _ = tx.send(Err(tonic::Status::unavailable("control plane going away"))).await;
                        return;
                    }
                }
            }
        });
        Ok(tonic::Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

impl FakeControlPlane {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind control plane");
        let addr = listener.local_addr().expect("local addr");
        let (current, current_rx) = watch::channel(None);
        let (kill, kill_rx) = watch::channel(false);
        let (seen_tx, seen) = mpsc::unbounded_channel();
        let service = Service {
            current: current_rx,
            kill: kill_rx,
            seen: seen_tx,
        };
        let server = tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(RouteDiscoveryServer::new(service))
                .serve_with_incoming(TcpListenerStream::new(listener))
                .await;
        });
        Self {
            addr,
            current,
            kill,
            seen,
            server,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Makes `update` the current state and sends it on every open stream.
    pub fn push(&self, update: RouteUpdate) {
        self.current.send_replace(Some(update));
    }

    /// Ends every stream with UNAVAILABLE and stops accepting connections.
    pub fn stop(&self) {
        self.kill.send_replace(true);
        self.server.abort();
    }

    /// The next message from a proxy.
    pub async fn next_seen(&mut self) -> Seen {
        match tokio::time::timeout(DEADLINE, self.seen.recv()).await {
            Ok(Some(seen)) => seen,
            Ok(None) => panic!("control plane channel closed"),
            Err(_) => panic!("no message from the proxy within {DEADLINE:?}"),
        }
    }

    pub async fn expect_hello(&mut self) -> Hello {
        match self.next_seen().await {
            Seen::Hello(hello) => hello,
            other => panic!("expected a Hello, got {other:?}"),
        }
    }

    pub async fn expect_ack(&mut self) -> Ack {
        match self.next_seen().await {
            Seen::Ack(ack) => ack,
            other => panic!("expected an Ack, got {other:?}"),
        }
    }

    pub async fn expect_nack(&mut self) -> Nack {
        match self.next_seen().await {
            Seen::Nack(nack) => nack,
            other => panic!("expected a Nack, got {other:?}"),
        }
    }
}

impl Drop for FakeControlPlane {
    fn drop(&mut self) {
        self.kill.send_replace(true);
        self.server.abort();
    }
}

// ---------------------------------------------------------------------------------------------
// Backends

/// TLS for a test backend: a certificate for `names` issued by a fresh CA, offering `alpn` by ALPN
/// (none when empty). Returns the acceptor and a scratch directory holding the CA's PEM file
/// (`ca.pem`, for `--backend-ca`), removed when dropped.
pub fn backend_tls(names: &[&str], alpn: &[&str]) -> (tokio_rustls::TlsAcceptor, ScratchDir) {
    let ca_key = rcgen::KeyPair::generate().expect("key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).expect("CA");
    let key = rcgen::KeyPair::generate().expect("key");
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let cert = rcgen::CertificateParams::new(names)
        .expect("params")
        .signed_by(&key, &ca, &ca_key)
        .expect("certificate");
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .expect("server config");
    config.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    let dir = ScratchDir::new("berth-proxy-test");
    std::fs::write(dir.file("ca.pem"), ca.pem()).expect("write CA");
    (tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config)), dir)
}

/// A fresh directory under the system's temporary directory, removed with what it holds when
/// dropped.
pub struct ScratchDir(std::path::PathBuf);

impl ScratchDir {
    pub fn new(prefix: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "{prefix}-{}-{}",
            std::process::id(),
            NEXT_DIR.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&dir).expect("scratch dir");
        Self(dir)
    }

    /// The path of `name` in this directory.
    pub fn file(&self, name: &str) -> std::path::PathBuf {
        self.0.join(name)
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// An HTTP/2 (h2c, prior knowledge) connection to `addr`: its sender, and the task driving it
/// (which ends when the connection closes).
pub async fn h2_connect<B>(
    addr: SocketAddr,
) -> (
    hyper::client::conn::http2::SendRequest<B>,
    JoinHandle<hyper::Result<()>>,
)
where
    B: hyper::body::Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
        .await
        .expect("h2 handshake");
    (sender, tokio::spawn(conn))
}

/// An HTTP/1.1 backend (or HTTPS: [`Backend::start_tls`]) that answers with JSON describing the
/// request it got: `{"backend": name, "method": ..., "path": ..., "query": ..., "headers": {name:
/// value, ...}, "body": ...}` (repeated headers joined with `\n`), with the response headers
/// `x-backend: <name>`, `server: echo` and `set-cookie: app=1`. Requests to `/hold...` wait
/// until [`Backend::release`] is called.
pub struct Backend {
    pub addr: SocketAddr,
    pub name: String,
    /// Connections accepted so far, and still open.
    accepted: Arc<AtomicUsize>,
    open: Arc<AtomicUsize>,
    held: Arc<AtomicUsize>,
    gate: Arc<Semaphore>,
    task: JoinHandle<()>,
}

impl Backend {
    pub async fn start(name: &str) -> Self {
        Self::start_with(name, None).await
    }

    /// A backend speaking HTTPS with a certificate for 127.0.0.1 issued by a fresh CA; returns
    /// it and the scratch directory holding the CA's `ca.pem` (for `--backend-ca`).
    pub async fn start_tls(name: &str) -> (Self, ScratchDir) {
        let (acceptor, ca_dir) = backend_tls(&["127.0.0.1", "localhost"], &[]);
        (Self::start_with(name, Some(acceptor)).await, ca_dir)
    }

    async fn start_with(name: &str, tls: Option<tokio_rustls::TlsAcceptor>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind backend");
        let addr = listener.local_addr().expect("local addr");
        let held = Arc::new(AtomicUsize::new(0));
        let gate = Arc::new(Semaphore::new(0));
        let (accepted, open) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (name_c, held_c, gate_c) = (name.to_owned(), held.clone(), gate.clone());
        let (accepted_c, open_c) = (accepted.clone(), open.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                accepted_c.fetch_add(1, Ordering::SeqCst);
                open_c.fetch_add(1, Ordering::SeqCst);
                let open = OpenConnection(open_c.clone());
                let (name, held, gate, tls) = (name_c.clone(), held_c.clone(), gate_c.clone(), tls.clone());
                tokio::spawn(async move {
                    let _open = open;
                    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let (name, held, gate) = (name.clone(), held.clone(), gate.clone());
                        async move { Ok::<_, hyper::Error>(echo_response(&name, &held, &gate, req).await) }
                    });
                    match tls {
                        Some(acceptor) => {
                            let Ok(stream) = acceptor.accept(stream).await else {
                                return;
                            };
                            let _ = hyper::server::conn::http1::Builder::new()
                                .serve_connection(TokioIo::new(stream), service)
                                .await;
                        }
                        None => {
                            let _ = hyper::server::conn::http1::Builder::new()
                                .serve_connection(TokioIo::new(stream), service)
                                .await;
                        }
                    }
                });
            }
        });
        Self {
            addr,
            name: name.to_owned(),
            accepted,
            open,
            held,
            gate,
            task,
        }
    }

    /// How many connections the backend accepted so far.
    pub fn connections(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// How many of them are still open (the backend closes its end once the peer closed its).
    pub fn open_connections(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }

    /// How many `/hold` requests arrived so far.
    pub fn held(&self) -> usize {
        self.held.load(Ordering::SeqCst)
    }

    /// Lets one held request answer.
    pub fn release(&self) {
        self.gate.add_permits(1);
    }
}

/// Counts a backend connection as open until dropped.
struct OpenConnection(Arc<AtomicUsize>);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

static NEXT_DIR: AtomicUsize = AtomicUsize::new(0);

/// The backend's answer: JSON describing the request (see [`Backend`]).
async fn echo_response(
    name: &str,
    held: &AtomicUsize,
    gate: &Arc<Semaphore>,
    req: Request<Incoming>,
) -> Response<BoxBody<Bytes, Infallible>> {
    if req.uri().path() == "/stream" {
        return streaming_response(gate.clone());
    }
    if req.uri().path().starts_with("/hold") {
        held.fetch_add(1, Ordering::SeqCst);
        if let Ok(permit) = gate.acquire().await {
            permit.forget();
        }
    }
    let mut headers = serde_json::Map::new();
    for key in req.headers().keys() {
        let values: Vec<_> = req
            .headers()
            .get_all(key)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect();
        headers.insert(key.to_string(), values.join("\n").into());
    }
    let path = req.uri().path().to_owned();
    let query = req.uri().query().map(str::to_owned);
    let method = req.method().to_string();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let json = serde_json::json!({
        "backend": name,
        "method": method,
        "path": path,
        "query": query,
        "headers": headers,
        "body": String::from_utf8_lossy(&body),
    });
    Response::builder()
        .header("content-type", "application/json")
        .header("connection", "x-backend-hop")
        .header("x-backend-hop", "must not reach the client")
        .header("x-backend", name)
        .header("server", "echo")
        .header("set-cookie", "app=1")
        .body(Full::new(Bytes::from(json.to_string())).boxed())
        .expect("response")
}

/// `/stream`: sends "first" at once, then "second" once released, then ends.
fn streaming_response(gate: Arc<Semaphore>) -> Response<BoxBody<Bytes, Infallible>> {
    let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, Infallible>>(2);
    tokio::spawn(async move {
        let _ = tx.send(Ok(Frame::data(Bytes::from_static(b"first")))).await;
        if let Ok(permit) = gate.acquire().await {
            permit.forget();
        }
        let _ = tx.send(Ok(Frame::data(Bytes::from_static(b"second")))).await;
    });
    Response::new(StreamBody::new(ReceiverStream::new(rx)).boxed())
}

/// A backend that accepts connections and never answers.
pub struct SilentBackend {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl SilentBackend {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind silent backend");
        let addr = listener.local_addr().expect("local addr");
        let task = tokio::spawn(async move {
            let mut open = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                open.push(stream);
            }
        });
        Self { addr, task }
    }
}

impl Drop for SilentBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A listener whose accept queue is full, so new connections to it hang (Linux drops the SYN):
/// connecting to it times out.
pub struct BlackholeBackend {
    pub addr: SocketAddr,
    _listener: tokio::net::TcpListener,
    _filler: tokio::net::TcpStream,
}

impl BlackholeBackend {
    pub async fn start() -> Self {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.bind("127.0.0.1:0".parse().expect("addr")).expect("bind");
        let listener = socket.listen(0).expect("listen");
        let addr = listener.local_addr().expect("local addr");
        // With a backlog of 0 one unaccepted connection fills the queue.
        let filler = tokio::net::TcpStream::connect(addr)
            .await
            .expect("fill the accept queue");
        Self {
            addr,
            _listener: listener,
            _filler: filler,
        }
    }
}

/// An address on 127.0.0.1 where nothing listens (connections are refused).
pub async fn dead_addr() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    listener.local_addr().expect("local addr")
}

// ---------------------------------------------------------------------------------------------
// The proxy process

/// The real binary, started with the given flags; killed (by its handle) when dropped.
pub struct ProxyProcess {
    child: Child,
    pub entrypoints: HashMap<String, SocketAddr>,
    pub admin: SocketAddr,
    logs: Arc<Mutex<Vec<String>>>,
}

/// Runs the binary to completion (for start-up failures) and returns its exit code and stderr.
pub fn run_to_exit(args: &[&str]) -> (Option<i32>, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_berth-proxy"))
        .args(args)
        .env_clear()
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .output()
        .expect("run berth-proxy");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

impl ProxyProcess {
    /// Starts the proxy with one entrypoint `http` and an admin server, both on ephemeral ports,
    /// connected to `control_planes`, plus `extra` flags. Returns once every socket is bound.
    pub async fn start(control_planes: &[String], extra: &[&str]) -> Self {
        let mut args = vec![
            "--control-plane".to_owned(),
            control_planes.join(","),
            "--admin-addr".to_owned(),
            "127.0.0.1:0".to_owned(),
            "--node-id".to_owned(),
            "test-proxy".to_owned(),
        ];
        if !extra.contains(&"--entrypoint") {
            args.extend(["--entrypoint".to_owned(), "http=127.0.0.1:0".to_owned()]);
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut child = Command::new(env!("CARGO_BIN_EXE_berth-proxy"))
            .args(&args)
            .env_clear()
            .env("RUST_LOG", "info,berth_proxy=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn berth-proxy");
        let stderr = child.stderr.take().expect("stderr");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let logs_w = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                eprintln!("[berth-proxy] {line}");
                logs_w.lock().expect("logs").push(line);
            }
        });
        let expected = args.iter().filter(|a| *a == "--entrypoint").count();
        let logs_r = logs.clone();
        let child_r = &mut child;
        let (entrypoints, admin) = eventually("the proxy to bind its sockets", || {
            let logs = logs_r.lock().expect("logs").clone();
            if let Ok(Some(status)) = child_r.try_wait() {
                panic!("berth-proxy exited at start with {status}: {logs:#?}");
            }
            async move {
                let mut entrypoints = HashMap::new();
                let mut admin = None;
                for line in &logs {
                    if line.contains("entrypoint listening") {
                        let name = field(line, "entrypoint")?;
                        let addr = field(line, "address")?.parse().ok()?;
                        entrypoints.insert(name.to_owned(), addr);
                    } else if line.contains("admin listening") {
                        admin = field(line, "address")?.parse().ok();
                    }
                }
                (entrypoints.len() == expected)
                    .then_some(())
                    .and(admin.map(|a| (entrypoints, a)))
            }
        })
        .await;
        Self {
            child,
            entrypoints,
            admin,
            logs,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn logs(&self) -> Vec<String> {
        self.logs.lock().expect("logs").clone()
    }

    /// Sends SIGTERM to this child (by pid).
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed");
    }

    /// Waits for the child to exit and returns its exit code.
    pub async fn wait_exit(&mut self) -> Option<i32> {
        let child = &mut self.child;
        let status = eventually("the proxy to exit", || {
            let status = child.try_wait().expect("try_wait");
            async move { status }
        })
        .await;
        status.code()
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.entrypoints["http"]
    }

    pub async fn admin_get(&self, path: &str) -> (StatusCode, String) {
        let (status, _, body) = get(self.admin, "127.0.0.1", path, &[])
            .await
            .expect("admin request");
        (status, body)
    }

    pub async fn snapshot_json(&self) -> serde_json::Value {
        let (status, body) = self.admin_get("/api/snapshot").await;
        assert_eq!(status, StatusCode::OK);
        serde_json::from_str(&body).expect("snapshot JSON")
    }

    /// Waits until the admin API reports this version as applied.
    pub async fn wait_version(&self, version: &str) {
        eventually(&format!("version {version} to be applied"), || async {
            (self.snapshot_json().await["version"] == version).then_some(())
        })
        .await;
    }
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The value of `name=value` in a tracing log line.
fn field<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let start = line.find(&format!(" {name}="))? + name.len() + 2;
    let rest = &line[start..];
    Some(rest.split_whitespace().next()?.trim_matches('"'))
}

// ---------------------------------------------------------------------------------------------
// HTTP client

pub type Headers = http::HeaderMap;

/// One HTTP/1.1 GET to `addr` with the given Host header. A fresh client each time, so tests do not
/// depend on connection reuse.
pub async fn get(
    addr: SocketAddr,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<(StatusCode, Headers, String), hyper_util::client::legacy::Error> {
    send(addr, "GET", host, path, headers).await
}

/// One HTTP/1.1 request `method path` to `addr` with the given Host header and headers.
pub async fn send(
    addr: SocketAddr,
    method: &str,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<(StatusCode, Headers, String), hyper_util::client::legacy::Error> {
    send_from(None, addr, method, host, path, headers).await
}

/// Like [`send`], from the local address `local` (any of 127.0.0.0/8 reaches the proxy), so the
/// proxy sees a peer other than 127.0.0.1.
pub async fn send_from(
    local: Option<std::net::IpAddr>,
    addr: SocketAddr,
    method: &str,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<(StatusCode, Headers, String), hyper_util::client::legacy::Error> {
    let mut connector = HttpConnector::new();
    connector.set_local_address(local);
    let client: Client<HttpConnector, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build(connector);
    let mut builder = Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"))
        .header("host", host);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let response = client
        .request(builder.body(Empty::new()).expect("request"))
        .await?;
    let (parts, body) = response.into_parts();
    let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    Ok((
        parts.status,
        parts.headers,
        String::from_utf8_lossy(&body).into_owned(),
    ))
}

/// Like [`get`], panicking on transport errors.
pub async fn must_get(addr: SocketAddr, host: &str, path: &str) -> (StatusCode, Headers, String) {
    get(addr, host, path, &[])
        .await
        .expect("request through the proxy")
}

/// The JSON a [`Backend`] answered with.
pub fn echo(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not a backend echo ({e}): {body}"))
}

/// One HTTP/2 (h2c, prior knowledge) GET to `addr` with `authority` as `:authority` and no Host.
pub async fn get_h2(addr: SocketAddr, authority: &str, path: &str) -> (StatusCode, String) {
    let (mut sender, _conn) = h2_connect(addr).await;
    let request = Request::get(format!("http://{authority}{path}"))
        .version(http::Version::HTTP_2)
        .body(Empty::<Bytes>::new())
        .expect("request");
    let response = sender.send_request(request).await.expect("h2 request");
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// Starts a GET and returns the response with its body unread.
pub async fn get_streaming(addr: SocketAddr, host: &str, path: &str) -> Response<Incoming> {
    let client: Client<HttpConnector, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let request = Request::get(format!("http://{addr}{path}"))
        .header("host", host)
        .body(Empty::new())
        .expect("request");
    client.request(request).await.expect("request through the proxy")
}

/// Sends a POST with `body` and returns the status and response body.
pub async fn post(addr: SocketAddr, host: &str, path: &str, body: Bytes) -> (StatusCode, String) {
    let client: Client<HttpConnector, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let request = Request::post(format!("http://{addr}{path}"))
        .header("host", host)
        .body(Full::new(body))
        .expect("request");
    let response = client.request(request).await.expect("request through the proxy");
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    (status, String::from_utf8_lossy(&body).into_owned())
}
