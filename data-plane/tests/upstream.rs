//! A cluster's own timeouts, the retry of requests that never reached a backend, and the pooled
//! backend connections (reused one request after another, closed once idle past the idle
//! timeout, never reused once the backend closed them), against the real `berth-proxy` binary
//! fed by an in-process control plane (no Consul needed).

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_proto::v1::middleware::Kind as M;
use berth_proto::v1::{Retry, RetryPolicy, Timeouts};
use bytes::Bytes;
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

/// A proxy fed by an in-process control plane (its hello received), an address that refuses
/// connections and a live backend named `live`: the endpoints of the retry tests.
async fn dead_and_live() -> (FakeControlPlane, ProxyProcess, SocketAddr, Backend) {
    let mut cp = FakeControlPlane::start().await;
    let dead = dead_addr().await;
    let live = Backend::start("live").await;
    let proxy = ProxyProcess::start(&[cp.url()], &[]).await;
    cp.expect_hello().await;
    (cp, proxy, dead, live)
}

#[tokio::test]
async fn requests_that_never_reached_a_backend_go_to_another() {
    let (mut cp, proxy, dead, live) = dead_and_live().await;
    let addr = proxy.http_addr();
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

/// A retried request reaches the next endpoint with the head a request sent once carries: the
/// same headers, `X-Forwarded-For` naming the client once.
#[tokio::test]
async fn a_retried_request_carries_the_head_of_one_sent_once() {
    let (mut cp, proxy, dead, live) = dead_and_live().await;
    let addr = proxy.http_addr();
    let mut both = cluster("both", vec![endpoint(dead), endpoint(live.addr)]);
    // The refusing endpoint stays in the rotation, so requests keep meeting it first.
    both.passive_health = Some(berth_proto::v1::PassiveHealth {
        disabled: true,
        ..Default::default()
    });
    cp.push(update(
        "v1",
        "n1",
        vec![route("both", &["both.example"], "", "both")],
        vec![both],
    ));
    cp.expect_ack().await;
    let mut seen = Vec::new();
    for _ in 0..4 {
        let (status, _, body) = send(
            addr,
            "GET",
            "both.example",
            "/a?b=c",
            &[
                ("x-forwarded-for", "198.51.100.7"),
                ("te", "trailers"),
                ("x-kept", "1"),
            ],
        )
        .await
        .expect("request");
        assert_eq!(status, StatusCode::OK, "{body}");
        let mut echoed = echo(&body);
        echoed["headers"]
            .as_object_mut()
            .expect("headers")
            .remove("x-request-id");
        seen.push(echoed);
    }
    let (_, metrics) = proxy.admin_get("/metrics").await;
    let retries = metrics
        .lines()
        .find(|l| l.starts_with("berth_proxy_retries_total{cluster=\"both\"}"))
        .and_then(|l| l.rsplit_once(' '))
        .and_then(|(_, n)| n.parse::<f64>().ok())
        .unwrap_or(0.0);
    assert!(retries >= 1.0, "no request was retried:\n{metrics}");
    for echoed in &seen[1..] {
        assert_eq!(echoed, &seen[0]);
    }
    assert_eq!(seen[0]["headers"]["x-forwarded-for"], "127.0.0.1", "{}", seen[0]);
    assert_eq!(seen[0]["headers"]["x-kept"], "1", "{}", seen[0]);
}

/// A proxy with one worker, one route `pool.example` to the backend at `backend` and the given
/// extra flags.
async fn one_worker_proxy(backend: SocketAddr, flags: &[&str]) -> (FakeControlPlane, ProxyProcess) {
    let mut cp = FakeControlPlane::start().await;
    let mut args = vec!["--workers", "1"];
    args.extend_from_slice(flags);
    let proxy = ProxyProcess::start(&[cp.url()], &args).await;
    cp.expect_hello().await;
    cp.push(update(
        "v1",
        "n1",
        vec![route("pool", &["pool.example"], "", "pool")],
        vec![cluster("pool", vec![endpoint(backend)])],
    ));
    cp.expect_ack().await;
    (cp, proxy)
}

#[tokio::test]
async fn requests_one_after_another_share_one_backend_connection() {
    let backend = Backend::start("b").await;
    let (_cp, proxy) = one_worker_proxy(backend.addr, &[]).await;
    for i in 0..10 {
        let (status, _, body) = must_get(proxy.http_addr(), "pool.example", &format!("/{i}")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(echo(&body)["path"], format!("/{i}"));
    }
    assert_eq!(
        backend.connections(),
        1,
        "each request reused the first connection"
    );
    assert_eq!(backend.open_connections(), 1, "and it is kept open for the next");
}

#[tokio::test]
async fn a_backend_connection_idle_past_the_idle_timeout_is_closed() {
    let backend = Backend::start("b").await;
    let (_cp, proxy) = one_worker_proxy(backend.addr, &["--backend-idle-timeout", "1s"]).await;
    let (status, _, _) = must_get(proxy.http_addr(), "pool.example", "/").await;
    assert_eq!(status, StatusCode::OK);
    let idle_since = Instant::now();
    assert_eq!(backend.open_connections(), 1);
    // No further request comes: the pool closes it once idle past the timeout.
    eventually("the idle backend connection to close", || async {
        (backend.open_connections() == 0).then_some(())
    })
    .await;
    assert!(
        idle_since.elapsed() >= Duration::from_millis(900),
        "closed after {:?}, before its idle timeout",
        idle_since.elapsed()
    );
    // The next request opens a new connection.
    let (status, _, _) = must_get(proxy.http_addr(), "pool.example", "/").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(backend.connections(), 2);
}

#[tokio::test]
async fn a_pooled_connection_the_backend_closed_is_not_used_again() {
    // Answers one request per connection, then closes it without saying so (no
    // `Connection: close`), as a backend with a short keep-alive timeout does.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let closed = Arc::new(AtomicUsize::new(0));
    let (counter, closed_c) = (accepted.clone(), closed.clone());
    let server = tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut stream, _)) = listener.accept().await {
            let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
            let closed = closed_c.clone();
            tokio::spawn(async move {
                // The head, then the body its Content-Length announces (read whole: closing
                // with unread bytes would reset the connection instead).
                let mut got = Vec::new();
                let mut buf = [0u8; 1024];
                let complete = |got: &[u8]| {
                    let end = got.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
                    let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
                    let length = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .map_or(0, |v| v.trim().parse::<usize>().unwrap_or(0));
                    (got.len() >= end + length).then_some(())
                };
                while complete(&got).is_none() {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(read) => got.extend_from_slice(&buf[..read]),
                    }
                }
                let body = format!("connection {n}");
                let answer = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}", body.len());
                let _ = stream.write_all(answer.as_bytes()).await;
                drop(stream);
                closed.fetch_add(1, Ordering::SeqCst);
            });
        }
    });
    let (_cp, proxy) = one_worker_proxy(addr, &[]).await;
    // POSTs with a body: neither the cluster's retry policy nor `upstream` would send one again,
    // so each must go out on a connection that is still open (or be handed back unsent).
    for i in 1..=5 {
        let (status, body) = post(
            proxy.http_addr(),
            "pool.example",
            "/",
            Bytes::from_static(b"payload"),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "request {i}: {body}");
        assert_eq!(body, format!("connection {i}"));
        // The next request comes once the backend has closed this connection.
        eventually("the backend to close the connection", || async {
            (closed.load(Ordering::SeqCst) == i).then_some(())
        })
        .await;
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 5);
    server.abort();
}
