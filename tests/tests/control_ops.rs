//! berth-control as operators and their tools see it, against the real binaries: `/metrics` after
//! a real proxy connected and ACKed, the standard gRPC health service and server reflection on
//! the gRPC address, and an oversized Hello refused without being echoed.

use std::time::Duration;

use berth_proto::v1::proxy_message::Kind;
use berth_proto::v1::route_discovery_client::RouteDiscoveryClient;
use berth_proto::v1::{Hello, ProxyMessage};
use berth_tests::article::Article;
use berth_tests::{free_port, wait_until, Consul, ControlPlane, Proxy, Result};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
use tonic_reflection::pb::v1::ServerReflectionRequest;

const DISCOVERY: &str = "berth.routes.v1.RouteDiscovery";

async fn metrics(cp: &ControlPlane) -> Result<String> {
    let response = reqwest::get(format!("http://{}/metrics", cp.admin_addr)).await?;
    anyhow::ensure!(
        response.status() == 200,
        "/metrics answered {}",
        response.status()
    );
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    anyhow::ensure!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "/metrics content type {content_type:?}"
    );
    Ok(response.text().await?)
}

/// The value of the sample `name` (with its labels, as written: `x{kind="full"}`), if present.
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

/// A gRPC channel to `cp` (the health and reflection clients are generated without `connect`).
async fn channel(cp: &ControlPlane) -> Result<tonic::transport::Channel> {
    Ok(tonic::transport::Endpoint::from_shared(cp.url())?
        .connect()
        .await?)
}

async fn health(cp: &ControlPlane, service: &str) -> Result<ServingStatus> {
    let mut client = HealthClient::new(channel(cp).await?);
    let answer = client
        .check(HealthCheckRequest {
            service: service.into(),
        })
        .await?
        .into_inner();
    Ok(ServingStatus::try_from(answer.status)?)
}

/// Opens a stream whose first message is `hello` and returns the status it is refused with,
/// or `None` if the control plane answered with an update.
async fn refused(cp: &ControlPlane, hello: Hello) -> Result<Option<tonic::Status>> {
    let mut client = RouteDiscoveryClient::connect(cp.url()).await?;
    let (tx, rx) = mpsc::channel(1);
    tx.send(ProxyMessage {
        kind: Some(Kind::Hello(hello)),
    })
    .await?;
    // A refused stream reports its status either here or on the first read.
    let mut updates = match client.stream(ReceiverStream::new(rx)).await {
        Err(status) => return Ok(Some(status)),
        Ok(response) => response.into_inner(),
    };
    match tokio::time::timeout(Duration::from_secs(15), updates.next()).await? {
        Some(Err(status)) => Ok(Some(status)),
        Some(Ok(_)) => Ok(None),
        None => anyhow::bail!("stream ended without a status"),
    }
}

