//! The fleet's behaviour when parts come and go: start order, control-plane outages, replicas.

use std::time::Duration;

use berth_tests::article::{Article, GO_HOST, GO_TAGS, PYTHON_HOST};
use berth_tests::{free_port, http, wait_until, Backend, Consul, ControlPlane, Proxy, Result};

async fn wait_status(proxy: &Proxy, host: &str, status: u16) -> Result<()> {
    wait_until(
        &format!("{} to answer {status} for {host}", proxy.node_id),
        Duration::from_secs(20),
        || async { Ok((proxy.get(host, "/").await?.status == status).then_some(())) },
    )
    .await
}

#[tokio::test]
async fn proxy_started_before_the_control_plane_routes_once_it_comes() -> Result<()> {
    let consul = Consul::start().await?;
    let _article = Article::start(&consul).await?;
    let grpc_port = free_port();
    let proxy = Proxy::start("early", &format!("http://127.0.0.1:{grpc_port}"))?;

    // Before any snapshot: not healthy, and requests are refused with 503, not routed.
    let health = format!("http://{}/healthz", proxy.admin_addr);
    wait_until("the early proxy's admin API", Duration::from_secs(10), || async {
        Ok(http::status(&health).await.ok())
    })
    .await?;
    assert_eq!(http::status(&health).await?, 503);
    assert_eq!(proxy.get(GO_HOST, "/").await?.status, 503);

    let cp = ControlPlane::start_on(&consul, grpc_port, &[])?;
    wait_status(&proxy, GO_HOST, 200).await?;
    assert_eq!(http::status(&health).await?, 200);
    let version = cp.snapshot().await?["version"].as_str().map(str::to_string);
    assert_eq!(proxy.version().await?, version);
    Ok(())
}

#[tokio::test]
async fn proxy_keeps_routing_while_the_control_plane_is_down_and_catches_up() -> Result<()> {
    let consul = Consul::start().await?;
    let _article = Article::start(&consul).await?;
    let grpc_port = free_port();
    let mut cp = ControlPlane::start_on(&consul, grpc_port, &[])?;
    let proxy = Proxy::start("steady", &cp.url())?;
    wait_status(&proxy, GO_HOST, 200).await?;
    let before = proxy.version().await?;

    cp.proc.kill();
    // Routing goes on by the last snapshot, for every request.
    for _ in 0..30 {
        assert_eq!(proxy.get(GO_HOST, "/").await?.status, 200);
        assert_eq!(proxy.get(PYTHON_HOST, "/").await?.status, 200);
    }
    assert_eq!(proxy.version().await?, before);

    // The catalog changes while the control plane is away...
    let extra = Backend::start("web_extra", "extra-1").await?;
    consul
        .register_instance(
            "web_extra",
            "extra-1",
            extra.port,
            &["traefik.enable=true", "traefik.frontend.rule=Host:extra.example"],
            false,
        )
        .await?;
    consul.deregister("python-1").await?;
    assert_eq!(proxy.get("extra.example", "/").await?.status, 404);

    // ...and the proxy catches up when it returns on the same address.
    let cp2 = ControlPlane::start_on(&consul, grpc_port, &[])?;
    wait_status(&proxy, "extra.example", 200).await?;
    wait_status(&proxy, PYTHON_HOST, 404).await?;
    assert_eq!(
        proxy.version().await?,
        cp2.snapshot().await?["version"].as_str().map(str::to_string)
    );
    assert_eq!(proxy.get(GO_HOST, "/").await?.status, 200);
    Ok(())
}

