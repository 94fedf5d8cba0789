use std::time::Duration;

use super::*;
use crate::table::testing::{cluster, endpoint, host, route, snapshot, update};

fn has(text: &str, line: &str) -> bool {
    text.lines().any(|l| l == line)
}

/// A state with `routes` (name, service), all on one cluster `cluster`, applied at `version`.
fn state_with(state: &State, version: &str, cluster_name: &str, routes: &[(&str, &str)]) {
    let routes = routes
        .iter()
        .map(|(name, service)| {
            let mut r = route(name, host(&format!("{name}.example")), cluster_name);
            r.service = (*service).to_owned();
            r
        })
        .collect();
    let snap = snapshot(
        routes,
        vec![cluster(cluster_name, vec![endpoint("127.0.0.1", 9, 1)])],
    );
    let reply = state.apply(&update(version, version, snap));
    assert!(
        matches!(reply.kind, Some(berth_proto::v1::proxy_message::Kind::Ack(_))),
        "{reply:?}"
    );
}

fn stats_of(state: &State, name: &str) -> Arc<RouteStats> {
    let table = state.table();
    let table = table.as_ref().expect("a table");
    let r = table.routes().iter().find(|r| r.name == name).expect("the route");
    r.stats.clone()
}

#[test]
fn status_classes() {
    let c = ByClass::default();
    for status in [100, 200, 204, 301, 404, 429, 500, 503, 999, 0] {
        c.count(status);
    }
    assert_eq!((0..5).map(|i| c.get(i)).collect::<Vec<_>>(), vec![2, 2, 1, 2, 3]);
}

