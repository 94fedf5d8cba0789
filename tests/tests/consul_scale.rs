//! The control plane's Consul watch at scale and through Consul's failures, with real processes:
//! 10,000 services on Consul's default limits (`http_max_conns_per_client = 200`), one change
//! costing one service, a Consul server restarted with its data, and Consul gone for a while.
//!
//! Timings here are bounds, not measurements: the figures are in `bench/consul_scale.sh`.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use berth_tests::consul::{traefik_tags, Registration};
use berth_tests::consul_cluster::ConsulServer;
use berth_tests::proc::{run_to_end, tcp_connections_to};
use berth_tests::{
    bin, http, route_count, wait_until, Backend, Consul, ControlPlane, Proxy, Result, Sampler,
};
use serde_json::Value;

/// Connections berth-control may hold to Consul's HTTP API, whatever the catalog's size: its three
/// long-held blocking queries, the bounded per-service reads (4 by default) and some slack. The
/// rest of Consul's 200 per client address stay for the agents on the same host.
const MAX_CONSUL_CONNECTIONS: usize = 10;

/// Nodes the generated services are spread over (like containers over Docker hosts).
const NODES: usize = 20;

fn host(i: usize) -> String {
    format!("svc-{i}.example")
}

/// Services `svc-0` .. `svc-{n-1}`, one instance each on node `host-{i % NODES}`, routed by
/// `Host:svc-N.example` to the backends in turn (many services share a backend address).
fn catalog(n: usize, backends: &[Backend]) -> Vec<Registration> {
    (0..n)
        .map(|i| {
            let name = format!("svc-{i}");
            let node = format!("host-{}", i % NODES);
            Registration::traefik(&node, &name, &name, backends[i % backends.len()].port, &host(i))
        })
        .collect()
}

async fn start_backends(n: usize) -> Result<Vec<Backend>> {
    let mut backends = Vec::new();
    for i in 0..n {
        backends.push(Backend::start("svc", &format!("backend-{i}")).await?);
    }
    Ok(backends)
}

/// Waits until berth-control's /healthz answers 200 (the catalog was read in full).
async fn wait_healthy(cp: &ControlPlane, timeout: Duration) -> Result<()> {
    let url = format!("http://{}/healthz", cp.admin_addr);
    wait_until("berth-control /healthz to answer 200", timeout, || async {
        Ok((http::status(&url).await.ok() == Some(200)).then_some(()))
    })
    .await
    .with_context(|| cp.proc.logs())
}

/// Waits until the proxy answers `status` for `host`.
async fn wait_status(proxy: &Proxy, host: &str, status: u16, timeout: Duration) -> Result<()> {
    wait_until(
        &format!("{} to answer {status} for {host}", proxy.node_id),
        timeout,
        || async { Ok((proxy.get(host, "/").await?.status == status).then_some(())) },
    )
    .await
}

/// Waits until the proxy answers `host` from the backend named `backend` (its instance header).
async fn wait_backend(proxy: &Proxy, host: &str, backend: &str, timeout: Duration) -> Result<()> {
    wait_until(
        &format!("{} to answer {host} from {backend}", proxy.node_id),
        timeout,
        || async { Ok((proxy.get(host, "/").await?.instance() == Some(backend)).then_some(())) },
    )
    .await
}

/// Samples berth-control's route count every 20 ms.
fn sample_routes_of_control_plane(cp: &ControlPlane) -> Sampler<usize> {
    let url = format!("http://{}/api/snapshot", cp.admin_addr);
    Sampler::start(Duration::from_millis(20), move || {
        let url = url.clone();
        async move { http::get_json(&url).await.ok().map(|s| route_count(&s)) }
    })
}

/// Samples the proxy's route count every 20 ms.
fn sample_routes_of_proxy(proxy: &Proxy) -> Sampler<usize> {
    let url = format!("http://{}/api/snapshot", proxy.admin_addr);
    Sampler::start(Duration::from_millis(20), move || {
        let url = url.clone();
        async move { http::get_json(&url).await.ok().map(|s| route_count(&s)) }
    })
}

