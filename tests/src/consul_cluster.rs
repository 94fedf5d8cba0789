//! Consul servers that keep their data: a three-server cluster on loopback addresses (127.0.0.1,
//! 127.0.0.2 and 127.0.0.3, each with its own ports) or a single server, for the tests in which
//! Consul is killed, restarted with the same data directory, or loses its leader.
//!
//! Not for the everyday test, which wants a throwaway dev agent ([`crate::Consul`]): these run
//! `consul agent -server` with raft on disk in a [`TempDir`], so a restarted server replays its log
//! as a production server does. Raft runs at production's fastest timing (`raft_multiplier = 1`:
//! a lost leader is replaced in a second or two), DNS and gRPC are off, update checks are disabled
//! (nothing leaves 127.0.0.x). A server is stopped only through its own [`Proc`] (by pid).

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::consul::{consul_binary, Api};
use crate::{free_port, wait_until, Proc, TempDir};

/// How long a server or a cluster may take to have a leader (start, restart, election).
const LEADER_TIMEOUT: Duration = Duration::from_secs(30);

/// One Consul server agent with its own address, ports and data directory.
pub struct ConsulServer {
    /// Node name, e.g. `server-2`.
    pub name: String,
    /// The loopback address it binds for serf, raft and HTTP.
    pub ip: Ipv4Addr,
    pub http_port: u16,
    /// `http://<ip>:<http_port>`
    pub http_addr: String,
    /// The raft/RPC port: `/v1/status/leader` names a server `<ip>:<server_port>`.
    pub server_port: u16,
    serf_lan_port: u16,
    args: Vec<String>,
    // Declared before `data`, so the process is killed before its data directory is removed.
    proc: Option<Proc>,
    _data: TempDir,
}

impl ConsulServer {
    /// A server (not started) on `ip` with free ports, expecting `bootstrap_expect` servers.
    fn new(name: &str, ip: Ipv4Addr, bootstrap_expect: usize) -> ConsulServer {
        let data = TempDir::new(&format!("consul-{name}"));
        let (http_port, serf_lan_port, server_port) = (free_port(), free_port(), free_port());
        let ports = format!(
            "ports {{ http = {http_port}, dns = -1, grpc = -1, serf_lan = {serf_lan_port}, serf_wan = {}, server = {server_port} }}",
            free_port()
        );
        let args: Vec<String> = [
            "agent",
            "-server",
            &format!("-bootstrap-expect={bootstrap_expect}"),
            "-node",
            name,
            "-bind",
            &ip.to_string(),
            "-client",
            &ip.to_string(),
            "-data-dir",
            &data.path().display().to_string(),
            "-log-level",
            "warn",
            "-retry-interval",
            "1s",
            "-hcl",
            &ports,
            "-hcl",
            "performance { raft_multiplier = 1 }",
            "-hcl",
            "disable_update_check = true",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        ConsulServer {
            name: name.to_string(),
            ip,
            http_port,
            http_addr: format!("http://{ip}:{http_port}"),
            server_port,
            serf_lan_port,
            args,
            proc: None,
            _data: data,
        }
    }

    /// One server on 127.0.0.1 that bootstraps alone, started and ready (it leads and its catalog
    /// can be read). Unlike a dev agent it keeps its data across [`ConsulServer::restart`].
    pub async fn single() -> Result<ConsulServer> {
        let mut server = ConsulServer::new("single", Ipv4Addr::LOCALHOST, 1);
        server.start()?;
        server.wait_ready().await?;
        Ok(server)
    }

    /// Starts the agent process with its data directory as it was left. Does not wait.
    pub fn start(&mut self) -> Result<()> {
        if self.proc.is_some() {
            bail!("{} is already running", self.name);
        }
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        let name = format!("consul-{}", self.name);
        self.proc = Some(Proc::spawn(&name, &consul_binary()?, &args, &[])?);
        Ok(())
    }

    /// Waits until this server knows a leader and answers a catalog read.
    pub async fn wait_ready(&self) -> Result<()> {
        let api = self.api();
        wait_until(
            &format!("{} to know a leader and serve the catalog", self.name),
            LEADER_TIMEOUT,
            || async {
                if api.leader().await?.is_empty() {
                    return Ok(None);
                }
                api.get("/v1/catalog/nodes").await?;
                Ok(Some(()))
            },
        )
        .await
        .with_context(|| self.logs())
    }

    /// SIGKILL (by its pid), as a crash: no leave, no graceful raft shutdown.
    pub fn kill(&mut self) {
        if let Some(mut proc) = self.proc.take() {
            proc.kill();
        }
    }

    /// SIGTERM (by its pid) and wait for the exit, as an operator's restart does. A server does
    /// not leave the cluster on SIGTERM, so it comes back as the same raft member.
    pub fn stop(&mut self) {
        if let Some(mut proc) = self.proc.take() {
            proc.terminate();
        }
    }

    /// [`ConsulServer::stop`], then [`ConsulServer::start`] with the same data directory and
    /// ports. Does not wait: follow with [`ConsulServer::wait_ready`] or a cluster's wait.
    pub fn restart(&mut self) -> Result<()> {
        self.stop();
        self.start()
    }

    pub fn is_running(&self) -> bool {
        self.proc.is_some()
    }

    pub fn pid(&self) -> Option<u32> {
        self.proc.as_ref().and_then(Proc::pid)
    }

    /// A client of this server's HTTP API.
    pub fn api(&self) -> Api {
        Api::new(&self.http_addr)
    }

    /// How `/v1/status/leader` and `/v1/status/peers` name this server.
    pub fn rpc_addr(&self) -> String {
        format!("{}:{}", self.ip, self.server_port)
    }

    /// The HTTP API's socket address (to count connections to it).
    pub fn http_socket(&self) -> SocketAddr {
        SocketAddr::from((self.ip, self.http_port))
    }

    /// `<ip>:<serf_lan_port>`, what another server joins.
    fn serf_addr(&self) -> String {
        format!("{}:{}", self.ip, self.serf_lan_port)
    }

    /// The log of the current process (empty when stopped).
    pub fn logs(&self) -> String {
        self.proc.as_ref().map(Proc::logs).unwrap_or_default()
    }
}

/// Three Consul servers on 127.0.0.1, 127.0.0.2 and 127.0.0.3, joined into one cluster.
pub struct ConsulCluster {
    pub servers: Vec<ConsulServer>,
}

impl ConsulCluster {
    /// Starts the three servers and waits until they agree on a leader with three raft peers.
    pub async fn start() -> Result<ConsulCluster> {
        let ips = [1, 2, 3].map(|last| Ipv4Addr::new(127, 0, 0, last));
        // Ports first (each server joins the other two by serf address), then the processes.
        let mut servers: Vec<ConsulServer> = Vec::new();
        for (i, ip) in ips.iter().enumerate() {
            servers.push(ConsulServer::new(&format!("server-{}", i + 1), *ip, ips.len()));
        }
        let serf: Vec<String> = servers.iter().map(ConsulServer::serf_addr).collect();
        for (i, server) in servers.iter_mut().enumerate() {
            for (j, peer) in serf.iter().enumerate() {
                if i != j {
                    server.args.push("-retry-join".to_string());
                    server.args.push(peer.clone());
                }
            }
        }
        let mut cluster = ConsulCluster { servers };
        for server in &mut cluster.servers {
            server.start()?;
        }
        let leader = cluster.wait_leader(None).await?;
        cluster.wait_peers(leader, 3).await?;
        Ok(cluster)
    }

