//! End-to-end tests of what berth-proxy tells operators: `GET /metrics` on the admin address
//! (requests by route, service and status class, bytes, snapshot, connections, upstream connect
//! errors) and the access log (`--access-log`, JSON and text), against the real binary fed by the
//! in-process control plane.

mod support;

use std::collections::HashMap;
use std::path::PathBuf;

use http::StatusCode;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The samples of a Prometheus text exposition, by `name{labels}`.
fn samples(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (key, value) = l.rsplit_once(' ')?;
            Some((key.to_owned(), value.parse().ok()?))
        })
        .collect()
}

async fn metrics(proxy: &ProxyProcess) -> HashMap<String, f64> {
    let (status, body) = proxy.admin_get("/metrics").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    samples(&body)
}

fn value(samples: &HashMap<String, f64>, key: &str) -> f64 {
    samples.get(key).copied().unwrap_or(-1.0)
}

fn lines(path: &PathBuf) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn metrics_count_requests_by_route_and_the_json_access_log_has_a_line_per_request() {
    let scratch = ScratchDir::new("berth-observability");
    let log = scratch.file("access.json");
    let mut cp = FakeControlPlane::start().await;
    let web = Backend::start("web").await;
    let dead = dead_addr().await;
    let log_arg = log.to_str().expect("UTF-8 path");
    let proxy = ProxyProcess::start(
        &[cp.url()],
        &["--access-log", log_arg, "--access-log-format", "json"],
    )
    .await;
    let addr = proxy.http_addr();
    cp.expect_hello().await;

    let before = metrics(&proxy).await;
    assert_eq!(value(&before, "berth_proxy_snapshot_from_cache"), 0.0);
    assert!(!before.keys().any(|k| k.starts_with("berth_proxy_snapshot_info{")));

    cp.push(update(
        "v7",
        "n1",
        vec![
            route("web", &["web.example"], "", "web"),
            prioritized(route("gone", &["web.example"], "/gone", "dead"), 10),
        ],
        vec![
            cluster("web", vec![endpoint(web.addr)]),
            cluster("dead", vec![endpoint(dead)]),
        ],
    ));
    cp.expect_ack().await;

    let mut body_bytes = 0;
    for _ in 0..3 {
        let (status, _, body) = must_get(addr, "web.example", "/hello?x=1").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body_bytes += body.len();
    }
    let (status, _, _) = must_get(addr, "web.example", "/gone").await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    let (status, _, _) = must_get(addr, "nowhere.example", "/").await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Requests are recorded when their response body is done: wait for all five.
    let m = eventually("the requests to be counted", || async {
        let m = metrics(&proxy).await;
        (value(
            &m,
            r#"berth_proxy_entrypoint_requests_total{entrypoint="http",code_class="4xx"}"#,
        ) == 1.0
            && value(
                &m,
                r#"berth_proxy_requests_total{route="web",service="web",code_class="2xx"}"#,
            ) == 3.0
            && value(
                &m,
                r#"berth_proxy_requests_total{route="gone",service="gone",code_class="5xx"}"#,
            ) == 1.0)
            .then_some(m)
    })
    .await;
    assert_eq!(value(&m, r#"berth_proxy_snapshot_info{version="v7"}"#), 1.0);
    assert!(value(&m, "berth_proxy_snapshot_age_seconds") >= 0.0);
    assert_eq!(value(&m, "berth_proxy_routes"), 2.0);
    assert_eq!(
        value(
            &m,
            r#"berth_proxy_entrypoint_requests_total{entrypoint="http",code_class="2xx"}"#
        ),
        3.0
    );
    assert_eq!(
        value(
            &m,
            r#"berth_proxy_entrypoint_requests_total{entrypoint="http",code_class="5xx"}"#
        ),
        1.0
    );
    assert_eq!(
        value(
            &m,
            r#"berth_proxy_requests_total{route="web",service="web",code_class="5xx"}"#
        ),
        0.0
    );
    assert_eq!(
        value(
            &m,
            r#"berth_proxy_request_duration_seconds_count{route="web",service="web"}"#
        ),
        3.0
    );
    assert_eq!(
        value(
            &m,
            r#"berth_proxy_request_duration_seconds_bucket{route="web",service="web",le="+Inf"}"#
        ),
        3.0
    );
    assert_eq!(
        value(
            &m,
            r#"berth_proxy_response_bytes_total{route="web",service="web"}"#
        ),
        body_bytes as f64
    );
    assert!(value(&m, r#"berth_proxy_upstream_connect_errors_total{cluster="dead"}"#) >= 1.0);
    assert_eq!(value(&m, "berth_proxy_access_log_dropped_total"), 0.0);

    // One JSON line per request, with Traefik's field names.
    let lines = eventually("five access-log lines", || async {
        let l = lines(&log);
        (l.len() == 5).then_some(l)
    })
    .await;
    let entries: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let ok: Vec<&serde_json::Value> = entries.iter().filter(|e| e["DownstreamStatus"] == 200).collect();
    assert_eq!(ok.len(), 3, "{lines:#?}");
    for e in &ok {
        assert_eq!(e["RouterName"], "web", "{e}");
        assert_eq!(e["ServiceName"], "web", "{e}");
        assert_eq!(e["ServiceAddr"], web.addr.to_string(), "{e}");
        assert_eq!(e["RequestHost"], "web.example", "{e}");
        assert_eq!(e["RequestMethod"], "GET", "{e}");
        assert_eq!(e["RequestPath"], "/hello?x=1", "{e}");
        assert_eq!(e["RequestProtocol"], "HTTP/1.1", "{e}");
        assert_eq!(e["ClientHost"], "127.0.0.1", "{e}");
        assert_eq!(e["entryPointName"], "http", "{e}");
        assert!(e["Duration"].as_u64().is_some_and(|d| d > 0), "{e}");
        assert!(e["StartUTC"].as_str().is_some_and(|t| t.ends_with('Z')), "{e}");
        assert!(
            e["ClientAddr"]
                .as_str()
                .is_some_and(|a| a.starts_with("127.0.0.1:")),
            "{e}"
        );
    }
    let sizes: usize = ok
        .iter()
        .map(|e| e["DownstreamContentSize"].as_u64().unwrap_or(0) as usize)
        .sum();
    assert_eq!(sizes, body_bytes);
    let not_found = entries
        .iter()
        .find(|e| e["DownstreamStatus"] == 404)
        .expect("the 404");
    assert!(not_found.get("RouterName").is_none(), "{not_found}");
    assert_eq!(not_found["RequestHost"], "nowhere.example");
    let bad_gateway = entries
        .iter()
        .find(|e| e["DownstreamStatus"] == 502)
        .expect("the 502");
    assert_eq!(bad_gateway["RouterName"], "gone");
}

#[tokio::test]
async fn active_connections_and_the_text_access_log() {
    let scratch = ScratchDir::new("berth-observability");
    let log = scratch.file("access.txt");
    let mut cp = FakeControlPlane::start().await;
    let web = Backend::start("web").await;
    let proxy = ProxyProcess::start(&[cp.url()], &["--access-log", log.to_str().expect("UTF-8 path")]).await;
    let addr = proxy.http_addr();
    cp.expect_hello().await;
    cp.push(update(
        "t1",
        "n1",
        vec![route("web", &["web.example"], "", "web")],
        vec![cluster("web", vec![endpoint(web.addr)])],
    ));
    cp.expect_ack().await;

    let gauge = r#"berth_proxy_active_connections{entrypoint="http"}"#;
    // Two requests on one keep-alive connection, which stays open: each is recorded when its
    // response is sent, not when the connection closes.
    let mut kept = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let two = "GET /k HTTP/1.1\r\nHost: web.example\r\n\r\nGET /k HTTP/1.1\r\nHost: web.example\r\n\r\n";
    kept.write_all(two.as_bytes()).await.expect("write");
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    while String::from_utf8_lossy(&received).matches("HTTP/1.1 200").count() < 2 {
        let n = tokio::time::timeout(DEADLINE, kept.read(&mut buf))
            .await
            .expect("responses in time")
            .expect("read");
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&received));
        received.extend_from_slice(&buf[..n]);
    }
    let routed = r#"berth_proxy_requests_total{route="web",service="web",code_class="2xx"}"#;
    eventually(
        "both requests to be counted while the connection is open",
        || async {
            let m = metrics(&proxy).await;
            (value(&m, routed) == 2.0 && value(&m, gauge) == 1.0).then_some(())
        },
    )
    .await;
    eventually("two access-log lines", || async {
        (lines(&log).len() == 2).then_some(())
    })
    .await;
    drop(kept);
    eventually("the closed connection to be uncounted", || async {
        (value(&metrics(&proxy).await, gauge) == 0.0).then_some(())
    })
    .await;

    let (status, _, body) = get(addr, "web.example", "/text", &[("x-request-id", "req-42")])
        .await
        .expect("request");
    assert_eq!(status, StatusCode::OK);
    let line = eventually("the access-log line", || async {
        let mut l = lines(&log);
        (l.len() == 3).then(|| l.pop()).flatten()
    })
    .await;
    // client - - [time] "METHOD path PROTO" status bytes "host" "route" "service" "endpoint" "id" Nms
    assert!(line.starts_with("127.0.0.1 - - ["), "{line}");
    let expected = format!(
        "] \"GET /text HTTP/1.1\" 200 {} \"web.example\" \"web\" \"web\" \"{}\" ",
        body.len(),
        web.addr
    );
    assert!(line.contains(&expected), "{line}\nlacks {expected}");
    assert!(line.ends_with("ms"), "{line}");
    assert!(line.contains(" \"req-42\" "), "the client's X-Request-Id: {line}");
}

#[test]
fn an_access_log_that_cannot_be_opened_stops_the_binary_naming_the_flag() {
    let (code, stderr) = run_to_exit(&[
        "--control-plane",
        "http://127.0.0.1:1",
        "--entrypoint",
        "http=127.0.0.1:0",
        "--admin-addr",
        "127.0.0.1:0",
        "--access-log",
        "/nonexistent-berth-dir/access.log",
    ]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("--access-log") && stderr.contains("/nonexistent-berth-dir/access.log"),
        "{stderr}"
    );
    let (code, stderr) = run_to_exit(&[
        "--control-plane",
        "http://127.0.0.1:1",
        "--entrypoint",
        "http=127.0.0.1:0",
        "--access-log-format",
        "xml",
    ]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("--access-log-format"), "{stderr}");
}