/// A cumulative counter of `/api/watch`.
fn counter(watch: &Value, name: &str) -> Result<u64> {
    watch[name]
        .as_u64()
        .with_context(|| format!("/api/watch has no counter {name:?}: {watch}"))
}

/// Total Consul requests counted in `/api/watch`'s `requests`.
fn requests(watch: &Value) -> u64 {
    watch["requests"]
        .as_object()
        .map_or(0, |r| r.values().filter_map(Value::as_u64).sum())
}

/// The two tests with 10,000 services take turns: each alone loads this 2-core machine enough,
/// and the one that times a change must not share the CPU with the other's initial read.
static TEN_THOUSAND: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test]
async fn ten_thousand_services_are_routed_over_a_handful_of_consul_connections() -> Result<()> {
    let _turn = TEN_THOUSAND.lock().await;
    const SERVICES: usize = 10_000;
    let started = Instant::now();
    // A dev agent on Consul's default limits: 200 HTTP connections per client address.
    let consul = Consul::start().await?;
    let backends = start_backends(3).await?;
    let catalog = catalog(SERVICES, &backends);
    consul.api().register_many(&catalog).await?;
    let registered = started.elapsed();

    let cp = ControlPlane::start(&consul, &[])?;
    let pid = cp.proc.pid().context("berth-control has a pid")?;
    let consul_http = SocketAddr::from(([127, 0, 0, 1], consul.http_port));
    let connections = Sampler::start(Duration::from_millis(100), move || {
        std::future::ready(tcp_connections_to(pid, &[consul_http]).ok())
    });
    let proxy = Proxy::start("proxy-scale", &cp.url())?;

    wait_healthy(&cp, Duration::from_secs(45)).await?;
    let healthy = started.elapsed();
    let after_read = connections.len();
    let snapshot = cp.snapshot().await?;
    assert_eq!(
        route_count(&snapshot),
        SERVICES,
        "the first snapshot holds every service"
    );
    assert_eq!(snapshot["errors"], serde_json::json!([]));
    let version = snapshot["version"].as_str().unwrap_or_default().to_string();

    // The proxy routes every one of them: its table has all 10,000 hosts...
    wait_status(&proxy, &host(SERVICES - 1), 200, Duration::from_secs(30)).await?;
    proxy.wait_version(&version).await?;
    let routed: BTreeSet<String> = proxy.snapshot().await?["routes"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|r| r["hosts"].as_array().cloned().unwrap_or_default())
        .filter_map(|h| h.as_str().map(str::to_string))
        .collect();
    let expected: BTreeSet<String> = (0..SERVICES).map(host).collect();
    assert_eq!(routed.len(), SERVICES);
    assert!(routed == expected, "the proxy's hosts differ from the catalog's");
    // ...and real requests reach the right backend, for 200 hosts spread over the range plus
    // the first and the last.
    let sample: BTreeSet<usize> = (0..200)
        .map(|k| k * SERVICES / 200 + k % 7)
        .chain([0, SERVICES - 1])
        .collect();
    for i in sample {
        let answer = proxy.get(&host(i), "/").await?;
        let want = &backends[i % backends.len()].name;
        ensure!(
            answer.status == 200 && answer.instance() == Some(want.as_str()),
            "{}: expected 200 from {want}, got {} from {:?}",
            host(i),
            answer.status,
            answer.instance()
        );
    }

    // The connections to Consul, sampled from the start through the initial read and for a
    // while after it, stay few whatever the catalog's size.
    wait_until(
        "ten more connection samples after the initial read",
        Duration::from_secs(10),
        || async { Ok((connections.len() >= after_read + 10).then_some(())) },
    )
    .await?;
    let samples = connections.stop().await;
    let during = &samples[..after_read.min(samples.len())];
    let after = &samples[after_read.min(samples.len())..];
    eprintln!(
        "10,000 services: registered in {registered:?}, berth-control healthy at {healthy:?}, \
         test done at {:?}; connections to Consul during the initial read {during:?}, after {after:?}",
        started.elapsed()
    );
    let most = samples.iter().copied().max().unwrap_or(0);
    assert!(
        most <= MAX_CONSUL_CONNECTIONS,
        "berth-control held {most} connections to Consul (at most {MAX_CONSUL_CONNECTIONS} \
         expected): {samples:?}"
    );
    // Once the catalog is read and nothing changes, the watch holds its connections: the count
    // neither grows nor churns.
    assert!(
        after.iter().all(|&n| n >= 1 && n == after[0]),
        "berth-control keeps a constant set of connections to Consul after the initial read: \
         {after:?}"
    );
    Ok(())
}

