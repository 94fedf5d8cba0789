//! What the bench binaries share: the directory they run from, the parser of their count flags
//! (for clap, which parses each binary's command line) and starting berth-control on free loopback
//! ports against a Consul.
//!
//! Not for measuring anything: each binary times and reports on its own. Included by every bench
//! binary as a module (`#[path]` from src/bin), so it stays small and dependency-free.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use berth_tests::{free_port, Proc};

/// The directory of the running binary, where the other Berth binaries of the same build are.
pub fn binary_dir() -> Result<PathBuf> {
    Ok(std::env::current_exe()?
        .parent()
        .context("this binary's directory")?
        .to_path_buf())
}

/// A count flag's value, which must be a whole number of at least 1: a clap value parser
/// (`#[arg(value_parser = at_least_one)]`), so a bad value is a usage error naming the flag.
pub fn at_least_one(value: &str) -> Result<usize, String> {
    match value.parse::<usize>() {
        Ok(0) => Err("must be at least 1".to_string()),
        Ok(n) => Ok(n),
        Err(_) => Err("expected a whole number of at least 1".to_string()),
    }
}

/// Starts the berth-control binary at `binary` against the Consul HTTP API at `consul_addr`, on
/// free loopback ports, with `env` added to its environment. Returns the process, its gRPC route
/// discovery address and its admin HTTP address (both `127.0.0.1:port`).
pub fn spawn_control(
    binary: &Path,
    consul_addr: &str,
    env: &[(&str, &str)],
) -> Result<(Proc, String, String)> {
    let grpc = format!("127.0.0.1:{}", free_port());
    let admin = format!("127.0.0.1:{}", free_port());
    let proc = Proc::spawn(
        "berth-control",
        binary,
        &[
            "--consul-addr",
            consul_addr,
            "--grpc-addr",
            &grpc,
            "--admin-addr",
            &admin,
        ],
        env,
    )?;
    Ok((proc, grpc, admin))
}
