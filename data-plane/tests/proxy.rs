//! End-to-end tests of the real `berth-proxy` binary against an in-process control plane and
//! in-process backends, all on 127.0.0.1.

mod support;

use std::time::Duration;

use http::StatusCode;
use support::*;

/// Routing by Host (case and port ignored), longest prefix, exact round robin, X-Forwarded-*,
/// hop-by-hop stripping, h2c, the admin API, and 503 before the first snapshot.
#[tokio::test]
async fn routes_requests_by_host() {
    let mut cp = FakeControlPlane::start().await;
    let web = [
        Backend::start("web-1").await,
        Backend::start("web-2").await,
        Backend::start("web-3").await,
    ];
    let api = Backend::start("api").await;
    let proxy = ProxyProcess::start(&[cp.url()], &[]).await;
    let addr = proxy.http_addr();

    let hello = cp.expect_hello().await;
    assert_eq!(hello.node_id, "test-proxy");
    assert_eq!(hello.entrypoints, ["http"]);
    assert_eq!(hello.version, "");
    assert!(hello.build.starts_with("berth-proxy "), "{}", hello.build);

    // Before any snapshot: 503 everywhere, health check failing.
    let (status, headers, body) = must_get(addr, "web.example", "/").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(headers["x-berth-error"], "no-snapshot");
    assert_eq!(body.trim(), "no routing snapshot applied yet");
    assert_eq!(
        proxy.admin_get("/healthz").await,
        (StatusCode::SERVICE_UNAVAILABLE, "no snapshot applied yet".into())
    );

    cp.push(update(
        "v1",
        "nonce-1",
        vec![
            route("web", &["web.example"], "", "web"),
            route("web-api", &["web.example"], "/api", "api"),
        ],
        vec![
            cluster("web", web.iter().map(|b| endpoint(b.addr)).collect()),
            cluster("api", vec![endpoint(api.addr)]),
        ],
    ));
    let ack = cp.expect_ack().await;
    assert_eq!((ack.version.as_str(), ack.nonce.as_str()), ("v1", "nonce-1"));
    assert_eq!(proxy.admin_get("/healthz").await, (StatusCode::OK, "ok".into()));

    // Round robin: exactly equal shares, whatever the Host's case and port.
    let mut counts = std::collections::HashMap::new();
    for i in 0..300 {
        let host = if i % 2 == 0 {
            "Web.Example:8080"
        } else {
            "web.example"
        };
        let (status, _, body) = must_get(addr, host, "/").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        *counts
            .entry(echo(&body)["backend"].as_str().unwrap_or_default().to_owned())
            .or_insert(0) += 1;
    }
    for b in &web {
        assert_eq!(counts.get(&b.name), Some(&100), "{counts:?}");
    }

    // Longest prefix.
    let (_, _, body) = must_get(addr, "web.example", "/api/users").await;
    assert_eq!(echo(&body)["backend"], "api");
    assert_eq!(echo(&body)["path"], "/api/users");

    // Unknown host.
    let (status, headers, body) = must_get(addr, "x.example", "/").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(headers["x-berth-error"], "no-route");
    assert_eq!(
        body.trim(),
        r#"no route for host "x.example" on entrypoint "http""#
    );

    // Headers both ways.
    let (status, headers, body) = get(
        addr,
        "Web.Example:8080",
        "/api/h",
        &[
            ("x-forwarded-for", "203.0.113.7"),
            ("connection", "x-drop-me"),
            ("x-drop-me", "1"),
            ("x-keep", "2"),
        ],
    )
    .await
    .expect("request");
    assert_eq!(status, StatusCode::OK);
    let seen = &echo(&body)["headers"];
    assert_eq!(seen["host"], "Web.Example:8080");
    assert_eq!(seen["x-forwarded-host"], "Web.Example:8080");
    assert_eq!(seen["x-forwarded-proto"], "http");
    assert_eq!(seen["x-forwarded-for"], "203.0.113.7, 127.0.0.1");
    assert_eq!(seen["x-keep"], "2");
    assert!(seen.get("x-drop-me").is_none(), "{seen}");
    assert_eq!(headers["x-backend"], "api");
    assert!(
        !headers.contains_key("x-backend-hop"),
        "response hop-by-hop headers are stripped: {headers:?}"
    );

    // HTTP/2 cleartext: the host comes from :authority.
    let (status, body) = get_h2(addr, "WEB.example:8080", "/api/h2").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let seen = echo(&body);
    assert_eq!(seen["backend"], "api");
    assert_eq!(seen["headers"]["host"], "WEB.example:8080");

    // The admin API.
    let snapshot = proxy.snapshot_json().await;
    assert_eq!(snapshot["version"], "v1");
    assert_eq!(snapshot["node_id"], "test-proxy");
    assert_eq!(snapshot["connected"], true);
    assert_eq!(snapshot["control_plane"], cp.url());
    let routes = snapshot["routes"].as_array().expect("routes");
    assert_eq!(routes.len(), 2);
    assert_eq!(routes[1]["name"], "web-api");
    assert_eq!(routes[1]["hosts"], serde_json::json!(["web.example"]));
    assert_eq!(routes[1]["path_prefix"], "/api");
    assert_eq!(routes[1]["cluster"], "api");
    assert_eq!(routes[1]["endpoints"], serde_json::json!([api.addr.to_string()]));
}

