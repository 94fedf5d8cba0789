//! Entrypoint listeners: accept TCP connections and serve HTTP/1.1 and h2c on them, or HTTPS
//! (HTTP/1.1 and HTTP/2 over TLS) on the `--tls` ones: their handshake runs first, in the
//! connection's task (see `tls`).
//!
//! For: binding every `--entrypoint` at start (a bad or busy address stops the binary), once per
//! worker thread (`SO_REUSEPORT`: the kernel spreads the connections over the workers' sockets, see
//! [`Workers`]), one accept loop per entrypoint and worker, one tokio task per connection on the
//! worker that accepted it — a plain-text connection served by Berth's own HTTP/1.1 loop
//! (`http1`) until a request it leaves to hyper, then by hyper-util's `server::conn::auto`, which
//! also serves every TLS connection — and
//! graceful shutdown: on the shutdown signal (sent after `--drain-grace`, see `lib.rs`) stop
//! accepting and let each connection finish its requests in flight — an HTTP/1.1 connection closes
//! after its response in flight (at once if idle), an HTTP/2 client gets a GOAWAY and the
//! connection closes once its open streams are done.
//! Not for: what happens to a request (see `proxy`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use thiserror::Error;
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;
use tokio::sync::{mpsc, watch};

use crate::config::EntrypointSpec;
use crate::http1;
use crate::limits::{Activity, Expired, Limits, Tracked, Watched};
use crate::proxy::{Entrypoint, Peer, Proxy, ProxyError};
use crate::tls;

/// Pause after a failed accept (for example out of file descriptors) before trying again.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);

#[derive(Debug, Error)]
#[error("--entrypoint {name}={addr}: cannot listen on {addr}: {source}")]
pub(crate) struct BindError {
    name: String,
    addr: SocketAddr,
    source: std::io::Error,
}

/// A bound entrypoint, not yet accepting: one worker's socket of it.
#[derive(Debug)]
pub(crate) struct Bound {
    entrypoint: Entrypoint,
    /// Made a tokio listener by the worker's runtime that accepts on it (see [`serve`]).
    listener: std::net::TcpListener,
    /// The handshake of a `--tls` entrypoint.
    tls: Option<tls::Acceptor>,
}

/// Held by every accept loop and connection task; the process waits for all of them to be dropped
/// before exiting on shutdown.
pub(crate) type DrainGuard = mpsc::Sender<()>;

/// Binds every entrypoint, in order (the index is the entrypoint's position), `workers` times on
/// the same address (`SO_REUSEPORT`; port 0 picks one port for all): the result's `[w][e]` is
/// worker `w`'s socket of entrypoint `e`. The `--tls` ones will shake hands with `tls`.
pub(crate) fn bind_all(
    specs: &[EntrypointSpec],
    tls: Option<&tls::Acceptor>,
    workers: usize,
) -> Result<Vec<Vec<Bound>>, BindError> {
    let mut bound: Vec<Vec<Bound>> = (0..workers).map(|_| Vec::with_capacity(specs.len())).collect();
    for (index, spec) in specs.iter().enumerate() {
        let mut addr = spec.addr;
        for (worker, sockets) in bound.iter_mut().enumerate() {
            let listener = bind_reuseport(addr).map_err(|source| BindError {
                name: spec.name.clone(),
                addr: spec.addr,
                source,
            })?;
            if worker == 0 {
                // The others bind the port the first one got (`:0` asks for any).
                addr = listener.local_addr().unwrap_or(spec.addr);
                tracing::info!(entrypoint = %spec.name, address = %addr, tls = spec.tls, workers, "entrypoint listening");
            }
            sockets.push(Bound {
                entrypoint: Entrypoint {
                    index,
                    name: spec.name.as_str().into(),
                    tls: spec.tls,
                },
                listener,
                tls: tls.filter(|_| spec.tls).cloned(),
            });
        }
    }
    Ok(bound)
}

/// A listening, non-blocking socket on `addr` that other sockets of this process may share
/// (`SO_REUSEPORT`), with the backlog and `SO_REUSEADDR` tokio's `TcpListener::bind` uses.
fn bind_reuseport(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}

