//! The Traefik v2/v3 dialect end to end: tags of instances in, routes, clusters and errors out.

use std::collections::BTreeMap;

use berth_proto::v1::{middleware::Kind, AddPrefix, HostHeader, Middleware, StripPrefix};

use super::endpoint_ids;
use crate::construct::*;
use crate::{compile_service, middlewares_defined, Instance, RuleSyntax, ServiceRoutes, Settings};

fn instance(id: &str, port: u16, tags: &[&str]) -> Instance {
    Instance {
        id: id.into(),
        address: "10.0.0.1".into(),
        port,
        tags: tags.iter().map(|t| t.to_string()).collect(),
        meta: BTreeMap::new(),
        routable: true,
    }
}

fn exposed() -> Settings {
    Settings {
        exposed_by_default: true,
        ..Settings::default()
    }
}

/// A middleware another service defines: `shared-strip` strips `/shared`.
fn shared(name: &str) -> Option<Result<Vec<Middleware>, String>> {
    match name {
        "shared-strip" => Some(Ok(vec![middleware(
            "shared-strip@consulcatalog",
            Kind::StripPrefix(StripPrefix {
                prefixes: vec!["/shared".into()],
                force_slash: false,
            }),
        )])),
        "broken" => Some(Err("defined differently by two services".into())),
        _ => None,
    }
}

fn compile(service: &str, instances: &[Instance], settings: &Settings) -> ServiceRoutes {
    compile_service(service, instances, settings, &shared)
}

fn names(result: &ServiceRoutes) -> Vec<&str> {
    result.routes.iter().map(|r| r.name.as_str()).collect()
}

fn error_with<'a>(result: &'a ServiceRoutes, text: &str) -> &'a crate::RouteError {
    result
        .errors
        .iter()
        .find(|e| e.error.contains(text))
        .unwrap_or_else(|| panic!("no error containing {text:?} in {:#?}", result.errors))
}

fn kinds(result: &ServiceRoutes, route: &str) -> Vec<Kind> {
    let route = result.routes.iter().find(|r| r.name == route).expect("route");
    route.middlewares.iter().filter_map(|m| m.kind.clone()).collect()
}

#[test]
fn an_enabled_service_without_routers_gets_traefiks_default_router_and_service() {
    let result = compile(
        "web_go",
        &[instance("w1", 8080, &["traefik.enable=true"])],
        &Settings::default(),
    );
    assert_eq!(names(&result), ["web_go/web-go"]);
    let route = &result.routes[0];
    assert_eq!(route.matcher, Some(host_exact("web-go")));
    assert_eq!(route.priority, "Host(`web-go`)".len() as i64);
    assert_eq!(route.cluster, "web_go/web-go");
    assert_eq!(route.origin, "traefik/v3 router web-go@consulcatalog");
    assert_eq!(route.requires, ["matcher/host"]);
    assert_eq!(result.clusters.len(), 1);
    assert_eq!(result.clusters[0].endpoints[0].port, 8080);
    assert_eq!(result.clusters[0].scheme, "http");
    assert!(result.errors.is_empty(), "{:?}", result.errors);
}

#[test]
fn not_exposed_unless_enabled_or_exposed_by_default() {
    let tags = ["traefik.http.routers.api.rule=Host(`a.example`)"];
    assert!(compile("web", &[instance("w1", 80, &tags)], &Settings::default())
        .routes
        .is_empty());
    assert_eq!(
        compile("web", &[instance("w1", 80, &tags)], &exposed())
            .routes
            .len(),
        1
    );
    let off = ["traefik.enable=false", tags[0]];
    assert!(compile("web", &[instance("w1", 80, &off)], &exposed())
        .routes
        .is_empty());
    let bad = ["traefik.enable=yes", tags[0]];
    let result = compile("web", &[instance("w1", 80, &bad)], &exposed());
    assert!(result.routes.is_empty());
    assert_eq!(
        error_with(&result, "not a boolean").tag.as_deref(),
        Some("traefik.enable=yes")
    );
}

