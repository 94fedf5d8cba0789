//! berth-agent against a real Docker Engine and a real Consul: containers started with env vars
//! and labels end up in Consul as Registrator would register them, and leave it when they stop,
//! die, pause or vanish — even while the agent was killed, or while Consul or Docker were away.
//!
//! Every container publishes on 127.0.0.1 and the agent runs with `-ip 127.0.0.1`, so the only
//! traffic sent (by Consul's HTTP checks, and by the proxy in the full-chain test) goes to
//! 127.0.0.1. `-internal` registrations (container IPs) are checked in Consul only.
//!
//! Containers are removed by id when their handle drops, failing test or not. Other tests (and a
//! quick start, if one runs) share the engine, so every agent here also sees foreign containers:
//! assertions look only at this test's own service IDs and names.

use std::cell::{Cell, RefCell};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_tests::docker::{self, Container, Run};
use berth_tests::{bail, Context, Result};
use berth_tests::{bin, free_port, wait_until, Consul, ControlPlane, Proc, Proxy};
use serde_json::{json, Map, Value};
use tokio::task::JoinHandle;

/// The `-hostname` every agent here runs with: service IDs are `e2e-host:<container>:<port>`.
const HOST: &str = "e2e-host";
const WAIT: Duration = Duration::from_secs(30);

/// A berth-agent process, logging debug lines of its loop so tests can count rounds.
struct Agent {
    proc: Proc,
}

impl Agent {
    /// Starts berth-agent with `-hostname=e2e-host`, `flags`, then the registry URI.
    fn start(registry: &str, flags: &[&str], env: &[(&str, &str)]) -> Result<Agent> {
        let hostname = format!("-hostname={HOST}");
        let mut args = vec![hostname.as_str()];
        args.extend_from_slice(flags);
        args.push(registry);
        let mut env = env.to_vec();
        env.push(("RUST_LOG", "info,berth_agent::run=debug"));
        let proc = Proc::spawn("berth-agent", &bin("berth-agent"), &args, &env)?;
        Ok(Agent { proc })
    }

    /// The article's flags (with 127.0.0.1 for its host address, quoted as the article writes
    /// it) plus `extra`.
    fn start_like_the_article(consul: &Consul, extra: &[&str]) -> Result<Agent> {
        let mut flags = vec![
            "-resync=1000",
            "-retry-attempts=-1",
            "-retry-interval=2000",
            "-ip=\"127.0.0.1\"",
        ];
        flags.extend_from_slice(extra);
        Agent::start(&registry(consul), &flags, &[])
    }

    fn logs(&self) -> String {
        self.proc.logs()
    }

    fn count(&self, needle: &str) -> usize {
        self.logs().matches(needle).count()
    }

    /// Waits until the log holds `needle` at least `times` times.
    async fn wait_log(&self, needle: &str, times: usize) -> Result<()> {
        wait_until(
            &format!("{times} × {needle:?} in the agent's log"),
            WAIT,
            || async { Ok((self.count(needle) >= times).then_some(())) },
        )
        .await
        .with_context(|| self.logs())
    }
}

fn registry(consul: &Consul) -> String {
    format!("consul://127.0.0.1:{}", consul.http_port)
}

/// A service name unique to this test process.
fn unique(name: &str) -> String {
    format!("{name}-{}", std::process::id())
}

/// The default service ID of `port` of `container`.
fn id_of(container: &Container, port: &str) -> String {
    format!("{HOST}:{}:{port}", container.name())
}

/// A demo container (no Docker health check) publishing 9090 on a random 127.0.0.1 port.
fn demo() -> Run {
    Run::new(&docker::image("demo"))
        .name("agent-e2e")
        .publish("127.0.0.1::9090")
        .no_healthcheck()
}

async fn setup() -> Result<Consul> {
    docker::build_images(&["demo"])?;
    Consul::start().await
}

async fn services(consul: &Consul) -> Result<Map<String, Value>> {
    consul
        .get("/v1/agent/services")
        .await?
        .as_object()
        .cloned()
        .context("/v1/agent/services is not an object")
}

