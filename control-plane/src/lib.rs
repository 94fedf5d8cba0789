//! `berth-control`: watches the Consul catalog, compiles service tags into versioned route
//! snapshots and streams them to every connected `berth-proxy`.
//!
//! Data flows one way through four modules: `watch` (Consul blocking queries) → `compile` (tags,
//! through the dialects of `berth_rules`, → routes and clusters of the route model) → `store`
//! (the current snapshot, recent versions, deltas, each encoded once) → `server` (one gRPC stream
//! per proxy, each Hello bounded by `hello`, served through `wire` with pre-encoded bodies, over
//! TLS or mTLS from `tls` when configured). `admin` serves the operator's read-only views and
//! `/metrics` (counted in `metrics`); `grpc_ops` adds the standard gRPC health and reflection
//! services beside route discovery. The binary
//! (`main.rs`) only calls [`main`].

#![forbid(unsafe_code)]

mod admin;
mod compile;
mod grpc_ops;
mod hello;
mod metrics;
mod server;
mod store;
mod tls;
mod watch;
mod wire;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use tokio::net::TcpListener;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tracing::{info, warn};

use crate::watch::Health;

/// Berth's control plane: watches the Consul catalog and streams route snapshots to berth-proxy.
///
/// Services are routed when their tags say so, as Traefik's Consul Catalog provider reads them:
/// Traefik v2/v3 routers, services and middlewares
/// (traefik.http.routers.web.rule=Host(`a.example`) && PathPrefix(`/api`)), Traefik v1 frontends
/// as in Registrator set-ups (traefik.frontend.rule=Host:a.example), and Fabio's urlprefix- tags.
/// Run several replicas for availability: they need no coordination, as the same catalog always
/// compiles to the same snapshot version.
#[derive(Debug, Parser)]
#[command(name = "berth-control", version)]
struct Args {
    /// Consul HTTP API address, or several separated by commas (servers or agents of one
    /// cluster): reads go to one at a time and move to the next when it fails. `https://` for
    /// TLS; a bare HOST:PORT is http.
    #[arg(
        long,
        env = "CONSUL_HTTP_ADDR",
        default_value = "http://127.0.0.1:8500",
        value_name = "URL[,URL...]"
    )]
    consul_addr: String,

    /// Consul ACL token, sent as X-Consul-Token.
    #[arg(long, env = "CONSUL_HTTP_TOKEN", value_name = "TOKEN", hide_env_values = true)]
    consul_token: Option<String>,

    /// File holding the Consul ACL token (wins over --consul-token).
    #[arg(long, env = "CONSUL_HTTP_TOKEN_FILE", value_name = "FILE")]
    consul_token_file: Option<PathBuf>,

    /// PEM file with the CA certificate(s) that signed Consul's certificate (https addresses);
    /// the system's CAs when unset.
    #[arg(long, env = "CONSUL_CACERT", value_name = "FILE")]
    consul_cacert: Option<PathBuf>,

    /// PEM client certificate to present to Consul (for a Consul with verify_incoming).
    #[arg(
        long,
        env = "CONSUL_CLIENT_CERT",
        value_name = "FILE",
        requires = "consul_client_key"
    )]
    consul_client_cert: Option<PathBuf>,

    /// PEM private key of --consul-client-cert.
    #[arg(
        long,
        env = "CONSUL_CLIENT_KEY",
        value_name = "FILE",
        requires = "consul_client_cert"
    )]
    consul_client_key: Option<PathBuf>,

    /// Verify Consul's TLS certificate. false accepts any certificate (logged as a warning).
    #[arg(long, env = "CONSUL_HTTP_SSL_VERIFY", value_name = "BOOL", default_value = "true", value_parser = go_bool)]
    consul_ssl_verify: bool,

    /// Use https for Consul addresses written without a scheme.
    #[arg(long, env = "CONSUL_HTTP_SSL", value_name = "BOOL", default_value = "false", value_parser = go_bool)]
    consul_https: bool,

    /// Name Consul's certificate must carry when it is not the address's host (for example
    /// server.dc1.consul).
    #[arg(long, env = "CONSUL_TLS_SERVER_NAME", value_name = "NAME")]
    consul_tls_server_name: Option<String>,

    /// Consul datacenter to read (the agent's own by default).
    #[arg(long, env = "BERTH_CONTROL_CONSUL_DATACENTER", value_name = "DC")]
    consul_datacenter: Option<String>,

    /// Accept stale reads: any Consul server answers, possibly a little behind the leader, and
    /// reads keep working without a leader. By default reads are consistent, so a server that
    /// was just elected and is still catching up is never taken for a catalog with services
    /// missing.
    #[arg(long, env = "BERTH_CONTROL_CONSUL_STALE")]
    consul_stale: bool,

    /// Which Consul health statuses receive traffic: `passing`, or `passing,warning`.
    #[arg(
        long,
        env = "BERTH_CONTROL_HEALTH_STATUSES",
        default_value = "passing",
        value_name = "STATUSES",
        value_parser = health_statuses
    )]
    health_statuses: Health,

    /// How many services or nodes may be read from Consul at once. berth-control holds at most
    /// this many connections to Consul plus three (its blocking queries).
    #[arg(
        long,
        env = "BERTH_CONTROL_CONSUL_READ_CONCURRENCY",
        default_value_t = 4,
        value_name = "N",
        value_parser = clap::value_parser!(u16).range(1..=64)
    )]
    consul_read_concurrency: u16,

    /// Re-read the whole catalog this often to catch any change the watch missed (for example
    /// an instance re-registered with another port while other services changed at the same
    /// moment). 0 turns it off.
    #[arg(
        long,
        env = "BERTH_CONTROL_CONSUL_RESYNC",
        default_value = "5m",
        value_name = "DURATION",
        value_parser = duration_or_zero
    )]
    consul_resync: Duration,

    /// Address the route discovery gRPC server listens on; proxies connect here. It also serves
    /// the standard gRPC health service (grpc.health.v1.Health) and server reflection.
    #[arg(
        long,
        env = "BERTH_CONTROL_GRPC_ADDR",
        default_value = "127.0.0.1:18000",
        value_name = "ADDR"
    )]
    grpc_addr: SocketAddr,

    /// PEM certificate (chain) the gRPC server presents: proxies then connect with
    /// `https://`. Without it the gRPC address speaks plaintext, which suits loopback only:
    /// anyone who reaches it can read the routing table. Reloaded when the file changes.
    #[arg(
        long,
        env = "BERTH_CONTROL_GRPC_TLS_CERT",
        value_name = "FILE",
        requires = "grpc_tls_key"
    )]
    grpc_tls_cert: Option<PathBuf>,

    /// PEM private key of --grpc-tls-cert. Reloaded when the file changes.
    #[arg(
        long,
        env = "BERTH_CONTROL_GRPC_TLS_KEY",
        value_name = "FILE",
        requires = "grpc_tls_cert"
    )]
    grpc_tls_key: Option<PathBuf>,

    /// PEM CA certificate(s): every client of the gRPC address (proxies, health checks,
    /// grpcurl) must present a certificate signed by one of them (mutual TLS). Needs
    /// --grpc-tls-cert. Reloaded when the file changes.
    #[arg(
        long,
        env = "BERTH_CONTROL_GRPC_CLIENT_CA",
        value_name = "FILE",
        requires = "grpc_tls_cert"
    )]
    grpc_client_ca: Option<PathBuf>,

    /// Address of the admin HTTP API (/healthz, /metrics, /api/snapshot, /api/proxies).
    #[arg(
        long,
        env = "BERTH_CONTROL_ADMIN_ADDR",
        default_value = "127.0.0.1:18001",
        value_name = "ADDR"
    )]
    admin_addr: SocketAddr,

    /// Paces publications: a change after a quiet spell is published at once, and changes
    /// within this long of the last publication are gathered and published together when it
    /// has passed. A burst (a service scaled to fifty instances) becomes a few pushes, not
    /// fifty, and a change waits at most this much longer. 0 publishes every change at once.
    #[arg(
        long,
        env = "BERTH_CONTROL_PUSH_COALESCE",
        default_value = "50ms",
        value_name = "DURATION",
        value_parser = duration_or_zero
    )]
    push_coalesce: Duration,

    /// A proxy that does not answer a push (ACK or NACK) within this long is disconnected; it
    /// reconnects and says which version it holds. Other proxies never wait for it.
    #[arg(
        long,
        env = "BERTH_CONTROL_STREAM_ACK_TIMEOUT",
        default_value = "30s",
        value_name = "DURATION",
        value_parser = duration_positive
    )]
    stream_ack_timeout: Duration,

    /// Route services that carry no `<prefix>.enable` tag (Traefik's exposedByDefault).
    #[arg(long, env = "BERTH_CONTROL_EXPOSED_BY_DEFAULT")]
    exposed_by_default: bool,

    /// Domain of the default rule Host:{service}.{domain}, used for exposed services that have no
    /// frontend rule tag (the service name is normalised: web_go becomes web-go).
    #[arg(long, env = "BERTH_CONTROL_DOMAIN", value_name = "DOMAIN")]
    domain: Option<String>,

    /// Rule of an enabled service's default router (Traefik v2/v3 tags), as Traefik's
    /// defaultRule: a template over the service (`{{ normalize .Name }}`, `{{ .Name }}`,
    /// `{{ index .Labels "key" }}`).
    #[arg(
        long,
        env = "BERTH_CONTROL_DEFAULT_RULE",
        default_value = "Host(`{{ normalize .Name }}`)",
        value_name = "TEMPLATE"
    )]
    default_rule: String,

    /// Rule syntax of routers that do not say (Traefik's core.defaultRuleSyntax): v3 or v2.
    #[arg(
        long,
        env = "BERTH_CONTROL_DEFAULT_RULE_SYNTAX",
        default_value = "v3",
        value_name = "SYNTAX"
    )]
    default_rule_syntax: RuleSyntaxArg,

    /// Prefix of the tags Berth reads (Traefik's `prefix`).
    #[arg(
        long,
        env = "BERTH_CONTROL_PREFIX",
        default_value = "traefik",
        value_name = "PREFIX"
    )]
    prefix: String,

    #[command(flatten)]
    log: berth_support::logging::LogArgs,
}

