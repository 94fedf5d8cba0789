//! The control plane serving a fleet, with real processes: real Consul, real berth-control, real
//! berth-proxy instances, and a thousand lightweight protocol clients in the test process (each
//! one RouteDiscovery stream that checks and ACKs what it receives, as a proxy would).
//!
//! Proven here, with the 10,000 services: every stream and both real proxies converge on
//! the first full snapshot and the proxies route a sample of the hosts; then every stream receives
//! deltas whose size is that of the change (one service's new instance: one cluster, under 1 KiB;
//! one service removed from Consul: its route and cluster named); a burst of fifty changes becomes
//! a few pushes; a stream that never answers is dropped after --stream-ack-timeout without holding
//! the others back; two replicas agree on versions and a proxy fails over between them without
//! applying anything again. Timings are generous bounds, never measurements (the fleet test takes
//! 45 to 75 s in the debug profile on two shared cores; it ends when the stuck stream's 45 s ACK
//! deadline drops it).
//!
//! Elsewhere: a NACK recorded in /api/proxies (protocol.rs) and a real proxy NACKing and keeping
//! its table (data-plane/tests/proxy.rs); Consul restarted or down with real proxies
//! (consul_scale.rs); mTLS (control_mtls.rs).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context};
use berth_proto::v1::proxy_message::Kind;
use berth_proto::v1::{Ack, Hello, Nack, ProxyMessage};
use berth_tests::article::{Article, GO_TAGS};
use berth_tests::consul::Registration;
use berth_tests::{wait_until, Backend, Consul, ControlPlane, Proxy, Result};
use prost::Message as _;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

