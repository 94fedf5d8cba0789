//! The Traefik v1 dialect end to end: tags of instances in, routes, clusters and errors out.

use berth_proto::v1::{
    middleware::Kind, BasicAuth, HeaderValue, Headers, HostHeader, IpAllowList, RedirectScheme,
};

use crate::construct::*;
use crate::tests::{berth_prefix, instance};
use crate::{compile_service, Instance, ServiceRoutes, Settings};

fn compile(service: &str, instances: &[Instance], settings: &Settings) -> ServiceRoutes {
    compile_service(service, instances, settings, &|_| None)
}

fn one(service: &str, tags: &[&str]) -> ServiceRoutes {
    compile(service, &[instance("i1", tags)], &Settings::default())
}

fn error_with<'a>(result: &'a ServiceRoutes, text: &str) -> &'a crate::RouteError {
    result
        .errors
        .iter()
        .find(|e| e.error.contains(text))
        .unwrap_or_else(|| panic!("no error containing {text:?} in {:#?}", result.errors))
}

fn kinds(result: &ServiceRoutes) -> Vec<Kind> {
    result.routes[0]
        .middlewares
        .iter()
        .filter_map(|m| m.kind.clone())
        .collect()
}

#[test]
fn the_articles_tags_compile() {
    let result = one(
        "web_go",
        &[
            "traefik.enable=true",
            "traefik.frontend.entryPoints=http",
            "traefik.frontend.rule=Host:go.traefix.example.localhost",
        ],
    );
    assert!(result.errors.is_empty(), "{:?}", result.errors);
    let route = &result.routes[0];
    assert_eq!(route.name, "web_go");
    assert_eq!(route.matcher, Some(host_exact("go.traefix.example.localhost")));
    assert_eq!(route.entrypoints, ["http"]);
    assert_eq!(route.priority, "Host:go.traefix.example.localhost".len() as i64);
    assert_eq!(route.cluster, "web_go");
    assert_eq!(route.origin, "traefik/v1 frontend");
    let cluster = &result.clusters[0];
    assert_eq!(
        (
            cluster.name.as_str(),
            cluster.endpoints.len(),
            cluster.endpoints[0].weight
        ),
        ("web_go", 1, 1)
    );
    assert_eq!(cluster.host_header, HostHeader::Pass as i32);
}

#[test]
fn not_exposed_without_enable_unless_exposed_by_default() {
    let tags = ["traefik.frontend.rule=Host:a.example"];
    assert!(one("a", &tags).routes.is_empty());
    let by_default = Settings {
        exposed_by_default: true,
        ..Settings::default()
    };
    assert_eq!(
        compile("a", &[instance("i1", &tags)], &by_default).routes.len(),
        1
    );
    let off = ["traefik.enable=false", tags[0]];
    assert!(compile("a", &[instance("i1", &off)], &by_default)
        .routes
        .is_empty());
}

#[test]
fn default_rule_uses_the_normalised_service_name_and_domain() {
    let settings = Settings {
        domain: Some("localhost".into()),
        ..Settings::default()
    };
    let result = compile("web_go", &[instance("i1", &["traefik.enable=true"])], &settings);
    assert_eq!(result.routes[0].name, "web_go");
    assert_eq!(result.routes[0].matcher, Some(host_exact("web-go.localhost")));
    assert_eq!(result.routes[0].priority, "Host:web-go.localhost".len() as i64);
    let segment = compile(
        "web",
        &[instance(
            "i1",
            &["traefik.enable=true", "traefik.frontends.admin.entryPoints=http"],
        )],
        &settings,
    );
    let matchers: Vec<_> = segment
        .routes
        .iter()
        .map(|r| (r.name.as_str(), r.matcher.clone()))
        .collect();
    assert_eq!(
        matchers,
        [
            ("web", Some(host_exact("web.localhost"))),
            ("web/admin", Some(host_exact("web-admin.localhost")))
        ]
    );
}

#[test]
fn exposed_without_rule_or_domain_is_an_error() {
    let result = one("a", &["traefik.enable=true", "traefik.frontend.entryPoints=http"]);
    assert!(result.routes.is_empty());
    let e = error_with(&result, "--domain");
    assert_eq!(e.router.as_deref(), Some("frontend"));
    assert_eq!(e.instance.as_deref(), Some("i1"));
}

#[test]
fn custom_prefix() {
    let settings = berth_prefix();
    let tags = [
        "berth.enable=true",
        "berth.frontend.rule=Host:a.example",
        "traefik.enable=false",
    ];
    let result = compile("a", &[instance("i1", &tags)], &settings);
    assert_eq!(result.routes.len(), 1);
    assert!(
        compile("a", &[instance("i1", &["traefik.enable=true"])], &settings)
            .routes
            .is_empty()
    );
}

