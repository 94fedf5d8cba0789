//! Balancing, passive health, retries and per-service timeouts, end to end: real Consul,
//! berth-control and berth-proxy, berth-demo backends, settings from `berth.*` and Traefik tags.
//! No Consul health check is registered: what the proxy does, it does from its own requests.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_tests::{bin, http, wait_until, Backend, Consul, ControlPlane, Proc, Proxy, Result};

/// Consul, berth-control and one proxy.
struct Fleet {
    consul: Consul,
    _cp: ControlPlane,
    proxy: Proxy,
}

impl Fleet {
    async fn start() -> Result<Fleet> {
        let consul = Consul::start().await?;
        let cp = ControlPlane::start(&consul, &[])?;
        cp.wait_ready().await?;
        let proxy = Proxy::start("upstream", &cp.url())?;
        Ok(Fleet {
            consul,
            _cp: cp,
            proxy,
        })
    }

    /// Registers `backends` as instances of `service`, routed for Host `<service>.example`, each
    /// with the common `tags` and its own `per_instance` ones (by position; may be shorter).
    async fn register(
        &self,
        service: &str,
        backends: &[&Backend],
        tags: &[&str],
        per_instance: &[&[&str]],
    ) -> Result<()> {
        let rule = format!("traefik.http.routers.{service}.rule=Host(`{service}.example`)");
        for (i, backend) in backends.iter().enumerate() {
            let mut all: Vec<&str> = vec!["traefik.enable=true", &rule];
            all.extend_from_slice(tags);
            if let Some(own) = per_instance.get(i) {
                all.extend_from_slice(own);
            }
            self.consul
                .register_instance(service, &backend.name, backend.port, &all, false)
                .await?;
        }
        Ok(())
    }

    /// Waits until every one of `names` has served `host`.
    async fn wait_served_by(&self, host: &str, names: &[&str]) -> Result<()> {
        wait_until(
            &format!("{host} to be served by {names:?}"),
            Duration::from_secs(20),
            || async {
                let seen = spread(&self.proxy, host, 3 * names.len())
                    .await
                    .unwrap_or_default();
                Ok(names.iter().all(|n| seen.contains_key(*n)).then_some(()))
            },
        )
        .await
        .map_err(|e| anyhow::anyhow!("{e}\n{}", self.proxy.proc.logs()))
    }
}

/// `n` sequential requests for `host`: which instance answered each (non-200 answers count as
/// `status <code>`).
async fn spread(proxy: &Proxy, host: &str, n: usize) -> Result<BTreeMap<String, usize>> {
    let mut seen = BTreeMap::new();
    for _ in 0..n {
        let answer = proxy.get(host, "/").await?;
        let key = if answer.status == 200 {
            answer.instance().unwrap_or("?").to_string()
        } else {
            format!("status {}", answer.status)
        };
        *seen.entry(key).or_insert(0) += 1;
    }
    Ok(seen)
}

