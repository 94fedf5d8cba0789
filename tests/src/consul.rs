//! A real Consul agent in dev mode for one test: its own ports, its own data directory.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use crate::{free_port, wait_until, workspace_root, Proc, TempDir};

/// A Consul dev agent (a one-node server) listening on 127.0.0.1.
pub struct Consul {
    pub proc: Proc,
    /// `http://127.0.0.1:<port>`
    pub http_addr: String,
    pub http_port: u16,
    _data: TempDir,
    http: reqwest::Client,
}

/// Where the consul binary is: on PATH, or where scripts/setup.sh unpacks it.
pub fn consul_binary() -> Result<PathBuf> {
    let local = workspace_root().join(".tools/consul/usr/bin/consul");
    if local.exists() {
        return Ok(local);
    }
    if let Some(paths) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&paths) {
            let candidate = dir.join("consul");
            if candidate.exists() {
                return Ok(candidate);
            }
        }
    }
    bail!("consul not found on PATH nor in .tools/: run scripts/setup.sh consul")
}

impl Consul {
    /// Starts Consul in dev mode on free ports and waits until it has a leader.
    pub async fn start() -> Result<Consul> {
        Self::start_on(free_port()).await
    }

    /// Like [`Consul::start`] with the HTTP API on a given port.
    pub async fn start_on(http_port: u16) -> Result<Consul> {
        let data = TempDir::new("consul");
        let ports = format!(
            "ports {{ http = {http_port}, dns = -1, grpc = -1, serf_lan = {}, serf_wan = {}, server = {} }}",
            free_port(),
            free_port(),
            free_port()
        );
        let node = format!("berth-test-{http_port}");
        let data_dir = data.path().display().to_string();
        let args = [
            "agent",
            "-dev",
            "-bind",
            "127.0.0.1",
            "-client",
            "127.0.0.1",
            "-node",
            &node,
            "-data-dir",
            &data_dir,
            "-hcl",
            &ports,
            "-log-level",
            "warn",
        ];
        let proc = Proc::spawn("consul", &consul_binary()?, &args, &[])?;
        let http_addr = format!("http://127.0.0.1:{http_port}");
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()?;
        let consul = Consul {
            proc,
            http_addr,
            http_port,
            _data: data,
            http,
        };
        let leader_url = format!("{}/v1/status/leader", consul.http_addr);
        wait_until(
            "consul to elect itself leader",
            Duration::from_secs(30),
            || async {
                let Ok(response) = consul.http.get(&leader_url).send().await else {
                    return Ok(None);
                };
                let leader: String = response.json().await.unwrap_or_default();
                Ok((!leader.is_empty()).then_some(()))
            },
        )
        .await
        .with_context(|| consul.proc.logs())?;
        Ok(consul)
    }

    /// PUT /v1/agent/service/register with `definition` (Consul's JSON form).
    pub async fn register(&self, definition: Value) -> Result<()> {
        self.put("/v1/agent/service/register", Some(definition)).await
    }

    /// Registers one instance of `service` on 127.0.0.1:`port` with `tags` and, if `ttl_check`,
    /// a TTL check named `service:<id>` that starts passing.
    pub async fn register_instance(
        &self,
        service: &str,
        id: &str,
        port: u16,
        tags: &[&str],
        ttl_check: bool,
    ) -> Result<()> {
        let mut def =
            json!({ "ID": id, "Name": service, "Address": "127.0.0.1", "Port": port, "Tags": tags });
        if ttl_check {
            def["Check"] = json!({ "TTL": "10m", "Status": "passing" });
        }
        self.register(def).await
    }

    pub async fn deregister(&self, id: &str) -> Result<()> {
        self.put(&format!("/v1/agent/service/deregister/{id}"), None)
            .await
    }

    /// Sets the TTL check of service `id` (registered with `ttl_check`) to critical or passing.
    pub async fn set_check(&self, id: &str, passing: bool) -> Result<()> {
        let verb = if passing { "pass" } else { "fail" };
        self.put(&format!("/v1/agent/check/{verb}/service:{id}"), None)
            .await
    }

    /// GET a path of Consul's HTTP API as JSON.
    pub async fn get(&self, path: &str) -> Result<Value> {
        let url = format!("{}{path}", self.http_addr);
        let response = self
            .http
            .get(&url)
            .send()
            .await
            .with_context(|| format!("GET {url}"))?;
        let status = response.status();
        let body = response.text().await?;
        anyhow::ensure!(status.is_success(), "GET {url}: {status}: {body}");
        Ok(serde_json::from_str(&body)?)
    }

    async fn put(&self, path: &str, body: Option<Value>) -> Result<()> {
        let url = format!("{}{path}", self.http_addr);
        let mut request = self.http.put(&url);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.with_context(|| format!("PUT {url}"))?;
        let status = response.status();
        if !status.is_success() {
            bail!(
                "PUT {url}: {status}: {}",
                response.text().await.unwrap_or_default()
            );
        }
        Ok(())
    }
}