async fn checks(consul: &Consul) -> Result<Map<String, Value>> {
    consul
        .get("/v1/agent/checks")
        .await?
        .as_object()
        .cloned()
        .context("/v1/agent/checks is not an object")
}

async fn wait_registered(consul: &Consul, agent: &Agent, id: &str) -> Result<Value> {
    wait_until(&format!("service {id} in Consul"), WAIT, || async {
        Ok(services(consul).await?.get(id).cloned())
    })
    .await
    .with_context(|| agent.logs())
}

async fn wait_deregistered(consul: &Consul, agent: &Agent, id: &str) -> Result<()> {
    wait_until(&format!("service {id} to leave Consul"), WAIT, || async {
        Ok((!services(consul).await?.contains_key(id)).then_some(()))
    })
    .await
    .with_context(|| agent.logs())
}

/// Waits until check `id` has `status`; returns the check.
async fn wait_check(consul: &Consul, agent: &Agent, id: &str, status: &str) -> Result<Value> {
    wait_until(&format!("check {id} to be {status}"), WAIT, || async {
        Ok(checks(consul)
            .await?
            .get(id)
            .filter(|c| c["Status"] == status)
            .cloned())
    })
    .await
    .with_context(|| agent.logs())
}

fn tags(service: &Value) -> Vec<String> {
    service["Tags"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t.as_str().map(str::to_string))
        .collect()
}

