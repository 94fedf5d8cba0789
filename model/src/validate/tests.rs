//! Snapshot-level checks (names, clusters, matchers in place, FEATURES, the report's bounds), and
//! the property that validation never panics, whatever the snapshot holds.

use berth_proto::v1::{Cluster, Matcher, Route, Snapshot};
use proptest::prelude::*;
use prost::Message;

use super::*;
use crate::testing::*;

fn snapshot(routes: Vec<Route>, clusters: Vec<Cluster>) -> Snapshot {
    Snapshot { routes, clusters }
}

fn problems(s: &Snapshot) -> Vec<String> {
    match validate(s) {
        Ok(()) => vec![],
        Err(e) => e.problems.iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn a_sound_snapshot_passes_and_compiles() {
    let s = snapshot(
        vec![
            route(
                "api/web",
                "web",
                all_of(vec![host("a.example"), path_prefix("/api")]),
            ),
            route(
                "root",
                "web",
                any_of(vec![host("b.example"), wildcard("example.org")]),
            ),
        ],
        vec![cluster("web")],
    );
    assert_eq!(problems(&s), Vec::<String>::new());
    let compiled = validate_and_compile(&s).unwrap();
    assert_eq!(compiled.len(), 2);
    assert!(validate(&Snapshot::default()).is_ok());
}

#[test]
fn names_must_be_given_and_unique() {
    let s = snapshot(
        vec![
            route("a", "c", all_of(vec![])),
            route("a", "c", all_of(vec![])),
            route("", "c", all_of(vec![])),
        ],
        vec![cluster("c"), cluster("c"), cluster("")],
    );
    assert_eq!(
        problems(&s),
        vec![
            r#"route "a": name: the name is used more than once"#,
            "route #2 (no name): name: is empty",
            r#"cluster "c": name: the name is used more than once"#,
            "cluster #2 (no name): name: is empty",
        ]
    );
}

#[test]
fn a_route_needs_a_cluster_of_the_snapshot_and_a_matcher() {
    let mut no_matcher = route("m", "c", all_of(vec![]));
    no_matcher.matcher = None;
    let mut empty_entrypoint = route("e", "c", all_of(vec![]));
    empty_entrypoint.entrypoints = vec!["web".into(), String::new()];
    let s = snapshot(
        vec![
            route("a", "gone", all_of(vec![])),
            route("b", "", all_of(vec![])),
            no_matcher,
            empty_entrypoint,
        ],
        vec![cluster("c")],
    );
    assert_eq!(
        problems(&s),
        vec![
            r#"route "a": cluster: cluster "gone" is not in the snapshot"#,
            r#"route "b": cluster: is empty"#,
            r#"route "m": matcher: is not set"#,
            r#"route "e": entrypoints[1]: is empty"#,
        ]
    );
}

#[test]
fn matcher_problems_name_their_place() {
    let s = snapshot(
        vec![route(
            "api/web",
            "c",
            all_of(vec![host("a.example"), path_re("^/(css")]),
        )],
        vec![cluster("c")],
    );
    assert_eq!(
        problems(&s),
        vec![
            r#"route "api/web": matcher.all[1].path.regexp: regexp "^/(css" does not compile: unclosed group"#
        ]
    );
}

#[test]
fn features_must_be_known_and_listed() {
    let mut r = route("r", "c", not(host("a.example")));
    r.requires = vec!["matcher/host".into(), "middleware/forward_auth".into()];
    let mut c = cluster("c");
    c.requires = vec!["cluster/quic".into()];
    assert_eq!(
        problems(&snapshot(vec![r], vec![c])),
        vec![
            r#"route "r": requires[1]: requires "middleware/forward_auth", which this version of Berth does not know"#,
            r#"route "r": requires: uses "matcher/not" but does not list it in requires"#,
            r#"cluster "c": requires[0]: requires "cluster/quic", which this version of Berth does not know"#,
        ]
    );
}

#[test]
fn listing_a_known_feature_that_is_not_used_is_fine() {
    let mut r = route("r", "c", host("a.example"));
    r.requires.push("matcher/path".into());
    assert!(problems(&snapshot(vec![r], vec![cluster("c")])).is_empty());
}

#[test]
fn the_report_is_bounded_and_counts_the_rest() {
    let routes: Vec<Route> = (0..30)
        .map(|i| route(&format!("r{i}"), "nowhere", all_of(vec![])))
        .collect();
    let e = validate(&snapshot(routes, vec![])).unwrap_err();
    assert_eq!(e.total, 30);
    assert_eq!(e.problems.len(), MAX_REPORTED);
    let text = e.to_string();
    assert!(
        text.starts_with(r#"30 problems: route "r0": cluster: cluster "nowhere" is not in the snapshot; "#),
        "{text}"
    );
    assert!(text.ends_with("; and 10 more"), "{text}");
}

#[test]
fn a_single_problem_reads_as_one_sentence() {
    let e = validate(&snapshot(vec![route("a", "x", all_of(vec![]))], vec![])).unwrap_err();
    assert_eq!(
        e.to_string(),
        r#"route "a": cluster: cluster "x" is not in the snapshot"#
    );
}

#[test]
fn every_matcher_validate_accepts_compiles_and_the_reverse() {
    let bad = route("bad", "c", all_of(vec![host("A.example")]));
    let good = route("good", "c", all_of(vec![host("a.example")]));
    assert!(validate(&snapshot(vec![good.clone()], vec![cluster("c")])).is_ok());
    assert!(CompiledMatcher::compile(good.matcher.as_ref().unwrap()).is_ok());
    assert!(validate(&snapshot(vec![bad.clone()], vec![cluster("c")])).is_err());
    assert!(CompiledMatcher::compile(bad.matcher.as_ref().unwrap()).is_err());
}

fn leaf() -> impl Strategy<Value = Matcher> {
    prop_oneof![
        text().prop_map(|t| host(&t)),
        text().prop_map(|t| wildcard(&t)),
        text().prop_map(|t| host_re(&t)),
        text().prop_map(|t| path_exact(&t)),
        text().prop_map(|t| path_prefix(&t)),
        text().prop_map(|t| path_segment(&t)),
        text().prop_map(|t| path_re(&t)),
        text().prop_map(|t| method(&t)),
        (text(), text()).prop_map(|(n, v)| header(&n, &v)),
        (text(), text()).prop_map(|(n, v)| header_re(&n, &v)),
        (text(), text()).prop_map(|(n, v)| query(&n, &v)),
        text().prop_map(|n| query_present(&n)),
        (text(), text()).prop_map(|(n, v)| query_re(&n, &v)),
        prop::collection::vec(text(), 0..3)
            .prop_map(|r| client_ip(&r.iter().map(String::as_str).collect::<Vec<_>>())),
        Just(Matcher { kind: None }),
    ]
}

fn tree() -> impl Strategy<Value = Matcher> {
    leaf().prop_recursive(4, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(all_of),
            prop::collection::vec(inner.clone(), 0..4).prop_map(any_of),
            inner.prop_map(not),
        ]
    })
}

fn arbitrary_route() -> impl Strategy<Value = Route> {
    (
        text(),
        text(),
        prop::option::of(tree()),
        prop::collection::vec(text(), 0..3),
        prop::collection::vec(crate::testing::arbitrary_middleware(), 0..3),
    )
        .prop_map(|(name, cluster, matcher, requires, middlewares)| Route {
            name,
            cluster,
            matcher,
            requires,
            middlewares,
            ..Route::default()
        })
}

fn arbitrary_cluster() -> impl Strategy<Value = Cluster> {
    (
        text(),
        text(),
        any::<i32>(),
        prop::collection::vec((text(), any::<u32>(), any::<u32>()), 0..3),
        prop::option::of((text(), text(), text(), any::<i64>())),
        prop::collection::vec(text(), 0..2),
    )
        .prop_map(
            |(name, scheme, host_header, endpoints, sticky, requires)| Cluster {
                name,
                scheme,
                host_header: host_header % 3,
                endpoints: endpoints
                    .into_iter()
                    .map(|(address, port, weight)| berth_proto::v1::Endpoint {
                        address,
                        port: port % 70000,
                        weight: weight % 3,
                        id: String::new(),
                    })
                    .collect(),
                sticky: sticky.map(|(name, same_site, path, max_age)| berth_proto::v1::StickyCookie {
                    name,
                    same_site,
                    path,
                    max_age,
                    ..Default::default()
                }),
                requires,
                ..Cluster::default()
            },
        )
}

proptest! {
    #[test]
    fn validate_never_panics_on_arbitrary_snapshots(
        routes in prop::collection::vec(arbitrary_route(), 0..4),
        clusters in prop::collection::vec(arbitrary_cluster(), 0..3),
    ) {
        let s = snapshot(routes, clusters);
        if let Err(e) = validate(&s) {
            prop_assert!(e.problems.len() <= MAX_REPORTED);
            prop_assert!(e.total >= e.problems.len());
            prop_assert!(!e.to_string().is_empty());
        }
    }

    #[test]
    fn validate_never_panics_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(s) = Snapshot::decode(bytes.as_slice()) {
            let _ = validate(&s);
        }
    }

    #[test]
    fn what_validate_accepts_compiles(m in tree()) {
        let r = route("r", "c", m.clone());
        let valid = validate(&snapshot(vec![r], vec![cluster("c")])).is_ok();
        prop_assert_eq!(valid, CompiledMatcher::compile(&m).is_ok());
    }
}