/// Runs berth-control with this process's arguments and environment.
pub fn main() -> std::process::ExitCode {
    let args = Args::parse();
    if let Err(e) = berth_support::logging::init(&args.log) {
        eprintln!("berth-control: error: {e}");
        return std::process::ExitCode::FAILURE;
    }
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
    let consul = berth_consul::Client::from_config(consul_config(&args)?)
        .context("the Consul client settings (--consul-*)")?;
    let tls = match (&args.grpc_tls_cert, &args.grpc_tls_key) {
        (Some(cert), Some(key)) => {
            let files = tls::TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
                client_ca: args.grpc_client_ca.clone(),
            };
            let config = files.load()?;
            let mode = if files.client_ca.is_some() {
                "TLS, client certificates required (mTLS)"
            } else {
                "TLS, no client certificate required: any client that reaches it can read the routing table"
            };
            info!(grpc = %args.grpc_addr, "gRPC address: {mode}");
            Some((files, config))
        }
        _ => {
            if args.grpc_addr.ip().is_loopback() {
                info!(grpc = %args.grpc_addr, "gRPC address: plaintext, on loopback");
            } else {
                warn!(
                    grpc = %args.grpc_addr,
                    "gRPC address: plaintext on a non-loopback address: anyone who reaches it reads the \
                     whole routing table; set --grpc-tls-cert/--grpc-tls-key and --grpc-client-ca"
                );
            }
            None
        }
    };
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
        default_rule: args.default_rule.clone(),
        default_rule_syntax: args.default_rule_syntax.into(),
        ..berth_rules::Settings::default()
    };
    info!(consul = %args.consul_addr, grpc = %args.grpc_addr, admin = %args.admin_addr, ?settings, "berth-control starting");

    let store = store::Store::new();
    let proxies: server::Proxies = Arc::new(dashmap::DashMap::new());
    let status = Arc::new(watch::WatchStatus::default());
    status.set_consul(consul.address());
    let options = watch::Options {
        read_concurrency: usize::from(args.consul_read_concurrency),
        resync: (!args.consul_resync.is_zero()).then_some(args.consul_resync),
    };
    let updates = watch::spawn(consul, options, status.clone());
    let compiler = compile::Compiler::new(settings, args.health_statuses);
    let metrics = Arc::new(metrics::Metrics::default());
    tokio::spawn(store::follow(
        updates,
        compiler,
        store.clone(),
        status.clone(),
        metrics.clone(),
        args.push_coalesce,
    ));

    let admin_app = admin::router(store.clone(), proxies.clone(), status, metrics.clone());
    // One stop signal for everything: SIGTERM/SIGINT ends the proxies' streams (so the gRPC
    // server's graceful shutdown does not wait for them) and both servers.
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        berth_support::signals::shutdown().await;
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

    let health_service = grpc_ops::health(store.clone(), stop.clone()).await;
    let (reflection, reflection_v1alpha) = grpc_ops::reflection()?;
    let service = wire::DiscoveryServer::new(server::DiscoveryService::new(
        store,
        proxies,
        metrics,
        stop.clone(),
        args.stream_ack_timeout,
    ));
    let router = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(std::time::Duration::from_secs(20)))
        .add_service(service)
        .add_service(health_service)
        .add_service(reflection)
        .add_service(reflection_v1alpha);
    match tls {
        Some((files, config)) => {
            let incoming = tls::incoming(grpc, files, config);
            router
                .serve_with_incoming_shutdown(ReceiverStream::new(incoming), stopped(stop))
                .await
        }
        None => {
            router
                .serve_with_incoming_shutdown(TcpListenerStream::new(grpc), stopped(stop))
                .await
        }
    }
    .context("route discovery server failed")?;
    admin_task
        .await
        .context("admin server task")?
        .context("admin server failed")?;
    info!("berth-control stopped");
    Ok(())
}

