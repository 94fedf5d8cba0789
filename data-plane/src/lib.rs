//! berth-proxy: Berth's data plane, as a library the `berth-proxy` binary runs ([`main`]).
//!
//! For: wiring the parts together — parse flags, bind every socket (so a bad flag stops the binary
//! before anything else happens), apply the cached snapshot if there is one, start the entrypoint
//! listeners, the admin server and the control-plane stream client, then wait for SIGTERM/SIGINT
//! and drain (see `run` for the steps).
//! Not for: logic of its own; each concern lives in its module:
//!
//! - `config`: flags, their parsing and validation.
//! - `state`: shared state; the only code that swaps the route table (ACK/NACK).
//! - `cache`: the snapshot cache file (`--cache-dir`) and its background writer.
//! - `stream`: the control-plane stream client (reconnects, backoff).
//! - `table`: the immutable route table built from a snapshot (validated by `berth_model`), with
//!   its host index, clusters and compiled middlewares.
//! - `balance`: choosing an endpoint (weighted round robin, round robin, least request).
//! - `health`: passive health (ejections) and the retry budget, in atomics.
//! - `listener`: entrypoint sockets, the worker threads (one single-threaded runtime each) that
//!   serve them, connections, graceful shutdown.
//! - `limits`: what a client connection may hold: header size and count, header-read and idle
//!   timeouts, the cap on connections.
//! - `proxy`: the request path as phases (accept → match → request middlewares → pick endpoint →
//!   forward → response middlewares → record), each middleware in `proxy::middleware`.
//! - `tls`: TLS termination on the `--tls` entrypoints: certificates of `--cert-dir` by SNI, reloaded
//!   while running.
//! - `metrics`: the Prometheus counters and their exposition.
//! - `admin`: `/healthz`, `/api/snapshot` and `/metrics`.

#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

mod access_log;
mod admin;
mod balance;
mod cache;
mod config;
mod header_maps;
mod health;
mod http1;
mod limits;
mod listener;
mod metrics;
mod proxy;
mod state;
mod stream;
mod table;
mod tls;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::{mpsc, watch};

use crate::cache::SnapshotCache;
use crate::config::{Cli, Config};
use crate::proxy::{Proxy, ProxySettings};
use crate::state::State;
use crate::stream::StreamClient;