#[test]
fn requests_by_route_service_and_class_with_a_latency_histogram() {
    let state = State::new("n".into(), vec!["http".into()]);
    state_with(&state, "v1", "m-web", &[("m-a", "svc-a"), ("m-b", "svc-b")]);
    let a = stats_of(&state, "m-a");
    a.finished(200, Duration::from_millis(3), 10, 100);
    a.finished(200, Duration::from_millis(30), 0, 50);
    a.finished(502, Duration::from_secs(2), 0, 11);
    let text = render(global(), &state);
    assert!(
        has(&text, r#"berth_proxy_snapshot_info{version="v1"} 1"#),
        "{text}"
    );
    assert!(has(&text, "berth_proxy_snapshot_from_cache 0"), "{text}");
    assert!(has(&text, "# TYPE berth_proxy_requests_total counter"), "{text}");
    for line in [
        r#"berth_proxy_requests_total{route="m-a",service="svc-a",code_class="2xx"} 2"#,
        r#"berth_proxy_requests_total{route="m-a",service="svc-a",code_class="5xx"} 1"#,
        r#"berth_proxy_requests_total{route="m-a",service="svc-a",code_class="4xx"} 0"#,
        r#"berth_proxy_requests_total{route="m-b",service="svc-b",code_class="2xx"} 0"#,
        r#"berth_proxy_request_duration_seconds_bucket{route="m-a",service="svc-a",le="0.005"} 1"#,
        r#"berth_proxy_request_duration_seconds_bucket{route="m-a",service="svc-a",le="0.05"} 2"#,
        r#"berth_proxy_request_duration_seconds_bucket{route="m-a",service="svc-a",le="2.5"} 3"#,
        r#"berth_proxy_request_duration_seconds_bucket{route="m-a",service="svc-a",le="+Inf"} 3"#,
        r#"berth_proxy_request_duration_seconds_count{route="m-a",service="svc-a"} 3"#,
        r#"berth_proxy_request_duration_seconds_sum{route="m-a",service="svc-a"} 2.033"#,
        r#"berth_proxy_request_bytes_total{route="m-a",service="svc-a"} 10"#,
        r#"berth_proxy_response_bytes_total{route="m-a",service="svc-a"} 161"#,
    ] {
        assert!(has(&text, line), "missing {line}:\n{text}");
    }
    let snapshot_age = text
        .lines()
        .find_map(|l| l.strip_prefix("berth_proxy_snapshot_age_seconds "))
        .expect("an age");
    assert!(snapshot_age.parse::<f64>().expect("a number") >= 0.0);
}

#[test]
fn counters_survive_a_new_snapshot_while_route_and_service_stay() {
    let state = State::new("n".into(), vec!["http".into()]);
    state_with(&state, "v1", "k-web", &[("k-a", "svc"), ("k-b", "svc")]);
    stats_of(&state, "k-a").finished(200, Duration::ZERO, 0, 0);
    stats_of(&state, "k-b").finished(200, Duration::ZERO, 0, 0);
    // k-a unchanged, k-b now serves another service, k-c is new.
    state_with(
        &state,
        "v2",
        "k-web",
        &[("k-a", "svc"), ("k-b", "other"), ("k-c", "svc")],
    );
    let text = render(global(), &state);
    for line in [
        r#"berth_proxy_requests_total{route="k-a",service="svc",code_class="2xx"} 1"#,
        r#"berth_proxy_requests_total{route="k-b",service="other",code_class="2xx"} 0"#,
        r#"berth_proxy_requests_total{route="k-c",service="svc",code_class="2xx"} 0"#,
        r#"berth_proxy_snapshot_info{version="v2"} 1"#,
    ] {
        assert!(has(&text, line), "missing {line}:\n{text}");
    }
    // The old table is gone: k-b's old series left with it.
    assert!(!text.contains(r#"route="k-b",service="svc""#), "{text}");
}

#[test]
fn cluster_events_by_name_and_forgotten_with_the_cluster() {
    let metrics = Metrics::default();
    metrics.cluster("c-one", |c| &c.connect_errors);
    metrics.cluster("c-one", |c| &c.connect_errors);
    metrics.cluster("c-one", |c| &c.retries);
    metrics.cluster("c-two", |c| &c.ejections);
    let state = State::new("n".into(), vec!["http".into()]);
    let text = render(&metrics, &state);
    for line in [
        r#"berth_proxy_upstream_connect_errors_total{cluster="c-one"} 2"#,
        r#"berth_proxy_retries_total{cluster="c-one"} 1"#,
        r#"berth_proxy_endpoint_ejections_total{cluster="c-one"} 0"#,
        r#"berth_proxy_endpoint_ejections_total{cluster="c-two"} 1"#,
    ] {
        assert!(has(&text, line), "missing {line}:\n{text}");
    }
    assert!(
        !text.contains("berth_proxy_snapshot_info{"),
        "no snapshot yet: {text}"
    );
    metrics.keep_clusters(|name| name == "c-two");
    let text = render(&metrics, &state);
    assert!(!text.contains("c-one"), "{text}");
    assert!(
        has(&text, r#"berth_proxy_retries_total{cluster="c-two"} 0"#),
        "{text}"
    );
}

#[test]
fn entrypoints_connections_and_logs() {
    let metrics = Metrics::default();
    metrics.init_entrypoints(&["web", "websecure"]);
    metrics.entrypoint_request(0, 404);
    metrics.entrypoint_request(1, 200);
    metrics.entrypoint_request(7, 200); // no such entrypoint: ignored
    metrics.access_log_dropped();
    metrics.cache_written(true);
    metrics.cache_written(false);
    if let Some(e) = metrics.entrypoint(1) {
        e.active_connections.fetch_add(2, Ordering::Relaxed);
    }
    let state = State::new("n".into(), vec!["web".into(), "websecure".into()]);
    let text = render(&metrics, &state);
    for line in [
        r#"berth_proxy_entrypoint_requests_total{entrypoint="web",code_class="4xx"} 1"#,
        r#"berth_proxy_entrypoint_requests_total{entrypoint="websecure",code_class="2xx"} 1"#,
        r#"berth_proxy_active_connections{entrypoint="web"} 0"#,
        r#"berth_proxy_active_connections{entrypoint="websecure"} 2"#,
        "berth_proxy_access_log_dropped_total 1",
        "berth_proxy_cache_writes_total 1",
        "berth_proxy_cache_write_errors_total 1",
        "berth_proxy_routes 0",
    ] {
        assert!(has(&text, line), "missing {line}:\n{text}");
    }
}

#[test]
fn every_family_has_help_and_type() {
    let state = State::new("n".into(), vec!["http".into()]);
    let text = render(&Metrics::default(), &state);
    let families: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .collect();
    assert!(families.len() >= 15, "{text}");
    for f in families {
        assert!(f.starts_with("berth_proxy_"), "{f}");
        assert!(text.contains(&format!("# HELP {f} ")), "{f} has no HELP");
    }
}