#[tokio::test]
async fn one_service_change_is_routed_within_a_second_and_rereads_only_that_service() -> Result<()> {
    // Each change is read back with one service read, none with a full read of every instance,
    // including an instance changed in place (found by comparing the nodes' answers).
    let _turn = TEN_THOUSAND.lock().await;
    const SERVICES: usize = 10_000;
    let consul = Consul::start().await?;
    let api = consul.api();
    let backends = start_backends(3).await?;
    let catalog = catalog(SERVICES, &backends);
    api.register_many(&catalog).await?;
    let cp = ControlPlane::start(&consul, &[])?;
    let proxy = Proxy::start("proxy-change", &cp.url())?;
    wait_healthy(&cp, Duration::from_secs(30)).await?;
    wait_status(&proxy, &host(SERVICES - 1), 200, Duration::from_secs(20)).await?;
    let synced = wait_until(
        "berth-control's watch to be synced",
        Duration::from_secs(10),
        || async {
            let watch = cp.watch().await?;
            Ok((watch["state"] == "synced").then_some(watch))
        },
    )
    .await?;
    // Consul's own service ("consul") is in the catalog too.
    let in_consul = api.get("/v1/catalog/services").await?;
    let in_consul = in_consul.as_object().map_or(0, |s| s.len());
    assert_eq!(in_consul, SERVICES + 1);
    assert_eq!(synced["services"].as_u64(), Some(in_consul as u64), "{synced}");

    // Change 1: svc-5000's rule moves to a new host name.
    let before = cp.watch().await?;
    let mut moved = catalog[5000].clone();
    moved.tags = traefik_tags("svc-5000-moved.example");
    let written = Instant::now();
    api.set_services(&[moved]).await?;
    wait_status(&proxy, "svc-5000-moved.example", 200, Duration::from_secs(1))
        .await
        .with_context(|| cp.proc.logs())?;
    let routed_in = written.elapsed();
    wait_status(&proxy, &host(5000), 404, Duration::from_secs(1)).await?;
    let after_move = cp.watch().await?;

    // Change 2: svc-7000 gains a second instance, on another node and another backend.
    let mut added = catalog[7000].clone();
    added.id = "svc-7000-b".to_string();
    added.node = "host-3".to_string();
    let new_backend = backends[(7000 + 1) % backends.len()].name.clone();
    added.port = backends[(7000 + 1) % backends.len()].port;
    let written = Instant::now();
    api.set_services(&[added]).await?;
    wait_backend(&proxy, &host(7000), &new_backend, Duration::from_secs(1))
        .await
        .with_context(|| cp.proc.logs())?;
    let added_in = written.elapsed();
    let after_add = cp.watch().await?;

    // Change 3: svc-3000's only instance moves to another backend in place (same node, ID and
    // tags): neither the list nor the summary shows it, the nodes' answers do.
    let mut in_place = catalog[3000].clone();
    let other = &backends[(3000 + 1) % backends.len()];
    in_place.port = other.port;
    let written = Instant::now();
    api.set_services(&[in_place]).await?;
    wait_backend(&proxy, &host(3000), &other.name, Duration::from_secs(2))
        .await
        .with_context(|| cp.proc.logs())?;
    let in_place_in = written.elapsed();
    let after_in_place = cp.watch().await?;

    eprintln!(
        "one change among {SERVICES} services: rule change routed in {routed_in:?} ({} Consul \
         requests), instance added routed in {added_in:?} ({} Consul requests), instance changed \
         in place routed in {in_place_in:?} ({} Consul requests)",
        requests(&after_move) - requests(&before),
        requests(&after_add) - requests(&after_move),
        requests(&after_in_place) - requests(&after_add),
    );
    for (what, from, to) in [
        ("the rule change", &before, &after_move),
        ("the added instance", &after_move, &after_add),
        ("the instance changed in place", &after_add, &after_in_place),
    ] {
        for (name, want) in [("service_reads", 1), ("compiled_services", 1), ("full_reads", 0)] {
            assert_eq!(
                counter(to, name)? - counter(from, name)?,
                want,
                "{name} after {what}: before {from}, after {to}"
            );
        }
    }
    Ok(())
}

