//! berth-control against a three-server Consul cluster on 127.0.0.1–3: it follows whichever
//! server answers (`--consul-addr` lists all three), loses no route when the leader is killed
//! while the catalog changes, and routes changes again once a new leader is elected.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use berth_tests::consul::Registration;
use berth_tests::consul_cluster::ConsulCluster;
use berth_tests::{http, route_count, wait_until, Backend, ControlPlane, Proxy, Result, Sampler};

const SERVICES: usize = 100;
/// Bound on the services registered while the leader is killed (one every 50 ms).
const MAX_LATE: usize = 400;

/// Service `name` on node `host-{n}`, routed by `Host:<name>.example`.
fn service(name: &str, node: usize, port: u16) -> Registration {
    Registration::traefik(
        &format!("host-{node}"),
        name,
        name,
        port,
        &format!("{name}.example"),
    )
}

async fn wait_routed(proxy: &Proxy, host: &str, timeout: Duration) -> Result<()> {
    wait_until(&format!("{host} to be routed"), timeout, || async {
        Ok((proxy.get(host, "/").await?.status == 200).then_some(()))
    })
    .await
}

fn sample_routes(admin_addr: &str) -> Sampler<usize> {
    let url = format!("http://{admin_addr}/api/snapshot");
    Sampler::start(Duration::from_millis(25), move || {
        let url = url.clone();
        async move { http::get_json(&url).await.ok().map(|s| route_count(&s)) }
    })
}

/// Nothing is deregistered in this test, so a route count that goes down means a partial
/// catalog was published.
fn assert_never_drops(what: &str, samples: &[usize]) {
    assert!(samples.len() >= 10, "{what}: too few samples: {samples:?}");
    if let Some(i) = (1..samples.len()).find(|&i| samples[i] < samples[i - 1]) {
        panic!(
            "{what}: the route count dropped from {} to {} (sample {i} of {}): {samples:?}",
            samples[i - 1],
            samples[i],
            samples.len()
        );
    }
}

#[tokio::test]
async fn killing_the_leader_under_change_loses_no_route() -> Result<()> {
    let started = Instant::now();
    let mut cluster = ConsulCluster::start().await?;
    let backend = Backend::start("svc", "backend-0").await?;
    let leader = cluster.leader().await?;
    // Writes go through a server that stays up; it forwards them to whoever leads.
    let follower = (leader + 1) % cluster.servers.len();
    let api = cluster.servers[follower].api();
    let catalog: Vec<Registration> = (0..SERVICES)
        .map(|i| service(&format!("svc-{i}"), i % 5, backend.port))
        .collect();
    api.register_many(&catalog).await?;

    // The leader first in the list, so the control plane starts on the server that will die.
    let cp = ControlPlane::start_at(&cluster.http_addrs_from(leader), &[])?;
    let proxy = Proxy::start("proxy-cluster", &cp.url())?;
    cp.wait_snapshot("every service", |s| route_count(s) == SERVICES)
        .await?;
    wait_routed(&proxy, "svc-99.example", Duration::from_secs(15)).await?;
    let cluster_up = started.elapsed();

    let cp_routes = sample_routes(&cp.admin_addr);
    let proxy_routes = sample_routes(&proxy.admin_addr);

    // The catalog changes all along: a new service every 50 ms (each write retried through the
    // election), until told to stop.
    let registered = Arc::new(AtomicUsize::new(0));
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let registrar = {
        let (api, registered, port) = (api.clone(), registered.clone(), backend.port);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(50));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            for k in 0..MAX_LATE {
                tokio::select! {
                    _ = stopped.changed() => break,
                    _ = tick.tick() => {}
                }
                api.set_services(&[service(&format!("late-{k}"), k % 5, port)])
                    .await?;
                registered.fetch_add(1, Ordering::SeqCst);
            }
            anyhow::Ok(())
        })
    };
    let count = || registered.load(Ordering::SeqCst);
    wait_until("registrations to flow", Duration::from_secs(10), || async {
        Ok((count() >= 5).then_some(()))
    })
    .await?;

    let killed_at = Instant::now();
    let killed = cluster.kill_leader().await?;
    let new_leader = cluster.wait_leader(Some(killed)).await?;
    let elected_in = killed_at.elapsed();
    let at_election = count();
    wait_until(
        "registrations to flow again under the new leader",
        Duration::from_secs(30),
        || async { Ok((count() >= at_election + 5).then_some(())) },
    )
    .await?;
    let _ = stop.send(true);
    registrar.await.context("the registrar task")??;
    let late = count();

    // A service registered after the election is routed...
    let after = cluster.servers[new_leader].api();
    let written = Instant::now();
    after
        .set_services(&[service("after-election", 0, backend.port)])
        .await?;
    wait_routed(&proxy, "after-election.example", Duration::from_secs(30))
        .await
        .with_context(|| cp.proc.logs())?;
    let routed_in = written.elapsed();
    // ...and so is every one registered while the leader changed.
    let total = SERVICES + late + 1;
    wait_until(
        &format!("{total} routes on the proxy"),
        Duration::from_secs(30),
        || async { Ok((route_count(&proxy.snapshot().await?) == total).then_some(())) },
    )
    .await
    .with_context(|| cp.proc.logs())?;
    let cp_routes = cp_routes.stop().await;
    let proxy_routes = proxy_routes.stop().await;
    eprintln!(
        "cluster: up and routed in {cluster_up:?}; leader {} killed, {} elected in \
         {elected_in:?}; {late} services registered meanwhile; a service written after the \
         election routed in {routed_in:?}; {} control-plane and {} proxy samples",
        cluster.servers[killed].name,
        cluster.servers[new_leader].name,
        cp_routes.len(),
        proxy_routes.len()
    );
    assert_never_drops("berth-control", &cp_routes);
    assert_never_drops("the proxy", &proxy_routes);
    assert!(
        cp.published_routes().windows(2).all(|w| w[0] <= w[1]),
        "published snapshots: {:?}",
        cp.published_routes()
    );
    // The watch is synced again, on a live server.
    let dead = cluster.servers[killed].http_addr.clone();
    wait_until(
        "berth-control's watch to be synced on a live server",
        Duration::from_secs(10),
        || async {
            let watch = cp.watch().await?;
            anyhow::ensure!(
                watch["state"] == "synced" && watch["consul"].as_str() != Some(dead.as_str()),
                "{dead} was killed; /api/watch says {watch}"
            );
            Ok(Some(()))
        },
    )
    .await?;

    // The old leader comes back with its data and rejoins; changes still flow.
    cluster.restart(killed).await?;
    cluster.servers[killed]
        .api()
        .set_services(&[service("after-rejoin", 1, backend.port)])
        .await?;
    wait_routed(&proxy, "after-rejoin.example", Duration::from_secs(30))
        .await
        .with_context(|| cp.proc.logs())?;
    assert_eq!(route_count(&cp.snapshot().await?), total + 1);
    Ok(())
}