/// `RouteUpdate` as the lightweight clients decode it: the same fields and tags, but each route
/// and cluster kept as its encoded bytes, so that a thousand clients of a 10,000-service catalog
/// do not spend the test's two cores decoding what the real proxies beside them decode and
/// apply in full. Only the names are read (once per version, see [`HELD`]).
#[derive(Clone, PartialEq, prost::Message)]
struct LightUpdate {
    #[prost(string, tag = "1")]
    version: String,
    #[prost(string, tag = "2")]
    nonce: String,
    #[prost(message, optional, tag = "3")]
    snapshot: Option<LightSnapshot>,
    #[prost(message, optional, tag = "4")]
    up_to_date: Option<Empty>,
    #[prost(message, optional, tag = "5")]
    delta: Option<LightDelta>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Empty {}

#[derive(Clone, PartialEq, prost::Message)]
struct LightSnapshot {
    #[prost(bytes = "vec", repeated, tag = "1")]
    routes: Vec<Vec<u8>>,
    #[prost(bytes = "vec", repeated, tag = "2")]
    clusters: Vec<Vec<u8>>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct LightDelta {
    #[prost(string, tag = "1")]
    base_version: String,
    #[prost(bytes = "vec", repeated, tag = "2")]
    routes: Vec<Vec<u8>>,
    #[prost(string, repeated, tag = "3")]
    removed_routes: Vec<String>,
    #[prost(bytes = "vec", repeated, tag = "4")]
    clusters: Vec<Vec<u8>>,
    #[prost(string, repeated, tag = "5")]
    removed_clusters: Vec<String>,
}

/// The `name` (tag 1) of an encoded Route or Cluster; the other fields are skipped.
#[derive(Clone, PartialEq, prost::Message)]
struct Named {
    #[prost(string, tag = "1")]
    name: String,
}

fn names(encoded: &[Vec<u8>]) -> Result<BTreeSet<String>, String> {
    encoded
        .iter()
        .map(|bytes| Named::decode(bytes.as_slice()).map(|n| n.name))
        .collect::<Result<_, _>>()
        .map_err(|e| format!("an item does not decode: {e}"))
}

/// The names of the routes and clusters a state holds.
#[derive(Debug, Default, PartialEq)]
struct Held {
    routes: BTreeSet<String>,
    clusters: BTreeSet<String>,
}

/// The states the clients hold, computed once per version and per transition and shared (a
/// thousand copies of 20,000 names would not fit a CI machine): `version` → state, and
/// `base version → version` → state for each delta seen. A delta whose result differs from the
/// state another stream reached for the same version is NACKed.
static HELD: Mutex<BTreeMap<(String, String), Arc<Held>>> = Mutex::new(BTreeMap::new());

/// What one lightweight client saw.
#[derive(Debug, Default, Clone)]
struct Seen {
    version: String,
    full: usize,
    deltas: usize,
    up_to_date: usize,
    nacks: usize,
    last_nack: String,
    /// The last update as received: its kind, encoded size and items.
    last_kind: &'static str,
    last_bytes: usize,
    last_routes: usize,
    last_clusters: usize,
    last_removed: usize,
    /// The routes and clusters held, by name.
    held: Arc<Held>,
}

/// A stream driven by the test: applies snapshots and deltas to a set of names, checks each
/// delta's base, ACKs. With `stuck`, it reads the first update and then neither reads nor
/// answers again.
async fn client(channel: Channel, node: String, seen: Arc<Mutex<Seen>>, stuck: bool) -> Result<()> {
    let mut grpc = tonic::client::Grpc::new(channel).max_decoding_message_size(usize::MAX);
    let (tx, rx) = mpsc::channel(4);
    tx.send(ProxyMessage {
        kind: Some(Kind::Hello(Hello {
            node_id: node,
            entrypoints: vec!["http".into()],
            version: String::new(),
            build: "fleet-test".into(),
        })),
    })
    .await?;
    grpc.ready().await?;
    let codec = tonic_prost::ProstCodec::<ProxyMessage, LightUpdate>::default();
    let path = http::uri::PathAndQuery::from_static("/berth.routes.v1.RouteDiscovery/Stream");
    let mut updates = grpc
        .streaming(tonic::Request::new(ReceiverStream::new(rx)), path, codec)
        .await?
        .into_inner();
    loop {
        let Some(update) = updates.message().await? else {
            return Ok(());
        };
        if stuck {
            // Hold the stream open without a word until the control plane drops it.
            let _ = updates.message().await;
            return Ok(());
        }
        let reply = apply(&seen, &update);
        tx.send(ProxyMessage { kind: Some(reply) }).await?;
    }
}

/// The state `update` leads to from `held`, shared through [`HELD`].
fn next_state(held: &Arc<Held>, update: &LightUpdate) -> Result<Arc<Held>, String> {
    let mut states = HELD.lock().expect("not poisoned");
    let version = update.version.clone();
    let (key, computed) = match (&update.snapshot, &update.delta) {
        (Some(s), _) => {
            let key = (String::new(), version.clone());
            if let Some(state) = states.get(&key) {
                if (state.routes.len(), state.clusters.len()) != (s.routes.len(), s.clusters.len()) {
                    return Err(format!("two snapshots named {version} differ in size"));
                }
                return Ok(state.clone());
            }
            let state = Held {
                routes: names(&s.routes)?,
                clusters: names(&s.clusters)?,
            };
            (key, state)
        }
        (None, Some(d)) => {
            let key = (d.base_version.clone(), version.clone());
            if let Some(state) = states.get(&key) {
                return Ok(state.clone());
            }
            let mut state = Held {
                routes: held.routes.clone(),
                clusters: held.clusters.clone(),
            };
            for name in &d.removed_routes {
                state.routes.remove(name);
            }
            for name in &d.removed_clusters {
                state.clusters.remove(name);
            }
            state.routes.extend(names(&d.routes)?);
            state.clusters.extend(names(&d.clusters)?);
            (key, state)
        }
        (None, None) => return Err("an update with no body".into()),
    };
    // Versions name contents: every way to a version must lead to the same names.
    if let Some(other) = states
        .iter()
        .find(|((_, v), _)| *v == version)
        .map(|(_, state)| state.clone())
    {
        if *other != computed {
            return Err(format!(
                "applying the update does not give the state named {version}"
            ));
        }
    }
    let state = Arc::new(computed);
    states.insert(key, state.clone());
    Ok(state)
}

fn apply(seen: &Mutex<Seen>, update: &LightUpdate) -> Kind {
    let mut seen = seen.lock().expect("not poisoned");
    seen.last_bytes = update.encoded_len();
    let nack = |seen: &mut Seen, error: String| {
        seen.nacks += 1;
        seen.last_nack = error.clone();
        Kind::Nack(Nack {
            version: update.version.clone(),
            nonce: update.nonce.clone(),
            error,
        })
    };
    if update.up_to_date.is_some() {
        seen.up_to_date += 1;
        seen.last_kind = "up_to_date";
    } else {
        if let Some(d) = &update.delta {
            if d.base_version != seen.version {
                let error = format!("delta from {} but holding {}", d.base_version, seen.version);
                return nack(&mut seen, error);
            }
        }
        match next_state(&seen.held, update) {
            Ok(state) => seen.held = state,
            Err(error) => return nack(&mut seen, error),
        }
        if let Some(s) = &update.snapshot {
            seen.full += 1;
            seen.last_kind = "full";
            (seen.last_routes, seen.last_clusters, seen.last_removed) = (s.routes.len(), s.clusters.len(), 0);
        } else if let Some(d) = &update.delta {
            seen.deltas += 1;
            seen.last_kind = "delta";
            seen.last_routes = d.routes.len();
            seen.last_clusters = d.clusters.len();
            seen.last_removed = d.removed_routes.len() + d.removed_clusters.len();
        }
    }
    seen.version = update.version.clone();
    Kind::Ack(Ack {
        version: update.version.clone(),
        nonce: update.nonce.clone(),
    })
}

/// The control plane's current version.
async fn version_of(cp: &ControlPlane) -> Result<String> {
    Ok(cp.snapshot().await?["version"]
        .as_str()
        .unwrap_or_default()
        .to_string())
}

/// A sample of berth-control's /metrics, if present.
async fn metric(cp: &ControlPlane, name: &str) -> Result<Option<f64>> {
    let text = reqwest::get(format!("http://{}/metrics", cp.admin_addr))
        .await?
        .text()
        .await?;
    Ok(text
        .lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok()))
}

/// Waits until every client in `clients` holds `version`.
async fn converge(clients: &[Arc<Mutex<Seen>>], version: &str, what: &str) -> Result<()> {
    wait_until(what, Duration::from_secs(60), || async {
        let behind = clients
            .iter()
            .filter(|c| c.lock().expect("not poisoned").version != version)
            .count();
        Ok((behind == 0).then_some(()))
    })
    .await
    .with_context(|| {
        let mut by: std::collections::BTreeMap<String, usize> = Default::default();
        for c in clients {
            let c = c.lock().expect("not poisoned");
            *by.entry(format!(
                "{} {} full={} deltas={} nacks={}",
                c.version, c.last_kind, c.full, c.deltas, c.nacks
            ))
            .or_default() += 1;
        }
        format!("streams by what they hold: {by:#?}")
    })
}

/// The catalog of the fleet test: the 10,000 services (one instance each, over 20 nodes).
const SERVICES: usize = 10_000;
const NODES: usize = 20;
/// Subscribed protocol streams, besides the stuck one and the two real proxies.
const STREAMS: usize = 1000;
const CONNECTIONS: usize = 10;

fn host(i: usize) -> String {
    format!("svc-{i}.example")
}

/// Waits until `proxy` answers `status` for `host`.
async fn wait_status(proxy: &Proxy, host: &str, status: u16) -> Result<()> {
    wait_until(
        &format!("{} to answer {status} for {host}", proxy.node_id),
        Duration::from_secs(30),
        || async { Ok((proxy.get(host, "/").await?.status == status).then_some(())) },
    )
    .await
}

/// The fleet: 10,000 services in a real Consul, a real berth-control (debug build), a
/// thousand subscribed protocol streams in this process plus one stuck stream, and two real
/// berth-proxy processes. The thousand first full snapshots of the 10,000-service catalog are
/// about 1,000 × 1.6 MB through HTTP/2 on loopback: affordable in the debug profile on two cores
/// because berth-control encodes the snapshot once for every stream and the test's clients keep
/// routes and clusters as bytes (see [`LightUpdate`]); the real proxies decode and apply all of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_streams_get_deltas_the_size_of_the_change_and_bursts_are_coalesced() -> Result<()> {
    let started = std::time::Instant::now();
    let consul = Consul::start().await?;
    let api = consul.api();
    let backend = Backend::start("svc", "backend-0").await?;
    let registrations: Vec<Registration> = (0..SERVICES)
        .map(|i| {
            let name = format!("svc-{i}");
            Registration::traefik(
                &format!("host-{}", i % NODES),
                &name,
                &name,
                backend.port,
                &host(i),
            )
        })
        .collect();
    api.register_many(&registrations).await?;
    let registered = started.elapsed();
    // The ACK deadline counts from the push being queued, and the thousand first snapshots leave
    // one after the other (about 1.5 GB in all: 12 to 23 s in the debug profile on two shared
    // cores): a deadline of 45 s, not a short one, lest the last streams be dropped before their
    // snapshot is even sent.
    let cp = ControlPlane::start(&consul, &["--stream-ack-timeout", "45s"])?;
    let first = wait_until(
        "berth-control to route every service",
        Duration::from_secs(60),
        || async {
            let snapshot = cp.snapshot().await?;
            Ok((berth_tests::route_count(&snapshot) == SERVICES).then_some(snapshot))
        },
    )
    .await
    .with_context(|| cp.proc.logs())?;
    let v1 = first["version"].as_str().unwrap_or_default().to_string();
    let compiled = started.elapsed();