#[test]
fn bad_values_name_the_tag_and_position() {
    let table: &[(&[&str], &str, &str, Option<usize>)] = &[
        (
            &["traefik.enable=true", "traefik.frontend.rule=Host:"],
            "traefik.frontend.rule=Host:",
            "at least one value",
            Some(0),
        ),
        (
            &["traefik.enable=true", "traefik.frontend.rule=Host:a;Bad:x"],
            "traefik.frontend.rule=Host:a;Bad:x",
            "unknown matcher",
            Some(7),
        ),
        (
            &[
                "traefik.enable=true",
                "traefik.frontend.rule=Host:a",
                "traefik.weight=0",
            ],
            "traefik.weight=0",
            "out of range",
            None,
        ),
        (
            &[
                "traefik.enable=true",
                "traefik.frontend.rule=Host:a",
                "traefik.frontend.entryPoints=http,",
            ],
            "traefik.frontend.entryPoints=http,",
            "entrypoint",
            None,
        ),
        (
            &[
                "traefik.enable=true",
                "traefik.frontend.rule=Host:a",
                "traefik.frontend.priority=high",
            ],
            "traefik.frontend.priority=high",
            "not a whole number",
            None,
        ),
    ];
    for (tags, tag, text, position) in table {
        let result = one("a", tags);
        assert!(result.routes.is_empty(), "{tags:?}");
        let e = error_with(&result, text);
        assert_eq!(e.tag.as_deref(), Some(*tag), "{tags:?}");
        assert_eq!(e.position, *position, "{tags:?}");
    }
}

#[test]
fn contradicting_tags_are_an_error_but_repeats_are_not() {
    let result = one(
        "a",
        &[
            "traefik.enable=true",
            "traefik.frontend.rule=Host:a.example",
            "traefik.frontend.rule=Host:b.example",
        ],
    );
    assert!(result.routes.is_empty());
    error_with(&result, "given twice");
    let result = one(
        "a",
        &[
            "traefik.enable=true",
            "traefik.enable=true",
            "traefik.frontend.rule=Host:a.example",
        ],
    );
    assert_eq!(result.routes.len(), 1);
}

#[test]
fn weight_entrypoints_protocol_and_priority() {
    let result = one(
        "a",
        &[
            "traefik.enable=true",
            "traefik.frontend.rule=Host:a.example",
            "traefik.weight=5",
            "traefik.protocol=https",
            "traefik.frontend.priority=100",
            "traefik.frontend.entryPoints=https, http,http",
            "traefik.frontend.passHostHeader=false",
        ],
    );
    let route = &result.routes[0];
    assert_eq!(
        (route.priority, route.entrypoints.clone()),
        (100, vec!["http".to_string(), "https".to_string()])
    );
    let cluster = &result.clusters[0];
    assert_eq!(
        (cluster.endpoints[0].weight, cluster.scheme.as_str()),
        (5, "https")
    );
    assert_eq!(cluster.host_header, HostHeader::Endpoint as i32);
}

#[test]
fn instances_asking_for_different_frontends_form_groups() {
    let a = instance(
        "a",
        &["traefik.enable=true", "traefik.frontend.rule=Host:a.example"],
    );
    let b = instance(
        "b",
        &["traefik.enable=true", "traefik.frontend.rule=Host:b.example"],
    );
    let c = instance(
        "c",
        &["traefik.enable=true", "traefik.frontend.rule=Host:a.example"],
    );
    let result = compile("web", &[b, c, a], &Settings::default());
    let routes: Vec<(&str, Vec<&str>)> = result
        .routes
        .iter()
        .map(|r| {
            let cluster = result
                .clusters
                .iter()
                .find(|c| c.name == r.cluster)
                .expect("cluster");
            (
                r.name.as_str(),
                cluster.endpoints.iter().map(|e| e.id.as_str()).collect(),
            )
        })
        .collect();
    assert_eq!(routes, [("web", vec!["a", "c"]), ("web#2", vec!["b"])]);
}

#[test]
fn access_restricting_tags_are_applied_in_v1_order() {
    let user = "test:$apr1$H6uskkkW$IgXLP6ewTrSuBkTrqE8wj/";
    let users = format!("traefik.frontend.auth.basic.users={user}");
    let result = one(
        "a",
        &[
            "traefik.enable=true",
            "traefik.frontend.rule=Host:a.example;PathPrefixStrip:/api",
            "traefik.frontend.whiteList.sourceRange=10.0.0.0/8, 192.168.0.1",
            "traefik.frontend.redirect.entryPoint=https",
            "traefik.frontend.redirect.permanent=true",
            "traefik.frontend.headers.customRequestHeaders=x-a:1||X-B:",
            "traefik.frontend.headers.customResponseHeaders=X-C:3",
            &users,
            "traefik.frontend.auth.basic.removeHeader=true",
            "traefik.frontend.auth.basic.realm=r",
            "traefik.frontend.auth.headerField=X-User",
        ],
    );
    assert!(result.errors.is_empty(), "{:?}", result.errors);
    let kinds = kinds(&result);
    assert!(matches!(kinds[0], Kind::StripPrefix(_)), "{kinds:?}");
    assert_eq!(
        kinds[1..].to_vec(),
        vec![
            Kind::IpAllowList(IpAllowList {
                ranges: vec!["10.0.0.0/8".into(), "192.168.0.1".into()],
                reject_status: 0,
                source: Some(Default::default())
            }),
            Kind::RedirectScheme(RedirectScheme {
                scheme: "https".into(),
                port: "".into(),
                permanent: true
            }),
            Kind::Headers(Headers {
                request: vec![
                    HeaderValue {
                        name: "X-A".into(),
                        value: "1".into()
                    },
                    HeaderValue {
                        name: "X-B".into(),
                        value: "".into()
                    },
                ],
                response: vec![HeaderValue {
                    name: "X-C".into(),
                    value: "3".into()
                }],
            }),
            Kind::BasicAuth(BasicAuth {
                users: vec![user.into()],
                realm: "r".into(),
                remove_header: true,
                header_field: "X-User".into()
            }),
        ]
    );
}

