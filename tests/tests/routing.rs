//! The article's routing, end to end: real Consul, berth-control, berth-proxy and backends.

use std::collections::BTreeMap;
use std::time::Duration;

use berth_tests::article::{Article, GO_HOST, GO_TAGS, PYTHON_HOST};
use berth_tests::{wait_until, Backend, Consul, ControlPlane, Proxy, Result};

/// Sends `n` sequential requests for `host` and counts which instance answered each.
async fn spread(proxy: &Proxy, host: &str, n: usize) -> Result<BTreeMap<String, usize>> {
    let mut seen = BTreeMap::new();
    for _ in 0..n {
        let answer = proxy.get(host, "/").await?;
        anyhow::ensure!(answer.status == 200, "{host}: expected 200, got {answer:?}");
        *seen
            .entry(answer.instance().unwrap_or("?").to_string())
            .or_insert(0) += 1;
    }
    Ok(seen)
}

/// Waits until the proxy routes `host` to exactly the instances `expected` (by name).
async fn wait_instances(proxy: &Proxy, host: &str, expected: &[&str]) -> Result<()> {
    let want: Vec<String> = expected.iter().map(|s| s.to_string()).collect();
    wait_until(
        &format!("{host} to be served by {want:?}"),
        Duration::from_secs(15),
        || async {
            let seen = spread(proxy, host, 2 * want.len().max(1)).await?;
            Ok((seen.keys().cloned().collect::<Vec<_>>() == want).then_some(()))
        },
    )
    .await
}

