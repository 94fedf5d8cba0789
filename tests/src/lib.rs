//! The end-to-end test harness: real processes on 127.0.0.1, stopped when the test ends.
//!
//! - [`Consul`]: a Consul agent in dev mode with its own ports and data directory;
//!   [`consul_cluster`]: Consul servers with persistent data (a three-server cluster on
//!   127.0.0.1–3, or one server) that can be killed and restarted; [`consul::Api`] writes the
//!   catalog in bulk.
//! - [`consul_tls`]: a Consul serving HTTPS with certificates generated for the test.
//! - [`Proc`]: a child process with its output captured to a log file; killed (by its pid, via the
//!   handle) when dropped, and its log printed if the test is failing.
//! - [`ControlPlane`], [`Proxy`], [`Backend`]: the Berth binaries and the demo backend, with their
//!   ports chosen free and helpers to query them.
//! - [`traefik::Traefik`]: the real Traefik (Consul Catalog provider) on the same Consul, and
//!   [`parity`]: the machinery that sends the same requests to Traefik and Berth and compares what
//!   clients and backends saw (the `parity_*` tests).
//! - [`wait_until`]: the only way tests wait: poll a condition until a deadline. [`Sampler`]
//!   records a value in the background (a route count, `proc::tcp_connections_to`) to check what
//!   held *throughout* a disruption.
//!
//! Binaries come from the cargo target directory this test runs from (`target/debug`), so the
//! test command builds them first (`cargo build --workspace --bins`).

pub mod article;
pub mod consul;
pub mod consul_cluster;
pub mod consul_tls;
pub mod docker;
pub mod http;
pub mod parity;
pub mod proc;
pub mod traefik;

use std::future::Future;
use std::net::TcpListener;
use std::path::PathBuf;
use std::time::{Duration, Instant};

pub use consul::Consul;
pub use proc::Proc;

pub use anyhow::{anyhow, bail, Context, Result};

/// A TCP port on 127.0.0.1 that was free a moment ago (the OS picked it), and never handed out
/// before by this test process: the OS may offer a port again as soon as its probe socket
/// closes, and two parts of one test (Consul's HTTP and Serf ports, say) must not get the same.
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    loop {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding 127.0.0.1:0");
        let port = listener.local_addr().expect("local addr").port();
        let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

/// The root of the workspace.
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// Where an outside tool (Consul, Traefik) is: `relative_path` under the workspace root, where
/// scripts/setup.sh unpacks it, else `name` in a directory on PATH; `None` when neither exists.
pub fn tool_binary(relative_path: &str, name: &str) -> Option<PathBuf> {
    let local = workspace_root().join(relative_path);
    if local.exists() {
        return Some(local);
    }
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.exists())
}

/// Path of a binary of this workspace, built in the same profile as the running test.
pub fn bin(name: &str) -> PathBuf {
    // current_exe is target/<profile>/deps/<test>-<hash>; binaries live in target/<profile>/.
    let exe = std::env::current_exe().expect("current_exe");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("test binary lives in target/<profile>/deps");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: build the workspace binaries first (`cargo build --workspace --bins`), \
         or run the suite with scripts/test.sh",
        path.display()
    );
    path
}

