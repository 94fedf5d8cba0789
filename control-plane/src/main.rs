//! `berth-control`: watches the Consul catalog, compiles service tags into versioned route
//! snapshots and streams them to every connected `berth-proxy`.
//!
//! Data flows one way through four modules: `watch` (Consul blocking queries) → `compile` (tags
//! → routes and clusters) → `store` (the current snapshot) → `server` (one gRPC stream per
//! proxy). `admin` serves the operator's read-only views.

mod admin;
mod compile;
mod server;
mod store;
mod watch;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, Result};
use berth_proto::v1::route_discovery_server::RouteDiscoveryServer;
use clap::Parser;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tracing::info;

/// Berth's control plane: watches the Consul catalog and streams route snapshots to berth-proxy.
///
/// Services are routed when their tags say so, in Traefik v1's Consul Catalog dialect:
/// traefik.enable=true, traefik.frontend.rule=Host:a.example[,b.example][;PathPrefix:/p],
/// traefik.frontend.entryPoints=http. Run several replicas for availability: they need no
/// coordination, as the same catalog always compiles to the same snapshot version.
#[derive(Debug, Parser)]
#[command(name = "berth-control", version)]
struct Args {
    /// Consul HTTP API address (scheme optional).
    #[arg(
        long,
        env = "CONSUL_HTTP_ADDR",
        default_value = "http://127.0.0.1:8500",
        value_name = "URL"
    )]
    consul_addr: String,

    /// Consul ACL token, sent as X-Consul-Token.
    #[arg(long, env = "CONSUL_HTTP_TOKEN", value_name = "TOKEN", hide_env_values = true)]
    consul_token: Option<String>,

    /// Address the route discovery gRPC server listens on; proxies connect here.
    #[arg(
        long,
        env = "BERTH_CONTROL_GRPC_ADDR",
        default_value = "127.0.0.1:18000",
        value_name = "ADDR"
    )]
    grpc_addr: SocketAddr,

    /// Address of the admin HTTP API (/healthz, /api/snapshot, /api/proxies).
    #[arg(
        long,
        env = "BERTH_CONTROL_ADMIN_ADDR",
        default_value = "127.0.0.1:18001",
        value_name = "ADDR"
    )]
    admin_addr: SocketAddr,

    /// Route services that carry no `<prefix>.enable` tag (Traefik's exposedByDefault).
    #[arg(long, env = "BERTH_CONTROL_EXPOSED_BY_DEFAULT")]
    exposed_by_default: bool,

    /// Domain of the default rule Host:{service}.{domain}, used for exposed services that have no
    /// frontend rule tag (the service name is normalised: web_go becomes web-go).
    #[arg(long, env = "BERTH_CONTROL_DOMAIN", value_name = "DOMAIN")]
    domain: Option<String>,

    /// Prefix of the tags Berth reads (Traefik's `prefix`).
    #[arg(
        long,
        env = "BERTH_CONTROL_PREFIX",
        default_value = "traefik",
        value_name = "PREFIX"
    )]
    prefix: String,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match start(args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // One line an operator can read, with every cause; no backtrace.
            eprintln!("berth-control: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn start(args: Args) -> Result<()> {
    anyhow::ensure!(
        !args.prefix.is_empty(),
        "--prefix: the tag prefix must not be empty"
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(run(args))
}

async fn run(args: Args) -> Result<()> {
    let consul = berth_consul::Client::new(&args.consul_addr, args.consul_token.clone())
        .with_context(|| format!("--consul-addr {:?}", args.consul_addr))?;
    let grpc = TcpListener::bind(args.grpc_addr)
        .await
        .with_context(|| format!("--grpc-addr {}: cannot listen", args.grpc_addr))?;
    let admin = TcpListener::bind(args.admin_addr)
        .await
        .with_context(|| format!("--admin-addr {}: cannot listen", args.admin_addr))?;

    let settings = berth_rules::Settings {
        prefix: args.prefix.clone(),
        exposed_by_default: args.exposed_by_default,
        domain: args.domain.clone(),
    };
    info!(consul = %consul.address(), grpc = %args.grpc_addr, admin = %args.admin_addr, ?settings, "berth-control starting");

    let store = store::Store::new();
    let proxies: server::Proxies = Arc::new(dashmap::DashMap::new());
    let catalog = watch::spawn(consul);
    tokio::spawn(store::follow(catalog, settings, store.clone()));

    let admin_app = admin::router(store.clone(), proxies.clone());
    // One stop signal for everything: SIGTERM/SIGINT ends the proxies' streams (so the gRPC
    // server's graceful shutdown does not wait for them) and both servers.
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown().await;
        info!("stopping: closing proxy streams (proxies fail over to another replica)");
        let _ = stop_tx.send(true);
    });
    let stopped = |mut stop: tokio::sync::watch::Receiver<bool>| async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    let admin_stop = stopped(stop.clone());
    let admin_task = tokio::spawn(async move {
        axum::serve(admin, admin_app)
            .with_graceful_shutdown(admin_stop)
            .await
    });

    let service = RouteDiscoveryServer::new(server::DiscoveryService::new(store, proxies, stop.clone()));
    tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(std::time::Duration::from_secs(20)))
        .add_service(service)
        .serve_with_incoming_shutdown(TcpListenerStream::new(grpc), stopped(stop))
        .await
        .context("route discovery server failed")?;
    admin_task
        .await
        .context("admin server task")?
        .context("admin server failed")?;
    info!("berth-control stopped");
    Ok(())
}

/// Resolves on SIGTERM or SIGINT.
async fn shutdown() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
