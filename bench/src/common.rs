//! What the bench binaries share: the directory they run from, their `--flag value` command lines
//! and starting berth-control on free loopback ports against a Consul.
//!
//! Not for measuring anything: each binary times and reports on its own. Included by every bench
//! binary as a module (`#[path]` from src/bin), so it stays small and dependency-free.

use std::path::{Path, PathBuf};

use anyhow::{ensure, Context, Result};
use berth_tests::{free_port, Proc};

/// The directory of the running binary, where the other Berth binaries of the same build are.
pub fn binary_dir() -> Result<PathBuf> {
    Ok(std::env::current_exe()?
        .parent()
        .context("this binary's directory")?
        .to_path_buf())
}

/// The command line as `(flag, value)` pairs, in order. A flag listed in `switches` takes no value
/// (its value is empty); every other flag takes the next argument.
pub fn flag_pairs(switches: &[&str]) -> Result<Vec<(String, String)>> {
    let mut pairs = Vec::new();
    let mut argv = std::env::args().skip(1);
    while let Some(flag) = argv.next() {
        let value = if switches.contains(&flag.as_str()) {
            String::new()
        } else {
            argv.next().with_context(|| format!("{flag} needs a value"))?
        };
        pairs.push((flag, value));
    }
    Ok(pairs)
}

/// `value`, given for `flag`, as a count of at least 1.
pub fn count(flag: &str, value: &str) -> Result<usize> {
    let n: usize = value.parse().with_context(|| format!("{flag} {value:?}"))?;
    ensure!(n > 0, "{flag} must be at least 1");
    Ok(n)
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