/// The Consul client's settings from the flags (each of which also reads its standard variable).
fn consul_config(args: &Args) -> Result<berth_consul::Config> {
    let addresses = berth_consul::Config::parse_addresses(&args.consul_addr)
        .with_context(|| format!("--consul-addr {:?}", args.consul_addr))?;
    let config = berth_consul::Config {
        addresses,
        token: args.consul_token.clone(),
        token_file: args.consul_token_file.clone(),
        datacenter: args.consul_datacenter.clone(),
        read_mode: if args.consul_stale {
            berth_consul::ReadMode::Stale
        } else {
            berth_consul::ReadMode::Consistent
        },
        https: args.consul_https,
        tls: berth_consul::TlsConfig {
            ca_cert: args.consul_cacert.clone(),
            client_cert: args.consul_client_cert.clone(),
            client_key: args.consul_client_key.clone(),
            verify: args.consul_ssl_verify,
            server_name: args.consul_tls_server_name.clone(),
        },
        // Idle connections kept: as many as can be busy at once (three blocking queries and the
        // reads), so a burst of reads does not leave more connections open than it used.
        max_idle_connections: 3 + usize::from(args.consul_read_concurrency),
        ..berth_consul::Config::default()
    };
    for warning in config.warnings() {
        warn!("{warning}");
    }
    Ok(config)
}