#[tokio::test]
async fn article_scenario_spreads_requests_evenly_and_routes_by_host() -> Result<()> {
    let consul = Consul::start().await?;
    let _article = Article::start(&consul).await?;
    let cp = ControlPlane::start(&consul, &[])?;
    cp.wait_ready().await?;
    let proxy = Proxy::start("proxy-a", &cp.url())?;
    let snapshot = cp
        .wait_snapshot("three web_go endpoints", |s| {
            s["routes"].as_array().is_some_and(|r| {
                r.iter()
                    .any(|r| r["service"] == "web_go" && r["endpoints"].as_array().map_or(0, Vec::len) == 3)
            })
        })
        .await?;
    proxy
        .wait_version(snapshot["version"].as_str().unwrap_or_default())
        .await?;

    let seen = spread(&proxy, GO_HOST, 30).await?;
    let expected: BTreeMap<String, usize> = [("go-1", 10), ("go-2", 10), ("go-3", 10)]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    assert_eq!(seen, expected, "round robin over the three web_go instances");

    let python = proxy.get(PYTHON_HOST, "/").await?;
    assert_eq!((python.status, python.instance()), (200, Some("python-1")));
    assert!(
        python.body.starts_with("web_python instance python-1"),
        "{}",
        python.body
    );

    // Host matching ignores case and port.
    let loud = proxy.get("GO.Traefix.Example.LOCALHOST:8080", "/").await?;
    assert_eq!(loud.status, 200);

    let unknown = proxy.get("nobody.example", "/").await?;
    assert_eq!(unknown.status, 404);

    // What the backend saw: Host kept, X-Forwarded-* added.
    let echo = proxy.get(GO_HOST, "/?echo=1").await?;
    let seen_header = |name: &str| {
        echo.headers
            .get(format!("x-seen-{name}"))
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    assert_eq!(seen_header("host").as_deref(), Some(GO_HOST));
    assert_eq!(seen_header("x-forwarded-for").as_deref(), Some("127.0.0.1"));
    assert_eq!(seen_header("x-forwarded-proto").as_deref(), Some("http"));
    assert_eq!(seen_header("x-forwarded-host").as_deref(), Some(GO_HOST));
    Ok(())
}

#[tokio::test]
async fn only_enabled_services_are_routed() -> Result<()> {
    let consul = Consul::start().await?;
    let visible = Backend::start("web_go", "go-1").await?;
    let hidden = Backend::start("hidden", "hidden-1").await?;
    consul
        .register_instance("web_go", "go-1", visible.port, &GO_TAGS, false)
        .await?;
    consul
        .register_instance(
            "hidden",
            "hidden-1",
            hidden.port,
            &["traefik.frontend.rule=Host:hidden.example"],
            false,
        )
        .await?;
    let disabled = Backend::start("off", "off-1").await?;
    consul
        .register_instance(
            "off",
            "off-1",
            disabled.port,
            &["traefik.enable=false", "traefik.frontend.rule=Host:off.example"],
            false,
        )
        .await?;
    let cp = ControlPlane::start(&consul, &[])?;
    let proxy = Proxy::start("proxy-a", &cp.url())?;
    wait_instances(&proxy, GO_HOST, &["go-1"]).await?;
    assert_eq!(
        proxy.get("hidden.example", "/").await?.status,
        404,
        "no traefik.enable tag: not exposed by default"
    );
    assert_eq!(
        proxy.get("off.example", "/").await?.status,
        404,
        "traefik.enable=false"
    );
    let snapshot = cp.snapshot().await?;
    assert_eq!(snapshot["routes"].as_array().map(Vec::len), Some(1), "{snapshot}");

    // With --exposed-by-default, the untagged service is routed too (the disabled one still not).
    let cp2 = ControlPlane::start(&consul, &["--exposed-by-default"])?;
    let proxy2 = Proxy::start("proxy-b", &cp2.url())?;
    wait_instances(&proxy2, "hidden.example", &["hidden-1"]).await?;
    assert_eq!(proxy2.get("off.example", "/").await?.status, 404);
    Ok(())
}

#[tokio::test]
async fn default_rule_uses_domain() -> Result<()> {
    let consul = Consul::start().await?;
    let backend = Backend::start("web_go", "go-1").await?;
    consul
        .register_instance("web_go", "go-1", backend.port, &["traefik.enable=true"], false)
        .await?;
    let cp = ControlPlane::start(&consul, &["--domain", "localhost"])?;
    let proxy = Proxy::start("proxy-a", &cp.url())?;
    wait_instances(&proxy, "web-go.localhost", &["go-1"]).await
}

#[tokio::test]
async fn deregistered_and_failing_instances_stop_receiving_requests() -> Result<()> {
    let consul = Consul::start().await?;
    let _article = Article::start(&consul).await?;
    let cp = ControlPlane::start(&consul, &[])?;
    let proxy = Proxy::start("proxy-a", &cp.url())?;
    wait_instances(&proxy, GO_HOST, &["go-1", "go-2", "go-3"]).await?;

    consul.deregister("go-2").await?;
    wait_instances(&proxy, GO_HOST, &["go-1", "go-3"]).await?;
    let seen = spread(&proxy, GO_HOST, 20).await?;
    assert_eq!(
        seen.get("go-2"),
        None,
        "a deregistered instance gets no request: {seen:?}"
    );

    consul.set_check("go-3", false).await?;
    wait_instances(&proxy, GO_HOST, &["go-1"]).await?;
    let seen = spread(&proxy, GO_HOST, 10).await?;
    assert_eq!(seen.len(), 1, "a failing instance gets no request: {seen:?}");

    consul.set_check("go-3", true).await?;
    wait_instances(&proxy, GO_HOST, &["go-1", "go-3"]).await?;

    // Every instance failing: the route stays, with nothing to serve it.
    consul.set_check("go-1", false).await?;
    consul.set_check("go-3", false).await?;
    wait_until(
        "503 for a route with no healthy endpoint",
        Duration::from_secs(15),
        || async { Ok((proxy.get(GO_HOST, "/").await?.status == 503).then_some(())) },
    )
    .await?;

    // The last instance deregistered: the service and its route are gone.
    consul.deregister("go-1").await?;
    consul.deregister("go-3").await?;
    wait_until("404 once web_go is gone", Duration::from_secs(15), || async {
        Ok((proxy.get(GO_HOST, "/").await?.status == 404).then_some(()))
    })
    .await?;
    assert_eq!(proxy.get(PYTHON_HOST, "/").await?.status, 200);
    Ok(())
}

#[tokio::test]
async fn backend_failures_map_to_502_and_504() -> Result<()> {
    let consul = Consul::start().await?;
    // A port nothing listens on.
    let closed = berth_tests::free_port();
    consul
        .register_instance(
            "gone",
            "gone-1",
            closed,
            &["traefik.enable=true", "traefik.frontend.rule=Host:gone.example"],
            false,
        )
        .await?;
    let slow = Backend::start("slow", "slow-1").await?;
    consul
        .register_instance(
            "slow",
            "slow-1",
            slow.port,
            &["traefik.enable=true", "traefik.frontend.rule=Host:slow.example"],
            false,
        )
        .await?;
    let cp = ControlPlane::start(&consul, &[])?;
    let http_addr = format!("127.0.0.1:{}", berth_tests::free_port());
    let admin_addr = format!("127.0.0.1:{}", berth_tests::free_port());
    let entrypoint = format!("http={http_addr}");
    let _proxy_proc = berth_tests::Proc::spawn(
        "proxy-timeouts",
        &berth_tests::bin("berth-proxy"),
        &[
            "--control-plane",
            &cp.url(),
            "--entrypoint",
            &entrypoint,
            "--admin-addr",
            &admin_addr,
            "--node-id",
            "p",
            "--request-timeout",
            "300ms",
        ],
        &[],
    )?;
    let url = format!("http://{http_addr}");
    wait_until(
        "502 for a backend that refuses connections",
        Duration::from_secs(15),
        || async {
            Ok((berth_tests::http::get_with_host(&url, "gone.example")
                .await?
                .status
                == 502)
                .then_some(()))
        },
    )
    .await?;
    let answer = berth_tests::http::get_with_host(&format!("{url}/slow?ms=3000"), "slow.example").await?;
    assert_eq!(answer.status, 504, "{answer:?}");
    let answer = berth_tests::http::get_with_host(&format!("{url}/slow?ms=10"), "slow.example").await?;
    assert_eq!(answer.status, 200, "{answer:?}");
    Ok(())
}