#[test]
fn routers_services_and_ports() {
    let tags = [
        "traefik.enable=true",
        "traefik.http.routers.www.rule=Host(`a.example`)",
        "traefik.http.routers.www.service=www-svc",
        "traefik.http.routers.www.entrypoints=web",
        "traefik.http.routers.www.priority=10",
        "traefik.http.services.www-svc.loadbalancer.server.port=8000",
        "traefik.http.routers.admin.rule=Host(`b.example`)",
        "traefik.http.routers.admin.service=admin-svc",
        "traefik.http.services.admin-svc.loadbalancer.server.port=9000",
        "traefik.http.services.admin-svc.loadbalancer.server.scheme=https",
        "traefik.http.services.admin-svc.loadbalancer.passhostheader=false",
        "traefik.http.services.admin-svc.loadbalancer.sticky.cookie.name=s",
    ];
    let result = compile("app", &[instance("a1", 1234, &tags)], &Settings::default());
    assert_eq!(names(&result), ["app/admin", "app/www"]);
    let www = &result.routes[1];
    assert_eq!(
        (www.priority, www.entrypoints.as_slice(), www.cluster.as_str()),
        (10, &["web".to_string()][..], "app/www-svc")
    );
    let clusters: Vec<(&str, u32, &str)> = result
        .clusters
        .iter()
        .map(|c| (c.name.as_str(), c.endpoints[0].port, c.scheme.as_str()))
        .collect();
    assert_eq!(
        clusters,
        [("app/admin-svc", 9000, "https"), ("app/www-svc", 8000, "http")]
    );
    let admin = &result.clusters[0];
    assert_eq!(admin.host_header, HostHeader::Endpoint as i32);
    assert_eq!(admin.sticky.as_ref().map(|s| s.name.as_str()), Some("s"));
    assert_eq!(
        admin.requires,
        ["cluster/endpoint_host", "cluster/https", "cluster/sticky_cookie"]
    );
    assert!(result.errors.is_empty(), "{:?}", result.errors);
}

#[test]
fn a_router_without_service_is_linked_to_the_only_one_and_rejected_among_several() {
    let one = [
        "traefik.enable=true",
        "traefik.http.routers.r.rule=Host(`a`)",
        "traefik.http.services.s.loadbalancer.server.port=81",
    ];
    let result = compile("app", &[instance("a1", 80, &one)], &Settings::default());
    assert_eq!(result.routes[0].cluster, "app/s");
    let two = [
        "traefik.enable=true",
        "traefik.http.routers.r.rule=Host(`a`)",
        "traefik.http.routers.ok.rule=Host(`b`)",
        "traefik.http.routers.ok.service=s1",
        "traefik.http.services.s1.loadbalancer.server.port=81",
        "traefik.http.services.s2.loadbalancer.server.port=82",
    ];
    let result = compile("app", &[instance("a1", 80, &two)], &Settings::default());
    assert_eq!(names(&result), ["app/ok"]);
    assert_eq!(
        error_with(&result, "linked automatically").router.as_deref(),
        Some("r")
    );
    let no_router = [
        "traefik.enable=true",
        "traefik.http.services.s1.loadbalancer.server.port=81",
        "traefik.http.services.s2.loadbalancer.server.port=82",
    ];
    let result = compile("app", &[instance("a1", 80, &no_router)], &Settings::default());
    assert!(result.routes.is_empty());
    error_with(&result, "no default router");
}

#[test]
fn a_bad_rule_rejects_only_its_router_and_says_where() {
    let tags = [
        "traefik.enable=true",
        "traefik.http.routers.bad.rule=Host(`a`) && Nope(`b`)",
        "traefik.http.routers.good.rule=Host(`b`)",
    ];
    let result = compile("app", &[instance("a1", 80, &tags)], &Settings::default());
    assert_eq!(names(&result), ["app/good"]);
    let e = error_with(&result, "router rejected");
    assert_eq!(e.service, "app");
    assert_eq!(e.router.as_deref(), Some("bad"));
    assert_eq!(e.tag.as_deref(), Some(tags[1]));
    assert_eq!(e.position, Some(13));
    assert_eq!(
        e.instance.as_deref(),
        None,
        "the merged router is no one instance's"
    );
}