    // A thousand streams over ten connections, one of them stuck, and two real proxies.
    let mut channels = Vec::new();
    for _ in 0..CONNECTIONS {
        channels.push(
            tonic::transport::Endpoint::from_shared(cp.url())?
                .connect()
                .await?,
        );
    }
    let clients: Vec<Arc<Mutex<Seen>>> = (0..STREAMS).map(|_| Arc::default()).collect();
    let failures = Arc::new(AtomicUsize::new(0));
    for (i, seen) in clients.iter().enumerate() {
        let (channel, seen, failures) = (channels[i % CONNECTIONS].clone(), seen.clone(), failures.clone());
        tokio::spawn(async move {
            if client(channel, format!("fleet-{i}"), seen, false).await.is_err() {
                failures.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    let stuck = Arc::new(Mutex::new(Seen::default()));
    tokio::spawn(client(channels[0].clone(), "stuck".into(), stuck.clone(), true));
    let proxies = [
        Proxy::start("fleet-proxy-1", &cp.url())?,
        Proxy::start("fleet-proxy-2", &cp.url())?,
    ];
    converge(&clients, &v1, "every stream to hold the first version").await?;
    let converged = started.elapsed();
    for proxy in &proxies {
        proxy.wait_version(&v1).await?;
    }
    let full_bytes = clients[0].lock().expect("not poisoned").last_bytes;
    for seen in &clients {
        let seen = seen.lock().expect("not poisoned");
        assert_eq!((seen.full, seen.held.routes.len()), (1, SERVICES), "{seen:?}");
    }
    // The real proxies route the catalog: 100 hosts spread over it, the first and the last.
    for i in (0..100)
        .map(|k| k * SERVICES / 100 + k % 7)
        .chain([0, SERVICES - 1])
    {
        for proxy in &proxies {
            let answer = proxy.get(&host(i), "/").await?;
            anyhow::ensure!(
                answer.status == 200 && answer.instance() == Some("backend-0"),
                "{} on {}: {} from {:?}",
                host(i),
                proxy.node_id,
                answer.status,
                answer.instance()
            );
        }
    }
    let routed = started.elapsed();

    // One service changes: every stream receives a delta of that one cluster, whose size does
    // not depend on the catalog's.
    let extra = Backend::start("svc", "extra").await?;
    let tags: Vec<&str> = registrations[7].tags.iter().map(String::as_str).collect();
    consul
        .register_instance("svc-7", "svc-7-b", extra.port, &tags, false)
        .await?;
    let v2 = wait_until("a new version", Duration::from_secs(15), || async {
        let v = version_of(&cp).await?;
        Ok((v != v1).then_some(v))
    })
    .await?;
    converge(&clients, &v2, "every stream to hold the changed version").await?;
    for proxy in &proxies {
        proxy.wait_version(&v2).await?;
    }
    for seen in &clients {
        let seen = seen.lock().expect("not poisoned");
        assert_eq!(
            (
                seen.last_kind,
                seen.last_routes,
                seen.last_clusters,
                seen.last_removed,
                seen.nacks
            ),
            ("delta", 0, 1, 0, 0),
            "{seen:?}"
        );
        assert_eq!(seen.held.routes.len(), SERVICES);
        assert!(
            seen.last_bytes < 1024,
            "a one-cluster delta of {} bytes",
            seen.last_bytes
        );
    }
    let delta_bytes = clients[0].lock().expect("not poisoned").last_bytes;
    // The real proxies route the new instance too.
    let snapshot = proxies[0].snapshot().await?;
    assert!(
        snapshot.to_string().contains(&extra.port.to_string()),
        "{snapshot}"
    );

    // One service removed from the catalog: a delta naming its route and cluster.
    api.deregister_service(&registrations[SERVICES - 1]).await?;
    let v_removed = wait_until("the removal to be published", Duration::from_secs(15), || async {
        let snapshot = cp.snapshot().await?;
        Ok((berth_tests::route_count(&snapshot) == SERVICES - 1)
            .then(|| snapshot["version"].as_str().unwrap_or_default().to_string()))
    })
    .await?;
    converge(
        &clients,
        &v_removed,
        "every stream to hold the version without the service",
    )
    .await?;
    for seen in &clients {
        let seen = seen.lock().expect("not poisoned");
        assert_eq!(
            (
                seen.last_kind,
                seen.last_routes,
                seen.last_clusters,
                seen.last_removed
            ),
            ("delta", 0, 0, 2),
            "{seen:?}"
        );
        assert_eq!(seen.held.routes.len(), SERVICES - 1);
        assert!(!seen
            .held
            .routes
            .iter()
            .any(|r| r.contains(&format!("svc-{}", SERVICES - 1))));
    }
    for proxy in &proxies {
        wait_status(proxy, &host(SERVICES - 1), 404).await?;
    }

    // The stuck stream never answered: it is dropped, the others were never held back.
    wait_until(
        "the stuck stream to be dropped",
        Duration::from_secs(60),
        || async {
            Ok((metric(&cp, "berth_control_streams_timed_out_total").await? >= Some(1.0)).then_some(()))
        },
    )
    .await?;
    assert_eq!(stuck.lock().expect("not poisoned").full, 0);

    // A burst: fifty instances of one service registered one after the other.
    let before = clients[0].lock().expect("not poisoned").deltas;
    let burst: Vec<Registration> = (0..50)
        .map(|i| {
            let mut r = registrations[11].clone();
            r.id = format!("svc-11-burst-{i}");
            r
        })
        .collect();
    for registration in &burst {
        api.set_services(std::slice::from_ref(registration)).await?;
    }
    let v3 = wait_until("the burst to be published", Duration::from_secs(15), || async {
        let snapshot = cp.snapshot().await?;
        let endpoints = snapshot["routes"]
            .as_array()
            .and_then(|routes| routes.iter().find(|r| r["service"] == "svc-11"))
            .and_then(|r| r["endpoints"].as_array())
            .map_or(0, Vec::len);
        Ok((endpoints == 51).then(|| snapshot["version"].as_str().unwrap_or_default().to_string()))
    })
    .await?;
    converge(&clients, &v3, "every stream to hold the version after the burst").await?;
    let pushes = clients[0].lock().expect("not poisoned").deltas - before;
    assert!(
        (1..=15).contains(&pushes),
        "fifty changes reached a stream as {pushes} deltas"
    );

    // The admin API lists every stream that answers, none behind; the metrics agree.
    let list = cp.proxies().await?;
    let list = list.as_array().context("a list")?;
    assert_eq!(list.len(), STREAMS + proxies.len(), "the stuck stream is gone");
    for proxy in list {
        assert_eq!(proxy["behind"], false, "{proxy}");
        assert_eq!(proxy["acked_version"], v3.as_str(), "{proxy}");
        assert_eq!(proxy["lag_seconds"], 0.0, "{proxy}");
        assert!(
            proxy["peer"].is_string() && proxy["connected_since"].is_string(),
            "{proxy}"
        );
    }
    assert_eq!(metric(&cp, "berth_control_proxies_behind").await?, Some(0.0));
    let deltas = metric(&cp, "berth_control_pushes_total{kind=\"delta\"}")
        .await?
        .unwrap_or(0.0);
    assert!(deltas >= (STREAMS * 3) as f64, "{deltas} deltas pushed");
    assert_eq!(failures.load(Ordering::Relaxed), 0, "a stream failed");
    eprintln!(
        "{SERVICES} services, {STREAMS} streams: registered at {registered:?}, compiled at \
         {compiled:?}, every stream on the first snapshot ({full_bytes} bytes) at {converged:?}, \
         proxies routing at {routed:?}; one-service delta {delta_bytes} bytes; burst of 50 as \
         {pushes} deltas; done at {:?}",
        started.elapsed()
    );
    Ok(())
}

#[tokio::test]
async fn replicas_agree_and_a_proxy_fails_over_without_applying_again() -> Result<()> {
    let consul = Consul::start().await?;
    let _article = Article::start(&consul).await?;
    let mut first = ControlPlane::start(&consul, &[])?;
    let second = ControlPlane::start(&consul, &[])?;
    let routed = |s: &serde_json::Value| berth_tests::route_count(s) == 2;
    let v1 = first.wait_snapshot("the article's routes", routed).await?["version"].clone();
    let v1_second = second.wait_snapshot("the article's routes", routed).await?["version"].clone();
    assert_eq!(v1, v1_second, "two replicas of one catalog name it alike");
    let v1 = v1.as_str().unwrap_or_default().to_string();

    let proxy = Proxy::start("failover", &format!("{},{}", first.url(), second.url()))?;
    proxy.wait_version(&v1).await?;
    first.proc.kill();

    // The proxy moves to the second replica, which confirms its version: nothing re-applied.
    wait_until(
        "the proxy on the second replica",
        Duration::from_secs(30),
        || async {
            let list = second.proxies().await?;
            Ok((list[0]["acked_version"] == v1.as_str()).then_some(()))
        },
    )
    .await
    .with_context(|| proxy.proc.logs())?;
    assert_eq!(
        metric(&second, "berth_control_pushes_total{kind=\"full\"}").await?,
        Some(0.0)
    );
    assert_eq!(
        metric(&second, "berth_control_pushes_total{kind=\"up_to_date\"}").await?,
        Some(1.0)
    );

    // A change reaches it from the second replica as a delta.
    let extra = Backend::start("web_go", "go-extra").await?;
    consul
        .register_instance("web_go", "go-extra", extra.port, &GO_TAGS, false)
        .await?;
    let v2 = wait_until("a new version", Duration::from_secs(15), || async {
        let v = version_of(&second).await?;
        Ok((v != v1).then_some(v))
    })
    .await?;
    proxy.wait_version(&v2).await?;
    assert_eq!(
        metric(&second, "berth_control_pushes_total{kind=\"delta\"}").await?,
        Some(1.0)
    );
    let applied = proxy.proc.logs().matches("applied snapshot").count();
    if applied != 2 {
        bail!(
            "the proxy applied {applied} snapshots, expected 2 (the first, then the delta):\n{}",
            proxy.proc.logs()
        );
    }
    Ok(())
}