#[tokio::test]
async fn proxies_and_replicas_agree_on_the_version() -> Result<()> {
    let consul = Consul::start().await?;
    let _article = Article::start(&consul).await?;
    let mut cp_a = ControlPlane::start(&consul, &[])?;
    let cp_b = ControlPlane::start(&consul, &[])?;
    cp_a.wait_ready().await?;
    cp_b.wait_ready().await?;
    let list = format!("{},{}", cp_a.url(), cp_b.url());
    let p1 = Proxy::start("proxy-1", &list)?;
    let p2 = Proxy::start("proxy-2", &list)?;

    let snap = cp_a
        .wait_snapshot("web_go with three endpoints", |s| {
            s.to_string().matches("go-").count() >= 3
        })
        .await?;
    let version = snap["version"].as_str().unwrap_or_default().to_string();
    let snap_b = cp_b
        .wait_snapshot("the same version on replica b", |s| {
            s["version"] == version.as_str()
        })
        .await?;
    assert_eq!(
        snap_b["routes"], snap["routes"],
        "replicas compile the same catalog identically"
    );
    p1.wait_version(&version).await?;
    p2.wait_version(&version).await?;

    // The control plane lists both proxies with the version they ACKed.
    let proxies = wait_until(
        "both proxies to ACK on replica a",
        Duration::from_secs(15),
        || async {
            let list = cp_a.proxies().await?;
            let acked = list.as_array().map_or(0, |l| {
                l.iter()
                    .filter(|p| p["acked_version"] == version.as_str())
                    .count()
            });
            Ok((acked == 2).then_some(list))
        },
    )
    .await;
    // Replica a is first in both proxies' lists and was up before them, so both are on it.
    let list = proxies?;
    let nodes: Vec<&str> = list
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["node_id"].as_str())
        .collect();
    assert_eq!(nodes, vec!["proxy-1", "proxy-2"]);
    assert!(
        list[0]["connected_since"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z')),
        "{list}"
    );
    assert!(list[0]["last_nack"].is_null());

    // A change reaches both proxies through whichever replica they are on; then replica a is stopped and
    // both proxies fail over to b without changing what they route.
    consul.deregister("go-3").await?;
    let snap = cp_a
        .wait_snapshot("go-3 gone", |s| !s.to_string().contains("go-3"))
        .await?;
    let version = snap["version"].as_str().unwrap_or_default().to_string();
    p1.wait_version(&version).await?;
    p2.wait_version(&version).await?;
    // SIGTERM: replica a closes the proxies' streams and exits cleanly (it does not wait for them).
    let status = cp_a.proc.terminate();
    assert!(
        status.is_some_and(|s| s.success()),
        "replica a should exit 0 on SIGTERM: {status:?}"
    );
    consul.deregister("go-2").await?;
    let snap = cp_b
        .wait_snapshot("go-2 gone", |s| !s.to_string().contains("go-2"))
        .await?;
    let version = snap["version"].as_str().unwrap_or_default().to_string();
    p1.wait_version(&version).await?;
    p2.wait_version(&version).await?;
    let on_b = wait_until(
        "both proxies connected to replica b",
        Duration::from_secs(15),
        || async {
            let list = cp_b.proxies().await?;
            Ok((list.as_array().map_or(0, Vec::len) == 2).then_some(list))
        },
    )
    .await?;
    assert!(
        on_b.as_array()
            .into_iter()
            .flatten()
            .all(|p| p["acked_version"] == version.as_str()),
        "{on_b}"
    );
    Ok(())
}

#[tokio::test]
async fn consul_unreachable_at_start_is_not_fatal() -> Result<()> {
    // Start the control plane pointing at a Consul that is not there yet.
    let consul_port = free_port();
    let grpc = format!("127.0.0.1:{}", free_port());
    let admin = format!("127.0.0.1:{}", free_port());
    let consul_addr = format!("http://127.0.0.1:{consul_port}");
    let cp = berth_tests::Proc::spawn(
        "control-waiting",
        &berth_tests::bin("berth-control"),
        &[
            "--consul-addr",
            &consul_addr,
            "--grpc-addr",
            &grpc,
            "--admin-addr",
            &admin,
        ],
        &[],
    )?;
    let health = format!("http://{admin}/healthz");
    wait_until(
        "the control plane to say what it waits for",
        Duration::from_secs(10),
        || async {
            Ok(cp
                .logs()
                .contains("waiting for the service list from Consul")
                .then_some(()))
        },
    )
    .await?;
    assert_eq!(http::status(&health).await?, 503, "not ready without a catalog");

    let consul = Consul::start_on(consul_port).await?;
    let backend = Backend::start("web_go", "go-1").await?;
    consul
        .register_instance("web_go", "go-1", backend.port, &GO_TAGS, false)
        .await?;
    wait_until(
        "the control plane to become ready",
        Duration::from_secs(20),
        || async { Ok((http::status(&health).await? == 200).then_some(())) },
    )
    .await?;
    Ok(())
}

#[tokio::test]
async fn consul_going_away_keeps_the_last_snapshot_routed() -> Result<()> {
    let mut consul = Consul::start().await?;
    let _article = Article::start(&consul).await?;
    let cp = ControlPlane::start(&consul, &[])?;
    let proxy = Proxy::start("steady", &cp.url())?;
    wait_status(&proxy, GO_HOST, 200).await?;
    let version = cp.snapshot().await?["version"].clone();

    consul.proc.kill();
    wait_until(
        "the control plane to notice Consul is gone",
        Duration::from_secs(90),
        || async { Ok(cp.proc.logs().contains("waiting for").then_some(())) },
    )
    .await?;
    // Nothing is withdrawn: the control plane keeps its snapshot and the proxy keeps routing.
    for _ in 0..20 {
        assert_eq!(proxy.get(GO_HOST, "/").await?.status, 200);
        assert_eq!(proxy.get(PYTHON_HOST, "/").await?.status, 200);
    }
    assert_eq!(cp.snapshot().await?["version"], version);
    assert_eq!(proxy.version().await?.as_deref(), version.as_str());
    Ok(())
}