#[test]
fn restricting_options_berth_lacks_reject_the_frontend() {
    let table: &[(&str, &str)] = &[
        (
            "traefik.frontend.auth.digest.users=test:traefik:a2688e031edb4be6a3797f3882655c05",
            "auth.digest",
        ),
        (
            "traefik.frontend.auth.forward.address=https://auth.example",
            "auth.forward",
        ),
        ("traefik.frontend.auth.basic.usersFile=/etc/htpasswd", "usersFile"),
        ("traefik.frontend.auth.basic.users=test:plaintext", "hash"),
        (
            "traefik.frontend.whiteList.sourceRange=10.0.0.0/33",
            "neither an IP",
        ),
        (
            "traefik.frontend.whiteList.useXForwardedFor=true",
            "useXForwardedFor",
        ),
        ("traefik.frontend.headers.SSLRedirect=true", "headers.SSLRedirect"),
        ("traefik.frontend.redirect.entryPoint=websecure", "entrypoints"),
        ("traefik.frontend.redirect.regex=^http://(.*)", "go together"),
    ];
    for (tag, text) in table {
        let result = one(
            "a",
            &["traefik.enable=true", "traefik.frontend.rule=Host:a.example", tag],
        );
        assert!(result.routes.is_empty(), "{tag}");
        let e = error_with(&result, text);
        assert_eq!(e.tag.as_deref(), Some(*tag));
        assert!(e.error.starts_with("frontend rejected"), "{e}");
    }
}

#[test]
fn rate_limits_and_max_connections() {
    let result = one(
        "a",
        &[
            "traefik.enable=true",
            "traefik.frontend.rule=Host:a.example",
            "traefik.frontend.rateLimit.extractorFunc=client.ip",
            "traefik.frontend.rateLimit.rateSet.fast.period=10s",
            "traefik.frontend.rateLimit.rateSet.fast.average=100",
            "traefik.frontend.rateLimit.rateSet.fast.burst=200",
            "traefik.backend.maxconn.amount=10",
        ],
    );
    assert!(result.errors.is_empty(), "{:?}", result.errors);
    let kinds = kinds(&result);
    assert!(
        matches!(&kinds[..], [Kind::RateLimit(r), Kind::InFlightReq(f)] if r.average == 100 && r.period_ms == 10_000 && r.burst == 200 && f.amount == 10),
        "{kinds:?}"
    );
}

#[test]
fn backend_options_and_ignored_tags() {
    let result = one(
        "a",
        &[
            "traefik.enable=true",
            "traefik.frontend.rule=Host:a.example",
            "traefik.backend.loadbalancer.method=drr",
            "traefik.backend.loadbalancer.stickiness=true",
            "traefik.backend.loadbalancer.stickiness.cookieName=sticky",
            "traefik.backend.healthcheck.path=/health",
            "traefik.frontend.errors.e.status=500",
            "traefik.tags=api",
            "traefik.frontend.entrypoint=http",
        ],
    );
    assert_eq!(result.routes.len(), 1);
    assert_eq!(
        result.clusters[0].sticky.as_ref().map(|s| s.name.as_str()),
        Some("sticky")
    );
    for text in [
        "drr",
        "health checks",
        "error pages",
        "constraints",
        "not a Traefik v1 frontend option",
    ] {
        assert!(error_with(&result, text).error.starts_with("ignored"), "{text}");
    }
}

#[test]
fn a_bad_segment_leaves_the_other_frontends() {
    let result = one(
        "a",
        &[
            "traefik.enable=true",
            "traefik.frontend.rule=Host:a.example",
            "traefik.frontends.api.rule=Host:a.example;PathPrefix:api",
            "traefik.frontends.admin.rule=Host:admin.example",
        ],
    );
    let names: Vec<&str> = result.routes.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["a", "a/admin"]);
    let e = error_with(&result, "must start with '/'");
    assert_eq!(e.router.as_deref(), Some("frontends.api"));
    assert_eq!(e.position, Some(26));
}

#[test]
fn protocol_h2c_makes_an_h2c_cluster() {
    let result = one(
        "a",
        &[
            "traefik.enable=true",
            "traefik.frontend.rule=Host:grpc.example",
            "traefik.protocol=h2c",
        ],
    );
    let cluster = &result.clusters[0];
    assert_eq!(cluster.scheme, "h2c");
    assert_eq!(cluster.requires, ["cluster/h2c"]);
}
