use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use berth_proto::v1::Route;
use dashmap::DashMap;

use super::*;
use crate::compile::{Compiled, Items, RouteError};
use crate::server::ProxyStatus;
use crate::watch::status::{Part, Request};

fn published(version: &str, routes: usize, rejected: usize, built_at: SystemTime) -> Published {
    Published {
        compiled: Compiled {
            snapshot: Items {
                routes: (0..routes).map(|_| Arc::new(Route::default())).collect(),
                ..Items::default()
            },
            version: version.into(),
            errors: vec![
                RouteError {
                    service: "web".into(),
                    instance: None,
                    router: None,
                    tag: None,
                    position: None,
                    error: "bad rule".into(),
                };
                rejected
            ],
            changed: None,
        },
        built_at,
        full: Default::default(),
    }
}

fn proxy(node: &str, acked: Option<&str>) -> ProxyStatus {
    ProxyStatus {
        node_id: node.into(),
        peer: None,
        entrypoints: vec!["http".into()],
        build: "test".into(),
        connected_since: SystemTime::now(),
        acked_version: acked.map(str::to_string),
        sent_version: None,
        last_nack: None,
    }
}

/// The sample lines of `text` (no comments), as `name{labels} value`.
fn samples(text: &str) -> Vec<&str> {
    text.lines().filter(|l| !l.starts_with('#')).collect()
}

fn has(text: &str, line: &str) -> bool {
    text.lines().any(|l| l == line)
}

