//! A cluster's own timeouts and the retry of requests that never reached a backend, against the
//! real `berth-proxy` binary fed by an in-process control plane (no Consul needed).

mod support;

use std::time::{Duration, Instant};

use berth_proto::v1::middleware::Kind as M;
use berth_proto::v1::{Retry, RetryPolicy, Timeouts};
use http::StatusCode;
use support::*;

#[tokio::test]
async fn a_clusters_own_timeouts_override_the_proxys() {
    let mut cp = FakeControlPlane::start().await;
    let blackhole = BlackholeBackend::start().await;
    let backend = Backend::start("b").await;
    let proxy = ProxyProcess::start(
        &[cp.url()],
        &[
            "--connect-timeout",
            "20s",
            "--request-timeout",
            "20s",
            "--backend-idle-timeout",
            "1s",
        ],
    )
    .await;
    let addr = proxy.http_addr();
    cp.expect_hello().await;
    let mut quick = cluster("quick", vec![endpoint(blackhole.addr)]);
    quick.timeouts = Some(Timeouts {
        connect_ms: 200,
        ..Default::default()
    });
    let mut own = cluster("own", vec![endpoint(backend.addr)]);
    own.timeouts = Some(Timeouts {
        connect_ms: 500,
        first_byte_ms: 300,
        idle_ms: 100,
    });
    cp.push(update(
        "v1",
        "n1",
        vec![
            route("quick", &["quick.example"], "", "quick"),
            route("own", &["own.example"], "", "own"),
        ],
        vec![quick, own],
    ));
    cp.expect_ack().await;

    // 200ms to connect, not the flag's 20s (and not retried on the only endpoint).
    let started = Instant::now();
    let (status, headers, _) = must_get(addr, "quick.example", "/").await;
    let took = started.elapsed();
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(headers["x-berth-error"], "backend-connect-timeout");
    assert!(took < Duration::from_secs(3), "took {took:?}");

    // A cluster with its own connect and idle timeouts (its own pooled client) works, again and
    // again, and its first-byte timeout applies.
    for _ in 0..3 {
        let (status, _, body) = must_get(addr, "own.example", "/x").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(echo(&body)["backend"], "b");
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let started = Instant::now();
    let (status, headers, _) = must_get(addr, "own.example", "/hold").await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(headers["x-berth-error"], "backend-timeout");
    assert!(started.elapsed() < Duration::from_secs(3));
    backend.release();
}

#[tokio::test]
async fn requests_that_never_reached_a_backend_go_to_another() {
    let mut cp = FakeControlPlane::start().await;
    let dead = dead_addr().await;
    let live = Backend::start("live").await;
    let proxy = ProxyProcess::start(&[cp.url()], &[]).await;
    let addr = proxy.http_addr();
    cp.expect_hello().await;
    let mut no_retry = cluster("off", vec![endpoint(dead), endpoint(live.addr)]);
    no_retry.retry = Some(RetryPolicy {
        disabled: true,
        ..Default::default()
    });
    no_retry.passive_health = Some(berth_proto::v1::PassiveHealth {
        disabled: true,
        ..Default::default()
    });
    let mut middleware_retry = no_retry.clone();
    middleware_retry.name = "mw".into();
    cp.push(update(
        "v1",
        "n1",
        vec![
            route("on", &["on.example"], "", "on"),
            route("off", &["off.example"], "", "off"),
            chain(
                route("mw", &["mw.example"], "", "mw"),
                vec![(
                    "again",
                    M::Retry(Retry {
                        attempts: 2,
                        initial_interval_ms: 0,
                    }),
                )],
            ),
        ],
        vec![
            cluster("on", vec![endpoint(dead), endpoint(live.addr)]),
            no_retry,
            middleware_retry,
        ],
    ));
    cp.expect_ack().await;
    let mut statuses = std::collections::BTreeMap::new();
    for host in ["on.example", "off.example", "mw.example"] {
        for method in ["GET", "POST"] {
            for _ in 0..4 {
                let (status, _, _) = send(addr, method, host, "/", &[]).await.expect("request");
                *statuses.entry((host, method, status.as_u16())).or_insert(0) += 1;
            }
        }
    }
    let expected: std::collections::BTreeMap<(&str, &str, u16), i32> = [
        // The cluster's policy: idempotent methods retried; the refusing endpoint is ejected at
        // once, so a POST after the first GET no longer meets it.
        (("on.example", "GET", 200), 4),
        (("on.example", "POST", 200), 4),
        // No retries, no ejection: every other request meets the dead endpoint.
        (("off.example", "GET", 200), 2),
        (("off.example", "GET", 502), 2),
        (("off.example", "POST", 200), 2),
        (("off.example", "POST", 502), 2),
        // Traefik's retry middleware: any method, when the request was never sent.
        (("mw.example", "GET", 200), 4),
        (("mw.example", "POST", 200), 4),
    ]
    .into_iter()
    .collect();
    assert_eq!(statuses, expected);
}