fn counts(pairs: &[(&str, usize)]) -> BTreeMap<String, usize> {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

#[tokio::test]
async fn each_balancing_policy_spreads_as_it_says() -> Result<()> {
    let fleet = Fleet::start().await?;
    let weights: [&[&str]; 3] = [
        &["traefik.http.services.s.loadbalancer.server.weight=1"],
        &["traefik.http.services.s.loadbalancer.server.weight=2"],
        &["traefik.http.services.s.loadbalancer.server.weight=3"],
    ];
    let mut backends = Vec::new();
    for (service, policy) in [
        ("wrr", "berth.lb.policy=weighted_round_robin"),
        ("rr", "berth.lb.policy=round_robin"),
        ("lr", "berth.lb.policy=least_request"),
        ("p2c", "traefik.http.services.s.loadbalancer.strategy=p2c"),
    ] {
        let group = [
            Backend::start(service, &format!("{service}-1")).await?,
            Backend::start(service, &format!("{service}-2")).await?,
            Backend::start(service, &format!("{service}-3")).await?,
        ];
        let refs: Vec<&Backend> = group.iter().collect();
        fleet.register(service, &refs, &[policy], &weights).await?;
        backends.push(group);
    }
    for (service, first) in [("wrr", 1), ("rr", 1), ("lr", 2), ("p2c", 2)] {
        // Least request never picks lr-1 while nothing is in flight (see below).
        let names: Vec<String> = (first..=3).map(|i| format!("{service}-{i}")).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        fleet
            .wait_served_by(&format!("{service}.example"), &names)
            .await?;
    }
    // Any 60 requests in a row are 10 whole cycles of the weighted order.
    assert_eq!(
        spread(&fleet.proxy, "wrr.example", 60).await?,
        counts(&[("wrr-1", 10), ("wrr-2", 20), ("wrr-3", 30)])
    );
    assert_eq!(
        spread(&fleet.proxy, "rr.example", 60).await?,
        counts(&[("rr-1", 20), ("rr-2", 20), ("rr-3", 20)])
    );
    // Sequential requests leave nothing in flight: two random choices, the heavier weight wins
    // a tie, so the weight-1 endpoint is never chosen and weight 3 wins each draw it is in.
    for service in ["lr", "p2c"] {
        let seen = spread(&fleet.proxy, &format!("{service}.example"), 60).await?;
        assert_eq!(seen.values().sum::<usize>(), 60, "{seen:?}");
        assert_eq!(seen.get(&format!("{service}-1")), None, "{service}: {seen:?}");
        assert!(
            seen.get(&format!("{service}-3")).copied().unwrap_or(0) > 25,
            "{service}: {seen:?}"
        );
    }
    Ok(())
}

/// A steady GET load over keep-alive connections: `clients` concurrent clients, `each` requests
/// apiece; every status, in order.
async fn load(
    addr: String,
    host: &'static str,
    clients: usize,
    each: usize,
    done: Arc<AtomicUsize>,
) -> Vec<u16> {
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (addr, done) = (addr.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            let client = reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("client");
            let mut statuses = Vec::with_capacity(each);
            for _ in 0..each {
                let status = match client
                    .get(format!("http://{addr}/"))
                    .header("host", host)
                    .send()
                    .await
                {
                    Ok(r) => {
                        let status = r.status().as_u16();
                        let _ = r.bytes().await;
                        status
                    }
                    Err(_) => 0,
                };
                statuses.push(status);
                done.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            statuses
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.expect("load task"));
    }
    all
}

#[tokio::test]
async fn a_backend_killed_under_load_costs_clients_nothing_and_is_readmitted_when_back() -> Result<()> {
    let fleet = Fleet::start().await?;
    let one = Backend::start("shop", "shop-1").await?;
    let two = Backend::start("shop", "shop-2").await?;
    let mut three = Backend::start("shop", "shop-3").await?;
    fleet
        .register(
            "shop",
            &[&one, &two, &three],
            &["berth.health.ejection=300ms", "berth.health.max_ejection=1s"],
            &[],
        )
        .await?;
    fleet
        .wait_served_by("shop.example", &["shop-1", "shop-2", "shop-3"])
        .await?;

    // 4 clients × 100 GETs over keep-alive connections; shop-3 gets SIGKILL a quarter of the way.
    let done = Arc::new(AtomicUsize::new(0));
    let running = tokio::spawn(load(
        fleet.proxy.http_addr.clone(),
        "shop.example",
        4,
        100,
        done.clone(),
    ));
    wait_until("a quarter of the load", Duration::from_secs(30), || async {
        Ok((done.load(Ordering::SeqCst) >= 100).then_some(()))
    })
    .await?;
    three.proc.kill();
    let statuses = running.await.expect("load");
    let failed: Vec<&u16> = statuses.iter().filter(|s| **s != 200).collect();
    assert_eq!(statuses.len(), 400);
    assert!(
        failed.is_empty(),
        "{} of 400 requests failed: {failed:?}\n{}",
        failed.len(),
        fleet.proxy.proc.logs()
    );
    let logs = fleet.proxy.proc.logs();
    assert!(logs.contains("endpoint ejected"), "{logs}");

    // shop-3 comes back on its port: readmitted once its ejection ends, it serves again.
    let listen = format!("127.0.0.1:{}", three.port);
    let _back = Proc::spawn(
        "shop-3-again",
        &bin("berth-demo"),
        &["--listen", &listen, "--name", "shop-3", "--service", "shop"],
        &[],
    )?;
    wait_until("shop-3 to answer again", Duration::from_secs(10), || async {
        Ok((http::status(&format!("http://{listen}/health")).await.ok() == Some(200)).then_some(()))
    })
    .await?;
    fleet.wait_served_by("shop.example", &["shop-3"]).await?;
    let seen = spread(&fleet.proxy, "shop.example", 30).await?;
    assert_eq!(seen.len(), 3, "all three serve again: {seen:?}");
    assert!(seen.keys().all(|k| k.starts_with("shop-")), "{seen:?}");
    Ok(())
}

#[tokio::test]
async fn a_refused_connection_is_retried_and_retries_can_be_switched_off() -> Result<()> {
    let fleet = Fleet::start().await?;
    let up = Backend::start("steady", "steady-1").await?;
    let mut down = Backend::start("steady", "steady-2").await?;
    let on = Backend::start("fragile", "fragile-1").await?;
    let mut off = Backend::start("fragile", "fragile-2").await?;
    fleet.register("steady", &[&up, &down], &[], &[]).await?;
    fleet
        .register(
            "fragile",
            &[&on, &off],
            &["berth.retry=false", "berth.health=false"],
            &[],
        )
        .await?;
    fleet
        .wait_served_by("steady.example", &["steady-1", "steady-2"])
        .await?;
    fleet
        .wait_served_by("fragile.example", &["fragile-1", "fragile-2"])
        .await?;
    down.proc.kill();
    off.proc.kill();
    // Retried on the other endpoint (and then ejected): every request succeeds.
    let seen = spread(&fleet.proxy, "steady.example", 20).await?;
    assert_eq!(seen, counts(&[("steady-1", 20)]));
    // Neither retried nor ejected: every other request fails.
    let seen = spread(&fleet.proxy, "fragile.example", 20).await?;
    assert_eq!(seen, counts(&[("fragile-1", 10), ("status 502", 10)]));
    Ok(())
}

#[tokio::test]
async fn a_services_first_byte_timeout_comes_from_its_tags() -> Result<()> {
    let fleet = Fleet::start().await?;
    let slow = Backend::start("slow", "slow-1").await?;
    let patient = Backend::start("patient", "patient-1").await?;
    fleet
        .register(
            "slow",
            &[&slow],
            &["berth.timeout.first_byte=300ms", "berth.timeout.connect=1s"],
            &[],
        )
        .await?;
    fleet.register("patient", &[&patient], &[], &[]).await?;
    fleet.wait_served_by("slow.example", &["slow-1"]).await?;
    fleet.wait_served_by("patient.example", &["patient-1"]).await?;

    let started = Instant::now();
    let answer = fleet.proxy.get("slow.example", "/slow?ms=3000").await?;
    let took = started.elapsed();
    assert_eq!(answer.status, 504, "{answer:?}");
    assert!(took < Duration::from_millis(2500), "answered after {took:?}");
    assert!(took >= Duration::from_millis(300), "answered after {took:?}");
    assert_eq!(fleet.proxy.get("slow.example", "/slow?ms=10").await?.status, 200);
    // Another service keeps the proxy's default (30s).
    assert_eq!(
        fleet.proxy.get("patient.example", "/slow?ms=800").await?.status,
        200
    );
    Ok(())
}

#[tokio::test]
async fn a_bad_berth_tag_rejects_the_services_routes_only() -> Result<()> {
    let fleet = Fleet::start().await?;
    let good = Backend::start("good", "good-1").await?;
    let bad = Backend::start("bad", "bad-1").await?;
    fleet
        .register("good", &[&good], &["berth.lb.policy=round_robin"], &[])
        .await?;
    fleet
        .register("bad", &[&bad], &["berth.lb.policy=fastest"], &[])
        .await?;
    fleet.wait_served_by("good.example", &["good-1"]).await?;
    // The error is reported where route errors are (the control plane's snapshot view).
    let url = format!("http://{}/api/snapshot", fleet._cp.admin_addr);
    let text = wait_until("the bad tag to be reported", Duration::from_secs(15), || async {
        let text = http::get_json(&url).await?.to_string();
        Ok(text.contains("berth.lb.policy=fastest").then_some(text))
    })
    .await?;
    assert!(
        text.contains("round_robin"),
        "the error says what is allowed: {text}"
    );
    let answer = fleet.proxy.get("bad.example", "/").await?;
    assert_eq!(answer.status, 404, "{answer:?}");
    Ok(())
}