#[tokio::test]
async fn metrics_health_reflection_and_bounded_hello() -> Result<()> {
    let consul = Consul::start().await?;
    let _article = Article::start(&consul).await?;
    let cp = ControlPlane::start(&consul, &[])?;
    let snapshot = cp
        .wait_snapshot("the article's two routes", |s| {
            s["routes"].as_array().map_or(0, Vec::len) == 2
        })
        .await?;
    let version = snapshot["version"].as_str().unwrap_or_default().to_string();

    // Health: SERVING once a snapshot is published, for the server and route discovery.
    for service in ["", DISCOVERY] {
        wait_until(
            &format!("health of {service:?} to be SERVING"),
            Duration::from_secs(10),
            || async { Ok((health(&cp, service).await? == ServingStatus::Serving).then_some(())) },
        )
        .await?;
    }
    let unknown = health(&cp, "no.such.Service").await;
    assert!(
        unknown.is_err(),
        "an unknown service is NOT_FOUND, got {unknown:?}"
    );

    // A real proxy connects and ACKs: the metrics say so.
    let proxy = Proxy::start("ops-proxy", &cp.url())?;
    proxy.wait_version(&version).await?;
    let info = format!("berth_control_snapshot_info{{version=\"{version}\"}}");
    let text = wait_until(
        "/metrics to count the proxy's ACK",
        Duration::from_secs(10),
        || async {
            let text = metrics(&cp).await?;
            let acked = sample(&text, "berth_control_acks_total").unwrap_or(0.0) >= 1.0
                && sample(&text, "berth_control_proxies_behind") == Some(0.0);
            Ok(acked.then_some(text))
        },
    )
    .await?;
    let expect = |name: &str, check: &dyn Fn(f64) -> bool| {
        let value = sample(&text, name);
        assert!(value.is_some_and(check), "{name} is {value:?} in\n{text}");
    };
    expect(&info, &|v| v == 1.0);
    expect("berth_control_snapshot_build_time_seconds", &|v| v > 1.6e9);
    expect("berth_control_proxies_connected", &|v| v == 1.0);
    expect("berth_control_proxies_behind", &|v| v == 0.0);
    expect("berth_control_pushes_total{kind=\"full\"}", &|v| v >= 1.0);
    expect("berth_control_pushed_bytes_total{kind=\"full\"}", &|v| v > 0.0);
    expect("berth_control_nacks_total", &|v| v == 0.0);
    expect("berth_control_routes{state=\"served\"}", &|v| v == 2.0);
    expect("berth_control_routes{state=\"rejected\"}", &|v| v == 0.0);
    // web_go, web_python and Consul's own service.
    expect("berth_control_services", &|v| v >= 2.0);
    expect(
        "berth_control_consul_requests_total{kind=\"catalog_services\"}",
        &|v| v >= 1.0,
    );
    expect("berth_control_compile_duration_seconds_count", &|v| v >= 1.0);
    expect(
        "berth_control_compile_duration_seconds_bucket{le=\"+Inf\"}",
        &|v| v >= 1.0,
    );
    assert!(text.contains("# TYPE berth_control_acks_total counter"), "{text}");

    // Reflection lists every service on the address, as grpcurl would.
    let mut reflection = ServerReflectionClient::new(channel(&cp).await?);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut answers = reflection
        .server_reflection_info(tokio_stream::iter([request]))
        .await?
        .into_inner();
    let answer = answers
        .next()
        .await
        .ok_or_else(|| anyhow::anyhow!("no reflection answer"))??;
    let Some(MessageResponse::ListServicesResponse(list)) = answer.message_response else {
        panic!("expected a service list, got {answer:?}")
    };
    drop((answers, reflection));
    let names: Vec<&str> = list.service.iter().map(|s| s.name.as_str()).collect();
    for want in [
        DISCOVERY,
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
    ] {
        assert!(names.contains(&want), "{want} not in {names:?}");
    }

    // Oversized Hellos are refused, naming the field and its limit, never echoing the value.
    let big = "x".repeat(1 << 20);
    let cases = [
        (
            Hello {
                node_id: big.clone(),
                entrypoints: vec!["http".into()],
                version: String::new(),
                build: "ops-test".into(),
            },
            "Hello.node_id",
            "256",
        ),
        (
            Hello {
                node_id: "ops-hand".into(),
                entrypoints: vec!["http".into(); 65],
                version: String::new(),
                build: "ops-test".into(),
            },
            "Hello.entrypoints",
            "64",
        ),
        (
            Hello {
                node_id: "ops-hand".into(),
                entrypoints: vec![big.clone()],
                version: String::new(),
                build: "ops-test".into(),
            },
            "Hello.entrypoints[0]",
            "64",
        ),
        (
            Hello {
                node_id: "ops-hand".into(),
                entrypoints: vec!["http".into()],
                version: String::new(),
                build: big.clone(),
            },
            "Hello.build",
            "256",
        ),
    ];
    for (hello, field, limit) in cases {
        let status = refused(&cp, hello)
            .await?
            .ok_or_else(|| anyhow::anyhow!("an oversized {field} was accepted"))?;
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
        assert!(
            status.message().contains(field) && status.message().contains(limit),
            "{field}: {}",
            status.message()
        );
        assert!(status.message().len() < 200, "{field}: the value is echoed");
    }
    let text = metrics(&cp).await?;
    assert_eq!(
        sample(&text, "berth_control_hellos_refused_total"),
        Some(4.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "berth_control_proxies_connected"),
        Some(1.0),
        "{text}"
    );
    let logs = cp.proc.logs();
    assert!(
        !logs.contains(&"x".repeat(300)),
        "the log repeats an oversized value"
    );
    assert!(logs.contains("Hello.node_id is 1048576 bytes; the limit is 256"));

    stop_with_watcher(cp, ServingStatus::Serving).await?;
    Ok(())
}

#[tokio::test]
async fn health_is_not_serving_before_the_first_snapshot() -> Result<()> {
    // No Consul answers here, so no snapshot is ever published.
    let nowhere = format!("http://127.0.0.1:{}", free_port());
    let cp = ControlPlane::start_at(&nowhere, &[])?;
    for service in ["", DISCOVERY] {
        wait_until(
            &format!("health of {service:?} to answer NOT_SERVING"),
            Duration::from_secs(10),
            || async {
                Ok(health(&cp, service)
                    .await
                    .ok()
                    .filter(|s| *s == ServingStatus::NotServing))
            },
        )
        .await?;
    }
    stop_with_watcher(cp, ServingStatus::NotServing).await
}

/// Stops `cp` with SIGTERM while a health watcher (which saw `before`) is open: the watcher sees
/// NOT_SERVING, its stream ends, and the process exits cleanly without waiting for it.
async fn stop_with_watcher(mut cp: ControlPlane, before: ServingStatus) -> Result<()> {
    let mut health = HealthClient::new(channel(&cp).await?);
    let mut watcher = health
        .watch(HealthCheckRequest {
            service: DISCOVERY.into(),
        })
        .await?
        .into_inner();
    let first = watcher.next().await.transpose()?.map(|a| a.status);
    assert_eq!(first, Some(before as i32));
    let pid = cp
        .proc
        .pid()
        .ok_or_else(|| anyhow::anyhow!("berth-control is not running"))?;
    std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()?;
    // The test's own connections must keep answering (HTTP/2's graceful shutdown waits for the
    // client's PING ACK), so the exit is polled without blocking the runtime.
    let mut seen = Vec::new();
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(Ok(answer)) = watcher.next().await {
            seen.push(answer.status);
        }
    })
    .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let exit = loop {
        match cp.proc.wait_exit(Duration::ZERO) {
            Some(status) => break Some(status),
            None if tokio::time::Instant::now() >= deadline => break None,
            None => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    };
    assert!(
        ended.is_ok(),
        "the health watch did not end at shutdown: {seen:?}, exit {exit:?}\n{}",
        cp.proc.logs()
    );
    assert_eq!(seen.last(), Some(&(ServingStatus::NotServing as i32)), "{seen:?}");
    assert!(
        exit.is_some_and(|status| status.success()),
        "berth-control did not exit cleanly within 10s of SIGTERM: {exit:?}"
    );
    Ok(())
}
