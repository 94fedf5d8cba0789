//! Entrypoint listeners: accept TCP connections and serve HTTP/1.1 and h2c on them.
//!
//! For: binding every `--entrypoint` at start (a bad or busy address stops the binary), one accept
//! loop per entrypoint, one tokio task per connection (hyper-util `server::conn::auto`), and
//! graceful shutdown: on the shutdown signal (sent after `--drain-grace`, see `lib.rs`) stop
//! accepting and let each connection finish its requests in flight — an HTTP/1.1 connection closes
//! after its response in flight (at once if idle), an HTTP/2 client gets a GOAWAY and the
//! connection closes once its open streams are done.
//! Not for: what happens to a request (see `proxy`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use thiserror::Error;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

use crate::config::EntrypointSpec;
use crate::proxy::{Entrypoint, Proxy};

/// Pause after a failed accept (for example out of file descriptors) before trying again.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);

#[derive(Debug, Error)]
#[error("--entrypoint {name}={addr}: cannot listen on {addr}: {source}")]
pub(crate) struct BindError {
    name: String,
    addr: SocketAddr,
    source: std::io::Error,
}

/// A bound entrypoint, not yet accepting.
#[derive(Debug)]
pub(crate) struct Bound {
    entrypoint: Entrypoint,
    listener: TcpListener,
}

/// Held by every accept loop and connection task; the process waits for all of them to be dropped
/// before exiting on shutdown.
pub(crate) type DrainGuard = mpsc::Sender<()>;

/// Binds every entrypoint, in order (the index is the entrypoint's position).
pub(crate) async fn bind_all(specs: &[EntrypointSpec]) -> Result<Vec<Bound>, BindError> {
    let mut bound = Vec::with_capacity(specs.len());
    for (index, spec) in specs.iter().enumerate() {
        let listener = TcpListener::bind(spec.addr).await.map_err(|source| BindError {
            name: spec.name.clone(),
            addr: spec.addr,
            source,
        })?;
        let local = listener.local_addr().unwrap_or(spec.addr);
        tracing::info!(entrypoint = %spec.name, address = %local, "entrypoint listening");
        bound.push(Bound {
            entrypoint: Entrypoint {
                index,
                name: spec.name.as_str().into(),
            },
            listener,
        });
    }
    Ok(bound)
}

/// Per-listener context shared by its connections.
struct Handler {
    proxy: Arc<Proxy>,
    entrypoint: Entrypoint,
    builder: auto::Builder<TokioExecutor>,
}

/// Accepts connections until `shutdown` turns true.
pub(crate) async fn serve(
    bound: Bound,
    proxy: Arc<Proxy>,
    mut shutdown: watch::Receiver<bool>,
    drain: DrainGuard,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // A timer enables hyper's default limit on how long a client may take to send request headers.
    builder.http1().timer(TokioTimer::new());
    builder.http2().timer(TokioTimer::new());
    let handler = Arc::new(Handler {
        proxy,
        entrypoint: bound.entrypoint,
        builder,
    });
    loop {
        tokio::select! {
            _ = stopped(&mut shutdown) => break,
            accepted = bound.listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    tokio::spawn(serve_connection(stream, peer, handler.clone(), shutdown.clone(), drain.clone()));
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
    _drain: DrainGuard,
) {
    let _ = stream.set_nodelay(true);
    let service = {
        let handler = handler.clone();
        service_fn(move |req| {
            let handler = handler.clone();
            async move { handler.proxy.handle(&handler.entrypoint, peer, req).await }
        })
    };
    let conn = handler.builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let result = tokio::select! {
        result = conn.as_mut() => result,
        _ = stopped(&mut shutdown) => {
            // Finish the requests in flight, answer nothing new, then close.
            conn.as_mut().graceful_shutdown();
            conn.as_mut().await
        }
    };
    if let Err(error) = result {
        tracing::debug!(entrypoint = &*handler.entrypoint.name, %peer, %error, "connection ended with an error");
    }
}