/// How long the admin server may take to close once everything else is done.
const ADMIN_CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// Runs the proxy with the command line's flags until it is told to stop; the process's exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(error) = berth_support::logging::init(&cli.log) {
        eprintln!("berth-proxy: error: {error}");
        return ExitCode::from(2);
    }
    let config = match cli.into_config() {
        Ok(config) => config,
        Err(error) => {
            eprintln!("berth-proxy: error: {error}");
            return ExitCode::from(2);
        }
    };
    // This runtime (the main thread) runs the control side: signals, the admin server, the
    // control-plane stream, the cache writer; the requests run on the worker threads (`listener`).
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("berth-proxy: error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(config));
    // Do not wait on leftovers such as a DNS lookup stuck in the blocking pool.
    runtime.shutdown_timeout(Duration::from_secs(1));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("berth-proxy: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Starts everything, then on the first SIGTERM/SIGINT shuts down in steps, each logged:
///
/// 1. **grace** (`--drain-grace`, skipped when 0): `/healthz` answers 503, traffic is still served,
///    so a load balancer or DNS health check in front notices and stops sending.
/// 2. **drain** (`--drain-timeout`): stop accepting, stop the control-plane stream, let requests in
///    flight finish; each connection closes when idle (HTTP/2 clients get a GOAWAY).
/// 3. **close**: the admin server, which answered throughout, stops; the process exits 0.
///
/// A second signal at any step exits at once.
async fn run(config: Config) -> anyhow::Result<()> {
    let mut signals = Signals::new().context("cannot install signal handlers")?;

    // Read every file and bind everything first: a bad file or a busy address stops the binary
    // before it talks to anyone.
    let backend_tls =
        proxy::backend_tls::client_config(&config.backend_ca, config.backend_insecure_skip_verify)?;
    let tls = config.tls.as_ref().map(tls::Acceptor::start).transpose()?;
    let workers = config
        .workers
        .or_else(|| std::thread::available_parallelism().ok())
        .map_or(1, std::num::NonZeroUsize::get);
    let listeners = listener::bind_all(&config.entrypoints, tls.as_ref(), workers)?;
    let admin_listener = tokio::net::TcpListener::bind(config.admin_addr)
        .await
        .with_context(|| format!("--admin-addr {0}: cannot listen on {0}", config.admin_addr))?;
    let admin_addr = admin_listener.local_addr().unwrap_or(config.admin_addr);
    let access_log = access_log::AccessLog::start(&config.access_log, config.access_log_format)
        .with_context(|| format!("--access-log {:?}: cannot open it", config.access_log))?;
    tracing::info!(address = %admin_addr, "admin listening");

    let names: Vec<String> = config.entrypoints.iter().map(|e| e.name.clone()).collect();
    metrics::global().init_entrypoints(&names);
    let tls_names: Vec<String> = config
        .entrypoints
        .iter()
        .filter(|e| e.tls)
        .map(|e| e.name.clone())
        .collect();
    let state = State::new(config.node_id.clone(), names).with_tls_entrypoints(tls_names);
    let state = Arc::new(match &config.cache_dir {
        Some(dir) => start_from_cache(state, dir)?,
        None => state,
    });
    // One per worker thread: each keeps its own pooled backend connections.
    let server_name = config::host_name();
    let proxies = (0..workers)
        .map(|_| {
            Arc::new(Proxy::new(
                state.clone(),
                ProxySettings {
                    connect_timeout: config.connect_timeout,
                    request_timeout: config.request_timeout,
                    idle_timeout: config.backend_idle_timeout,
                    backend_tls: backend_tls.clone(),
                    server_name: server_name.clone(),
                    trusted_ips: config.trusted_ips.clone(),
                    access_log: access_log.clone(),
                },
            ))
        })
        .collect();
    let (stop_accepting_tx, stop_accepting) = watch::channel(false);
    let (stop_admin_tx, stop_admin) = watch::channel(false);
    let (drain_tx, mut drain_rx) = mpsc::channel::<()>(1);

    let client_limits = Arc::new(limits::Limits::new(config.client_limits.clone()));
    // Stopped (their runtimes dropped) when `run` returns, after the drain.
    let _workers = listener::Workers::start(listeners, proxies, client_limits, &stop_accepting, &drain_tx)
        .context("cannot start the worker threads")?;
    let admin_state = state.clone();
    let admin_task = tokio::spawn(async move {
        if let Err(error) = admin::serve(admin_listener, admin_state, stop_admin).await {
            tracing::error!(%error, "admin server failed");
        }
    });
    let stream = tokio::spawn(
        StreamClient {
            control_planes: config.control_planes.clone(),
            tls: config.control_plane_tls.clone(),
            connect_timeout: config.connect_timeout,
            state: state.clone(),
        }
        .run(),
    );
    tracing::info!(
        node_id = %config.node_id,
        control_planes = %config.control_planes.iter().map(|c| c.as_str()).collect::<Vec<_>>().join(","),
        "berth-proxy started; {}",
        match state.cached_from() {
            Some(cached) => format!("serving the cached snapshot {} until a control plane answers", cached.version),
            None => "answering 503 until the first snapshot arrives".to_owned(),
        }
    );

    // 1. grace
    let name = signals.recv().await;
    state.start_draining();
    if config.drain_grace.is_zero() {
        tracing::info!(signal = name, "shutting down (no --drain-grace)");
    } else {
        tracing::info!(
            signal = name,
            drain_grace = ?config.drain_grace,
            "shutting down: /healthz answers 503 from now on; still serving requests for the grace period"
        );
        tokio::select! {
            _ = tokio::time::sleep(config.drain_grace) => {}
            name = signals.recv() => {
                tracing::warn!(signal = name, "second signal, exiting now");
                return Ok(());
            }
        }
    }

    // 2. drain
    tracing::info!(
        drain_timeout = ?config.drain_timeout,
        "draining: no new connections; letting requests in flight finish (HTTP/2 clients get GOAWAY)"
    );
    let _ = stop_accepting_tx.send(true);
    drop(drain_tx);
    stream.abort();
    tokio::select! {
        drained = tokio::time::timeout(config.drain_timeout, drain_rx.recv()) => match drained {
            Ok(_) => tracing::info!("drained: all connections closed"),
            Err(_) => tracing::warn!(
                drain_timeout = ?config.drain_timeout,
                "drain timeout reached, closing with requests still in flight"
            ),
        },
        name = signals.recv() => {
            tracing::warn!(signal = name, "second signal, exiting now");
            return Ok(());
        }
    }

    // 3. close
    tracing::info!("closing the admin address; exiting");
    let _ = stop_admin_tx.send(true);
    if tokio::time::timeout(ADMIN_CLOSE_TIMEOUT, admin_task)
        .await
        .is_err()
    {
        tracing::warn!("the admin server did not close in time");
    }
    Ok(())
}

/// Prepares `--cache-dir` (created if missing), applies the snapshot cached there if it is good,
/// and attaches the writer that keeps the file at the newest applied snapshot. A cache file that
/// cannot be read or is rejected is logged (file and reason) and ignored; only a directory that
/// cannot be created stops the binary.
fn start_from_cache(state: State, dir: &std::path::Path) -> anyhow::Result<State> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("--cache-dir {}: cannot create the directory", dir.display()))?;
    let cache = SnapshotCache::new(dir);
    let removed = cache.remove_stale_temporaries();
    if removed > 0 {
        tracing::info!(removed, dir = %dir.display(), "removed temporary files of an interrupted cache write");
    }
    let written = match cache.load() {
        Ok(Some(cached)) => {
            let version = cached.version.clone();
            match state.apply_cached(cached, dir.to_owned()) {
                Ok(()) => {
                    tracing::info!(
                        version,
                        file = %cache.file().display(),
                        "serving the cached snapshot until a control plane answers"
                    );
                    Some(version)
                }
                Err(error) => {
                    tracing::warn!(
                        version,
                        file = %cache.file().display(),
                        %error,
                        "ignoring the cached snapshot: it does not validate"
                    );
                    None
                }
            }
        }
        Ok(None) => {
            tracing::info!(file = %cache.file().display(), "no cached snapshot yet");
            None
        }
        Err(error) => {
            tracing::warn!(%error, "ignoring the snapshot cache file");
            None
        }
    };
    Ok(state.with_cache(cache::Writer::spawn(cache, written)))
}

/// SIGTERM and SIGINT, installed at start so an early signal is not lost.
struct Signals {
    term: Signal,
    int: Signal,
}

impl Signals {
    fn new() -> std::io::Result<Self> {
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}