#[test]
fn rule_syntax_per_router_and_by_default() {
    let tags = [
        "traefik.enable=true",
        "traefik.http.routers.old.rule=Host(`a.example`, `b.example`)",
        "traefik.http.routers.old.ruleSyntax=v2",
    ];
    let result = compile("app", &[instance("a1", 80, &tags)], &Settings::default());
    assert_eq!(
        result.routes[0].matcher,
        Some(any(vec![host_exact("a.example"), host_exact("b.example")]))
    );
    assert_eq!(result.routes[0].origin, "traefik/v2 router old@consulcatalog");
    let v2_default = Settings {
        default_rule_syntax: RuleSyntax::V2,
        ..Settings::default()
    };
    let tags = [
        "traefik.enable=true",
        "traefik.http.routers.old.rule=Host(`a.example`, `b.example`)",
    ];
    assert_eq!(
        compile("app", &[instance("a1", 80, &tags)], &v2_default)
            .routes
            .len(),
        1
    );
    let result = compile("app", &[instance("a1", 80, &tags)], &Settings::default());
    assert!(result.routes.is_empty(), "two values are v2 only");
}

#[test]
fn middlewares_local_chained_shared_and_missing() {
    let tags = [
        "traefik.enable=true",
        "traefik.http.middlewares.strip.stripprefix.prefixes=/api",
        "traefik.http.middlewares.add.addprefix.prefix=/v2",
        "traefik.http.middlewares.both.chain.middlewares=strip,add@consulcatalog",
        "traefik.http.routers.r.rule=Host(`a`)",
        "traefik.http.routers.r.middlewares=both, shared-strip@consulcatalog",
        "traefik.http.routers.missing.rule=Host(`b`)",
        "traefik.http.routers.missing.middlewares=nobody",
        "traefik.http.routers.file.rule=Host(`c`)",
        "traefik.http.routers.file.middlewares=auth@file",
        "traefik.http.routers.broken.rule=Host(`d`)",
        "traefik.http.routers.broken.middlewares=broken",
    ];
    let result = compile("app", &[instance("a1", 80, &tags)], &Settings::default());
    assert_eq!(names(&result), ["app/r"]);
    assert_eq!(
        kinds(&result, "app/r"),
        vec![
            Kind::StripPrefix(StripPrefix {
                prefixes: vec!["/api".into()],
                force_slash: false
            }),
            Kind::AddPrefix(AddPrefix { prefix: "/v2".into() }),
            Kind::StripPrefix(StripPrefix {
                prefixes: vec!["/shared".into()],
                force_slash: false
            }),
        ]
    );
    assert_eq!(result.routes[0].middlewares[0].name, "strip@consulcatalog");
    assert_eq!(result.uses.iter().collect::<Vec<_>>(), ["shared-strip"]);
    assert_eq!(
        error_with(&result, "defined on no service").router.as_deref(),
        Some("missing")
    );
    assert_eq!(
        error_with(&result, "provider \"file\"").router.as_deref(),
        Some("file")
    );
    assert_eq!(
        error_with(&result, "defined differently by two services")
            .router
            .as_deref(),
        Some("broken")
    );
}

#[test]
fn a_middleware_berth_does_not_implement_rejects_the_routers_using_it() {
    let tags = [
        "traefik.enable=true",
        "traefik.http.middlewares.auth.forwardauth.address=http://auth:4181",
        "traefik.http.routers.private.rule=Host(`a`)",
        "traefik.http.routers.private.middlewares=auth",
        "traefik.http.routers.public.rule=Host(`b`)",
    ];
    let result = compile("app", &[instance("a1", 80, &tags)], &Settings::default());
    assert_eq!(names(&result), ["app/public"]);
    let e = error_with(&result, "router rejected: middleware auth@consulcatalog");
    assert!(e.error.contains("not implemented by Berth"), "{e}");
    assert_eq!(e.router.as_deref(), Some("private"));
    let own = result
        .errors
        .iter()
        .find(|e| e.router.is_none())
        .expect("the middleware's own error");
    assert_eq!(own.tag.as_deref(), Some(tags[1]));
    assert!(own.error.ends_with("routers using it are rejected"), "{own}");
}

#[test]
fn chains_that_loop_are_rejected() {
    let tags = [
        "traefik.enable=true",
        "traefik.http.middlewares.a.chain.middlewares=b",
        "traefik.http.middlewares.b.chain.middlewares=a",
        "traefik.http.routers.r.rule=Host(`a`)",
        "traefik.http.routers.r.middlewares=a",
    ];
    let result = compile("app", &[instance("a1", 80, &tags)], &Settings::default());
    assert!(result.routes.is_empty());
    error_with(&result, "loops");
}