/// 503 for an empty cluster, 502 for a refused connection, 504 for a silent backend and for one
/// that does not accept the connection.
#[tokio::test]
async fn backend_failures_map_to_status_codes() {
    let mut cp = FakeControlPlane::start().await;
    let silent = SilentBackend::start().await;
    let blackhole = BlackholeBackend::start().await;
    let dead = dead_addr().await;
    let proxy = ProxyProcess::start(
        &[cp.url()],
        &["--request-timeout", "1s", "--connect-timeout", "100ms"],
    )
    .await;
    let addr = proxy.http_addr();
    cp.expect_hello().await;
    cp.push(update(
        "v1",
        "n1",
        vec![
            route("empty", &["empty.example"], "", "empty"),
            route("refused", &["refused.example"], "", "refused"),
            route("silent", &["silent.example"], "", "silent"),
            route("blackhole", &["blackhole.example"], "", "blackhole"),
        ],
        vec![
            cluster("empty", vec![]),
            cluster("refused", vec![endpoint(dead)]),
            cluster("silent", vec![endpoint(silent.addr)]),
            cluster("blackhole", vec![endpoint(blackhole.addr)]),
        ],
    ));
    cp.expect_ack().await;

    let (status, headers, body) = must_get(addr, "empty.example", "/").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(headers["x-berth-error"], "no-endpoints");
    assert_eq!(
        body.trim(),
        r#"route "empty": cluster "empty" has no healthy endpoints"#
    );

    let (status, headers, body) = must_get(addr, "refused.example", "/").await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert_eq!(headers["x-berth-error"], "backend-refused");
    assert_eq!(body.trim(), format!("backend {dead} refused the connection"));

    let started = std::time::Instant::now();
    let (status, headers, body) = must_get(addr, "silent.example", "/").await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT, "{body}");
    assert_eq!(headers["x-berth-error"], "backend-timeout");
    assert!(body.contains("sent no response headers within 1s"), "{body}");
    assert!(started.elapsed() < Duration::from_secs(5));

    let (status, headers, body) = must_get(addr, "blackhole.example", "/").await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT, "{body}");
    assert_eq!(headers["x-berth-error"], "backend-connect-timeout");
    assert_eq!(
        body.trim(),
        format!(
            "backend {} did not accept the connection within 100ms",
            blackhole.addr
        )
    );
}