/// The worker threads: each runs its own single-threaded tokio runtime with its own socket of every
/// entrypoint and its own [`Proxy`] (so its own pooled backend connections): a request is read,
/// forwarded and answered on one thread, with no hand-off between threads. Shutdown is driven from
/// outside as before (`shutdown`, the drain guard); dropping `Workers` stops the threads' runtimes.
pub(crate) struct Workers {
    exit: watch::Sender<bool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Workers {
    /// Starts one thread per element of `bound` (see [`bind_all`]), serving with `proxies[w]`.
    pub(crate) fn start(
        bound: Vec<Vec<Bound>>,
        proxies: Vec<Arc<Proxy>>,
        limits: Arc<Limits>,
        shutdown: &watch::Receiver<bool>,
        drain: &DrainGuard,
    ) -> std::io::Result<Self> {
        let (exit, exited) = watch::channel(false);
        let mut workers = Self {
            exit,
            threads: Vec::with_capacity(bound.len()),
        };
        for (index, (sockets, proxy)) in bound.into_iter().zip(proxies).enumerate() {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let (limits, shutdown, drain, mut exited) =
                (limits.clone(), shutdown.clone(), drain.clone(), exited.clone());
            let thread = std::thread::Builder::new()
                .name(format!("berth-worker-{index}"))
                .spawn(move || run_worker(runtime, sockets, proxy, limits, shutdown, drain, &mut exited))?;
            workers.threads.push(thread);
        }
        Ok(workers)
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        let _ = self.exit.send(true);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

fn run_worker(
    runtime: Runtime,
    sockets: Vec<Bound>,
    proxy: Arc<Proxy>,
    limits: Arc<Limits>,
    shutdown: watch::Receiver<bool>,
    drain: DrainGuard,
    exited: &mut watch::Receiver<bool>,
) {
    runtime.block_on(async {
        for bound in sockets {
            tokio::spawn(serve(
                bound,
                proxy.clone(),
                limits.clone(),
                shutdown.clone(),
                drain.clone(),
            ));
        }
        drop(drain);
        stopped(exited).await;
    });
    // Do not wait on leftovers such as a DNS lookup stuck in the blocking pool.
    runtime.shutdown_timeout(Duration::from_secs(1));
}

/// Per-listener context shared by its connections.
struct Handler {
    proxy: Arc<Proxy>,
    entrypoint: Entrypoint,
    builder: auto::Builder<TokioExecutor>,
    tls: Option<tls::Acceptor>,
    /// Client limits and the connection cap, shared by every entrypoint.
    limits: Arc<Limits>,
}

/// Accepts connections until `shutdown` turns true.
async fn serve(
    bound: Bound,
    proxy: Arc<Proxy>,
    limits: Arc<Limits>,
    mut shutdown: watch::Receiver<bool>,
    drain: DrainGuard,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    limits.configure(&mut builder);
    let listener = match TcpListener::from_std(bound.listener) {
        Ok(listener) => listener,
        Err(error) => {
            tracing::error!(entrypoint = &*bound.entrypoint.name, %error, "cannot accept on the entrypoint");
            return;
        }
    };
    let handler = Arc::new(Handler {
        proxy,
        entrypoint: bound.entrypoint,
        builder,
        tls: bound.tls,
        limits,
    });
    loop {
        tokio::select! {
            _ = stopped(&mut shutdown) => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    // Over --max-connections: closed at once (dropped).
                    let Some(slot) = handler.limits.admit() else { continue };
                    let connection = serve_connection(stream, peer, handler.clone(), shutdown.clone(), drain.clone());
                    tokio::spawn(async move {
                        connection.await;
                        drop(slot);
                    });
                }
                Err(error) => {
                    tracing::warn!(entrypoint = &*handler.entrypoint.name, %error, "accept failed");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                }
            },
        }
    }
    tracing::debug!(entrypoint = &*handler.entrypoint.name, "stopped accepting");
}

/// Resolves once shutdown was requested (or the process is going away).
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    handler: Arc<Handler>,
    mut shutdown: watch::Receiver<bool>,
    drain: DrainGuard,
) {
    let _ = stream.set_nodelay(true);
    // Counted in berth_proxy_active_connections until this task ends.
    let _connection = crate::metrics::connection(handler.entrypoint.index);
    let activity = Activity::new(&handler.limits.settings);
    let Some(acceptor) = &handler.tls else {
        // Berth's own HTTP/1.1 loop first; hyper's server from the first request it leaves.
        let io = Watched::new(stream, activity.clone());
        let client = Peer::new(peer).served_by_own_loop();
        let (limits, proxy, entrypoint) = (&handler.limits.settings, &handler.proxy, &handler.entrypoint);
        let ended = http1::serve(io, limits, &activity, &shutdown, |req, raw| async {
            match proxy.handle(entrypoint, &client, req, raw).await {
                Ok(response) => response,
                Err(never) => match never {},
            }
        })
        .await;
        if let http1::Ended::Handover { io, read } = ended {
            let io = TokioIo::new(http1::Rewind::new(read, io));
            serve_http(io, peer, handler.clone(), activity, shutdown, drain).await;
        }
        return;
    };
    // The handshake runs here, in the connection's task: a slow client never holds up accepting.
    let handshake = tokio::select! {
        result = acceptor.handshake(stream) => result,
        _ = stopped(&mut shutdown) => return,
    };
    match handshake {
        Ok(stream) => {
            let io = TokioIo::new(Watched::new(stream, activity.clone()));
            serve_http(io, peer, handler.clone(), activity, shutdown, drain).await
        }
        Err(error) => {
            tracing::debug!(entrypoint = &*handler.entrypoint.name, %peer, %error, "TLS handshake failed");
        }
    }
}