#[test]
fn service_middlewares_run_after_the_routers() {
    let tags = [
        "traefik.enable=true",
        "traefik.http.middlewares.strip.stripprefix.prefixes=/api",
        "traefik.http.middlewares.add.addprefix.prefix=/v2",
        "traefik.http.routers.r.rule=Host(`a`)",
        "traefik.http.routers.r.middlewares=strip",
        "traefik.http.services.s.loadbalancer.server.port=81",
        "traefik.http.services.s.middlewares=add",
    ];
    let result = compile("app", &[instance("a1", 80, &tags)], &Settings::default());
    let kinds = kinds(&result, "app/r");
    assert!(
        matches!(kinds.as_slice(), [Kind::StripPrefix(_), Kind::AddPrefix(_)]),
        "{kinds:?}"
    );
}

#[test]
fn instances_merge_like_traefik() {
    let base = [
        "traefik.enable=true",
        "traefik.http.routers.r.rule=Host(`a`)",
        "traefik.http.services.s.loadbalancer.passhostheader=false",
    ];
    let with_port = |port: &str| {
        let mut tags: Vec<String> = base.iter().map(|t| t.to_string()).collect();
        tags.push(format!("traefik.http.services.s.loadbalancer.server.port={port}"));
        tags
    };
    let mut a = instance("a", 80, &[]);
    a.tags = with_port("8001");
    let mut b = instance("b", 80, &[]);
    b.tags = with_port("8002");
    let mut c = instance("c", 80, &[]);
    c.tags = with_port("8003");
    c.routable = false;
    let result = compile("app", &[c, b, a], &Settings::default());
    assert_eq!(names(&result), ["app/r"]);
    let cluster = &result.clusters[0];
    assert_eq!(endpoint_ids(cluster), ["a", "b"], "unhealthy c has no endpoint");
    assert_eq!(
        cluster.endpoints.iter().map(|e| e.port).collect::<Vec<_>>(),
        [8001, 8002]
    );

    let one = instance(
        "a",
        80,
        &["traefik.enable=true", "traefik.http.routers.r.rule=Host(`a`)"],
    );
    let other = instance(
        "b",
        80,
        &["traefik.enable=true", "traefik.http.routers.r.rule=Host(`b`)"],
    );
    let result = compile("app", &[one, other], &Settings::default());
    assert!(result.routes.is_empty());
    assert!(error_with(&result, "define it differently")
        .error
        .contains("a, b"));
}

#[test]
fn weights_schemes_and_bad_servers() {
    let tags = |extra: &str| {
        vec![
            "traefik.enable=true".to_string(),
            "traefik.http.routers.r.rule=Host(`a`)".to_string(),
            "traefik.http.routers.r.service=s".to_string(),
            format!("traefik.http.services.s.loadbalancer.server.{extra}"),
        ]
    };
    let mut a = instance("a", 80, &[]);
    a.tags = tags("weight=3");
    let mut b = instance("b", 80, &[]);
    b.tags = tags("weight=0");
    let mut c = instance("c", 80, &[]);
    c.tags = tags("port=notaport");
    let mut d = instance("d", 80, &[]);
    d.tags = tags("scheme=https");
    let result = compile("app", &[a, b, c, d], &Settings::default());
    let cluster = &result.clusters[0];
    assert_eq!(endpoint_ids(cluster), ["a"]);
    assert_eq!(cluster.endpoints[0].weight, 3);
    assert_eq!(
        error_with(&result, "not a whole number").instance.as_deref(),
        Some("c")
    );
    assert_eq!(error_with(&result, "one scheme").instance.as_deref(), Some("d"));
}

#[test]
fn tls_routers_are_served_over_tls_only_and_observability_reported() {
    let tags = [
        "traefik.enable=true",
        "traefik.http.routers.secure.rule=Host(`a`)",
        "traefik.http.routers.secure.entrypoints=websecure",
        "traefik.http.routers.secure.tls=true",
        "traefik.http.routers.secure.tls.certresolver=le",
        "traefik.http.routers.plain.rule=Host(`a`)",
        "traefik.http.routers.plain.tls=false",
        "traefik.http.routers.plain.observability.accesslogs=false",
    ];
    let result = compile("app", &[instance("a1", 80, &tags)], &Settings::default());
    assert_eq!(names(&result), ["app/plain", "app/secure"]);
    let tls: Vec<bool> = result.routes.iter().map(|r| r.tls).collect();
    assert_eq!(tls, [false, true]);
    assert_eq!(result.routes[1].entrypoints, ["websecure"]);
    let note = error_with(&result, "--cert-dir");
    assert!(note.error.starts_with("ignored"), "{note:?}");
    assert_eq!(note.router.as_deref(), Some("secure"));
    assert_eq!(
        note.tag.as_deref(),
        Some("traefik.http.routers.secure.tls.certresolver=le")
    );
    assert!(error_with(&result, "observability").error.starts_with("ignored"));
}