#[test]
fn before_the_first_snapshot_every_family_is_declared_and_nothing_is_invented() {
    let metrics = Metrics::default();
    let proxies: Proxies = Arc::new(DashMap::new());
    let text = metrics.render(None, &WatchStatus::default(), &proxies);
    assert!(has(&text, "# TYPE berth_control_snapshot_info gauge"), "{text}");
    assert!(!text.contains("berth_control_snapshot_info{"), "{text}");
    assert!(!text.contains("\nberth_control_snapshot_build_time_seconds "));
    assert!(has(&text, r#"berth_control_routes{state="served"} 0"#));
    assert!(has(&text, r#"berth_control_routes{state="rejected"} 0"#));
    assert!(has(&text, "berth_control_proxies_connected 0"));
    assert!(has(&text, "berth_control_proxies_behind 0"));
    assert!(has(&text, r#"berth_control_pushes_total{kind="full"} 0"#));
    assert!(has(&text, "berth_control_compile_duration_seconds_count 0"));
    assert!(has(
        &text,
        r#"berth_control_consul_requests_total{kind="catalog_services"} 0"#
    ));
    assert!(has(&text, r#"berth_control_consul_errors_total{part="reads"} 0"#));
}

#[test]
fn a_scrape_says_what_was_published_pushed_and_acknowledged() {
    let metrics = Metrics::default();
    metrics.pushed(Kind::Full, 1000);
    metrics.pushed(Kind::Full, 1000);
    metrics.pushed(Kind::Delta, 70);
    metrics.pushed(Kind::UpToDate, 40);
    metrics.stream_timed_out();
    metrics.acked();
    metrics.nacked();
    metrics.hello_refused();
    let watch = WatchStatus::default();
    watch.set_services(7);
    watch.request(Request::CatalogServices);
    watch.request(Request::CatalogServices);
    watch.request(Request::CatalogNode);
    watch.error(Part::Checks);
    watch.service_reads(3);
    watch.full_read();
    watch.compiled_services(5);
    watch.blocked(Part::Services, Duration::from_millis(1500));
    watch.blocked(Part::Services, Duration::from_millis(500));
    let proxies: Proxies = Arc::new(DashMap::new());
    proxies.insert(1, proxy("a", Some("v2")));
    proxies.insert(2, proxy("b", Some("v1")));
    proxies.insert(3, proxy("c", None));
    let built_at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let current = published("v2", 4, 1, built_at);

    let text = metrics.render(Some(&current), &watch, &proxies);
    for line in [
        r#"berth_control_snapshot_info{version="v2"} 1"#,
        "berth_control_snapshot_build_time_seconds 1700000000",
        "berth_control_services 7",
        r#"berth_control_routes{state="served"} 4"#,
        r#"berth_control_routes{state="rejected"} 1"#,
        r#"berth_control_consul_requests_total{kind="catalog_services"} 2"#,
        r#"berth_control_consul_requests_total{kind="catalog_node"} 1"#,
        r#"berth_control_consul_requests_total{kind="health_checks"} 0"#,
        r#"berth_control_consul_errors_total{part="checks"} 1"#,
        r#"berth_control_consul_errors_total{part="services"} 0"#,
        "berth_control_consul_service_reads_total 3",
        "berth_control_consul_full_reads_total 1",
        "berth_control_compiled_services_total 5",
        r#"berth_control_consul_blocking_query_seconds_count{query="services"} 2"#,
        r#"berth_control_consul_blocking_query_seconds_sum{query="services"} 2"#,
        r#"berth_control_consul_blocking_query_last_seconds{query="services"} 0.5"#,
        r#"berth_control_consul_blocking_query_seconds_count{query="checks"} 0"#,
        "berth_control_proxies_connected 3",
        "berth_control_proxies_behind 2",
        r#"berth_control_pushes_total{kind="full"} 2"#,
        r#"berth_control_pushes_total{kind="delta"} 1"#,
        r#"berth_control_pushes_total{kind="up_to_date"} 1"#,
        r#"berth_control_pushed_bytes_total{kind="full"} 2000"#,
        r#"berth_control_pushed_bytes_total{kind="delta"} 70"#,
        r#"berth_control_pushed_bytes_total{kind="up_to_date"} 40"#,
        "berth_control_streams_timed_out_total 1",
        "berth_control_acks_total 1",
        "berth_control_nacks_total 1",
        "berth_control_hellos_refused_total 1",
    ] {
        assert!(has(&text, line), "missing {line:?} in\n{text}");
    }
}

#[test]
fn the_compile_histogram_is_cumulative_and_its_inf_bucket_is_the_count() {
    let metrics = Metrics::default();
    metrics.compiled(Duration::from_micros(500)); // ≤ 0.001
    metrics.compiled(Duration::from_millis(20)); // ≤ 0.025
    metrics.compiled(Duration::from_millis(20));
    metrics.compiled(Duration::from_secs(30)); // over every bound
    let proxies: Proxies = Arc::new(DashMap::new());
    let text = metrics.render(None, &WatchStatus::default(), &proxies);
    let name = "berth_control_compile_duration_seconds";
    assert!(has(&text, &format!("# TYPE {name} histogram")));
    for (le, count) in [
        ("0.001", 1),
        ("0.005", 1),
        ("0.01", 1),
        ("0.025", 3),
        ("10", 3),
        ("+Inf", 4),
    ] {
        let line = format!("{name}_bucket{{le=\"{le}\"}} {count}");
        assert!(has(&text, &line), "missing {line:?} in\n{text}");
    }
    assert!(has(&text, &format!("{name}_count 4")), "{text}");
    assert!(has(&text, &format!("{name}_sum 30.0405")), "{text}");
}

#[test]
fn every_sample_belongs_to_a_family_declared_once_with_help_and_type() {
    let metrics = Metrics::default();
    metrics.compiled(Duration::from_millis(3));
    let proxies: Proxies = Arc::new(DashMap::new());
    proxies.insert(1, proxy("a", Some("v1")));
    let current = published("v1", 1, 0, SystemTime::now());
    let text = metrics.render(Some(&current), &WatchStatus::default(), &proxies);

    let mut helped = BTreeSet::new();
    let mut typed = BTreeSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap_or_default();
            assert!(helped.insert(name.to_string()), "HELP of {name} twice");
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split(' ');
            let name = parts.next().unwrap_or_default();
            let kind = parts.next().unwrap_or_default();
            assert!(
                ["counter", "gauge", "histogram", "summary"].contains(&kind),
                "{line}"
            );
            assert!(helped.contains(name), "TYPE of {name} without HELP");
            assert!(typed.insert(name.to_string()), "TYPE of {name} twice");
            if kind == "counter" {
                assert!(name.ends_with("_total"), "counter {name} without _total");
            }
        }
    }
    for sample in samples(&text) {
        let name = sample.split(['{', ' ']).next().unwrap_or_default();
        assert!(name.starts_with("berth_control_"), "{sample}");
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix).filter(|base| typed.contains(*base)))
            .unwrap_or(name);
        assert!(typed.contains(family), "sample {sample:?} has no TYPE line");
        let value = sample.rsplit(' ').next().unwrap_or_default();
        assert!(value.parse::<f64>().is_ok(), "value of {sample:?}");
    }
}

#[test]
fn label_values_and_help_are_escaped() {
    let mut text = Text::default();
    text.family("x_total", "counter", "a \\ and a\nnewline");
    text.sample("x_total", &[("v", "a\"b\\c\nd")], 1);
    assert_eq!(
        text.into_string(),
        "# HELP x_total a \\\\ and a\\nnewline\n# TYPE x_total counter\nx_total{v=\"a\\\"b\\\\c\\nd\"} 1\n"
    );
}