#[tokio::test]
async fn registers_containers_described_by_env_vars_and_labels() -> Result<()> {
    let _engine = berth_tests::require_docker!();
    let consul = setup().await?;
    let agent = Agent::start(
        &registry(&consul),
        &["-ip=127.0.0.1", "-resync=1", "-retry-attempts=-1"],
        &[],
    )?;
    agent.wait_log("watching Docker events", 1).await?;

    let by_env = demo()
        .env("SERVICE_NAME", &unique("by-env"))
        .env(
            "SERVICE_TAGS",
            "traefik.enable=true,traefik.frontend.entryPoints=http",
        )
        .env("SERVICE_CHECK_HTTP", "/health")
        .env("SERVICE_CHECK_INTERVAL", "1s")
        .env("SERVICE_REGION", "eu")
        .start()?;
    let by_label = demo()
        .label("SERVICE_NAME", &unique("by-label"))
        .label("SERVICE_9090_TAGS", "from-a-port-label")
        .label("SERVICE_ID", &unique("custom-id"))
        .env("SERVICE_NAME", "the-label-wins")
        .start()?;
    let several = Run::new(&docker::image("demo"))
        .name("agent-e2e")
        .no_healthcheck()
        .publish("127.0.0.1::9090")
        .publish("127.0.0.1::9091")
        .publish("127.0.0.1::5353/udp")
        .env("SERVICE_NAME", &unique("several"))
        .env("SERVICE_9091_NAME", &unique("admin"))
        .start()?;
    let malformed = demo()
        .env("SERVICE_NAME", &unique("malformed"))
        .env("SERVICE_CHECK_INTERVAL", "often")
        .start()?;
    let bad_port_key = demo()
        .env("SERVICE_NAME", &unique("bad-key"))
        .label("SERVICE_90x_TAGS", "a")
        .start()?;
    let unknown_check = demo()
        .env("SERVICE_NAME", &unique("ftp"))
        .env("SERVICE_CHECK_FTP", "/")
        .start()?;
    let ignored = demo()
        .env("SERVICE_NAME", &unique("ignored"))
        .env("SERVICE_IGNORE", "true")
        .start()?;
    let unpublished = Run::new(&docker::image("demo"))
        .name("agent-e2e")
        .no_healthcheck()
        .env("SERVICE_NAME", &unique("unpub"))
        .start()?;

    // Env vars: name, tags, published port at -ip, HTTP check on it, other SERVICE_* as Meta.
    let service = wait_registered(&consul, &agent, &id_of(&by_env, "9090")).await?;
    assert_eq!(service["Service"], unique("by-env"));
    assert_eq!(
        tags(&service),
        ["traefik.enable=true", "traefik.frontend.entryPoints=http"]
    );
    assert_eq!(service["Address"], "127.0.0.1");
    assert_eq!(service["Port"], by_env.published_port(9090)?);
    assert_eq!(service["Meta"]["berth-container-id"], by_env.id());
    assert_eq!(service["Meta"]["berth-agent-id"], HOST);
    assert_eq!(service["Meta"]["region"], "eu");
    let check = wait_check(
        &consul,
        &agent,
        &format!("service:{}", id_of(&by_env, "9090")),
        "passing",
    )
    .await?;
    assert!(
        check["Output"].as_str().unwrap_or("").contains("200 OK"),
        "{check}"
    );

    // Labels, and a label over an env var; SERVICE_ID replaces the ID; per-port tags.
    let service = wait_registered(&consul, &agent, &unique("custom-id")).await?;
    assert_eq!(service["Service"], unique("by-label"));
    assert_eq!(tags(&service), ["from-a-port-label"]);
    assert_eq!(service["Port"], by_label.published_port(9090)?);

    // Several ports: -<port> suffix unless named per port; UDP gets ":udp" and the udp tag.
    let tcp = wait_registered(&consul, &agent, &id_of(&several, "9090")).await?;
    assert_eq!(tcp["Service"], format!("{}-9090", unique("several")));
    assert_eq!(tcp["Port"], several.published_port(9090)?);
    let admin = wait_registered(&consul, &agent, &id_of(&several, "9091")).await?;
    assert_eq!(admin["Service"], unique("admin"));
    let udp = wait_registered(&consul, &agent, &format!("{}:udp", id_of(&several, "5353"))).await?;
    assert_eq!(udp["Service"], format!("{}-5353", unique("several")));
    assert_eq!(udp["Port"], several.published_port_proto(5353, "udp")?);
    assert_eq!(tags(&udp), ["udp"]);

    // Malformed values skip their container, naming container and key; the rest is served.
    for (container, key) in [
        (&malformed, "SERVICE_CHECK_INTERVAL"),
        (&bad_port_key, "SERVICE_90x_TAGS"),
        (&unknown_check, "SERVICE_CHECK_FTP"),
    ] {
        agent
            .wait_log(
                &format!(
                    "container {} ({}): {key}: ",
                    container.name(),
                    container.short_id()
                ),
                1,
            )
            .await?;
    }
    // Several resyncs later: nothing registered twice, each error logged once, the skipped
    // containers (malformed, ignored, unpublished) absent.
    let resyncs = agent.count("berth_agent::run: resync");
    agent.wait_log("berth_agent::run: resync", resyncs + 3).await?;
    let registered = services(&consul).await?;
    for id in [
        id_of(&by_env, "9090"),
        unique("custom-id"),
        id_of(&several, "9090"),
        id_of(&several, "9091"),
    ] {
        assert_eq!(
            agent.count(&format!("registered {id} for container")),
            1,
            "{id} registered once\n{}",
            agent.logs()
        );
        assert!(registered.contains_key(&id), "{id}");
    }
    assert_eq!(
        agent.count(&format!(
            "container {} ({})",
            malformed.name(),
            malformed.short_id()
        )),
        1,
        "{}",
        agent.logs()
    );
    for skipped in [&malformed, &bad_port_key, &unknown_check, &ignored, &unpublished] {
        let name = skipped.name();
        assert!(
            !registered.keys().any(|id| id.contains(name)),
            "{name} should not be registered: {registered:?}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn stop_kill_pause_and_removal_deregister_on_events() -> Result<()> {
    let _engine = berth_tests::require_docker!();
    let consul = setup().await?;
    // No -resync: only Docker events drive these changes.
    let agent = Agent::start(&registry(&consul), &["-ip=127.0.0.1", "-retry-attempts=-1"], &[])?;
    let stopped = demo().env("SERVICE_NAME", &unique("stopped")).start()?;
    let killed = demo().env("SERVICE_NAME", &unique("killed")).start()?;
    let paused = demo().env("SERVICE_NAME", &unique("paused")).start()?;
    let mut removed = demo().env("SERVICE_NAME", &unique("removed")).start()?;
    for c in [&stopped, &killed, &paused, &removed] {
        wait_registered(&consul, &agent, &id_of(c, "9090")).await?;
    }

    stopped.stop()?;
    wait_deregistered(&consul, &agent, &id_of(&stopped, "9090")).await?;
    killed.kill()?;
    wait_deregistered(&consul, &agent, &id_of(&killed, "9090")).await?;
    paused.pause()?;
    wait_deregistered(&consul, &agent, &id_of(&paused, "9090")).await?;
    paused.unpause()?;
    wait_registered(&consul, &agent, &id_of(&paused, "9090")).await?;
    removed.remove()?;
    wait_deregistered(&consul, &agent, &id_of(&removed, "9090")).await?;

    // Started again: registered again, on its new host port.
    stopped.start()?;
    let service = wait_registered(&consul, &agent, &id_of(&stopped, "9090")).await?;
    assert_eq!(service["Port"], stopped.published_port(9090)?);
    // The others are untouched.
    assert!(services(&consul).await?.contains_key(&id_of(&paused, "9090")));
    Ok(())
}

#[tokio::test]
async fn after_kill_9_a_restarted_agent_removes_what_vanished_and_adopts_the_rest() -> Result<()> {
    let _engine = berth_tests::require_docker!();
    let consul = setup().await?;
    let mut first = Agent::start_like_the_article(&consul, &[])?;
    let mut vanishes = demo().env("SERVICE_NAME", &unique("vanishes")).start()?;
    let stays = demo().env("SERVICE_NAME", &unique("stays")).start()?;
    wait_registered(&consul, &first, &id_of(&vanishes, "9090")).await?;
    wait_registered(&consul, &first, &id_of(&stays, "9090")).await?;

    first.proc.kill(); // SIGKILL: no chance to clean up
    vanishes.remove()?;
    // Services that are not this agent's: another agent's, and an unmarked one of this host
    // (as Registrator leaves them).
    let ghost = format!("{HOST}:{}:80", unique("ghost"));
    let foreign = unique("other-agents");
    consul
        .register(json!({"ID": ghost, "Name": "ghost", "Port": 80}))
        .await?;
    consul
        .register(
            json!({"ID": foreign, "Name": "foreign", "Port": 80, "Meta": {"berth-agent-id": "other-host"}}),
        )
        .await?;
    // The dead agent's registration is still there: nobody removed it.
    assert!(services(&consul).await?.contains_key(&id_of(&vanishes, "9090")));

    let mut second = Agent::start_like_the_article(&consul, &[])?;
    wait_deregistered(&consul, &second, &id_of(&vanishes, "9090")).await?;
    second.wait_log("reconciled", 1).await?;
    let now = services(&consul).await?;
    assert!(now.contains_key(&id_of(&stays, "9090")), "{now:?}");
    assert!(
        now.contains_key(&ghost) && now.contains_key(&foreign),
        "not this agent's: left alone: {now:?}"
    );
    // Adopted, not registered again.
    assert_eq!(
        second.count(&format!("registered {} for container", id_of(&stays, "9090"))),
        0,
        "{}",
        second.logs()
    );

    // -cleanup also removes the unmarked service of this host, never another agent's.
    second.proc.kill();
    let third = Agent::start_like_the_article(&consul, &["-cleanup"])?;
    wait_deregistered(&consul, &third, &ghost).await?;
    let now = services(&consul).await?;
    assert!(
        now.contains_key(&foreign) && now.contains_key(&id_of(&stays, "9090")),
        "{now:?}"
    );
    Ok(())
}

#[tokio::test]
async fn docker_health_is_mirrored_to_a_consul_check() -> Result<()> {
    let _engine = berth_tests::require_docker!();
    let consul = setup().await?;
    let agent = Agent::start_like_the_article(&consul, &[])?;
    let name = unique("healthy");
    // The image's own HEALTHCHECK (GET /health), probed every 300ms; no SERVICE_CHECK_* at all.
    let web = Run::new(&docker::image("demo"))
        .name("agent-e2e")
        .publish("127.0.0.1::9090")
        .health_interval(Duration::from_millis(300))
        .env("SERVICE_NAME", &name)
        .start()?;
    let id = id_of(&web, "9090");
    let check_id = format!("service:{id}:docker-health");
    let passing_instances = || async {
        let healthy = consul.get(&format!("/v1/health/service/{name}?passing")).await?;
        Result::<usize>::Ok(healthy.as_array().map_or(0, Vec::len))
    };

    wait_registered(&consul, &agent, &id).await?;
    let check = wait_check(&consul, &agent, &check_id, "passing").await?;
    assert!(
        check["Output"]
            .as_str()
            .unwrap_or("")
            .starts_with("Docker health: healthy"),
        "{check}"
    );
    assert_eq!(passing_instances().await?, 1);

    let port = web.published_port(9090)?;
    berth_tests::http::status(&format!("http://127.0.0.1:{port}/health/fail")).await?;
    web.wait_health("unhealthy", WAIT).await?;
    let check = wait_check(&consul, &agent, &check_id, "critical").await?;
    assert!(
        check["Output"]
            .as_str()
            .unwrap_or("")
            .starts_with("Docker health: unhealthy"),
        "{check}"
    );
    assert_eq!(
        passing_instances().await?,
        0,
        "an unhealthy container is not a passing instance"
    );
    // Still registered: only its health changed.
    assert_eq!(agent.count(&format!("registered {id} for container")), 1);

    berth_tests::http::status(&format!("http://127.0.0.1:{port}/health/ok")).await?;
    wait_check(&consul, &agent, &check_id, "passing").await?;
    assert_eq!(passing_instances().await?, 1);
    Ok(())
}

/// A user-defined Docker network, removed when dropped (declare it before its containers, so
/// they are removed first).
struct Network(String);

impl Network {
    fn create(name: &str) -> Result<Network> {
        docker::docker(&["network", "create", name])?;
        Ok(Network(name.to_string()))
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        if let Err(e) = docker::docker(&["network", "rm", &self.0]) {
            eprintln!("warning: could not remove network {}: {e:#}", self.0);
        }
    }
}

fn ip_on(container: &Container, network: &str) -> Result<String> {
    let ip = container.inspect()?["NetworkSettings"]["Networks"][network]["IPAddress"]
        .as_str()
        .unwrap_or("")
        .to_string();
    if ip.is_empty() {
        bail!("container {} has no IP on network {network}", container.name());
    }
    Ok(ip)
}

#[tokio::test]
async fn internal_mode_registers_container_addresses_and_follows_networks() -> Result<()> {
    let _engine = berth_tests::require_docker!();
    let consul = setup().await?;
    let network = Network::create(&docker::unique_name("berth-e2e-net"))?;
    let agent = Agent::start(
        &registry(&consul),
        &["-internal", "-ip=127.0.0.1", "-retry-attempts=-1"],
        &[],
    )?;
    let internal = |name: &str| {
        Run::new(&docker::image("demo"))
            .name("agent-e2e")
            .no_healthcheck()
            .option("--expose=9090")
            .env("SERVICE_NAME", &unique(name))
    };

    // Default bridge: the container's IP and exposed port, published or not.
    let bridged = internal("bridged").start()?;
    let service = wait_registered(&consul, &agent, &id_of(&bridged, "9090")).await?;
    assert_eq!(
        (service["Address"].as_str(), service["Port"].as_u64()),
        (Some(bridged.ip()?.as_str()), Some(9090))
    );

    // A user network, then also the bridge: the network it was created on stays the choice...
    let on_network = internal("on-network")
        .option(&format!("--network={}", network.0))
        .start()?;
    let service = wait_registered(&consul, &agent, &id_of(&on_network, "9090")).await?;
    assert_eq!(service["Address"], ip_on(&on_network, &network.0)?);
    docker::docker(&["network", "connect", "bridge", on_network.id()])?;
    // ...unless the berth.network label names another, followed when the container joins it.
    let labelled = internal("labelled")
        .option(&format!("--network={}", network.0))
        .label("berth.network", "bridge")
        .start()?;
    agent
        .wait_log(
            &format!(
                "container {} ({}): berth.network: ",
                labelled.name(),
                labelled.short_id()
            ),
            1,
        )
        .await?;
    docker::docker(&["network", "connect", "bridge", labelled.id()])?;
    let bridge_ip = ip_on(&labelled, "bridge")?;
    wait_until(
        "the labelled container registered at its bridge IP",
        WAIT,
        || async {
            Ok(services(&consul)
                .await?
                .get(&id_of(&labelled, "9090"))
                .filter(|s| s["Address"] == bridge_ip.as_str())
                .cloned())
        },
    )
    .await
    .with_context(|| agent.logs())?;
    let service = services(&consul).await?[&id_of(&on_network, "9090")].clone();
    assert_eq!(
        service["Address"],
        ip_on(&on_network, &network.0)?,
        "connecting a second network changes nothing"
    );

    // Host network: the exposed port at the host's address (-ip), where it really answers.
    let port = free_port();
    let host_net = Run::new(&docker::image("demo"))
        .name("agent-e2e")
        .no_healthcheck()
        .option("--network=host")
        .option(&format!("--expose={port}"))
        .env("DEMO_LISTEN", &format!("127.0.0.1:{port}"))
        .env("SERVICE_NAME", &unique("host-net"))
        .start()?;
    let service = wait_registered(&consul, &agent, &id_of(&host_net, &port.to_string())).await?;
    assert_eq!(
        (service["Address"].as_str(), service["Port"].as_u64()),
        (Some("127.0.0.1"), Some(u64::from(port)))
    );
    let answer = berth_tests::http::get_with_host(&format!("http://127.0.0.1:{port}/"), "x").await?;
    assert_eq!(answer.status, 200);
    Ok(())
}

/// A TCP listener on 127.0.0.1 that forwards every connection to `target`. `stop` closes the
/// listener and every open connection, so what is behind it looks down; `start` brings it back on
/// the same port.
struct Forwarder {
    port: u16,
    target: Target,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

#[derive(Clone)]
enum Target {
    Tcp(String),
    Unix(PathBuf),
}

impl Forwarder {
    async fn new(target: Target) -> Result<Forwarder> {
        let mut forwarder = Forwarder {
            port: free_port(),
            target,
            tasks: Arc::default(),
        };
        forwarder.start().await?;
        Ok(forwarder)
    }

    async fn start(&mut self) -> Result<()> {
        let addr = format!("127.0.0.1:{}", self.port);
        let listener = wait_until(&format!("binding {addr} again"), WAIT, || async {
            Ok(tokio::net::TcpListener::bind(&addr).await.ok())
        })
        .await?;
        let target = self.target.clone();
        let tasks = self.tasks.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let target = target.clone();
                let connection = tokio::spawn(async move {
                    let _ = match target {
                        Target::Tcp(addr) => match tokio::net::TcpStream::connect(addr).await {
                            Ok(mut out) => tokio::io::copy_bidirectional(&mut inbound, &mut out)
                                .await
                                .map(drop),
                            Err(e) => Err(e),
                        },
                        Target::Unix(path) => match tokio::net::UnixStream::connect(path).await {
                            Ok(mut out) => tokio::io::copy_bidirectional(&mut inbound, &mut out)
                                .await
                                .map(drop),
                            Err(e) => Err(e),
                        },
                    };
                });
                tasks.lock().unwrap_or_else(|e| e.into_inner()).push(connection);
            }
        });
        self.tasks.lock().unwrap_or_else(|e| e.into_inner()).push(accept);
        Ok(())
    }

    fn stop(&mut self) {
        for task in self.tasks.lock().unwrap_or_else(|e| e.into_inner()).drain(..) {
            task.abort();
        }
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.stop();
    }
}