#[test]
fn other_tags_under_the_prefix_are_reported() {
    let tags = [
        "traefik.enable=true",
        "traefik.http.routers.r.rule=Host(`a`)",
        "traefik.frontend.rule=Host:b",
        "traefik.tcp.routers.db.rule=HostSNI(`*`)",
        "traefik.http.serverstransports.t.insecureskipverify=true",
        "traefik.loose",
    ];
    let result = compile("app", &[instance("a1", 80, &tags)], &Settings::default());
    assert_eq!(names(&result), ["app/r"]);
    assert_eq!(
        error_with(&result, "Traefik v1 tags are ignored").tag.as_deref(),
        Some(tags[2])
    );
    assert_eq!(error_with(&result, "TCP and UDP").tag.as_deref(), Some(tags[3]));
    error_with(&result, "http.serverstransports cannot be set");
    assert_eq!(error_with(&result, "key=value").tag.as_deref(), Some(tags[5]));
}

#[test]
fn only_tcp_tags_make_no_http_router() {
    let tags = ["traefik.enable=true", "traefik.tcp.routers.db.rule=HostSNI(`*`)"];
    let result = compile("db", &[instance("a1", 5432, &tags)], &Settings::default());
    assert!(result.routes.is_empty());
    error_with(&result, "TCP and UDP");
}

#[test]
fn default_rule_template_and_canary_names() {
    let settings = Settings {
        default_rule: "Host(`{{ normalize .Name }}.{{ index .Labels \"traefik.domain\" }}`)".into(),
        ..Settings::default()
    };
    let tags = ["traefik.enable=true", "traefik.domain=example.com"];
    let result = compile("web_go", &[instance("a1", 80, &tags)], &settings);
    assert_eq!(result.routes[0].matcher, Some(host_exact("web-go.example.com")));
    let bad = Settings {
        default_rule: "Host(`{{ .Nope }}`)".into(),
        ..Settings::default()
    };
    let result = compile("web", &[instance("a1", 80, &["traefik.enable=true"])], &bad);
    assert!(result.routes.is_empty());
    error_with(&result, "default rule template");
    let canary = ["traefik.enable=true", "traefik.consulcatalog.canary=true"];
    let result = compile("web", &[instance("a1", 80, &canary)], &Settings::default());
    assert!(
        result.routes[0].name.starts_with("web/web-"),
        "{:?}",
        names(&result)
    );
}

#[test]
fn connect_services_are_not_exposed() {
    let tags = ["traefik.enable=true", "traefik.consulcatalog.connect=true"];
    let result = compile("web", &[instance("a1", 80, &tags)], &Settings::default());
    assert!(result.routes.is_empty());
    error_with(&result, "Consul Connect");
}

#[test]
fn middlewares_defined_for_other_services() {
    let tags = [
        "traefik.enable=true",
        "traefik.http.middlewares.strip.stripprefix.prefixes=/api",
        "traefik.http.middlewares.both.chain.middlewares=strip",
        "traefik.http.middlewares.outside.chain.middlewares=elsewhere",
        "traefik.http.middlewares.fwd.forwardauth.address=http://a",
    ];
    let defined = middlewares_defined("mw", &[instance("a1", 80, &tags)], &Settings::default());
    let names: Vec<&str> = defined.keys().map(String::as_str).collect();
    assert_eq!(names, ["both", "fwd", "outside", "strip"]);
    assert_eq!(defined["strip"].as_ref().map(Vec::len), Ok(1));
    assert_eq!(defined["both"].as_ref().map(Vec::len), Ok(1));
    let fwd = defined["fwd"].as_ref().expect_err("forwardauth");
    assert_eq!(fwd.tag.as_deref(), Some(tags[4]));
    assert!(defined["outside"].is_err());
    // Disabled instances define nothing.
    let off = ["traefik.enable=false", tags[1]];
    assert!(middlewares_defined("mw", &[instance("a1", 80, &off)], &Settings::default()).is_empty());
}

