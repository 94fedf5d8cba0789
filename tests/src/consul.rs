//! A real Consul agent in dev mode for one test: its own ports, its own data directory.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};

use crate::{free_port, tool_binary, wait_until, Proc, TempDir};

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
    if let Some(path) = tool_binary(".tools/consul/usr/bin/consul", "consul") {
        return Ok(path);
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
        Self::start_with(http_port, &[]).await
    }

    /// Like [`Consul::start_on`], with more configuration: each of `extra_hcl` is passed as one
    /// more `-hcl` fragment (e.g. TLS files and an https port, see [`crate::consul_tls`]).
    ///
    /// Serf's and the server's ports are picked free, but another process can still take one
    /// before Consul binds it (any outgoing connection or DNS query may get it): an agent that
    /// exits while starting is started again on fresh ports, up to three times.
    pub async fn start_with(http_port: u16, extra_hcl: &[String]) -> Result<Consul> {
        let mut exits = Vec::new();
        for _attempt in 0..3 {
            match Self::start_once(http_port, extra_hcl).await? {
                Ok(consul) => return Ok(consul),
                Err(logs) => exits.push(logs),
            }
        }
        bail!("consul exited while starting, three times:\n{}", exits.join("\n"))
    }

    /// One start: the agent with a leader, or the log of an agent that exited while starting.
    async fn start_once(http_port: u16, extra_hcl: &[String]) -> Result<Result<Consul, String>> {
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
        let mut args = args.to_vec();
        for hcl in extra_hcl {
            args.extend(["-hcl", hcl.as_str()]);
        }
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
        let led = wait_until(
            "consul to elect itself leader",
            Duration::from_secs(30),
            || async {
                if !consul.proc.running() {
                    return Ok(Some(false));
                }
                let Ok(response) = consul.http.get(&leader_url).send().await else {
                    return Ok(None);
                };
                let leader: String = response.json().await.unwrap_or_default();
                Ok((!leader.is_empty()).then_some(true))
            },
        )
        .await
        .with_context(|| consul.proc.logs())?;
        Ok(if led { Ok(consul) } else { Err(consul.proc.logs()) })
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
        self.api().get(path).await
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

impl Consul {
    /// A client of this agent's HTTP API (catalog transactions, bulk registration).
    pub fn api(&self) -> Api {
        Api::new(&self.http_addr)
    }
}

/// Operations Consul accepts in one `/v1/txn` transaction.
pub const TXN_MAX_OPS: usize = 64;

/// Transactions [`Api::register_many`] keeps in flight at once.
const TXN_IN_FLIGHT: usize = 4;

/// How long a write keeps retrying while Consul has no leader or cannot be reached.
const WRITE_RETRY_FOR: Duration = Duration::from_secs(30);

/// One service instance written straight into the catalog on a node of its own (an "external"
/// node, as a host whose agent is elsewhere): no agent's anti-entropy removes it, and many
/// thousands can be written in seconds with [`Api::register_many`].
#[derive(Debug, Clone, PartialEq)]
pub struct Registration {
    pub node: String,
    pub id: String,
    pub service: String,
    pub address: String,
    pub port: u16,
    pub tags: Vec<String>,
}

impl Registration {
    /// An instance on 127.0.0.1:`port` with the article's Traefik v1 tags routing `host`.
    pub fn traefik(node: &str, service: &str, id: &str, port: u16, host: &str) -> Registration {
        Registration {
            node: node.to_string(),
            id: id.to_string(),
            service: service.to_string(),
            address: "127.0.0.1".to_string(),
            port,
            tags: traefik_tags(host),
        }
    }

    fn service_op(&self) -> Value {
        json!({ "Service": { "Verb": "set", "Node": self.node, "Service": {
            "ID": self.id, "Service": self.service, "Address": self.address,
            "Port": self.port, "Tags": self.tags,
        } } })
    }
}

/// The article's Traefik v1 tags routing `host`: enable, the `http` entrypoint, the Host rule
/// (the rule is the last tag).
pub fn traefik_tags(host: &str) -> Vec<String> {
    vec![
        "traefik.enable=true".to_string(),
        "traefik.frontend.entryPoints=http".to_string(),
        format!("traefik.frontend.rule=Host:{host}"),
    ]
}

/// A client of one Consul agent's HTTP API, for the tests' writes and reads. Writes retry (for up
/// to 30 s) while Consul answers 5xx (no leader yet) or cannot be reached, so a test can write
/// through a leader election; a refused transaction (409) fails at once.
#[derive(Clone)]
pub struct Api {
    /// `http://127.0.0.x:<port>`
    pub base: String,
    http: reqwest::Client,
}

impl Api {
    pub fn new(base: &str) -> Api {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("building an HTTP client");
        Api {
            base: base.trim_end_matches('/').to_string(),
            http,
        }
    }

    /// GET a path of Consul's HTTP API as JSON (no retry).
    pub async fn get(&self, path: &str) -> Result<Value> {
        crate::http::get_json_via(&self.http, &format!("{}{path}", self.base)).await
    }

    /// The leader's server RPC address as this agent sees it (`""` while there is none).
    pub async fn leader(&self) -> Result<String> {
        Ok(self
            .get("/v1/status/leader")
            .await?
            .as_str()
            .unwrap_or_default()
            .to_string())
    }

    /// PUT /v1/agent/service/register: one instance of `service` on 127.0.0.1:`port`, owned by
    /// this agent (as Registrator registers), persisted in its data directory.
    pub async fn register_agent_instance(
        &self,
        service: &str,
        id: &str,
        port: u16,
        tags: &[String],
    ) -> Result<()> {
        let def = json!({ "ID": id, "Name": service, "Address": "127.0.0.1", "Port": port, "Tags": tags });
        self.put("/v1/agent/service/register", &def).await.map(drop)
    }

    /// Writes every registration into the catalog: their nodes first, then the instances, in
    /// transactions of 64 operations with four in flight. 10,000 instances take seconds.
    pub async fn register_many(&self, registrations: &[Registration]) -> Result<()> {
        let mut nodes: Vec<&str> = registrations.iter().map(|r| r.node.as_str()).collect();
        nodes.sort_unstable();
        nodes.dedup();
        let node_ops: Vec<Value> = nodes
            .iter()
            .map(
                |node| json!({ "Node": { "Verb": "set", "Node": { "Node": node, "Address": "127.0.0.1" } } }),
            )
            .collect();
        self.txns(node_ops).await?;
        self.txns(registrations.iter().map(Registration::service_op).collect())
            .await
    }

    /// Writes (creates or replaces) up to 64 instances in one transaction, so Consul applies them
    /// as one change at one index. Their nodes must exist (see [`Api::register_many`]).
    pub async fn set_services(&self, registrations: &[Registration]) -> Result<()> {
        anyhow::ensure!(
            registrations.len() <= TXN_MAX_OPS,
            "one transaction holds at most {TXN_MAX_OPS} operations"
        );
        self.txn(registrations.iter().map(Registration::service_op).collect())
            .await
    }

    /// Removes `registration`'s instance from its node in the catalog. Consul (1.8) refuses a
    /// delete naming the instance by ID alone ("Must provide service name with ID"), so the
    /// operation carries the service's name too.
    pub async fn deregister_service(&self, registration: &Registration) -> Result<()> {
        let op = json!({ "Service": { "Verb": "delete", "Node": registration.node, "Service": {
            "ID": registration.id, "Service": registration.service,
        } } });
        self.txn(vec![op]).await
    }

    /// Gives `node` a new address in the catalog (its instances stay as they are).
    pub async fn set_node_address(&self, node: &str, address: &str) -> Result<()> {
        let op = json!({ "Node": { "Verb": "set", "Node": { "Node": node, "Address": address } } });
        self.txn(vec![op]).await
    }

    /// Removes `node` and every instance on it from the catalog in one transaction, at one
    /// index (as Consul does when it reaps a node that left).
    pub async fn deregister_node(&self, node: &str) -> Result<()> {
        let op = json!({ "Node": { "Verb": "delete", "Node": { "Node": node } } });
        self.txn(vec![op]).await
    }

    async fn txns(&self, ops: Vec<Value>) -> Result<()> {
        let mut chunks = ops.chunks(TXN_MAX_OPS).map(<[Value]>::to_vec);
        let mut in_flight = tokio::task::JoinSet::new();
        loop {
            while in_flight.len() < TXN_IN_FLIGHT {
                let Some(chunk) = chunks.next() else { break };
                let api = self.clone();
                in_flight.spawn(async move { api.txn(chunk).await });
            }
            match in_flight.join_next().await {
                Some(done) => done.context("a registration task panicked")??,
                None => return Ok(()),
            }
        }
    }

    async fn txn(&self, ops: Vec<Value>) -> Result<()> {
        let answer = self.put("/v1/txn", &Value::Array(ops)).await?;
        anyhow::ensure!(
            answer["Errors"].is_null(),
            "transaction refused: {}",
            answer["Errors"]
        );
        Ok(())
    }

    /// PUT `body` as JSON, retrying on 5xx and connection errors for up to 30 s.
    async fn put(&self, path: &str, body: &Value) -> Result<Value> {
        let url = format!("{}{path}", self.base);
        let deadline = std::time::Instant::now() + WRITE_RETRY_FOR;
        loop {
            let failure = match self.http.put(&url).json(body).send().await {
                Ok(response) => {
                    let status = response.status();
                    let text = response.text().await.unwrap_or_default();
                    if status.is_success() {
                        return Ok(serde_json::from_str(&text).unwrap_or(Value::Null));
                    }
                    if !status.is_server_error() {
                        bail!("PUT {url}: {status}: {text}");
                    }
                    anyhow!("PUT {url}: {status}: {text}")
                }
                Err(e) => anyhow::Error::new(e).context(format!("PUT {url}")),
            };
            if std::time::Instant::now() >= deadline {
                return Err(failure.context(format!("still failing after {WRITE_RETRY_FOR:?}")));
            }
            // Backoff between attempts of a write Consul could not take (no leader yet).
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
