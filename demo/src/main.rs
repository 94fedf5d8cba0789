//! `berth-demo`: a tiny HTTP backend for Berth's quick start, end-to-end tests and test images.
//!
//! It answers every request with one line naming itself, so a reader (or a test) can see which
//! instance served a request: `web_go instance go-1 served GET / (host go.traefix.example.localhost)`.
//! It also echoes request headers as `x-seen-<name>` response headers when asked with
//! `?echo=1`, for tests that check what a proxy forwarded, and `GET /slow?ms=N` answers after N
//! milliseconds, for tests that need a request in flight (`GET /slow/in-flight` says how many
//! such requests are waiting now, so a test can wait until one arrived). `GET /health` answers
//! `ok`.
//!
//! Echo mode (`--echo`, or `DEMO_ECHO=1`) is for tests that compare what two proxies forwarded
//! (the parity tests against Traefik): every answer (but `/health`) is a JSON document of the
//! request exactly as it arrived: `{"service", "name", "method", "path", "query", "headers"}`,
//! with the path and query as sent on the wire (not decoded; `query` is null when the target has
//! no `?`) and every header as a `[name, value]` pair in arrival order. Each echo answer also
//! carries the response header `x-demo-service: <service>`, so a test can see a proxy remove a
//! header the backend set.
//!
//! Configuration is by flags or environment (so a container can set it with `-e`):
//! `--listen ADDR` / `DEMO_LISTEN` (default `0.0.0.0:9090`), `--name NAME` / `DEMO_NAME`
//! (default: the host name, which in a container is its id).
//!
//! Health: `GET /health` answers `ok` (200) until `GET /health/fail` turns it to 503, and
//! `GET /health/ok` back, so tests can flip a container's Docker health status. `berth-demo --probe
//! [URL]` is the health check for images without a shell (Docker `HEALTHCHECK CMD ["/berth-demo",
//! "--probe"]`): it exits 0 if `GET URL` answers 2xx within 2 seconds, else 1; without a URL it
//! probes `http://127.0.0.1:<port of DEMO_LISTEN>/health`.

use std::convert::Infallible;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

const HELP: &str = "berth-demo: a tiny HTTP backend that answers with its own name.

Usage: berth-demo [--listen ADDR] [--name NAME] [--service SERVICE] [--echo]
       berth-demo --probe [URL]

  --listen ADDR      address to listen on (env DEMO_LISTEN, default 0.0.0.0:9090)
  --name NAME        instance name in every answer (env DEMO_NAME, default: the host name)
  --service SERVICE  service name in every answer (env DEMO_SERVICE, default: demo)
  --echo             answer every request (but /health) with a JSON echo of it: service, name,
                     method, path, query and headers as received (env DEMO_ECHO=1)

  --probe [URL]      health probe: exit 0 if GET URL answers 2xx within 2s, else 1 (default URL:
                     http://127.0.0.1:<port of --listen / DEMO_LISTEN>/health)

Endpoints: GET /health -> ok (503 after GET /health/fail, ok again after GET /health/ok);
GET /slow?ms=N answers after N ms (GET /slow/in-flight: how many are waiting); any path with ?echo=1 returns the request headers as
x-seen-<name> response headers.";

struct Identity {
    service: String,
    name: String,
    healthy: AtomicBool,
    /// Answer with a JSON echo of the request (`--echo`).
    echo: bool,
    /// `/slow` requests being answered now (`GET /slow/in-flight`).
    slow_in_flight: AtomicUsize,
}

fn main() -> Result<()> {
    let mut listen = std::env::var("DEMO_LISTEN").unwrap_or_else(|_| "0.0.0.0:9090".into());
    let mut name = std::env::var("DEMO_NAME").ok();
    let mut service = std::env::var("DEMO_SERVICE").unwrap_or_else(|_| "demo".into());
    let mut probe: Option<Option<String>> = None;
    let mut echo = std::env::var("DEMO_ECHO").is_ok_and(|v| v == "1" || v == "true");
    let mut args = std::env::args().skip(1).peekable();
    while let Some(arg) = args.next() {
        if arg == "--echo" {
            echo = true;
            continue;
        }
        if arg == "--probe" {
            // `--probe` alone, or followed by a URL.
            let url = args.next_if(|next| next.starts_with("http://"));
            probe = Some(url);
            continue;
        }
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) => (f.to_string(), Some(v.to_string())),
            None => (arg.clone(), None),
        };
        let mut value = |flag: &str| -> Result<String> {
            match inline.clone().or_else(|| args.next()) {
                Some(v) => Ok(v),
                None => bail!("{flag} needs a value"),
            }
        };
        match flag.as_str() {
            "--listen" => listen = value("--listen")?,
            "--name" => name = Some(value("--name")?),
            "--service" => service = value("--service")?,
            "--probe" => probe = Some(Some(value("--probe")?)),
            "-h" | "--help" => {
                println!("{HELP}");
                return Ok(());
            }
            other => bail!("unknown argument {other:?}\n\n{HELP}"),
        }
    }
    let addr: SocketAddr = listen
        .parse()
        .with_context(|| format!("--listen {listen:?} is not an address like 0.0.0.0:9090"))?;
    if let Some(url) = probe {
        let url = url.unwrap_or_else(|| format!("http://127.0.0.1:{}/health", addr.port()));
        match probe_url(&url, Duration::from_secs(2)) {
            Ok(status) => {
                println!("{url}: {status}");
                std::process::exit(0)
            }
            Err(e) => {
                println!("{url}: {e:#}");
                std::process::exit(1)
            }
        }
    }
    let name = name.unwrap_or_else(hostname);
    let identity = Arc::new(Identity {
        service,
        name,
        healthy: AtomicBool::new(true),
        echo,
        slow_in_flight: AtomicUsize::new(0),
    });
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(serve(addr, identity))
}

