//! berth-proxy: Berth's data plane, as a library the `berth-proxy` binary runs ([`main`]).
//!
//! For: wiring the parts together — parse flags, bind every socket (so a bad flag stops the binary
//! before anything else happens), start the entrypoint listeners, the admin server and the
//! control-plane stream client, then wait for SIGTERM/SIGINT and drain.
//! Not for: logic of its own; each concern lives in its module:
//!
//! - `config`: flags, their parsing and validation.
//! - `state`: shared state; the only code that swaps the route table (ACK/NACK).
//! - `stream`: the control-plane stream client (reconnects, backoff).
//! - `table`: the immutable route table built from a snapshot (validated by `berth_model`), with
//!   its host index, clusters and compiled middlewares.
//! - `balance`: precomputed smooth weighted round robin.
//! - `listener`: entrypoint sockets, connections, graceful shutdown.
//! - `proxy`: the request path as phases (accept → match → request middlewares → pick endpoint →
//!   forward → response middlewares → record), each middleware in `proxy::middleware`.
//! - `admin`: `/healthz` and `/api/snapshot`.

#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

mod admin;
mod balance;
mod config;
mod listener;
mod proxy;
mod state;
mod stream;
mod table;

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::{mpsc, watch};
use tracing_subscriber::EnvFilter;

use crate::config::{Cli, Config};
use crate::proxy::{Proxy, ProxySettings};
use crate::state::State;
use crate::stream::StreamClient;

/// Runs the proxy with the command line's flags until it is told to stop; the process's exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let config = match cli.into_config() {
        Ok(config) => config,
        Err(error) => {
            eprintln!("berth-proxy: error: {error}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("berth-proxy: error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(config));
    // Do not wait on leftovers such as a DNS lookup stuck in the blocking pool.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("berth-proxy: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: Config) -> anyhow::Result<()> {
    let mut signals = Signals::new().context("cannot install signal handlers")?;

    // Read every file and bind everything first: a bad file or a busy address stops the binary
    // before it talks to anyone.
    let backend_tls =
        proxy::backend_tls::client_config(&config.backend_ca, config.backend_insecure_skip_verify)?;
    let listeners = listener::bind_all(&config.entrypoints).await?;
    let admin_listener = tokio::net::TcpListener::bind(config.admin_addr)
        .await
        .with_context(|| format!("--admin-addr {0}: cannot listen on {0}", config.admin_addr))?;
    let admin_addr = admin_listener.local_addr().unwrap_or(config.admin_addr);
    tracing::info!(address = %admin_addr, "admin listening");

    let names = config.entrypoints.iter().map(|e| e.name.clone()).collect();
    let state = Arc::new(State::new(config.node_id.clone(), names));
    let proxy = Arc::new(Proxy::new(
        state.clone(),
        ProxySettings {
            connect_timeout: config.connect_timeout,
            request_timeout: config.request_timeout,
            backend_tls,
            server_name: config::host_name(),
            trusted_ips: config.trusted_ips.clone(),
        },
    ));
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let (drain_tx, mut drain_rx) = mpsc::channel::<()>(1);

    for bound in listeners {
        tokio::spawn(listener::serve(
            bound,
            proxy.clone(),
            shutdown_rx.clone(),
            drain_tx.clone(),
        ));
    }
    let admin_state = state.clone();
    let admin_shutdown = shutdown_rx.clone();
    tokio::spawn(async move {
        if let Err(error) = admin::serve(admin_listener, admin_state, admin_shutdown).await {
            tracing::error!(%error, "admin server failed");
        }
    });
    let stream = tokio::spawn(
        StreamClient {
            control_planes: config.control_planes.clone(),
            connect_timeout: config.connect_timeout,
            state: state.clone(),
        }
        .run(),
    );
    tracing::info!(
        node_id = %config.node_id,
        control_planes = %config.control_planes.iter().map(|c| c.as_str()).collect::<Vec<_>>().join(","),
        "berth-proxy started; answering 503 until the first snapshot arrives"
    );

    let name = signals.recv().await;
    tracing::info!(
        signal = name,
        drain_timeout = ?config.drain_timeout,
        "shutting down: no new connections, letting requests in flight finish"
    );
    let _ = shutdown_tx.send(true);
    drop(drain_tx);
    stream.abort();
    tokio::select! {
        drained = tokio::time::timeout(config.drain_timeout, drain_rx.recv()) => match drained {
            Ok(_) => tracing::info!("all connections closed, exiting"),
            Err(_) => tracing::warn!("drain timeout reached, exiting with requests still in flight"),
        },
        name = signals.recv() => tracing::warn!(signal = name, "second signal, exiting now"),
    }
    Ok(())
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