/// `--default-rule-syntax`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum RuleSyntaxArg {
    V3,
    V2,
}

impl From<RuleSyntaxArg> for berth_rules::RuleSyntax {
    fn from(syntax: RuleSyntaxArg) -> berth_rules::RuleSyntax {
        match syntax {
            RuleSyntaxArg::V3 => berth_rules::RuleSyntax::V3,
            RuleSyntaxArg::V2 => berth_rules::RuleSyntax::V2,
        }
    }
}

fn go_bool(value: &str) -> Result<bool, String> {
    berth_support::parse_go_bool(value)
}

fn health_statuses(value: &str) -> Result<Health, String> {
    let mut statuses: Vec<&str> = value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    statuses.sort_unstable();
    statuses.dedup();
    match statuses.as_slice() {
        ["passing"] => Ok(Health::Passing),
        ["passing", "warning"] => Ok(Health::Warning),
        _ => Err(format!(
            "{value:?}: expected `passing` or `passing,warning` (critical instances never receive traffic)"
        )),
    }
}

fn duration_positive(value: &str) -> Result<Duration, String> {
    match humantime::parse_duration(value) {
        Ok(d) if !d.is_zero() => Ok(d),
        Ok(_) => Err(format!("{value:?}: must be more than 0")),
        Err(e) => Err(format!("{value:?}: {e} (for example 30s or 2m)")),
    }
}

fn duration_or_zero(value: &str) -> Result<Duration, String> {
    if value.trim() == "0" {
        return Ok(Duration::ZERO);
    }
    humantime::parse_duration(value)
        .map_err(|e| format!("{value:?}: {e} (for example 30s, 5m, or 0 for never)"))
}
