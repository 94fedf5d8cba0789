//! The seam as the control plane uses it: dialects chosen per service, Fabio beside Traefik,
//! and every problem reported with where it is.

use std::collections::BTreeMap;

use crate::construct::*;
use crate::{compile_service, Instance, ServiceRoutes, Settings};

/// A routable instance at 10.0.0.1:80 with `tags` (the dialect tests' shared helper).
pub(crate) fn instance(id: &str, tags: &[&str]) -> Instance {
    Instance {
        id: id.into(),
        address: "10.0.0.1".into(),
        port: 80,
        tags: tags.iter().map(|t| t.to_string()).collect(),
        meta: BTreeMap::new(),
        routable: true,
    }
}

/// Settings reading tags under the `berth` prefix instead of `traefik`.
pub(crate) fn berth_prefix() -> Settings {
    Settings {
        prefix: "berth".into(),
        ..Settings::default()
    }
}

fn compile(instances: &[Instance], settings: &Settings) -> ServiceRoutes {
    compile_service("web", instances, settings, &|_| None)
}

fn names(result: &ServiceRoutes) -> Vec<&str> {
    result.routes.iter().map(|r| r.name.as_str()).collect()
}

#[test]
fn v2_v3_tags_win_over_v1_tags_and_the_v1_tags_are_reported() {
    let result = compile(
        &[
            instance(
                "a",
                &["traefik.enable=true", "traefik.frontend.rule=Host:old.example"],
            ),
            instance(
                "b",
                &[
                    "traefik.enable=true",
                    "traefik.http.routers.new.rule=Host(`new.example`)",
                ],
            ),
        ],
        &Settings::default(),
    );
    assert_eq!(
        names(&result),
        ["web/new", "web/web"],
        "a gets the default router"
    );
    let ignored = result
        .errors
        .iter()
        .find(|e| e.tag.as_deref() == Some("traefik.frontend.rule=Host:old.example"))
        .expect("v1 tag reported");
    assert!(ignored.error.starts_with("ignored"), "{ignored}");
    assert_eq!(ignored.instance.as_deref(), Some("a"));
}

#[test]
fn without_dialect_tags_the_domain_decides_the_default() {
    let enabled = [instance("a", &["traefik.enable=true"])];
    let v3 = compile(&enabled, &Settings::default());
    assert_eq!(names(&v3), ["web/web"]);
    assert_eq!(v3.routes[0].matcher, Some(host_exact("web")));
    let v1 = compile(
        &enabled,
        &Settings {
            domain: Some("example.com".into()),
            ..Settings::default()
        },
    );
    assert_eq!(names(&v1), ["web"]);
    assert_eq!(v1.routes[0].matcher, Some(host_exact("web.example.com")));
}

#[test]
fn fabio_tags_route_beside_traefik_tags() {
    let result = compile(
        &[instance(
            "a",
            &[
                "traefik.enable=true",
                "traefik.frontend.rule=Host:a.example",
                "urlprefix-b.example/api strip=/api",
            ],
        )],
        &Settings::default(),
    );
    assert_eq!(names(&result), ["web", "web/fabio/1"]);
    assert!(result.errors.is_empty(), "{:?}", result.errors);
    let fabio_only = compile(&[instance("a", &["urlprefix-/x"])], &Settings::default());
    assert_eq!(names(&fabio_only), ["web/fabio/1"], "Fabio has no enable tag");
}

#[test]
fn one_bad_tag_costs_one_route() {
    let result = compile(
        &[instance(
            "a",
            &[
                "traefik.enable=true",
                "traefik.http.routers.ok.rule=Host(`ok.example`)",
                "traefik.http.routers.broken.rule=Host(`a`",
                "urlprefix-:9000 proto=tcp",
                "urlprefix-/fine",
            ],
        )],
        &Settings::default(),
    );
    assert_eq!(names(&result), ["web/fabio/1", "web/ok"]);
    let rejected: Vec<&str> = result.errors.iter().filter_map(|e| e.tag.as_deref()).collect();
    assert_eq!(
        rejected,
        [
            "traefik.http.routers.broken.rule=Host(`a`",
            "urlprefix-:9000 proto=tcp"
        ]
    );
    for error in &result.errors {
        assert_eq!(error.service, "web");
        assert!(error.to_string().starts_with("service \"web\""), "{error}");
    }
}

#[test]
fn unroutable_instances_keep_their_routes_without_endpoints() {
    let mut a = instance(
        "a",
        &["traefik.enable=true", "traefik.frontend.rule=Host:a.example"],
    );
    a.routable = false;
    let result = compile(&[a], &Settings::default());
    assert_eq!(names(&result), ["web"]);
    assert!(result.clusters[0].endpoints.is_empty());
    let mut b = instance(
        "b",
        &["traefik.enable=true", "traefik.frontend.rule=Host:a.example"],
    );
    b.address = String::new();
    let result = compile(&[b], &Settings::default());
    assert!(result.clusters[0].endpoints.is_empty());
    assert!(
        result.errors[0].error.contains("usable address"),
        "{:?}",
        result.errors
    );
}

#[test]
fn every_route_and_cluster_lists_its_features() {
    let result = compile(
        &[instance(
            "a",
            &[
                "traefik.enable=true",
                "traefik.frontend.rule=Host:a.example;PathPrefixStrip:/api",
                "traefik.protocol=https",
            ],
        )],
        &Settings::default(),
    );
    assert_eq!(
        result.routes[0].requires,
        ["matcher/host", "matcher/path_prefix", "middleware/strip_prefix"]
    );
    assert_eq!(result.clusters[0].requires, ["cluster/https"]);
}

mod proptests {
    use proptest::prelude::*;

    use super::instance;
    use crate::{compile_service, Settings};

    /// Tags that look like what operators write, with random keys and values.
    fn tag() -> impl Strategy<Value = String> {
        let key = prop_oneof![
            Just("traefik.enable"),
            Just("traefik.http.routers.r.rule"),
            Just("traefik.http.routers.r.middlewares"),
            Just("traefik.http.routers.r.service"),
            Just("traefik.http.middlewares.m.chain.middlewares"),
            Just("traefik.http.middlewares.m.stripprefix.prefixes"),
            Just("traefik.http.middlewares.m.ratelimit.average"),
            Just("traefik.http.services.s.loadbalancer.server.port"),
            Just("traefik.frontend.rule"),
            Just("traefik.frontend.auth.basic.users"),
            Just("traefik.frontends.x.rule"),
            Just("traefik.backend.loadbalancer.stickiness"),
            Just("traefik.weight"),
        ];
        prop_oneof![
            (key, "\\PC{0,30}").prop_map(|(k, v)| format!("{k}={v}")),
            "traefik\\.[a-zA-Z.\\[\\]0-9]{0,30}=\\PC{0,10}",
            "urlprefix-\\PC{0,30}",
        ]
    }

    proptest! {
        #[test]
        fn any_tags_compile_without_panicking(tags in prop::collection::vec(tag(), 0..8)) {
            let refs: Vec<&str> = tags.iter().map(String::as_str).collect();
            let result = compile_service("web", &[instance("a", &refs)], &Settings::default(), &|_| None);
            for route in &result.routes {
                prop_assert!(route.matcher.is_some());
                prop_assert!(result.clusters.iter().any(|c| c.name == route.cluster));
            }
        }
    }
}
