//! End-to-end tests of the real `berth-proxy` binary against an in-process control plane and
//! in-process backends, all on 127.0.0.1: routing by every kind of matcher and by priority, every
//! middleware, sticky cookies, HTTPS backends, and the stream protocol (ACK, NACK, failover).

mod support;

use std::time::Duration;

use base64::Engine;
use berth_proto::v1::middleware::Kind as M;
use berth_proto::v1::{
    AddPrefix, BasicAuth, HeaderValue as Header, Headers, HostHeader, InFlightReq, IpAllowList, RateLimit,
    RedirectRegex, RedirectScheme, ReplacePath, ReplacePathRegex, SourceCriterion, StickyCookie, StripPrefix,
    StripPrefixRegex,
};
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
            // Traefik's default priority is the rule's length: the longer rule goes first.
            prioritized(route("web-api", &["web.example"], "/api", "api"), 10),
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
    assert_eq!(
        seen["x-forwarded-for"], "127.0.0.1",
        "an untrusted client's X-Forwarded-For is replaced"
    );
    assert_eq!(seen["x-forwarded-port"], "8080");
    assert_eq!(seen["x-real-ip"], "127.0.0.1");
    assert!(
        seen["x-forwarded-server"].as_str().is_some_and(|s| !s.is_empty()),
        "{seen}"
    );
    assert_eq!(seen["x-keep"], "2");
    assert!(seen.get("x-drop-me").is_none(), "{seen}");
    assert_eq!(headers["x-backend"], "api");
    assert!(
        !headers.contains_key("x-backend-hop"),
        "response hop-by-hop headers are stripped: {headers:?}"
    );

    // The common request: fields nothing on the way reads or changes reach the backend as sent
    // (kept out of the header map by the proxy's own HTTP/1.1 loop), `Connection` excepted.
    let sent = [
        ("accept", "*/*"),
        ("x-multi", "1"),
        ("user-agent", "berth-test/1"),
        ("x-multi", "2"),
        ("connection", "keep-alive"),
        ("cookie", "a=1; b=2"),
    ];
    let (status, _, body) = get(addr, "web.example", "/api/plain", &sent)
        .await
        .expect("request");
    assert_eq!(status, StatusCode::OK, "{body}");
    let seen = &echo(&body)["headers"];
    assert_eq!(seen["accept"], "*/*");
    assert_eq!(seen["x-multi"], "1\n2", "both values, in order: {seen}");
    assert_eq!(seen["user-agent"], "berth-test/1");
    assert_eq!(seen["cookie"], "a=1; b=2");
    assert_eq!(seen["host"], "web.example");
    assert_eq!(seen["x-forwarded-for"], "127.0.0.1");
    assert!(seen.get("connection").is_none(), "{seen}");

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
    assert_eq!(routes[0]["name"], "web-api", "listed in the order they are tried");
    assert_eq!(routes[0]["rule"], "Host(`web.example`) && PathPrefix(`/api`)");
    assert_eq!(routes[0]["priority"], 10);
    assert_eq!(routes[0]["cluster"], "api");
    assert_eq!(routes[0]["endpoints"], serde_json::json!([api.addr.to_string()]));
    assert_eq!(routes[1]["rule"], "Host(`web.example`)");
    let clusters = snapshot["clusters"].as_array().expect("clusters");
    assert_eq!(clusters[0]["name"], "api");
    assert_eq!(clusters[0]["scheme"], "http");
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
    // The log names the backend; the client is not told internal addresses.
    assert_eq!(body.trim(), "the backend refused the connection");

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
        "the backend did not accept the connection within 100ms"
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
    assert!(nack.error.contains(r#"cluster "app""#), "{}", nack.error);
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
    assert!(
        nack.error.starts_with(r#"route "app""#) && nack.error.contains("ghost"),
        "{}",
        nack.error
    );

    // A feature this proxy does not know: NACK naming route and feature, never a route served
    // without it.
    let mut future = update(
        "v5",
        "n5",
        vec![route("app", &["app.example"], "", "app")],
        vec![cluster("app", vec![endpoint(one.addr)])],
    );
    if let Some(berth_proto::v1::route_update::Body::Snapshot(s)) = &mut future.body {
        s.routes[0]
            .requires
            .push("middleware/oauth_from_the_future".into());
    }
    cp.push(future);
    let nack = cp.expect_nack().await;
    assert_eq!(nack.nonce, "n5");
    assert!(nack.error.contains(r#"route "app""#), "{}", nack.error);
    assert!(
        nack.error.contains("middleware/oauth_from_the_future"),
        "{}",
        nack.error
    );

    // A middleware kind this proxy does not know arrives without a kind: NACK as well.
    let mut unknown = chain(route("app", &["app.example"], "", "app"), vec![]);
    unknown.middlewares.push(berth_proto::v1::Middleware {
        name: "sso@consulcatalog".into(),
        kind: None,
    });
    cp.push(update(
        "v6",
        "n6",
        vec![unknown],
        vec![cluster("app", vec![endpoint(one.addr)])],
    ));
    let nack = cp.expect_nack().await;
    assert_eq!(nack.nonce, "n6");
    assert!(nack.error.contains(r#"route "app""#), "{}", nack.error);

    let (status, _, body) = must_get(addr, "app.example", "/").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(echo(&body)["backend"], "two", "v3 still routes");
    assert_eq!(proxy.snapshot_json().await["version"], "v3");
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

    let (code, stderr) = run_to_exit(&[
        "--backend-ca",
        "/nonexistent/ca.pem",
        "--entrypoint",
        "web=127.0.0.1:0",
        "--admin-addr",
        "127.0.0.1:0",
    ]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("--backend-ca /nonexistent/ca.pem: cannot read the file"),
        "{stderr}"
    );
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

/// Starts a proxy connected to a fresh control plane, applies `routes` and `clusters`, and
/// returns both (the control plane must outlive the test).
async fn proxy_with(
    routes: Vec<berth_proto::v1::Route>,
    clusters: Vec<berth_proto::v1::Cluster>,
    extra: &[&str],
) -> (FakeControlPlane, ProxyProcess) {
    let mut cp = FakeControlPlane::start().await;
    let proxy = ProxyProcess::start(&[cp.url()], extra).await;
    cp.expect_hello().await;
    cp.push(update("v1", "n1", routes, clusters));
    let ack = cp.expect_ack().await;
    assert_eq!(ack.nonce, "n1");
    (cp, proxy)
}

/// Which backend answered, or the status when the proxy or a middleware answered itself.
async fn who(
    addr: std::net::SocketAddr,
    method: &str,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> String {
    let (status, _, body) = send(addr, method, host, path, headers).await.expect("request");
    if status == StatusCode::OK {
        echo(&body)["backend"].as_str().unwrap_or_default().to_owned()
    } else {
        status.as_str().to_owned()
    }
}

/// Method, header, query and client-address matchers; priorities across host and catch-all
/// routes; ties broken by order, then name.
#[tokio::test]
async fn routes_by_every_matcher_and_priority() {
    let names = [
        "post", "beta", "debug", "office", "site", "loopback", "override", "older", "newer",
    ];
    let mut backends = Vec::new();
    for n in names {
        backends.push(Backend::start(n).await);
    }
    let clusters = backends
        .iter()
        .map(|b| cluster(&b.name, vec![endpoint(b.addr)]))
        .collect();
    let m = |extra: berth_proto::v1::Matcher| all(vec![host("m.example"), extra]);
    let mut older = rule("older", host("t.example"), "older");
    older.order = 2;
    let mut newer = rule("a-newer", host("t.example"), "newer");
    newer.order = 5;
    let routes = vec![
        prioritized(rule("post", m(method("POST")), "post"), 50),
        prioritized(rule("beta", m(header("X-Beta", "1")), "beta"), 40),
        // A forwarded header the entrypoint sets is there to match on, as in Traefik.
        rule(
            "proto",
            all(vec![host("fp.example"), header("X-Forwarded-Proto", "http")]),
            "beta",
        ),
        prioritized(rule("debug", m(query("debug", "true")), "debug"), 30),
        prioritized(rule("office", m(client_ip(&["10.0.0.0/8"])), "office"), 20),
        prioritized(rule("site", host("m.example"), "site"), 10),
        rule(
            "loopback",
            all(vec![host("ip.example"), client_ip(&["127.0.0.0/8", "::1"])]),
            "loopback",
        ),
        // A catch-all of higher priority takes a path on every host, m.example included.
        prioritized(rule("override", prefix("/override"), "override"), 100),
        older,
        newer,
    ];
    let (_cp, proxy) = proxy_with(routes, clusters, &[]).await;
    let addr = proxy.http_addr();

    assert_eq!(who(addr, "POST", "m.example", "/", &[]).await, "post");
    assert_eq!(
        who(addr, "GET", "m.example", "/", &[("x-beta", "1")]).await,
        "beta"
    );
    assert_eq!(
        who(addr, "GET", "fp.example", "/", &[("x-forwarded-proto", "https")]).await,
        "beta",
        "matched on the X-Forwarded-Proto the entrypoint set, not the client's"
    );
    assert_eq!(who(addr, "GET", "m.example", "/?debug=true", &[]).await, "debug");
    assert_eq!(
        who(addr, "GET", "m.example", "/?a=1;debug=true", &[]).await,
        "debug"
    );
    assert_eq!(who(addr, "GET", "m.example", "/?debug=false", &[]).await, "site");
    assert_eq!(who(addr, "GET", "M.Example:80", "/", &[]).await, "site");
    assert_eq!(who(addr, "GET", "ip.example", "/", &[]).await, "loopback");
    assert_eq!(
        who(addr, "POST", "m.example", "/override/x", &[]).await,
        "override"
    );
    assert_eq!(
        who(addr, "GET", "elsewhere.example", "/override", &[]).await,
        "override"
    );
    assert_eq!(
        who(addr, "GET", "t.example", "/", &[]).await,
        "older",
        "lower order wins a tie"
    );

    let (status, headers, body) = must_get(addr, "elsewhere.example", "/").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(headers["x-berth-error"], "no-route");
    assert!(body.contains("no route matches GET \"/\""), "{body}");
}

/// strip_prefix, strip_prefix_regex, add_prefix, replace_path, replace_path_regex and a chain of
/// two, as the backend sees them; a stripped path that sanitizing would change is a 400.
#[tokio::test]
async fn path_middlewares_rewrite_what_the_backend_sees() {
    let backend = Backend::start("b").await;
    let at = |name: &str, path: &str, middlewares: Vec<(&str, M)>| {
        chain(
            rule(name, all(vec![host("p.example"), prefix(path)]), "b"),
            middlewares,
        )
    };
    let routes = vec![
        at(
            "strip",
            "/strip",
            vec![(
                "strip",
                M::StripPrefix(StripPrefix {
                    prefixes: vec!["/strip".into()],
                    force_slash: false,
                }),
            )],
        ),
        at(
            "sre",
            "/sre",
            vec![(
                "sre",
                M::StripPrefixRegex(StripPrefixRegex {
                    regexps: vec!["/sre/[0-9]+".into()],
                }),
            )],
        ),
        at(
            "add",
            "/add",
            vec![(
                "add",
                M::AddPrefix(AddPrefix {
                    prefix: "/api".into(),
                }),
            )],
        ),
        at(
            "replace",
            "/replace",
            vec![(
                "replace",
                M::ReplacePath(ReplacePath {
                    path: "/fixed".into(),
                }),
            )],
        ),
        at(
            "rre",
            "/rre",
            vec![(
                "rre",
                M::ReplacePathRegex(ReplacePathRegex {
                    regexp: "^/rre/(.*)".into(),
                    replacement: "/new/$1".into(),
                }),
            )],
        ),
        at(
            "chain",
            "/chain",
            vec![
                (
                    "strip",
                    M::StripPrefix(StripPrefix {
                        prefixes: vec!["/chain".into()],
                        force_slash: false,
                    }),
                ),
                ("add", M::AddPrefix(AddPrefix { prefix: "/v2".into() })),
            ],
        ),
    ];
    let (_cp, proxy) = proxy_with(routes, vec![cluster("b", vec![endpoint(backend.addr)])], &[]).await;
    let addr = proxy.http_addr();
    let seen = |path: &'static str| async move {
        let (status, _, body) = must_get(addr, "p.example", path).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        echo(&body)
    };

    let e = seen("/strip/x?q=1").await;
    assert_eq!(
        (e["path"].as_str(), e["query"].as_str()),
        (Some("/x"), Some("q=1"))
    );
    assert_eq!(e["headers"]["x-forwarded-prefix"], "/strip");
    let e = seen("/strip").await;
    assert_eq!(e["path"], "/", "an empty rest goes out as /");
    let e = seen("/sre/123/y").await;
    assert_eq!(e["path"], "/y");
    assert_eq!(e["headers"]["x-forwarded-prefix"], "/sre/123");
    let e = seen("/add/z").await;
    assert_eq!(e["path"], "/api/add/z");
    let e = seen("/replace/me?k=v").await;
    assert_eq!(
        (e["path"].as_str(), e["query"].as_str()),
        (Some("/fixed"), Some("k=v"))
    );
    assert_eq!(e["headers"]["x-replaced-path"], "/replace/me");
    let e = seen("/rre/a/b").await;
    assert_eq!(e["path"], "/new/a/b");
    assert_eq!(e["headers"]["x-replaced-path"], "/rre/a/b");
    let e = seen("/chain/items").await;
    assert_eq!(e["path"], "/v2/items");
    // The entrypoint sanitizes paths before routing, as Traefik's does.
    let e = seen("/strip//a/./b/../c").await;
    assert_eq!(e["path"], "/a/c");
    let e = seen("/strip/%7euser/a%2fb").await;
    assert_eq!(e["path"], "/~user/a%2Fb");

    let (status, headers, body) = must_get(addr, "p.example", "/strip./x").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(headers["content-type"], "text/plain; charset=utf-8");
    assert_eq!(body, "Bad Request\n");
}

/// headers: request headers set and removed, Host replaced, X-Forwarded-For suppressed; response
/// headers set and removed, on backend answers and on the proxy's own errors alike.
#[tokio::test]
async fn headers_middleware() {
    let backend = Backend::start("b").await;
    let headers =
        |request: Vec<Header>, response: Vec<Header>| ("hdr", M::Headers(Headers { request, response }));
    let routes = vec![
        chain(
            rule("h", host("h.example"), "b"),
            vec![headers(
                vec![
                    header_change("X-Custom", "one"),
                    header_change("X-Remove", ""),
                    header_change("Host", "backend.example"),
                    // Headers the entrypoint sets are there for the middleware to change.
                    header_change("X-Forwarded-Proto", ""),
                    header_change("X-Request-Id", "fixed"),
                ],
                vec![
                    header_change("X-Frame-Options", "DENY"),
                    header_change("Server", ""),
                ],
            )],
        ),
        chain(
            rule("noxff", host("noxff.example"), "b"),
            vec![headers(vec![header_change("X-Forwarded-For", "")], vec![])],
        ),
        chain(
            rule("down", host("down.example"), "empty"),
            vec![headers(vec![], vec![header_change("X-Frame-Options", "DENY")])],
        ),
    ];
    let clusters = vec![
        cluster("b", vec![endpoint(backend.addr)]),
        cluster("empty", vec![]),
    ];
    let (_cp, proxy) = proxy_with(routes, clusters, &[]).await;
    let addr = proxy.http_addr();

    let (status, response, body) = get(addr, "h.example", "/", &[("x-remove", "1"), ("x-custom", "zero")])
        .await
        .expect("request");
    assert_eq!(status, StatusCode::OK);
    let seen = &echo(&body)["headers"];
    assert_eq!(seen["x-custom"], "one");
    assert!(seen.get("x-remove").is_none(), "{seen}");
    assert_eq!(seen["host"], "backend.example");
    assert_eq!(
        seen["x-forwarded-host"], "h.example",
        "set on entry, before the middleware"
    );
    assert!(seen.get("x-forwarded-proto").is_none(), "{seen}");
    assert_eq!(seen["x-request-id"], "fixed", "{seen}");
    assert_eq!(response["x-frame-options"], "DENY");
    assert!(!response.contains_key("server"), "{response:?}");

    let (_, _, body) = get(addr, "noxff.example", "/", &[("x-forwarded-for", "1.2.3.4")])
        .await
        .expect("request");
    assert!(echo(&body)["headers"].get("x-forwarded-for").is_none(), "{body}");

    let (status, response, _) = must_get(addr, "down.example", "/").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response["x-frame-options"], "DENY");
}

/// A chain whose request halves touch only named fields (here `strip_prefix` and a `headers`
/// that leaves `Host` alone) gets only those of the client's fields in the header map; the rest
/// wait as they came. The backend must see the same request as through the same chain behind a
/// middleware that reads every field (an allow list that lets everyone in): a header set
/// replaces each of the client's values in any case, a removed one is gone, the others pass.
#[tokio::test]
async fn a_chain_that_names_its_fields_changes_them_as_in_the_map() {
    let backend = Backend::start("b").await;
    let named = vec![
        (
            "strip",
            M::StripPrefix(StripPrefix {
                prefixes: vec!["/n".into()],
                force_slash: false,
            }),
        ),
        (
            "hdr",
            M::Headers(Headers {
                request: vec![
                    header_change("X-Custom", "one"),
                    header_change("X-Remove", ""),
                    header_change("X-New", "1"),
                ],
                response: vec![],
            }),
        ),
    ];
    let allow_all = (
        "allow",
        M::IpAllowList(IpAllowList {
            ranges: vec!["0.0.0.0/0".into()],
            reject_status: 0,
            source: None,
        }),
    );
    let mut reads_all = named.clone();
    reads_all.insert(0, allow_all);
    let routes = vec![
        chain(rule("named", host("named.example"), "b"), named),
        chain(rule("all", host("all.example"), "b"), reads_all),
    ];
    let (_cp, proxy) = proxy_with(routes, vec![cluster("b", vec![endpoint(backend.addr)])], &[]).await;
    let fields = [
        ("accept", "*/*"),
        ("x-custom", "zero"),
        ("X-Custom", "again"),
        ("x-remove", "1"),
        ("x-other", "keep"),
        ("x-other", "both"),
    ];
    let mut seen = Vec::new();
    for host in ["named.example", "all.example"] {
        let (status, _, body) = get(proxy.http_addr(), host, "/n/x", &fields)
            .await
            .expect("request");
        assert_eq!(status, StatusCode::OK, "{host}: {body}");
        let mut e = echo(&body);
        let headers = e["headers"].as_object_mut().expect("headers");
        // Made up for each request.
        assert!(headers.remove("x-request-id").is_some(), "{host}: {body}");
        for routed in ["host", "x-forwarded-host"] {
            assert_eq!(headers.remove(routed), Some(host.into()), "{host}: {body}");
        }
        assert_eq!(e["path"], "/x", "{host}");
        seen.push(e["headers"].clone());
    }
    let named = &seen[0];
    assert_eq!(named["x-custom"], "one", "{named}");
    assert!(named.get("x-remove").is_none(), "{named}");
    assert_eq!(named["x-new"], "1");
    assert_eq!(named["x-other"], "keep\nboth");
    assert_eq!(named["x-forwarded-prefix"], "/n");
    assert_eq!(named["x-forwarded-proto"], "http");
    assert_eq!(seen[0], seen[1], "named fields against every field in the map");
}

/// redirect_scheme and redirect_regex: status by method and permanence, Location, body.
#[tokio::test]
async fn redirects() {
    let backend = Backend::start("b").await;
    let routes = vec![
        chain(
            rule("to-https", host("r.example"), "b"),
            vec![(
                "https",
                M::RedirectScheme(RedirectScheme {
                    scheme: "https".into(),
                    port: String::new(),
                    permanent: false,
                }),
            )],
        ),
        chain(
            rule("to-8443", host("r2.example"), "b"),
            vec![(
                "https",
                M::RedirectScheme(RedirectScheme {
                    scheme: "https".into(),
                    port: "8443".into(),
                    permanent: true,
                }),
            )],
        ),
        chain(
            rule("moved", host("old.example"), "b"),
            vec![(
                "moved",
                M::RedirectRegex(RedirectRegex {
                    regexp: r"^http://old\.example/(.*)".into(),
                    replacement: "http://new.example/${1}".into(),
                    permanent: false,
                }),
            )],
        ),
    ];
    let (_cp, proxy) = proxy_with(routes, vec![cluster("b", vec![endpoint(backend.addr)])], &[]).await;
    let addr = proxy.http_addr();

    let (status, headers, body) = must_get(addr, "r.example:8080", "/path?q=1").await;
    assert_eq!(status, StatusCode::FOUND);
    assert_eq!(headers["location"], "https://r.example/path?q=1");
    assert!(!headers.contains_key("content-type"));
    assert_eq!(body, "Found");
    let (status, _, _) = send(addr, "POST", "r.example", "/", &[]).await.expect("request");
    assert_eq!(status, StatusCode::TEMPORARY_REDIRECT);
    let (status, headers, body) = must_get(addr, "r2.example", "/x").await;
    assert_eq!(status, StatusCode::MOVED_PERMANENTLY);
    assert_eq!(headers["location"], "https://r2.example:8443/x");
    assert_eq!(body, "Moved Permanently");
    let (status, _, _) = send(addr, "PUT", "r2.example", "/x", &[]).await.expect("request");
    assert_eq!(status, StatusCode::PERMANENT_REDIRECT);
    let (status, headers, _) = must_get(addr, "old.example", "/a/b?c=d").await;
    assert_eq!(status, StatusCode::FOUND);
    assert_eq!(headers["location"], "http://new.example/a/b?c=d");
}

fn basic(credentials: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(credentials)
    )
}

/// basic_auth: Traefik's challenge, apr1 / SHA-1 / bcrypt users, header_field, remove_header.
#[tokio::test]
async fn basic_auth() {
    let backend = Backend::start("b").await;
    let bcrypt_hash = bcrypt::hash("s3cret", 4).expect("hash");
    let users = vec![
        "test:$apr1$H6uskkkW$IgXLP6ewTrSuBkTrqE8wj/".to_string(),
        "other:{SHA}qUqP5cyxm6YcTAhz05Hph5gvu9M=".to_string(),
        format!("bob:{bcrypt_hash}"),
    ];
    let routes = vec![
        chain(
            rule("kept", host("a.example"), "b"),
            vec![(
                "auth",
                M::BasicAuth(BasicAuth {
                    users: users.clone(),
                    realm: String::new(),
                    remove_header: false,
                    header_field: String::new(),
                }),
            )],
        ),
        chain(
            rule("removed", host("b.example"), "b"),
            vec![(
                "auth",
                M::BasicAuth(BasicAuth {
                    users,
                    realm: "staff".into(),
                    remove_header: true,
                    header_field: "X-User".into(),
                }),
            )],
        ),
    ];
    let (_cp, proxy) = proxy_with(routes, vec![cluster("b", vec![endpoint(backend.addr)])], &[]).await;
    let addr = proxy.http_addr();

    let (status, headers, body) = must_get(addr, "a.example", "/").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(headers["www-authenticate"], "Basic realm=\"traefik\"");
    assert_eq!(headers["content-type"], "text/plain");
    assert_eq!(body, "401 Unauthorized\n");
    for wrong in ["test:nope", "nobody:test", "bob:test"] {
        let auth = basic(wrong);
        let (status, _, _) = get(addr, "a.example", "/", &[("authorization", &auth)])
            .await
            .expect("request");
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{wrong}");
    }
    for good in ["test:test", "other:test", "bob:s3cret"] {
        let auth = basic(good);
        let (status, _, body) = get(addr, "a.example", "/", &[("authorization", &auth)])
            .await
            .expect("request");
        assert_eq!(status, StatusCode::OK, "{good}");
        assert_eq!(echo(&body)["headers"]["authorization"], auth.as_str());
    }
    let (status, headers, _) = must_get(addr, "b.example", "/").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(headers["www-authenticate"], "Basic realm=\"staff\"");
    let auth = basic("bob:s3cret");
    let (status, _, body) = get(addr, "b.example", "/", &[("authorization", &auth)])
        .await
        .expect("request");
    assert_eq!(status, StatusCode::OK);
    let seen = &echo(&body)["headers"];
    assert_eq!(seen["x-user"], "bob");
    assert!(seen.get("authorization").is_none(), "{seen}");
}

/// rate_limit refuses past the burst with Traefik's 429; in_flight_req refuses a second request
/// while the first is in flight, and admits again once it is done.
#[tokio::test]
async fn rate_limit_and_in_flight_req() {
    let backend = Backend::start("b").await;
    let routes = vec![
        chain(
            rule("rate", host("rate.example"), "b"),
            vec![(
                "rl",
                M::RateLimit(RateLimit {
                    average: 1,
                    period_ms: 60_000,
                    burst: 2,
                    source: None,
                }),
            )],
        ),
        chain(
            rule("flight", host("flight.example"), "b"),
            vec![(
                "if",
                M::InFlightReq(InFlightReq {
                    amount: 1,
                    source: None,
                }),
            )],
        ),
    ];
    let (_cp, proxy) = proxy_with(routes, vec![cluster("b", vec![endpoint(backend.addr)])], &[]).await;
    let addr = proxy.http_addr();

    assert_eq!(must_get(addr, "rate.example", "/").await.0, StatusCode::OK);
    assert_eq!(must_get(addr, "rate.example", "/").await.0, StatusCode::OK);
    let (status, headers, body) = must_get(addr, "rate.example", "/").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = headers["retry-after"].to_str().unwrap().parse().expect("seconds");
    assert!((50..=60).contains(&retry), "one token a minute: {retry}");
    assert!(
        headers["x-retry-in"].to_str().unwrap().ends_with('s'),
        "{headers:?}"
    );
    assert_eq!(body, "Too Many Requests");

    let held = tokio::spawn(async move { must_get(addr, "flight.example", "/hold").await });
    eventually("the first request to be in flight", || async {
        (backend.held() == 1).then_some(())
    })
    .await;
    let (status, headers, body) = must_get(addr, "flight.example", "/").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert!(!headers.contains_key("content-type"));
    assert_eq!(body, "max connections reached: 1");
    backend.release();
    assert_eq!(held.await.expect("task").0, StatusCode::OK);
    eventually("the slot to be given back", || async {
        (must_get(addr, "flight.example", "/").await.0 == StatusCode::OK).then_some(())
    })
    .await;
}

/// ip_allow_list by peer address and by X-Forwarded-For depth, with the default and a custom
/// rejection status.
#[tokio::test]
async fn ip_allow_list() {
    let backend = Backend::start("b").await;
    let allow = |ranges: &[&str], reject_status: u32, source: Option<SourceCriterion>| {
        (
            "allow",
            M::IpAllowList(IpAllowList {
                ranges: ranges.iter().map(|r| r.to_string()).collect(),
                reject_status,
                source,
            }),
        )
    };
    let depth = Some(SourceCriterion {
        depth: 1,
        ..Default::default()
    });
    let routes = vec![
        chain(
            rule("private", host("private.example"), "b"),
            vec![allow(&["10.0.0.0/8"], 0, None)],
        ),
        chain(
            rule("local", host("local.example"), "b"),
            vec![allow(&["127.0.0.1"], 0, None)],
        ),
        chain(
            rule("proxied", host("proxied.example"), "b"),
            vec![allow(&["203.0.113.0/24"], 404, depth)],
        ),
    ];
    // The depth strategy reads X-Forwarded-For only as a trusted peer sent it.
    let (_cp, proxy) = proxy_with(
        routes,
        vec![cluster("b", vec![endpoint(backend.addr)])],
        &["--trusted-ips", "127.0.0.1"],
    )
    .await;
    let addr = proxy.http_addr();

    let (status, headers, body) = must_get(addr, "private.example", "/").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(!headers.contains_key("content-type"));
    assert_eq!(body, "Forbidden");
    assert_eq!(must_get(addr, "local.example", "/").await.0, StatusCode::OK);
    let ok = get(
        addr,
        "proxied.example",
        "/",
        &[("x-forwarded-for", "198.51.100.1, 203.0.113.5")],
    )
    .await
    .expect("request");
    assert_eq!(ok.0, StatusCode::OK);
    let (status, _, body) = get(
        addr,
        "proxied.example",
        "/",
        &[("x-forwarded-for", "203.0.113.5, 198.51.100.1")],
    )
    .await
    .expect("request");
    assert_eq!((status, body.as_str()), (StatusCode::NOT_FOUND, "Not Found"));
}

/// --trusted-ips: a forged X-Forwarded-For (and the other forwarded headers) from an untrusted
/// client is replaced, from a trusted one kept and appended to; middlewares reading
/// X-Forwarded-For by depth see it as the backend will, before the peer is appended.
#[tokio::test]
async fn forwarded_headers_are_trusted_only_from_trusted_ips() {
    let backend = Backend::start("b").await;
    let depth = SourceCriterion {
        depth: 1,
        ..Default::default()
    };
    let routes = vec![
        rule("open", host("open.example"), "b"),
        chain(
            rule("proxied", host("proxied.example"), "b"),
            vec![(
                "allow",
                M::IpAllowList(IpAllowList {
                    ranges: vec!["203.0.113.0/24".into()],
                    reject_status: 0,
                    source: Some(depth),
                }),
            )],
        ),
    ];
    // 127.0.0.2 stands for a load balancer in front of the proxy; 127.0.0.1 for anyone else.
    let (_cp, proxy) = proxy_with(
        routes,
        vec![cluster("b", vec![endpoint(backend.addr)])],
        &["--trusted-ips", "10.0.0.0/8,127.0.0.2"],
    )
    .await;
    let addr = proxy.http_addr();
    let forged = [
        ("x-forwarded-for", "203.0.113.5"),
        ("x-forwarded-proto", "https"),
        ("x-forwarded-host", "evil.example"),
        ("x-real-ip", "203.0.113.5"),
    ];
    let untrusted = Some("127.0.0.1".parse().expect("address"));
    let trusted = Some("127.0.0.2".parse().expect("address"));

    let (status, _, body) = send_from(untrusted, addr, "GET", "open.example", "/", &forged)
        .await
        .expect("request");
    assert_eq!(status, StatusCode::OK, "{body}");
    let seen = &echo(&body)["headers"];
    assert_eq!(seen["x-forwarded-for"], "127.0.0.1");
    assert_eq!(seen["x-forwarded-proto"], "http");
    assert_eq!(seen["x-forwarded-host"], "open.example");
    assert_eq!(seen["x-real-ip"], "127.0.0.1");
    let (status, _, _) = send_from(untrusted, addr, "GET", "proxied.example", "/", &forged)
        .await
        .expect("request");
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "depth 1 finds no address in a header the proxy dropped"
    );

    let (status, _, body) = send_from(trusted, addr, "GET", "open.example", "/", &forged)
        .await
        .expect("request");
    assert_eq!(status, StatusCode::OK, "{body}");
    let seen = &echo(&body)["headers"];
    assert_eq!(seen["x-forwarded-for"], "203.0.113.5, 127.0.0.2");
    assert_eq!(seen["x-forwarded-proto"], "https");
    assert_eq!(seen["x-forwarded-host"], "evil.example");
    assert_eq!(seen["x-real-ip"], "203.0.113.5");
    let (status, _, body) = send_from(trusted, addr, "GET", "proxied.example", "/", &forged)
        .await
        .expect("request");
    assert_eq!(
        status,
        StatusCode::OK,
        "depth 1 is the client's last address: {body}"
    );
}

/// The value of the `lb` cookie in a response's Set-Cookie headers.
fn sticky_value(headers: &http::HeaderMap) -> Option<String> {
    headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.strip_prefix("lb="))
        .map(|v| v.split(';').next().unwrap_or_default().to_owned())
}

/// Sticky cookies: set on the first response (before the backend's own cookies), honoured
/// afterwards without being set again, and replaced when their endpoint is gone.
#[tokio::test]
async fn sticky_cookies() {
    let backends = [
        Backend::start("s1").await,
        Backend::start("s2").await,
        Backend::start("s3").await,
    ];
    let mut sticky = cluster("s", backends.iter().map(|b| endpoint(b.addr)).collect());
    sticky.sticky = Some(StickyCookie {
        name: "lb".into(),
        http_only: true,
        same_site: "lax".into(),
        ..Default::default()
    });
    let (mut cp, proxy) =
        proxy_with(vec![rule("s", host("s.example"), "s")], vec![sticky.clone()], &[]).await;
    let addr = proxy.http_addr();

    let (status, headers, body) = must_get(addr, "s.example", "/").await;
    assert_eq!(status, StatusCode::OK);
    let first = echo(&body)["backend"].as_str().unwrap_or_default().to_owned();
    let cookies: Vec<_> = headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    assert_eq!(cookies.len(), 2, "{cookies:?}");
    assert!(
        cookies[0].starts_with("lb=") && cookies[0].ends_with("; Path=/; HttpOnly; SameSite=Lax"),
        "{cookies:?}"
    );
    assert_eq!(cookies[1], "app=1");
    let value = sticky_value(&headers).expect("sticky cookie");
    assert_eq!(value.len(), 16);

    let cookie = format!("other=1; lb={value}");
    for _ in 0..6 {
        let (_, headers, body) = get(addr, "s.example", "/", &[("cookie", &cookie)])
            .await
            .expect("request");
        assert_eq!(echo(&body)["backend"], first.as_str());
        assert_eq!(sticky_value(&headers), None, "no new cookie while it holds");
    }

    // The endpoint goes away: the cookie is replaced by one naming a current endpoint.
    let gone = backends
        .iter()
        .position(|b| b.name == first)
        .expect("known backend");
    sticky.endpoints.remove(gone);
    cp.push(update(
        "v2",
        "n2",
        vec![rule("s", host("s.example"), "s")],
        vec![sticky],
    ));
    assert_eq!(cp.expect_ack().await.nonce, "n2");
    let (_, headers, body) = get(addr, "s.example", "/", &[("cookie", &cookie)])
        .await
        .expect("request");
    let second = echo(&body)["backend"].as_str().unwrap_or_default().to_owned();
    assert_ne!(second, first);
    let replaced = sticky_value(&headers).expect("a new cookie");
    assert_ne!(replaced, value);
    let cookie = format!("lb={replaced}");
    let (_, _, body) = get(addr, "s.example", "/", &[("cookie", &cookie)])
        .await
        .expect("request");
    assert_eq!(echo(&body)["backend"], second.as_str());
}

/// HTTPS backends: verified against --backend-ca, the endpoint's address as Host when the
/// cluster says so; without the CA the handshake fails and the client gets a 502 saying why.
#[tokio::test]
async fn https_backends() {
    let (backend, ca_dir) = Backend::start_tls("tls").await;
    let mut secure = cluster("tls", vec![endpoint(backend.addr)]);
    secure.scheme = "https".into();
    secure.host_header = HostHeader::Endpoint as i32;
    let ca = ca_dir.file("ca.pem").to_string_lossy().into_owned();
    let (_cp, proxy) = proxy_with(
        vec![rule("tls", host("tls.example"), "tls")],
        vec![secure.clone()],
        &["--backend-ca", &ca],
    )
    .await;
    let (status, _, body) = must_get(proxy.http_addr(), "tls.example", "/x").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let seen = echo(&body);
    assert_eq!(seen["backend"], "tls");
    assert_eq!(seen["headers"]["host"], backend.addr.to_string());
    assert_eq!(seen["headers"]["x-forwarded-host"], "tls.example");

    let (_cp2, untrusting) =
        proxy_with(vec![rule("tls", host("tls.example"), "tls")], vec![secure], &[]).await;
    let (status, headers, body) = must_get(untrusting.http_addr(), "tls.example", "/x").await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert_eq!(headers["x-berth-error"], "backend-unreachable");
    assert_eq!(
        body.trim(),
        "cannot connect to the backend",
        "no details for the client"
    );
    eventually("the log to say why", || async {
        untrusting
            .logs()
            .iter()
            .any(|l| l.to_lowercase().contains("certificate"))
            .then_some(())
    })
    .await;
}