/// A bad snapshot is NACKed with a reason naming the culprit, and the previous table keeps serving.
#[tokio::test]
async fn nack_keeps_the_previous_table() {
    let mut cp = FakeControlPlane::start().await;
    let one = Backend::start("one").await;
    let two = Backend::start("two").await;
    let proxy = ProxyProcess::start(&[cp.url()], &[]).await;
    let addr = proxy.http_addr();
    cp.expect_hello().await;

    cp.push(update(
        "v1",
        "n1",
        vec![route("app", &["app.example"], "", "app")],
        vec![cluster("app", vec![endpoint(one.addr)])],
    ));
    assert_eq!(cp.expect_ack().await.nonce, "n1");

    let mut bad = endpoint(two.addr);
    bad.address = "not a host!".into();
    bad.id = "app-2".into();
    cp.push(update(
        "v2",
        "n2",
        vec![route("app", &["app.example"], "", "app")],
        vec![cluster("app", vec![bad])],
    ));
    let nack = cp.expect_nack().await;
    assert_eq!((nack.version.as_str(), nack.nonce.as_str()), ("v2", "n2"));
    assert!(
        nack.error.contains(r#"cluster "app", endpoint "app-2""#),
        "{}",
        nack.error
    );
    assert!(nack.error.contains("not a host!"), "{}", nack.error);

    let (status, _, body) = must_get(addr, "app.example", "/").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(echo(&body)["backend"], "one");
    assert_eq!(proxy.snapshot_json().await["version"], "v1");

    cp.push(update(
        "v3",
        "n3",
        vec![route("app", &["app.example"], "", "app")],
        vec![cluster("app", vec![endpoint(two.addr)])],
    ));
    assert_eq!(cp.expect_ack().await.nonce, "n3");
    let (_, _, body) = must_get(addr, "app.example", "/").await;
    assert_eq!(echo(&body)["backend"], "two");

    cp.push(update(
        "v4",
        "n4",
        vec![route("app", &["app.example"], "", "ghost")],
        vec![],
    ));
    let nack = cp.expect_nack().await;
    assert_eq!(
        nack.error,
        r#"route "app" refers to cluster "ghost", which is not in the snapshot"#
    );
}

/// Swapping the table while a request is in flight does not disturb that request.
#[tokio::test]
async fn table_swap_during_a_slow_request() {
    let mut cp = FakeControlPlane::start().await;
    let slow = Backend::start("slow").await;
    let fresh = Backend::start("fresh").await;
    let proxy = ProxyProcess::start(&[cp.url()], &[]).await;
    let addr = proxy.http_addr();
    cp.expect_hello().await;
    cp.push(update(
        "v1",
        "n1",
        vec![route("app", &["app.example"], "", "app")],
        vec![cluster("app", vec![endpoint(slow.addr)])],
    ));
    cp.expect_ack().await;

    let in_flight = tokio::spawn(async move { must_get(addr, "app.example", "/hold").await });
    eventually("the slow request to reach its backend", || async {
        (slow.held() == 1).then_some(())
    })
    .await;

    cp.push(update(
        "v2",
        "n2",
        vec![route("app2", &["app.example"], "", "app2")],
        vec![cluster("app2", vec![endpoint(fresh.addr)])],
    ));
    assert_eq!(cp.expect_ack().await.version, "v2");
    let (_, _, body) = must_get(addr, "app.example", "/").await;
    assert_eq!(echo(&body)["backend"], "fresh", "new requests use the new table");

    slow.release();
    let (status, _, body) = in_flight.await.expect("request task");
    assert_eq!(status, StatusCode::OK);
    assert_eq!(echo(&body)["backend"], "slow");
}

/// The proxy skips a dead control plane, and when its control plane goes away it keeps routing and
/// resumes on the next one with its current version (answered with up_to_date).
#[tokio::test]
async fn fails_over_between_control_planes() {
    let dead = dead_addr().await;
    let mut first = FakeControlPlane::start().await;
    let mut second = FakeControlPlane::start().await;
    let backend = Backend::start("app").await;
    let v1 = update(
        "v1",
        "n1",
        vec![route("app", &["app.example"], "", "app")],
        vec![cluster("app", vec![endpoint(backend.addr)])],
    );
    first.push(v1.clone());
    second.push(v1);
    let proxy = ProxyProcess::start(&[format!("http://{dead}"), first.url(), second.url()], &[]).await;
    let addr = proxy.http_addr();

    assert_eq!(first.expect_hello().await.version, "");
    assert_eq!(first.expect_ack().await.nonce, "n1");
    assert_eq!(proxy.snapshot_json().await["control_plane"], first.url());

    first.stop();
    let hello = second.expect_hello().await;
    assert_eq!(hello.version, "v1", "the Hello names the version the proxy holds");
    let ack = second.expect_ack().await;
    assert_eq!(
        (ack.version.as_str(), ack.nonce.as_str()),
        ("v1", "n1-up-to-date")
    );
    let (status, _, _) = must_get(addr, "app.example", "/").await;
    assert_eq!(status, StatusCode::OK);
    eventually("the admin API to show the second control plane", || async {
        let snapshot = proxy.snapshot_json().await;
        (snapshot["control_plane"] == second.url() && snapshot["connected"] == true).then_some(())
    })
    .await;

    // With no control plane at all, routing continues by the last snapshot.
    second.stop();
    eventually("the proxy to notice it is disconnected", || async {
        (proxy.snapshot_json().await["connected"] == false).then_some(())
    })
    .await;
    let (status, _, body) = must_get(addr, "app.example", "/").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(echo(&body)["backend"], "app");
    assert_eq!(proxy.admin_get("/healthz").await.0, StatusCode::OK);
}

/// SIGTERM: stop accepting, let the request in flight finish, exit 0.
#[tokio::test]
async fn graceful_shutdown_finishes_requests_in_flight() {
    let mut cp = FakeControlPlane::start().await;
    let slow = Backend::start("slow").await;
    let mut proxy = ProxyProcess::start(&[cp.url()], &[]).await;
    let addr = proxy.http_addr();
    cp.expect_hello().await;
    cp.push(update(
        "v1",
        "n1",
        vec![route("app", &["app.example"], "", "app")],
        vec![cluster("app", vec![endpoint(slow.addr)])],
    ));
    cp.expect_ack().await;

    let in_flight = tokio::spawn(async move { must_get(addr, "app.example", "/hold").await });
    eventually("the slow request to reach its backend", || async {
        (slow.held() == 1).then_some(())
    })
    .await;
    proxy.terminate();
    eventually("the proxy to stop accepting", || async {
        tokio::net::TcpStream::connect(addr).await.is_err().then_some(())
    })
    .await;
    slow.release();
    let (status, _, body) = in_flight.await.expect("request task");
    assert_eq!(status, StatusCode::OK);
    assert_eq!(echo(&body)["backend"], "slow");
    assert_eq!(proxy.wait_exit().await, Some(0));
    assert!(
        proxy.logs().iter().any(|l| l.contains("all connections closed")),
        "{:?}",
        proxy.logs()
    );
}

/// Routes limited to an entrypoint are only served there; an empty list means every entrypoint.
#[tokio::test]
async fn entrypoints_filter_routes() {
    let mut cp = FakeControlPlane::start().await;
    let backend = Backend::start("b").await;
    let proxy = ProxyProcess::start(
        &[cp.url()],
        &[
            "--entrypoint",
            "web=127.0.0.1:0",
            "--entrypoint",
            "internal=127.0.0.1:0",
        ],
    )
    .await;
    assert_eq!(cp.expect_hello().await.entrypoints, ["web", "internal"]);
    let mut internal_only = route("private", &["private.example"], "", "b");
    internal_only.entrypoints = vec!["internal".into()];
    cp.push(update(
        "v1",
        "n1",
        vec![route("public", &["public.example"], "", "b"), internal_only],
        vec![cluster("b", vec![endpoint(backend.addr)])],
    ));
    cp.expect_ack().await;
    let (web, internal) = (proxy.entrypoints["web"], proxy.entrypoints["internal"]);
    assert_eq!(must_get(web, "public.example", "/").await.0, StatusCode::OK);
    assert_eq!(must_get(internal, "public.example", "/").await.0, StatusCode::OK);
    assert_eq!(must_get(internal, "private.example", "/").await.0, StatusCode::OK);
    let (status, _, body) = must_get(web, "private.example", "/").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        body.trim(),
        r#"no route for host "private.example" on entrypoint "web""#
    );
}