/// `GET url` (plain `http://host:port/path` only), returning the status line when it is 2xx;
/// everything (connect, write, read) must fit in `timeout`.
fn probe_url(url: &str, timeout: Duration) -> Result<String> {
    let deadline = Instant::now() + timeout;
    let Some(rest) = url.strip_prefix("http://") else {
        bail!("only http:// URLs can be probed")
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let target = if authority.contains(':') {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    let addr = std::net::ToSocketAddrs::to_socket_addrs(&target)
        .with_context(|| format!("resolving {target}"))?
        .next()
        .with_context(|| format!("{target} resolves to nothing"))?;
    let remaining = || {
        deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1))
    };
    let mut stream = std::net::TcpStream::connect_timeout(&addr, remaining())
        .with_context(|| format!("connecting to {addr}"))?;
    stream.set_write_timeout(Some(remaining()))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {authority}\r\nUser-Agent: berth-demo-probe\r\nConnection: close\r\n\r\n")
        .context("sending the request")?;
    let mut head = Vec::new();
    let mut buf = [0u8; 512];
    while !head.contains(&b'\n') {
        stream.set_read_timeout(Some(remaining()))?;
        let n = stream.read(&mut buf).context("reading the answer")?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
        if Instant::now() >= deadline {
            bail!("no answer within {timeout:?}");
        }
    }
    let line = String::from_utf8_lossy(&head);
    let status_line = line.lines().next().unwrap_or("").trim().to_string();
    let code = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse::<u16>().ok());
    match code {
        Some(code) if (200..300).contains(&code) => Ok(status_line),
        Some(_) => bail!("answered {status_line:?}"),
        None => bail!("not an HTTP answer: {status_line:?}"),
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "demo".into())
}

async fn serve(addr: SocketAddr, identity: Arc<Identity>) -> Result<()> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("--listen {addr}: cannot listen"))?;
    println!(
        "berth-demo {} ({}) listening on {}",
        identity.name,
        identity.service,
        listener.local_addr()?
    );
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => accepted?,
            _ = term.recv() => return Ok(()),
            _ = tokio::signal::ctrl_c() => return Ok(()),
        };
        let identity = identity.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| answer(req, identity.clone()));
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn answer(req: Request<Incoming>, id: Arc<Identity>) -> Result<Response<Full<Bytes>>, Infallible> {
    let query = req.uri().query().unwrap_or("");
    match req.uri().path() {
        "/health" if id.healthy.load(Ordering::Relaxed) => {
            return Ok(Response::new(Full::new(Bytes::from_static(b"ok\n"))))
        }
        "/health" => {
            let mut response = Response::new(Full::new(Bytes::from_static(b"failing\n")));
            *response.status_mut() = hyper::StatusCode::SERVICE_UNAVAILABLE;
            return Ok(response);
        }
        "/health/fail" => {
            id.healthy.store(false, Ordering::Relaxed);
            return Ok(Response::new(Full::new(Bytes::from_static(
                b"health now failing\n",
            ))));
        }
        "/health/ok" => {
            id.healthy.store(true, Ordering::Relaxed);
            return Ok(Response::new(Full::new(Bytes::from_static(b"health now ok\n"))));
        }
        "/slow/in-flight" => {
            let count = id.slow_in_flight.load(Ordering::SeqCst);
            return Ok(Response::new(Full::new(Bytes::from(format!("{count}\n")))));
        }
        _ => {}
    }
    if req.uri().path() == "/slow" {
        let ms = query
            .split('&')
            .find_map(|kv| kv.strip_prefix("ms="))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(1000)
            .min(60_000);
        let _waiting = InFlight::enter(&id.slow_in_flight);
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    if id.echo {
        return Ok(echo(&req, &id));
    }
    let host = req
        .headers()
        .get(hyper::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("-");
    let body = format!(
        "{} instance {} served {} {} (host {})\n",
        id.service,
        id.name,
        req.method(),
        req.uri().path(),
        host
    );
    let mut builder = Response::builder()
        .header("x-demo-instance", id.name.as_str())
        .header("content-type", "text/plain");
    if query.split('&').any(|kv| kv == "echo=1") {
        for (k, v) in req.headers() {
            builder = builder.header(format!("x-seen-{}", k.as_str()), v.clone());
        }
    }
    Ok(builder
        .body(Full::new(Bytes::from(body)))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new()))))
}

/// Counts one request in a gauge while it lives (also when the client goes away mid-way and the
/// request's future is dropped).
struct InFlight<'a>(&'a AtomicUsize);

impl<'a> InFlight<'a> {
    fn enter(gauge: &'a AtomicUsize) -> InFlight<'a> {
        gauge.fetch_add(1, Ordering::SeqCst);
        InFlight(gauge)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The echo-mode answer: the request as it arrived, as JSON (see the module doc).
fn echo(req: &Request<Incoming>, id: &Identity) -> Response<Full<Bytes>> {
    let headers: Vec<serde_json::Value> = req
        .headers()
        .iter()
        .map(|(k, v)| serde_json::json!([k.as_str(), String::from_utf8_lossy(v.as_bytes())]))
        .collect();
    let body = serde_json::json!({
        "service": id.service,
        "name": id.name,
        "method": req.method().as_str(),
        "path": req.uri().path(),
        "query": req.uri().query(),
        "headers": headers,
    });
    Response::builder()
        .header("x-demo-instance", id.name.as_str())
        .header("x-demo-service", id.service.as_str())
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}