#[test]
fn services_of_other_providers_are_refused() {
    let tags = [
        "traefik.enable=true",
        "traefik.http.routers.api.rule=Host(`traefik.example`)",
        "traefik.http.routers.api.service=api@internal",
        "traefik.http.routers.other.rule=Host(`b`)",
        "traefik.http.routers.other.service=elsewhere",
    ];
    let result = compile("app", &[instance("a1", 80, &tags)], &Settings::default());
    assert!(result.routes.is_empty());
    error_with(&result, "Traefik's own");
    error_with(&result, "not defined by this Consul service's tags");
}

#[test]
fn h2c_servers_make_h2c_clusters() {
    let tags = [
        "traefik.enable=true",
        "traefik.http.routers.grpc.rule=Host(`grpc.example`)",
        "traefik.http.services.grpc.loadbalancer.server.scheme=h2c",
    ];
    let result = compile("app", &[instance("a1", 50051, &tags)], &Settings::default());
    assert!(result.errors.is_empty(), "{:?}", result.errors);
    let cluster = &result.clusters[0];
    assert_eq!(cluster.scheme, "h2c");
    assert_eq!(cluster.requires, ["cluster/h2c"]);
}

#[test]
fn strategy_and_passive_health_check_set_the_cluster() {
    use berth_proto::v1::{Balancing, PassiveHealth};
    let tags = [
        "traefik.enable=true",
        "traefik.http.routers.r.rule=Host(`a`)",
        "traefik.http.services.s.loadbalancer.strategy=p2c",
        "traefik.http.services.s.loadbalancer.passivehealthcheck.maxFailedAttempts=3",
        "traefik.http.services.s.loadbalancer.passivehealthcheck.failureWindow=30s",
    ];
    let result = compile("app", &[instance("a1", 80, &tags)], &Settings::default());
    assert!(result.errors.is_empty(), "{:#?}", result.errors);
    let c = &result.clusters[0];
    assert_eq!(c.balancing, Balancing::LeastRequest as i32);
    assert_eq!(
        c.passive_health,
        Some(PassiveHealth {
            consecutive_failures: 3,
            base_ejection_ms: 30_000,
            max_ejection_ms: 30_000,
            ..Default::default()
        })
    );
    let tags = [
        "traefik.enable=true",
        "traefik.http.routers.r.rule=Host(`a`)",
        "traefik.http.services.s.loadbalancer.strategy=wrr",
        "traefik.http.services.s.loadbalancer.passivehealthcheck.maxFailedAttempts=0",
    ];
    let result = compile("app", &[instance("a1", 80, &tags)], &Settings::default());
    assert!(result.routes.is_empty());
    error_with(&result, "maxFailedAttempts");
    let tags = [
        "traefik.enable=true",
        "traefik.http.routers.r.rule=Host(`a`)",
        "traefik.http.services.s.loadbalancer.strategy=hrw",
    ];
    let result = compile("app", &[instance("a1", 80, &tags)], &Settings::default());
    assert_eq!(result.clusters[0].balancing, Balancing::WeightedRoundRobin as i32);
    error_with(&result, "not implemented by Berth");
}

