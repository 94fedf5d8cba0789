//! `berth-agent`: keeps one Docker host's containers registered in Consul — a reconciling,
//! drop-in replacement for gliderlabs/registrator.
//!
//! This file only wires things together: it parses the command line ([`cli`]), works out the
//! host's name and address, sets up logging, and runs the reconcile loop ([`run`]) until SIGTERM
//! or Ctrl-C. On exit the registrations stay in Consul, as with Registrator: a restarted agent
//! picks them up again.
//!
//! Modules: [`cli`] (flags), [`container`] (what is known of a container), [`conventions`]
//! (container → registrations), [`duration`] (Go durations), [`docker`] (the engine),
//! [`reconcile`] (the diff), [`registry`] (Consul), [`run`] (the loop).

mod cli;
mod container;
mod conventions;
mod docker;
mod duration;
mod reconcile;
mod registry;
mod run;

use std::net::IpAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;

use crate::cli::{CliError, DeregisterMode, Settings};
use crate::conventions::MappingSettings;
use crate::reconcile::Ownership;
use crate::registry::Registry;
use crate::run::{LoopSettings, Runner};

fn main() -> ExitCode {
    let settings = match cli::parse(std::env::args(), |key| std::env::var(key).ok()) {
        Ok(settings) => settings,
        // --help, --version and clap's own errors print themselves.
        Err(CliError::Clap(e)) => e.exit(),
        Err(e) => {
            eprintln!("berth-agent: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = berth_support::logging::init(&settings.log) {
        eprintln!("berth-agent: {e}");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("berth-agent: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(agent(settings)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn agent(settings: Settings) -> anyhow::Result<()> {
    let docker_host = docker::check_host()?;
    let hostname = match &settings.hostname {
        Some(name) => name.clone(),
        None => berth_support::host_name("localhost"),
    };
    let agent_id = settings.agent_id.clone().unwrap_or_else(|| hostname.clone());
    let host_ip = match &settings.ip {
        Some(ip) => ip.clone(),
        None => resolve_host(&hostname).await,
    };
    for warning in settings.consul.warnings() {
        tracing::warn!("{warning}");
    }
    let client = berth_consul::Client::from_config(settings.consul.clone())
        .with_context(|| format!("registry {}", settings.consul.addresses.join(",")))?;
    let registry = Registry::new(client);

    let mapping = MappingSettings {
        hostname: hostname.clone(),
        agent_id: agent_id.clone(),
        forced_ip: settings.ip.clone(),
        host_ip,
        internal: settings.internal,
        explicit: settings.explicit,
        require_label: settings.require_label,
        force_tags: settings.tags.clone(),
        use_ip_from_label: settings.use_ip_from_label.clone(),
        deregister: settings.deregister,
        agent_ttl: settings.ttl.map(|(ttl, _)| ttl),
        health_ttl: settings.health_ttl,
    };
    let ownership = Ownership {
        agent_id: agent_id.clone(),
        legacy_prefix: settings.cleanup.then(|| format!("{hostname}:")),
    };
    let mut heartbeat = settings.health_ttl / 3;
    if let Some((_, refresh)) = settings.ttl {
        heartbeat = heartbeat.min(refresh);
    }
    let loop_settings = LoopSettings {
        retry: settings.retry,
        resync: settings.resync,
        heartbeat: heartbeat.max(Duration::from_secs(1)),
        include_stopped: settings.deregister == DeregisterMode::OnSuccess,
    };
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        agent_id = %agent_id,
        hostname = %hostname,
        docker = %docker_host,
        consul = %registry.address(),
        address = %mapping.forced_ip.as_deref().unwrap_or(&mapping.host_ip),
        internal = settings.internal,
        resync = ?settings.resync,
        retry_attempts = ?settings.retry.attempts,
        "berth-agent starting"
    );
    Runner::new(loop_settings, mapping, ownership, registry)
        .run(berth_support::signals::shutdown())
        .await?;
    tracing::info!("stopping; registrations stay in Consul until the next agent reconciles them");
    Ok(())
}

/// The address to register for ports bound to all interfaces when `-ip` is not given: the
/// host's name resolved, preferring a non-loopback IPv4 address.
async fn resolve_host(hostname: &str) -> String {
    let addresses: Vec<IpAddr> = match tokio::net::lookup_host((hostname, 0)).await {
        Ok(found) => found.map(|a| a.ip()).collect(),
        Err(e) => {
            tracing::warn!(
                "cannot resolve this host's name {hostname:?} ({e}); registering 127.0.0.1: pass -ip"
            );
            return "127.0.0.1".to_string();
        }
    };
    let pick = addresses
        .iter()
        .find(|ip| ip.is_ipv4() && !ip.is_loopback())
        .or_else(|| addresses.iter().find(|ip| !ip.is_loopback()))
        .or_else(|| addresses.first());
    match pick {
        Some(ip) if ip.is_loopback() => {
            tracing::warn!("this host's name {hostname:?} resolves to {ip}, a loopback address; pass -ip to register a reachable one");
            ip.to_string()
        }
        Some(ip) => ip.to_string(),
        None => "127.0.0.1".to_string(),
    }
}