/// The endpoints of the route berth-control's snapshot has for `host` (`None`: no route).
async fn route_endpoints(cp: &ControlPlane, host: &str) -> Result<Option<Vec<Value>>> {
    let snapshot = http::get_json(&format!("http://{}/api/snapshot", cp.admin_addr)).await?;
    let routes = snapshot["routes"].as_array().cloned().unwrap_or_default();
    Ok(routes
        .iter()
        .find(|r| r["rule"].as_str().is_some_and(|rule| rule.contains(host)))
        .map(|r| r["endpoints"].as_array().cloned().unwrap_or_default()))
}

/// How many endpoints berth-control's snapshot routes `host` to (`None`: no route for `host`).
async fn endpoints_of(cp: &ControlPlane, host: &str) -> Result<Option<usize>> {
    Ok(route_endpoints(cp, host).await?.map(|endpoints| endpoints.len()))
}

/// One answer of Consul's service list can carry several changes at one index: a transaction
/// that adds a service and an instance of another, or a node's removal that takes a service's
/// only instance and another service's second one. The list shows only the service that
/// appeared or left; the other change must still be routed at once, not at the next full read.
#[tokio::test]
async fn changes_folded_into_one_index_are_all_routed() -> Result<()> {
    let consul = Consul::start().await?;
    let api = consul.api();
    let backends = start_backends(2).await?;
    let b1 = Registration::traefik("host-0", "svc-b", "svc-b-1", backends[0].port, "b.example");
    api.register_many(&[
        Registration::traefik("host-0", "svc-a", "svc-a", backends[0].port, "a.example"),
        b1,
    ])
    .await?;
    api.register_many(&[Registration::traefik(
        "host-1",
        "placeholder",
        "placeholder",
        backends[1].port,
        "p.example",
    )])
    .await?;
    let cp = ControlPlane::start(&consul, &[])?;
    let proxy = Proxy::start("proxy-folded", &cp.url())?;
    wait_status(&proxy, "b.example", 200, Duration::from_secs(20)).await?;

    // One transaction: svc-b gains an instance on host-1 and svc-c appears there.
    let b2 = Registration::traefik("host-1", "svc-b", "svc-b-2", backends[1].port, "b.example");
    let c = Registration::traefik("host-1", "svc-c", "svc-c", backends[1].port, "c.example");
    api.set_services(&[b2, c]).await?;
    wait_status(&proxy, "c.example", 200, Duration::from_secs(5)).await?;
    // svc-b's instance added beside svc-c answers through the proxy.
    wait_backend(&proxy, "b.example", &backends[1].name, Duration::from_secs(5))
        .await
        .with_context(|| cp.proc.logs())?;

    // One removal: host-1 leaves with svc-c's only instance and svc-b's second one.
    api.deregister_node("host-1").await?;
    wait_status(&proxy, "c.example", 404, Duration::from_secs(5)).await?;
    wait_until(
        "berth-control to drop svc-b's instance on the removed node",
        Duration::from_secs(5),
        || async { Ok((endpoints_of(&cp, "b.example").await? == Some(1)).then_some(())) },
    )
    .await
    .with_context(|| cp.proc.logs())?;
    Ok(())
}

/// The endpoint addresses berth-control's snapshot routes `host` to.
async fn endpoint_addresses(cp: &ControlPlane, host: &str) -> Result<Vec<String>> {
    let endpoints = route_endpoints(cp, host).await?.unwrap_or_default();
    Ok(endpoints
        .iter()
        .filter_map(|e| e["address"].as_str().map(str::to_string))
        .collect())
}