    /// Every server's HTTP address, comma-separated (for `--consul-addr`).
    pub fn http_addrs(&self) -> String {
        self.http_addrs_from(0)
    }

    /// The same list rotated to begin with server `first` (a client tries that one first).
    pub fn http_addrs_from(&self, first: usize) -> String {
        let n = self.servers.len();
        (0..n)
            .map(|k| self.servers[(first + k) % n].http_addr.as_str())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Every server's HTTP socket address.
    pub fn http_sockets(&self) -> Vec<SocketAddr> {
        self.servers.iter().map(ConsulServer::http_socket).collect()
    }

    /// The index of the current leader, as the running servers agree right now.
    pub async fn leader(&self) -> Result<usize> {
        self.agreed_leader()
            .await?
            .context("the running servers do not agree on a leader")
    }

    /// Waits until every running server names the same leader, that leader is running and is
    /// not `not`; returns its index.
    pub async fn wait_leader(&self, not: Option<usize>) -> Result<usize> {
        let what = match not {
            Some(old) => format!("a new leader other than {}", self.servers[old].name),
            None => "the Consul servers to agree on a leader".to_string(),
        };
        wait_until(&what, LEADER_TIMEOUT, || async {
            Ok(self.agreed_leader().await?.filter(|&i| Some(i) != not))
        })
        .await
        .with_context(|| self.logs())
    }

    /// SIGKILLs the current leader (by its pid) and returns its index.
    pub async fn kill_leader(&mut self) -> Result<usize> {
        let leader = self.leader().await?;
        self.servers[leader].kill();
        Ok(leader)
    }

    /// Starts server `i` again with its data directory, and waits until it follows an agreed
    /// leader that counts three raft peers.
    pub async fn restart(&mut self, i: usize) -> Result<()> {
        self.servers[i].restart()?;
        let leader = self.wait_leader(None).await?;
        self.wait_peers(leader, 3).await
    }

    /// `Some(index)` when every running server names the same running leader.
    async fn agreed_leader(&self) -> Result<Option<usize>> {
        let mut agreed: Option<String> = None;
        for server in self.servers.iter().filter(|s| s.is_running()) {
            let leader = server.api().leader().await?;
            if leader.is_empty() || agreed.as_ref().is_some_and(|a| *a != leader) {
                return Ok(None);
            }
            agreed = Some(leader);
        }
        Ok(agreed.and_then(|leader| {
            self.servers
                .iter()
                .position(|s| s.is_running() && s.rpc_addr() == leader)
        }))
    }

    /// Waits until the leader's raft configuration lists `n` peers.
    async fn wait_peers(&self, leader: usize, n: usize) -> Result<()> {
        let api = self.servers[leader].api();
        wait_until(&format!("{n} raft peers"), LEADER_TIMEOUT, || async {
            let peers = api.get("/v1/status/peers").await?;
            Ok((peers.as_array().map_or(0, Vec::len) == n).then_some(()))
        })
        .await
        .with_context(|| self.logs())
    }

    /// Every running server's log.
    pub fn logs(&self) -> String {
        self.servers
            .iter()
            .map(ConsulServer::logs)
            .collect::<Vec<_>>()
            .join("\n")
    }
}