/// Polls `check` every 50ms until it returns `Some`, or fails after `timeout` with `what` in the
/// message (and the last error `check` reported, if any).
pub async fn wait_until<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>>>,
{
    let deadline = Instant::now() + timeout;
    let mut last_error = None;
    loop {
        match check().await {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => {}
            Err(e) => last_error = Some(e),
        }
        if Instant::now() >= deadline {
            return Err(match last_error {
                Some(e) => anyhow!("timed out after {timeout:?} waiting for {what}; last error: {e:#}"),
                None => anyhow!("timed out after {timeout:?} waiting for {what}"),
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A scratch directory removed when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(prefix: &str) -> TempDir {
        let base = workspace_root().join("target").join("e2e");
        let dir = base.join(format!("{prefix}-{}-{}", std::process::id(), fastish_id()));
        std::fs::create_dir_all(&dir).expect("creating a scratch directory");
        TempDir(dir)
    }
    pub fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

fn fastish_id() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    (u64::from(nanos) << 8) + NEXT.fetch_add(1, Ordering::Relaxed)
}

/// The berth-control process under test.
pub struct ControlPlane {
    pub proc: Proc,
    pub grpc_addr: String,
    pub admin_addr: String,
}

impl ControlPlane {
    /// Starts berth-control against `consul` with free ports; `extra` flags are appended.
    pub fn start(consul: &Consul, extra: &[&str]) -> Result<ControlPlane> {
        Self::start_on(consul, free_port(), extra)
    }

    /// Like [`ControlPlane::start`] on a given gRPC port (to restart one where proxies expect it).
    pub fn start_on(consul: &Consul, grpc_port: u16, extra: &[&str]) -> Result<ControlPlane> {
        Self::start_at_on(&consul.http_addr, grpc_port, extra)
    }

    /// Starts berth-control with `--consul-addr consul_addr` (one address or a comma-separated
    /// list, e.g. [`consul_cluster::ConsulCluster::http_addrs`]) on free ports.
    pub fn start_at(consul_addr: &str, extra: &[&str]) -> Result<ControlPlane> {
        Self::start_at_on(consul_addr, free_port(), extra)
    }

    fn start_at_on(consul_addr: &str, grpc_port: u16, extra: &[&str]) -> Result<ControlPlane> {
        let grpc_addr = format!("127.0.0.1:{grpc_port}");
        let admin_addr = format!("127.0.0.1:{}", free_port());
        let mut args = vec![
            "--consul-addr",
            consul_addr,
            "--grpc-addr",
            &grpc_addr,
            "--admin-addr",
            &admin_addr,
        ];
        args.extend_from_slice(extra);
        let proc = Proc::spawn("berth-control", &bin("berth-control"), &args, &[])?;
        Ok(ControlPlane {
            proc,
            grpc_addr,
            admin_addr,
        })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.grpc_addr)
    }

    pub async fn snapshot(&self) -> Result<serde_json::Value> {
        http::get_json(&format!("http://{}/api/snapshot", self.admin_addr)).await
    }

    pub async fn proxies(&self) -> Result<serde_json::Value> {
        http::get_json(&format!("http://{}/api/proxies", self.admin_addr)).await
    }

    /// `GET /api/watch`: the Consul watch's state and its cumulative request counters.
    pub async fn watch(&self) -> Result<serde_json::Value> {
        http::get_json(&format!("http://{}/api/watch", self.admin_addr)).await
    }

    /// The `routes=` count of every `published snapshot` line logged so far, in order.
    pub fn published_routes(&self) -> Vec<usize> {
        published_routes(&self.proc.logs())
    }

    /// Waits for /healthz to answer 200 (the catalog has been read).
    pub async fn wait_ready(&self) -> Result<()> {
        let url = format!("http://{}/healthz", self.admin_addr);
        wait_until(
            "berth-control /healthz to answer 200",
            Duration::from_secs(20),
            || async { Ok((http::status(&url).await.ok() == Some(200)).then_some(())) },
        )
        .await
        .with_context(|| self.proc.logs())
    }

    /// Waits (up to 15s) until the control plane's snapshot satisfies `pred`, returning it.
    pub async fn wait_snapshot(
        &self,
        what: &str,
        mut pred: impl FnMut(&serde_json::Value) -> bool,
    ) -> Result<serde_json::Value> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let snap = self.snapshot().await;
            match snap {
                Ok(snap) if pred(&snap) => return Ok(snap),
                Ok(snap) if Instant::now() >= deadline => {
                    bail!(
                        "timed out waiting for {what}; last snapshot: {snap:#}\n{}",
                        self.proc.logs()
                    )
                }
                Err(e) if Instant::now() >= deadline => bail!("timed out waiting for {what}: {e:#}"),
                _ => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }
}

/// The `routes=N` field of each `published snapshot` line in a berth-control log, in order.
pub fn published_routes(log: &str) -> Vec<usize> {
    log.lines()
        .filter(|line| line.contains("published snapshot"))
        .filter_map(|line| {
            let (_, rest) = line.split_once(" routes=")?;
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        })
        .collect()
}

/// How many routes a snapshot (`/api/snapshot` of berth-control or berth-proxy) holds.
pub fn route_count(snapshot: &serde_json::Value) -> usize {
    snapshot["routes"].as_array().map_or(0, Vec::len)
}

/// A berth-proxy process under test, with one entrypoint named `http`.
pub struct Proxy {
    pub proc: Proc,
    pub http_addr: String,
    pub admin_addr: String,
    pub node_id: String,
}

impl Proxy {
    /// Starts berth-proxy subscribed to `control_planes` (comma-separated URLs).
    pub fn start(node_id: &str, control_planes: &str) -> Result<Proxy> {
        Self::start_with(node_id, control_planes, &[])
    }

    /// Like [`Proxy::start`], with `extra` flags appended.
    pub fn start_with(node_id: &str, control_planes: &str, extra: &[&str]) -> Result<Proxy> {
        let http_addr = format!("127.0.0.1:{}", free_port());
        let admin_addr = format!("127.0.0.1:{}", free_port());
        let entrypoint = format!("http={http_addr}");
        let mut args = vec![
            "--control-plane",
            control_planes,
            "--entrypoint",
            &entrypoint,
            "--admin-addr",
            &admin_addr,
            "--node-id",
            node_id,
        ];
        args.extend_from_slice(extra);
        let proc = Proc::spawn(node_id, &bin("berth-proxy"), &args, &[])?;
        Ok(Proxy {
            proc,
            http_addr,
            admin_addr,
            node_id: node_id.to_string(),
        })
    }

    /// Starts berth-proxy subscribed to `control_planes` with one entrypoint per `(name,
    /// address)`; [`Proxy::http_addr`] is the first one's address.
    pub fn start_with_entrypoints(
        node_id: &str,
        control_planes: &str,
        entrypoints: &[(&str, &str)],
    ) -> Result<Proxy> {
        Self::start_with_entrypoints_and(node_id, control_planes, entrypoints, &[])
    }

    /// Like [`Proxy::start_with_entrypoints`], with `extra` flags appended (for example
    /// `--tls websecure --cert-dir DIR`).
    pub fn start_with_entrypoints_and(
        node_id: &str,
        control_planes: &str,
        entrypoints: &[(&str, &str)],
        extra: &[&str],
    ) -> Result<Proxy> {
        let Some((_, first)) = entrypoints.first() else {
            bail!("berth-proxy needs at least one entrypoint")
        };
        let admin_addr = format!("127.0.0.1:{}", free_port());
        let specs: Vec<String> = entrypoints
            .iter()
            .map(|(name, addr)| format!("{name}={addr}"))
            .collect();
        let mut args = vec!["--control-plane", control_planes];
        for spec in &specs {
            args.extend(["--entrypoint", spec.as_str()]);
        }
        args.extend(["--admin-addr", &admin_addr, "--node-id", node_id]);
        args.extend_from_slice(extra);
        let proc = Proc::spawn(node_id, &bin("berth-proxy"), &args, &[])?;
        Ok(Proxy {
            proc,
            http_addr: first.to_string(),
            admin_addr,
            node_id: node_id.to_string(),
        })
    }

    pub async fn snapshot(&self) -> Result<serde_json::Value> {
        http::get_json(&format!("http://{}/api/snapshot", self.admin_addr)).await
    }

    /// The version the proxy routes by, if any.
    pub async fn version(&self) -> Result<Option<String>> {
        Ok(self.snapshot().await?["version"].as_str().map(str::to_string))
    }

    /// Waits until the proxy has applied `version`.
    pub async fn wait_version(&self, version: &str) -> Result<()> {
        wait_until(
            &format!("{} to apply version {version}", self.node_id),
            Duration::from_secs(15),
            || async { Ok((self.version().await?.as_deref() == Some(version)).then_some(())) },
        )
        .await
        .with_context(|| self.proc.logs())
    }

    /// GET `path` through the proxy with the given Host header.
    pub async fn get(&self, host: &str, path: &str) -> Result<http::Answer> {
        http::get_with_host(&format!("http://{}{}", self.http_addr, path), host).await
    }
}

/// A berth-demo backend listening on 127.0.0.1.
pub struct Backend {
    pub proc: Proc,
    pub port: u16,
    pub name: String,
}

impl Backend {
    /// Starts a demo backend named `name` for `service`, and waits until it answers.
    pub async fn start(service: &str, name: &str) -> Result<Backend> {
        Self::start_with(service, name, &[]).await
    }

    /// Like [`Backend::start`] in echo mode: every answer is a JSON echo of the request as the
    /// backend received it (see berth-demo's `--echo`), for tests that compare what proxies
    /// forwarded.
    pub async fn start_echo(service: &str, name: &str) -> Result<Backend> {
        Self::start_with(service, name, &["--echo"]).await
    }

    /// Starts the backend on a free port; when another process took that port in the moment
    /// between choosing and binding it (berth-demo says it cannot listen), tries another, up to
    /// three times.
    async fn start_with(service: &str, name: &str, extra: &[&str]) -> Result<Backend> {
        for _ in 0..3 {
            let port = free_port();
            let listen = format!("127.0.0.1:{port}");
            let mut args = vec!["--listen", &listen, "--name", name, "--service", service];
            args.extend_from_slice(extra);
            let proc = Proc::spawn(name, &bin("berth-demo"), &args, &[])?;
            let url = format!("http://{listen}/health");
            let listening = wait_until(
                &format!("backend {name} to answer"),
                Duration::from_secs(10),
                || async {
                    if http::status(&url).await.ok() == Some(200) {
                        return Ok(Some(true));
                    }
                    Ok(proc.logs().contains("cannot listen").then_some(false))
                },
            )
            .await
            .with_context(|| proc.logs())?;
            if listening {
                return Ok(Backend {
                    proc,
                    port,
                    name: name.to_string(),
                });
            }
        }
        bail!("backend {name}: three free ports in a row were taken before it could listen")
    }
}

/// Takes a sample every `every` in the background (a route count, a connection count) until
/// stopped, so a test can check what was true *throughout* a disruption, not only before and
/// after. A probe that returns `None` (e.g. an admin API not answering yet) records nothing.
pub struct Sampler<T> {
    samples: std::sync::Arc<std::sync::Mutex<Vec<T>>>,
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl<T: Clone + Send + 'static> Sampler<T> {
    pub fn start<F, Fut>(every: Duration, mut probe: F) -> Sampler<T>
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = Option<T>> + Send,
    {
        let samples = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let sink = samples.clone();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = stopped.changed() => return,
                    _ = tick.tick() => {
                        if let Some(sample) = probe().await {
                            sink.lock().unwrap_or_else(|e| e.into_inner()).push(sample);
                        }
                    }
                }
            }
        });
        Sampler { samples, stop, task }
    }

    /// How many samples were taken so far.
    pub fn len(&self) -> usize {
        self.samples.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Stops sampling (after the probe in progress, if any) and returns every sample in order.
    pub async fn stop(self) -> Vec<T> {
        let _ = self.stop.send(true);
        let _ = self.task.await;
        let samples = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        samples.clone()
    }
}