/// Waits until berth-control routes `host` to `address` alone.
async fn wait_endpoint(cp: &ControlPlane, host: &str, address: &str) -> Result<()> {
    wait_until(
        &format!("{host}'s endpoint at {address}"),
        Duration::from_secs(5),
        || async {
            let addresses = endpoint_addresses(cp, host).await?;
            Ok((addresses == [address]).then_some(()))
        },
    )
    .await
    .with_context(|| cp.proc.logs())
}

/// An instance registered without an address of its own is reached at its node's. A node's new
/// address moves neither the service list nor any check, only the nodes' index: the endpoint must
/// follow at once all the same, not at the next full read.
#[tokio::test]
async fn a_node_given_a_new_address_moves_its_instances_without_an_address() -> Result<()> {
    let consul = Consul::start().await?;
    let api = consul.api();
    let mut bare = Registration::traefik("host-0", "svc-bare", "svc-bare", 9999, "bare.example");
    bare.address = String::new();
    let own = Registration::traefik("host-0", "svc-own", "svc-own", 9998, "own.example");
    api.register_many(&[bare, own]).await?;
    let cp = ControlPlane::start(&consul, &[])?;
    wait_healthy(&cp, Duration::from_secs(20)).await?;
    wait_endpoint(&cp, "bare.example", "127.0.0.1:9999").await?;
    let full_reads = counter(&cp.watch().await?, "full_reads")?;

    api.set_node_address("host-0", "127.0.0.7").await?;
    wait_endpoint(&cp, "bare.example", "127.0.0.7:9999").await?;
    // The instance with its own address stays where it was; no full read was needed.
    assert_eq!(endpoint_addresses(&cp, "own.example").await?, ["127.0.0.1:9998"]);
    assert_eq!(counter(&cp.watch().await?, "full_reads")?, full_reads);
    Ok(())
}

/// A restartable single Consul server with `services` services registered through its agent
/// (as Registrator and berth-agent do: the server keeps them in its data directory and re-syncs
/// them to the catalog when it comes back), a control plane and a proxy routing all of them.
struct Routed {
    server: ConsulServer,
    _backend: Backend,
    cp: ControlPlane,
    proxy: Proxy,
}

async fn routed_catalog(services: usize, proxy_name: &str) -> Result<Routed> {
    let server = ConsulServer::single().await?;
    let api = server.api();
    let backend = Backend::start("svc", "backend-0").await?;
    for i in 0..services {
        let name = format!("svc-{i}");
        api.register_agent_instance(&name, &name, backend.port, &traefik_tags(&host(i)))
            .await?;
    }
    let cp = ControlPlane::start_at(&server.http_addr, &[])?;
    let proxy = Proxy::start(proxy_name, &cp.url())?;
    cp.wait_snapshot("every service", |s| route_count(s) == services)
        .await?;
    wait_status(&proxy, &host(services - 1), 200, Duration::from_secs(15)).await?;
    Ok(Routed {
        server,
        _backend: backend,
        cp,
        proxy,
    })
}

#[tokio::test]
async fn consul_restarted_with_its_data_never_yields_a_partial_catalog() -> Result<()> {
    const SERVICES: usize = 150;
    let Routed {
        mut server,
        _backend: backend,
        cp,
        proxy,
    } = routed_catalog(SERVICES, "proxy-restart").await?;
    let api = server.api();

    let cp_routes = sample_routes_of_control_plane(&cp);
    let proxy_routes = sample_routes_of_proxy(&proxy);
    // A graceful restart (SIGTERM) and a crash (SIGKILL), each with the same data directory; after
    // each, a new service must be routed, which shows the watch follows the restarted server.
    for (round, crash) in [(0, false), (1, true)] {
        if crash {
            server.kill();
            server.start()?;
        } else {
            server.restart()?;
        }
        server.wait_ready().await?;
        let name = format!("after-restart-{round}");
        let probe_host = format!("{name}.example");
        api.register_agent_instance(&name, &name, backend.port, &traefik_tags(&probe_host))
            .await?;
        wait_status(&proxy, &probe_host, 200, Duration::from_secs(30))
            .await
            .with_context(|| cp.proc.logs())?;
    }
    let cp_routes = cp_routes.stop().await;
    let proxy_routes = proxy_routes.stop().await;

    let published = cp.published_routes();
    eprintln!(
        "Consul restarted twice: {} control-plane samples (min {:?}), {} proxy samples (min {:?}), \
         published route counts {published:?}",
        cp_routes.len(),
        cp_routes.iter().min(),
        proxy_routes.len(),
        proxy_routes.iter().min()
    );
    assert!(!published.is_empty(), "{}", cp.proc.logs());
    assert!(
        published.iter().all(|&n| n >= SERVICES),
        "a snapshot with fewer than {SERVICES} routes was published: {published:?}"
    );
    assert!(cp_routes.len() >= 10 && proxy_routes.len() >= 10);
    assert!(
        cp_routes.iter().all(|&n| n >= SERVICES),
        "berth-control served fewer than {SERVICES} routes: {cp_routes:?}"
    );
    assert!(
        proxy_routes.iter().all(|&n| n >= SERVICES),
        "the proxy routed fewer than {SERVICES} routes: {proxy_routes:?}"
    );
    Ok(())
}