#[test]
fn bad_flags_stop_the_binary() {
    let (code, stderr) = run_to_exit(&["--entrypoint", "http"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("--entrypoint") && stderr.contains("'http'"),
        "{stderr}"
    );

    let (code, stderr) = run_to_exit(&["--entrypoint", "http=nowhere:80"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("--entrypoint") && stderr.contains("nowhere:80"),
        "{stderr}"
    );

    let (code, stderr) = run_to_exit(&["--control-plane", "not a url"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("--control-plane") && stderr.contains("not a url"),
        "{stderr}"
    );

    let (code, stderr) = run_to_exit(&["--connect-timeout", "2 parsecs"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("--connect-timeout") && stderr.contains("2 parsecs"),
        "{stderr}"
    );

    let (code, stderr) = run_to_exit(&["--help"]);
    assert_eq!(code, Some(0), "{stderr}");
}

#[test]
fn busy_ports_stop_the_binary() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr");

    let (code, stderr) = run_to_exit(&[
        "--entrypoint",
        &format!("web={addr}"),
        "--admin-addr",
        "127.0.0.1:0",
    ]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("--entrypoint web={addr}: cannot listen on {addr}")),
        "{stderr}"
    );

    let (code, stderr) = run_to_exit(&[
        "--entrypoint",
        "web=127.0.0.1:0",
        "--admin-addr",
        &addr.to_string(),
    ]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("--admin-addr {addr}: cannot listen on {addr}")),
        "{stderr}"
    );
}

/// Bodies stream both ways: a large request body arrives whole, and a response chunk reaches the
/// client before the backend has finished the response.
#[tokio::test]
async fn bodies_are_streamed() {
    use http_body_util::BodyExt;

    let mut cp = FakeControlPlane::start().await;
    let backend = Backend::start("b").await;
    let proxy = ProxyProcess::start(&[cp.url()], &[]).await;
    let addr = proxy.http_addr();
    cp.expect_hello().await;
    cp.push(update(
        "v1",
        "n1",
        vec![route("b", &["b.example"], "", "b")],
        vec![cluster("b", vec![endpoint(backend.addr)])],
    ));
    cp.expect_ack().await;

    let big = "x".repeat(1 << 20);
    let (status, body) = post(addr, "b.example", "/upload", bytes::Bytes::from(big.clone())).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(echo(&body)["body"].as_str().map(str::len), Some(big.len()));

    let response = get_streaming(addr, "b.example", "/stream").await;
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.into_body();
    let first = body
        .frame()
        .await
        .expect("a first frame")
        .expect("frame")
        .into_data()
        .expect("data");
    assert_eq!(
        &first[..],
        b"first",
        "the first chunk arrives while the backend is still sending"
    );
    backend.release();
    let rest = body.collect().await.expect("rest of the body").to_bytes();
    assert_eq!(&rest[..], b"second");
}
