//! The deploy/docker-compose.yml topology, brought up with Debian's docker-compose (v1) as the
//! article does (`up --scale web_go=3`): Consul, berth-agent, berth-control, two berth-proxy and
//! the demo services, all from the FROM-scratch images of deploy/build-images.sh. Requests with
//! `Host: go.traefix.example.localhost` through each proxy (on 127.0.0.1) must be answered by all
//! three web_go containers, and `python.traefix.example.localhost` by web_python.
//!
//! Needs a Docker Engine and docker-compose: without them it fails with CI=true and skips
//! elsewhere. Every host port is chosen free, and the project name is unique, so it can run
//! beside other tests (and beside a compose stack a developer has up).

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::Duration;

use berth_tests::docker::{self, Compose};
use berth_tests::{free_port, http, wait_until, workspace_root, Context, Result};

const GO_HOST: &str = "go.traefix.example.localhost";
const PYTHON_HOST: &str = "python.traefix.example.localhost";

#[tokio::test]
async fn compose_topology_routes_the_articles_hosts_to_every_container() -> Result<()> {
    let _engine = berth_tests::require_docker!();
    if docker::require_compose().is_none() {
        return Ok(());
    }
    docker::build_images(&["consul", "agent", "control", "proxy", "demo"])?;

    let proxy1_http = free_port();
    let proxy2_http = free_port();
    let proxy1_admin = free_port();
    let proxy2_admin = free_port();
    let control_admin = free_port();
    let mut project = Compose::new(workspace_root().join("deploy/docker-compose.yml"), "berthtest")
        .env("BERTH_CONSUL_HTTP_PORT", free_port())
        .env("BERTH_CONSUL_SERVER_PORT", free_port())
        .env("BERTH_CONSUL_SERF_LAN_PORT", free_port())
        .env("BERTH_CONSUL_SERF_WAN_PORT", free_port())
        .env("BERTH_CONTROL_GRPC_PORT", free_port())
        .env("BERTH_CONTROL_ADMIN_PORT", control_admin)
        .env("BERTH_PROXY_BIND", "127.0.0.1")
        .env("BERTH_PROXY1_HTTP_PORT", proxy1_http)
        .env("BERTH_PROXY1_ADMIN_PORT", proxy1_admin)
        .env("BERTH_PROXY2_HTTP_PORT", proxy2_http)
        .env("BERTH_PROXY2_ADMIN_PORT", proxy2_admin)
        .env("BERTH_WEB_PYTHON_PORT", free_port())
        .env("RUST_LOG", "info");

    project.up(&["--scale", "web_go=3"], Duration::from_secs(180))?;

    // The demo answers with its name, which defaults to its hostname: the container's short id.
    let web_go: BTreeSet<String> = project
        .container_ids("web_go")?
        .iter()
        .map(|id| id.chars().take(12).collect())
        .collect();
    assert_eq!(
        web_go.len(),
        3,
        "docker-compose --scale web_go=3 should run three web_go containers: {web_go:?}"
    );
    let web_python = project.container_ids("web_python")?;
    assert_eq!(web_python.len(), 1, "one web_python container: {web_python:?}");

    let control_ready = format!("http://127.0.0.1:{control_admin}/healthz");
    wait_until(
        "berth-control (in compose) to be ready",
        Duration::from_secs(60),
        || async { Ok((http::status(&control_ready).await.ok() == Some(200)).then_some(())) },
    )
    .await
    .with_context(|| project.logs())?;

    for (proxy, port, admin) in [
        ("proxy-1", proxy1_http, proxy1_admin),
        ("proxy-2", proxy2_http, proxy2_admin),
    ] {
        let url = format!("http://127.0.0.1:{port}/");
        let seen = Mutex::new(BTreeSet::new());
        let last = Mutex::new(String::new());
        let routed = wait_until(
            &format!("{proxy} to route {GO_HOST} to all three web_go containers {web_go:?}"),
            Duration::from_secs(90),
            || async {
                let answer = http::get_with_host(&url, GO_HOST).await?;
                *last.lock().unwrap() = format!("{} {}", answer.status, answer.body.trim());
                let mut seen = seen.lock().unwrap();
                // Only this project's containers count (other tests' containers may carry the
                // article's tags too, and the agent registers every container of the host).
                if let Some(instance) = answer
                    .instance()
                    .filter(|i| answer.status == 200 && web_go.contains(*i))
                {
                    assert!(
                        answer
                            .body
                            .starts_with(&format!("web_go instance {instance} served GET /")),
                        "unexpected body through {proxy}: {}",
                        answer.body
                    );
                    seen.insert(instance.to_string());
                }
                Ok((seen.len() == web_go.len()).then_some(()))
            },
        )
        .await;
        if let Err(e) = routed {
            let snapshot = http::get_json(&format!("http://127.0.0.1:{control_admin}/api/snapshot")).await;
            let metrics = http::get_text(&format!("http://127.0.0.1:{admin}/metrics")).await;
            let upstream: Vec<&str> = metrics
                .as_deref()
                .unwrap_or("")
                .lines()
                .filter(|l| l.contains("connect_errors") || l.contains("ejections") || l.contains("retries"))
                .collect();
            return Err(e.context(format!(
                "{proxy}: answered by {:?} so far; last answer: {}\n\
                 berth-control's snapshot: {snapshot:?}\n{proxy}'s upstream metrics: {upstream:#?}\n{}",
                seen.lock().unwrap(),
                last.lock().unwrap(),
                project.logs()
            )));
        }
        let seen = seen.into_inner().unwrap();
        eprintln!("{proxy} ({url}): {GO_HOST} answered by all of {seen:?}");

        let python = wait_until(
            &format!("{proxy} to route {PYTHON_HOST}"),
            Duration::from_secs(30),
            || async {
                let answer = http::get_with_host(&url, PYTHON_HOST).await?;
                Ok(
                    (answer.status == 200 && answer.body.starts_with("web_python instance"))
                        .then_some(answer),
                )
            },
        )
        .await
        .with_context(|| project.logs())?;
        eprintln!("{proxy} ({url}): {PYTHON_HOST} -> {}", python.body.trim());
    }

    project.down()?;
    Ok(())
}