#[tokio::test]
async fn consul_down_keeps_the_last_snapshot_and_says_what_it_waits_for() -> Result<()> {
    const SERVICES: usize = 20;
    let Routed {
        mut server,
        _backend: backend,
        cp,
        proxy,
    } = routed_catalog(SERVICES, "proxy-outage").await?;
    let api = server.api();
    let version = cp.snapshot().await?["version"].clone();

    server.kill();
    let watch = wait_until(
        "berth-control to say it waits for Consul",
        Duration::from_secs(30),
        || async {
            let watch = cp.watch().await?;
            Ok((watch["state"] == "waiting").then_some(watch))
        },
    )
    .await
    .with_context(|| cp.proc.logs())?;
    let waiting_for = watch["waiting_for"].as_str().unwrap_or_default();
    assert!(
        waiting_for.to_lowercase().contains("consul"),
        "waiting_for names Consul: {watch}"
    );
    // The catalog was read in full once: the replica stays healthy and keeps its snapshot, and
    // the proxy keeps routing every service.
    let health = format!("http://{}/healthz", cp.admin_addr);
    assert_eq!(http::status(&health).await?, 200);
    for i in 0..SERVICES {
        assert_eq!(proxy.get(&host(i), "/").await?.status, 200, "{}", host(i));
    }
    assert_eq!(cp.snapshot().await?["version"], version);
    assert_eq!(proxy.version().await?.as_deref(), version.as_str());

    // Consul comes back with its data: changes flow again.
    server.start()?;
    server.wait_ready().await?;
    let tags = traefik_tags("svc-new.example");
    api.register_agent_instance("svc-new", "svc-new", backend.port, &tags)
        .await?;
    wait_status(&proxy, "svc-new.example", 200, Duration::from_secs(30))
        .await
        .with_context(|| cp.proc.logs())?;
    wait_until(
        "berth-control's watch to be synced again",
        Duration::from_secs(10),
        || async {
            let watch = cp.watch().await?;
            ensure!(watch["state"] == "synced", "{watch}");
            Ok(Some(()))
        },
    )
    .await
    .with_context(|| cp.proc.logs())?;
    assert_eq!(route_count(&cp.snapshot().await?), SERVICES + 1);
    Ok(())
}

/// The benchmark's smoke mode, so CI notices when `bench/consul_scale.sh` breaks: 50 services, two
/// changes, the debug binaries. Its figures are not checked, only that it completes.
#[tokio::test]
async fn consul_scale_benchmark_smoke() -> Result<()> {
    // Against both kinds of Consul the bench can run (a dev agent, and a single server).
    for (kind, described) in [("dev", "dev agent"), ("server", "single server")] {
        let mut command = tokio::process::Command::new(bin("berth-bench-consul-scale"));
        command.args(["--services", "50", "--changes", "2", "--consul", kind]);
        let what = format!("berth-bench-consul-scale --consul {kind}");
        let (stdout, _) = run_to_end(&mut command, Duration::from_secs(120), &what).await?;
        ensure!(
            stdout.contains(described)
                && stdout.contains("first full snapshot")
                && stdout.contains("per change"),
            "unexpected report with --consul {kind}:\n{stdout}"
        );
    }
    Ok(())
}