/// Serves HTTP/1.1 and HTTP/2 on a connection (over TLS or not) until it closes or shutdown.
async fn serve_http<I>(
    io: I,
    peer: SocketAddr,
    handler: Arc<Handler>,
    activity: Arc<Activity>,
    mut shutdown: watch::Receiver<bool>,
    _drain: DrainGuard,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let service = {
        let handler = handler.clone();
        let activity = activity.clone();
        let client = Peer::new(peer);
        service_fn(move |req| {
            let handler = handler.clone();
            let client = client.clone();
            // The request counts as in progress (no idle timeout) until its response body is dropped.
            let guard = activity.begin();
            async move {
                let max = handler.limits.settings.max_headers;
                if req.version() == http::Version::HTTP_2 && req.headers().len() > max {
                    // hyper counts HTTP/1.1 header fields itself; HTTP/2 ones are counted here.
                    let error = ProxyError::TooManyHeaders {
                        count: req.headers().len(),
                        max,
                    };
                    tracing::debug!(entrypoint = &*handler.entrypoint.name, %peer, %error, "request refused");
                    return Ok(error.into_response().map(|body| Tracked::new(body, guard)));
                }
                let req = req.map(http_body_util::Either::Left);
                // Boxed: hyper moves a service's future several times (HTTP/2 spawns each stream
                // as a task), and the request path's future is large; a box moves as a pointer.
                let response =
                    Box::pin(handler.proxy.handle(&handler.entrypoint, &client, req, None)).await?;
                Ok::<_, std::convert::Infallible>(response.map(|body| Tracked::new(body, guard)))
            }
        })
    };
    // With upgrades: a WebSocket (or other `Upgrade`) request is tunnelled once the backend
    // switches protocols (see `proxy::upgrade`).
    let conn = handler.builder.serve_connection_with_upgrades(io, service);
    tokio::pin!(conn);
    let result = tokio::select! {
        result = conn.as_mut() => result,
        _ = stopped(&mut shutdown) => {
            // Finish the requests in flight, answer nothing new, then close.
            conn.as_mut().graceful_shutdown();
            conn.as_mut().await
        }
        expired = activity.expired() => {
            tracing::debug!(entrypoint = &*handler.entrypoint.name, %peer, reason = ?expired, "closing client connection");
            if expired == Expired::HeaderRead {
                // Dropped: hyper has no request to answer yet.
                return;
            }
            // Idle: close (HTTP/2 clients get a GOAWAY); a client that holds on is dropped.
            conn.as_mut().graceful_shutdown();
            match tokio::time::timeout(Activity::close_grace(), conn.as_mut()).await {
                Ok(result) => result,
                Err(_) => return,
            }
        }
    };
    if let Err(error) = result {
        tracing::debug!(entrypoint = &*handler.entrypoint.name, %peer, %error, "connection ended with an error");
    }
}
