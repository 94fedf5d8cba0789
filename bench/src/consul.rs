//! The Consul a bench runs against, chosen with `--consul dev|server`.
//!
//! A dev agent (the default) starts in a moment and keeps nothing, but it indents every JSON
//! answer, which about doubles the bytes a watch of the whole catalog reads. A single server
//! (`--consul server`, with a data directory, leading alone) answers in compact JSON, as the
//! servers of a production cluster do, and writes its raft log to disk. Included by the Consul
//! benches as a module (`#[path]` from src/bin).

use std::path::PathBuf;

use anyhow::Result;
use berth_tests::consul::Api;
use berth_tests::consul_cluster::ConsulServer;
use berth_tests::Consul;

/// `--consul`: which Consul a bench starts (clap shows each value's documentation in `--help`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ConsulKind {
    /// A dev agent: starts in a moment, keeps nothing, indents every JSON answer
    Dev,
    /// A single server with a data directory: compact JSON and a raft log on disk, as in production
    Server,
}

/// What the Consul benches measure against: which berth-control, which Consul (flags shared by
/// their command lines).
#[derive(Debug, clap::Args)]
pub struct Setup {
    /// The berth-control binary to measure; berth-control in the directory of this binary when not
    /// given
    #[arg(long, value_name = "PATH")]
    control: Option<PathBuf>,

    /// Which Consul to start
    #[arg(long, value_name = "KIND", value_enum, default_value_t = ConsulKind::Dev)]
    pub consul: ConsulKind,
}

impl Setup {
    /// The berth-control binary: `--control`, or the one beside this binary.
    pub fn control(&self) -> Result<PathBuf> {
        match &self.control {
            Some(path) => Ok(path.clone()),
            None => Ok(crate::common::binary_dir()?.join("berth-control")),
        }
    }
}

/// A running Consul, stopped when dropped.
pub enum BenchConsul {
    Dev(Consul),
    Server(ConsulServer),
}

impl BenchConsul {
    /// Starts a Consul of `kind` and waits until it answers.
    pub async fn start(kind: ConsulKind) -> Result<BenchConsul> {
        Ok(match kind {
            ConsulKind::Dev => BenchConsul::Dev(Consul::start().await?),
            ConsulKind::Server => BenchConsul::Server(ConsulServer::single().await?),
        })
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
