//! The Consul a bench runs against, chosen with `--consul dev|server`.
//!
//! A dev agent (the default) starts in a moment and keeps nothing, but it indents every JSON
//! answer, which about doubles the bytes a watch of the whole catalog reads. A single server
//! (`--consul server`, with a data directory, leading alone) answers in compact JSON, as the
//! servers of a production cluster do, and writes its raft log to disk. Included by the Consul
//! benches as a module (`#[path]` from src/bin).

use anyhow::{bail, Result};
use berth_tests::consul::Api;
use berth_tests::consul_cluster::ConsulServer;
use berth_tests::Consul;

/// A running Consul, stopped when dropped.
pub enum BenchConsul {
    Dev(Consul),
    Server(ConsulServer),
}

impl BenchConsul {
    /// Starts `kind` (`dev` or `server`) and waits until it answers.
    pub async fn start(kind: &str) -> Result<BenchConsul> {
        match kind {
            "dev" => Ok(BenchConsul::Dev(Consul::start().await?)),
            "server" => Ok(BenchConsul::Server(ConsulServer::single().await?)),
            other => bail!("--consul {other:?}: expected dev (a dev agent) or server (a single server)"),
        }
    }

    /// How the report names it.
    pub fn describe(&self) -> &'static str {
        match self {
            BenchConsul::Dev(_) => "dev agent (indented JSON)",
            BenchConsul::Server(_) => "single server (compact JSON)",
        }
    }

    pub fn api(&self) -> Api {
        match self {
            BenchConsul::Dev(consul) => consul.api(),
            BenchConsul::Server(server) => server.api(),
        }
    }

    /// `http://127.0.0.1:<port>`
    pub fn http_addr(&self) -> &str {
        match self {
            BenchConsul::Dev(consul) => &consul.http_addr,
            BenchConsul::Server(server) => &server.http_addr,
        }
    }
}