#[test]
fn retry_middlewares() {
    use berth_proto::v1::Retry;
    let tags = [
        "traefik.enable=true",
        "traefik.http.middlewares.again.retry.attempts=4",
        "traefik.http.middlewares.again.retry.initialInterval=100ms",
        "traefik.http.middlewares.again.retry.retryNonIdempotentMethod=true",
        "traefik.http.routers.r.rule=Host(`a`)",
        "traefik.http.routers.r.middlewares=again",
    ];
    let result = compile("app", &[instance("a1", 80, &tags)], &Settings::default());
    assert!(result.errors.is_empty(), "{:#?}", result.errors);
    assert_eq!(
        kinds(&result, "app/r"),
        [Kind::Retry(Retry {
            attempts: 4,
            initial_interval_ms: 100,
        })]
    );
    for (tag, text) in [
        (
            "traefik.http.middlewares.again.retry.initialInterval=1s",
            "attempts is required",
        ),
        ("traefik.http.middlewares.again.retry.attempts=0", "out of range"),
        ("traefik.http.middlewares.again.retry.attempts=11", "out of range"),
    ] {
        let tags = [
            "traefik.enable=true",
            tag,
            "traefik.http.routers.r.rule=Host(`a`)",
            "traefik.http.routers.r.middlewares=again",
        ];
        let result = compile("app", &[instance("a1", 80, &tags)], &Settings::default());
        assert!(result.routes.is_empty(), "{tag}");
        error_with(&result, text);
    }
    for option in ["status=500-599", "timeout=5s"] {
        let tags = [
            "traefik.enable=true".to_string(),
            "traefik.http.middlewares.again.retry.attempts=2".to_string(),
            format!("traefik.http.middlewares.again.retry.{option}"),
            "traefik.http.routers.r.rule=Host(`a`)".to_string(),
            "traefik.http.routers.r.middlewares=again".to_string(),
        ];
        let tags: Vec<&str> = tags.iter().map(String::as_str).collect();
        let result = compile("app", &[instance("a1", 80, &tags)], &Settings::default());
        assert!(result.routes.is_empty(), "{option}");
        error_with(&result, "not implemented by Berth");
    }
}

#[test]
fn circuit_breaker_middlewares() {
    use berth_proto::v1::CircuitBreaker;
    let tags = [
        "traefik.enable=true",
        "traefik.http.middlewares.cb.circuitbreaker.expression=ResponseCodeRatio(500, 600, 0, 600) > 0.25 || LatencyAtQuantileMS(50.0) > 100",
        "traefik.http.middlewares.cb.circuitbreaker.checkPeriod=250ms",
        "traefik.http.middlewares.cb.circuitbreaker.fallbackDuration=2",
        "traefik.http.middlewares.cb.circuitbreaker.recoveryDuration=-1s",
        "traefik.http.middlewares.cb.circuitbreaker.responseCode=429",
        "traefik.http.routers.r.rule=Host(`a`)",
        "traefik.http.routers.r.middlewares=cb",
        "traefik.http.routers.ok.rule=Host(`b`)",
    ];
    let result = compile("app", &[instance("a1", 80, &tags)], &Settings::default());
    assert!(result.errors.is_empty(), "{:#?}", result.errors);
    assert_eq!(
        kinds(&result, "app/r"),
        [Kind::CircuitBreaker(CircuitBreaker {
            expression: "ResponseCodeRatio(500, 600, 0, 600) > 0.25 || LatencyAtQuantileMS(50.0) > 100"
                .into(),
            check_period_ms: 250,
            fallback_duration_ms: 2_000,
            recovery_duration_ms: 0,
            response_code: 429,
        })]
    );
    for (tag, text) in [
        (
            "traefik.http.middlewares.cb.circuitbreaker.expression=NetworkErrorRatio() > 1",
            "circuitBreaker.expression: \"NetworkErrorRatio() > 1\" at column 23: expected a decimal number",
        ),
        (
            "traefik.http.middlewares.cb.circuitbreaker.expression=NetworkErrorRatio() >",
            "at column 22: expected a metric",
        ),
        (
            "traefik.http.middlewares.cb.circuitbreaker.checkPeriod=1s",
            "expression is required",
        ),
        (
            "traefik.http.middlewares.cb.circuitbreaker.fallbackDuration=soon",
            "fallbackDuration",
        ),
        (
            "traefik.http.middlewares.cb.circuitbreaker.responseCode=99",
            "out of range",
        ),
        (
            "traefik.http.middlewares.cb.circuitbreaker.fallback=x",
            "has no option",
        ),
    ] {
        let with_expression = !tag.contains("expression=");
        let mut tags = vec![
            "traefik.enable=true",
            tag,
            "traefik.http.routers.r.rule=Host(`a`)",
            "traefik.http.routers.r.middlewares=cb",
            "traefik.http.routers.ok.rule=Host(`b`)",
        ];
        if with_expression && !text.contains("required") {
            tags.push("traefik.http.middlewares.cb.circuitbreaker.expression=NetworkErrorRatio() > 0.5");
        }
        let result = compile("app", &[instance("a1", 80, &tags)], &Settings::default());
        let names: Vec<&str> = result.routes.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["app/ok"], "only the router using it is rejected: {tag}");
        error_with(&result, text);
    }
}