fn docker_socket() -> PathBuf {
    match std::env::var("DOCKER_HOST") {
        Ok(host) if host.starts_with("unix://") => PathBuf::from(host.trim_start_matches("unix://")),
        _ => PathBuf::from("/var/run/docker.sock"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waits_for_consul_and_docker_and_catches_up_when_they_return() -> Result<()> {
    let _engine = berth_tests::require_docker!();
    let consul = setup().await?;
    let mut consul_link = Forwarder::new(Target::Tcp(format!("127.0.0.1:{}", consul.http_port))).await?;
    let mut docker_link = Forwarder::new(Target::Unix(docker_socket())).await?;
    let docker_host = format!("tcp://127.0.0.1:{}", docker_link.port);
    let agent = Agent::start(
        &format!("consul://127.0.0.1:{}", consul_link.port),
        &["-ip=127.0.0.1", "-retry-attempts=-1", "-retry-interval=200"],
        &[("DOCKER_HOST", &docker_host)],
    )?;
    let mut before = demo().env("SERVICE_NAME", &unique("before")).start()?;
    wait_registered(&consul, &agent, &id_of(&before, "9090")).await?;

    // Consul away: the agent says what it waits for; meanwhile a container goes, another comes.
    consul_link.stop();
    before.remove()?;
    let during_consul = demo().env("SERVICE_NAME", &unique("during-consul")).start()?;
    agent
        .wait_log(
            &format!("waiting for Consul at http://127.0.0.1:{}", consul_link.port),
            2,
        )
        .await?;
    consul_link.start().await?;
    wait_deregistered(&consul, &agent, &id_of(&before, "9090")).await?;
    wait_registered(&consul, &agent, &id_of(&during_consul, "9090")).await?;
    agent
        .wait_log(
            &format!("Consul at http://127.0.0.1:{} is back after", consul_link.port),
            1,
        )
        .await?;

    // Docker away (its API unreachable, its events stream cut): same story.
    docker_link.stop();
    agent
        .wait_log(&format!("waiting for the Docker Engine at {docker_host}"), 2)
        .await?;
    let mut during_consul = during_consul;
    during_consul.remove()?;
    let during_docker = demo().env("SERVICE_NAME", &unique("during-docker")).start()?;
    docker_link.start().await?;
    wait_deregistered(&consul, &agent, &id_of(&during_consul, "9090")).await?;
    wait_registered(&consul, &agent, &id_of(&during_docker, "9090")).await?;
    agent
        .wait_log(&format!("the Docker Engine at {docker_host} is back after"), 1)
        .await?;
    Ok(())
}

#[tokio::test]
async fn gives_up_on_consul_after_the_retry_attempts() -> Result<()> {
    let _engine = berth_tests::require_docker!();
    let port = free_port(); // nothing listens there
    let mut agent = Agent::start(
        &format!("consul://127.0.0.1:{port}"),
        &["-ip=127.0.0.1", "-retry-attempts=2", "-retry-interval=100"],
        &[],
    )?;
    let status = agent.proc.wait_exit(WAIT).with_context(|| agent.logs())?;
    assert_eq!(status.code(), Some(1), "{}", agent.logs());
    let logs = agent.logs();
    assert_eq!(
        logs.matches(&format!("waiting for Consul at http://127.0.0.1:{port}: "))
            .count(),
        2,
        "{logs}"
    );
    assert!(
        logs.contains(&format!(
            "gave up waiting for Consul at http://127.0.0.1:{port} after 3 failed attempts"
        )),
        "{logs}"
    );
    Ok(())
}

/// An image tag removed when dropped.
struct Tag(String);

impl Drop for Tag {
    fn drop(&mut self) {
        let _ = docker::docker(&["rmi", &self.0]);
    }
}

#[tokio::test]
async fn a_container_tagged_as_in_the_article_is_routed_by_its_host() -> Result<()> {
    let _engine = berth_tests::require_docker!();
    let consul = setup().await?;
    let control = ControlPlane::start(&consul, &[])?;
    control.wait_ready().await?;
    let proxy = Proxy::start("agent-e2e-edge", &control.url())?;
    let agent = Agent::start_like_the_article(&consul, &[])?;

    // The article's image is web_go: its service name comes from the image name.
    let image = Tag(format!("berth-e2e/web_go:{}", std::process::id()));
    docker::docker(&["tag", &docker::image("demo"), &image.0])?;
    let article_tags = berth_tests::article::GO_TAGS.join(",");
    let go = |instance: &str| {
        Run::new(&image.0)
            .name("agent-e2e-web_go")
            .env("SERVICE_TAGS", &article_tags)
            .env("DEMO_SERVICE", "web_go")
            .env("DEMO_NAME", instance)
            .publish("127.0.0.1::9090")
            .health_interval(Duration::from_millis(300))
    };
    let (name_a, name_b) = (unique("go-a"), unique("go-b"));
    let a = go(&name_a).start()?;
    let b = go(&name_b).start()?;
    let service = wait_registered(&consul, &agent, &id_of(&a, "9090")).await?;
    assert_eq!(service["Service"], "web_go");
    assert_eq!(tags(&service), berth_tests::article::GO_TAGS);

    // Both instances answer for the article's Host, in turn.
    let host = berth_tests::article::GO_HOST;
    let seen = RefCell::new(BTreeSet::new());
    wait_until("both containers to answer through the proxy", WAIT, || async {
        let answer = proxy.get(host, "/").await?;
        if let (200, Some(instance)) = (answer.status, answer.instance()) {
            seen.borrow_mut().insert(instance.to_string());
        }
        Ok((seen.borrow().contains(&name_a) && seen.borrow().contains(&name_b)).then_some(()))
    })
    .await
    .with_context(|| format!("{}\n{}\n{}", agent.logs(), control.proc.logs(), proxy.proc.logs()))?;

    // Unhealthy in Docker: the agent's check goes critical and the proxy stops sending to it.
    berth_tests::http::status(&format!(
        "http://127.0.0.1:{}/health/fail",
        a.published_port(9090)?
    ))
    .await?;
    wait_check(
        &consul,
        &agent,
        &format!("service:{}:docker-health", id_of(&a, "9090")),
        "critical",
    )
    .await?;
    answers_in_a_row(&proxy, host, |answer| {
        answer.status == 200 && answer.instance() == Some(name_b.as_str())
    })
    .await
    .with_context(|| format!("{}\n{}", agent.logs(), control.proc.logs()))?;

    // Stopped: deregistered, and no longer answering.
    b.stop()?;
    wait_deregistered(&consul, &agent, &id_of(&b, "9090")).await?;
    answers_in_a_row(&proxy, host, |answer| answer.instance() != Some(name_b.as_str()))
        .await
        .with_context(|| format!("{}\n{}", agent.logs(), control.proc.logs()))?;
    Ok(())
}

/// Waits until 20 answers in a row through `proxy` for `host` satisfy `ok`.
async fn answers_in_a_row(
    proxy: &Proxy,
    host: &str,
    ok: impl Fn(&berth_tests::http::Answer) -> bool,
) -> Result<()> {
    let streak = Cell::new(0);
    wait_until(
        &format!("20 answers in a row for {host} to be as expected"),
        WAIT,
        || async {
            let answer = proxy.get(host, "/").await?;
            streak.set(if ok(&answer) { streak.get() + 1 } else { 0 });
            Ok((streak.get() >= 20).then_some(()))
        },
    )
    .await
}
