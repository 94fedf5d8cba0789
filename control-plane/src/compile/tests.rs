//! The compiler over whole catalogs and one change at a time.

use super::*;
use crate::watch::state::ViewInstance;
use berth_consul::catalog::Instance;
use berth_proto::v1::{host_matcher, matcher, Matcher};

type Catalog = BTreeMap<String, Option<Arc<ServiceView>>>;

fn instance(service: &str, id: &str, port: u16, tags: &[&str], passing: bool) -> (String, ViewInstance) {
    instance_at(service, id, port, tags, passing, 1)
}

fn instance_at(
    service: &str,
    id: &str,
    port: u16,
    tags: &[&str],
    passing: bool,
    created: u64,
) -> (String, ViewInstance) {
    let instance = Instance {
        node: "n1".into(),
        node_address: "127.0.0.1".into(),
        id: id.into(),
        service: service.into(),
        tags: tags.iter().map(|t| t.to_string()).collect(),
        address: String::new(),
        port,
        meta: Default::default(),
        create_index: created,
        modify_index: created,
    };
    let health = if passing {
        Health::Passing
    } else {
        Health::Critical
    };
    (service.to_string(), ViewInstance { instance, health })
}

fn catalog(entries: Vec<(String, ViewInstance)>) -> Catalog {
    let mut services: BTreeMap<String, Vec<ViewInstance>> = BTreeMap::new();
    for (service, instance) in entries {
        services.entry(service).or_default().push(instance);
    }
    services
        .into_iter()
        .map(|(name, instances)| (name.clone(), Some(Arc::new(ServiceView { name, instances }))))
        .collect()
}

/// Compiles a whole catalog from scratch.
fn compile(catalog: &Catalog) -> Compiled {
    let mut compiler = Compiler::new(Settings::default(), Health::Passing);
    compiler.apply(catalog);
    compiler.compiled()
}

/// The exact hosts a route's matcher names, wherever they are in the tree.
fn hosts(route: &Route) -> Vec<String> {
    fn walk(m: &Matcher, out: &mut Vec<String>) {
        match &m.kind {
            Some(matcher::Kind::All(list)) | Some(matcher::Kind::Any(list)) => {
                list.matchers.iter().for_each(|m| walk(m, out))
            }
            Some(matcher::Kind::Not(inner)) => walk(inner, out),
            Some(matcher::Kind::Host(h)) => {
                if let Some(host_matcher::Kind::Exact(host)) = &h.kind {
                    out.push(host.clone());
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    if let Some(m) = &route.matcher {
        walk(m, &mut out);
    }
    out
}

fn cluster_of<'a>(compiled: &'a Compiled, route: &Route) -> &'a Cluster {
    compiled
        .snapshot
        .clusters
        .iter()
        .find(|c| c.name == route.cluster)
        .expect("the route's cluster is in the snapshot")
}

const GO: [&str; 3] = [
    "traefik.enable=true",
    "traefik.frontend.entryPoints=http",
    "traefik.frontend.rule=Host:go.traefix.example.localhost",
];

#[test]
fn the_article_scenario() {
    let c = catalog(vec![
        instance("web_go", "go-1", 9001, &GO, true),
        instance("web_go", "go-2", 9002, &GO, true),
        instance("web_go", "go-3", 9003, &GO, false),
        instance(
            "hidden",
            "h-1",
            9100,
            &["traefik.frontend.rule=Host:hidden.example"],
            true,
        ),
    ]);
    let out = compile(&c);
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    assert_eq!(out.snapshot.routes.len(), 1);
    let route = &out.snapshot.routes[0];
    assert_eq!(route.service, "web_go");
    assert_eq!(hosts(route), vec!["go.traefix.example.localhost"]);
    assert_eq!(route.entrypoints, vec!["http"]);
    assert!(
        route.requires.iter().any(|f| f == "matcher/host"),
        "{:?}",
        route.requires
    );
    let ports: Vec<u32> = cluster_of(&out, route).endpoints.iter().map(|e| e.port).collect();
    assert_eq!(ports, vec![9001, 9002], "the failing instance is left out");
}

#[test]
fn version_depends_only_on_content() {
    let a = catalog(vec![
        instance("web_go", "go-1", 9001, &GO, true),
        instance("web_go", "go-2", 9002, &GO, true),
    ]);
    let b = catalog(vec![
        instance("web_go", "go-2", 9002, &GO, true),
        instance("web_go", "go-1", 9001, &GO, true),
    ]);
    assert_eq!(compile(&a).version, compile(&b).version);
    let c = catalog(vec![instance("web_go", "go-1", 9001, &GO, true)]);
    assert_ne!(compile(&a).version, compile(&c).version);
}

#[test]
fn a_bad_tag_rejects_one_route_only() {
    let c = catalog(vec![
        instance("web_go", "go-1", 9001, &GO, true),
        instance(
            "broken",
            "b-1",
            9200,
            &[
                "traefik.enable=true",
                "traefik.http.routers.api.rule=Host(`a.example`) && (Path(`/x`)",
            ],
            true,
        ),
    ]);
    let out = compile(&c);
    assert_eq!(out.snapshot.routes.len(), 1, "{:?}", out.snapshot.routes);
    let error = out
        .errors
        .iter()
        .find(|e| e.service == "broken")
        .expect("reported");
    assert_eq!(
        error.router.as_deref().map(|r| r.contains("api")),
        Some(true),
        "{error:?}"
    );
    assert!(error.position.is_some(), "{error:?}");
}

#[test]
fn unhealthy_service_keeps_its_route_with_no_endpoints() {
    let out = compile(&catalog(vec![instance("web_go", "go-1", 9001, &GO, false)]));
    assert_eq!(out.snapshot.routes.len(), 1);
    assert!(cluster_of(&out, &out.snapshot.routes[0]).endpoints.is_empty());
}

#[test]
fn the_older_claim_keeps_a_rule_and_the_newer_is_reported() {
    let tags = ["traefik.enable=true", "traefik.frontend.rule=Host:same.example"];
    let out = compile(&catalog(vec![
        instance_at("zeta", "z-1", 9001, &tags, true, 10),
        instance_at("alpha", "a-1", 9002, &tags, true, 20),
    ]));
    assert_eq!(out.snapshot.routes.len(), 1);
    assert_eq!(out.snapshot.routes[0].service, "zeta", "registered first");
    assert_eq!(out.errors.len(), 1);
    assert_eq!(out.errors[0].service, "alpha");
}

#[test]
fn one_change_at_a_time_gives_what_a_full_compile_gives() {
    let same = ["traefik.enable=true", "traefik.frontend.rule=Host:same.example"];
    let full = catalog(vec![
        instance_at("web_go", "go-1", 9001, &GO, true, 1),
        instance_at("alpha", "a-1", 9002, &same, true, 2),
        instance_at("zeta", "z-1", 9003, &same, true, 3),
    ]);
    let mut compiler = Compiler::new(Settings::default(), Health::Passing);
    for name in ["zeta", "web_go", "alpha"] {
        let one: Catalog = [(name.to_string(), full[name].clone())].into();
        assert_eq!(compiler.apply(&one), 1);
    }
    assert_eq!(compiler.compiled(), compile(&full));

    // The winner leaves: the other takes the rule over, and the version matches a catalog that
    // never had the winner.
    compiler.apply(&[("alpha".to_string(), None)].into());
    let mut without = full.clone();
    without.remove("alpha");
    let expected = compile(&without);
    assert_eq!(compiler.compiled(), expected);
    assert!(expected.snapshot.routes.iter().any(|r| r.service == "zeta"));
    assert!(expected.errors.is_empty());
}

#[test]
fn warning_instances_are_routed_only_when_accepted() {
    let (service, mut warned) = instance("web_go", "go-1", 9001, &GO, true);
    warned.health = Health::Warning;
    let c = catalog(vec![(service, warned)]);
    let endpoints = |accept| {
        let mut compiler = Compiler::new(Settings::default(), accept);
        compiler.apply(&c);
        let out = compiler.compiled();
        cluster_of(&out, &out.snapshot.routes[0]).endpoints.len()
    };
    assert_eq!(endpoints(Health::Passing), 0);
    assert_eq!(endpoints(Health::Warning), 1);
}

#[test]
fn a_middleware_defined_elsewhere_recompiles_its_users() {
    let user = [
        "traefik.enable=true",
        "traefik.http.routers.web.rule=Host(`web.example`)",
        "traefik.http.routers.web.middlewares=strip@consulcatalog",
    ];
    // As in Traefik, only an enabled service's tags are read, middlewares included.
    let definer = [
        "traefik.enable=true",
        "traefik.http.middlewares.strip.stripprefix.prefixes=/api",
    ];
    let mut compiler = Compiler::new(Settings::default(), Health::Passing);
    compiler.apply(&catalog(vec![instance("web", "w-1", 9001, &user, true)]));
    let before = compiler.compiled();
    assert!(
        before.snapshot.routes.is_empty(),
        "unresolved middleware: not routed"
    );
    assert!(!before.errors.is_empty());

    // The definition arrives with another service: the user is recompiled with it.
    let compiled = compiler.apply(&catalog(vec![instance("lib", "l-1", 9002, &definer, true)]));
    assert_eq!(compiled, 2, "the definer and its user");
    let after = compiler.compiled();
    let web = after
        .snapshot
        .routes
        .iter()
        .find(|r| r.service == "web")
        .unwrap_or_else(|| panic!("web is routed: {:?}", after.errors));
    assert_eq!(web.middlewares.len(), 1);
}

#[test]
fn a_snapshot_names_only_what_changed_since_the_last() {
    let mut compiler = Compiler::new(Settings::default(), Health::Passing);
    compiler.apply(&catalog(vec![instance("web_go", "go-1", 9001, &GO, true)]));
    let first = compiler.compiled().changed.expect("known");
    assert_eq!((first.routes.len(), first.clusters.len()), (1, 1));
    // Same tags, another port: the cluster changed, the route did not.
    compiler.apply(&catalog(vec![instance("web_go", "go-1", 9002, &GO, true)]));
    let second = compiler.compiled().changed.expect("known");
    assert!(second.routes.is_empty(), "{second:?}");
    assert_eq!(second.clusters, first.clusters);
    // Nothing since.
    assert_eq!(compiler.compiled().changed, Some(Changed::default()));
    // The service leaves: both named.
    compiler.apply(&[("web_go".to_string(), None)].into());
    assert_eq!(compiler.compiled().changed, Some(first));
}

/// Whatever the order of changes, and however many go into one snapshot, the snapshot the
/// compiler assembles from what was touched is the one a compile of the same catalog from
/// scratch gives: items, order, version and errors.
mod incremental {
    use super::*;
    use proptest::prelude::*;

    const SERVICES: [&str; 4] = ["alpha", "beta", "gamma", "delta"];

    /// What an instance may carry: rules that collide between services (the older claim wins),
    /// a middleware defined by one service and used by another, a bad rule, nothing routable.
    const TAGS: [&[&str]; 7] = [
        &["traefik.enable=true", "traefik.frontend.rule=Host:a.example"],
        &["traefik.enable=true", "traefik.frontend.rule=Host:b.example"],
        &[
            "traefik.enable=true",
            "traefik.http.routers.r.rule=Host(`a.example`)",
        ],
        &[
            "traefik.enable=true",
            "traefik.http.routers.r.rule=Host(`c.example`) && (Path(`/x`)",
        ],
        &[
            "traefik.enable=true",
            "traefik.http.routers.d.rule=Host(`d.example`)",
            "traefik.http.middlewares.strip.stripprefix.prefixes=/p",
        ],
        &[
            "traefik.enable=true",
            "traefik.http.routers.e.rule=Host(`e.example`)",
            "traefik.http.routers.e.middlewares=strip@consulcatalog",
        ],
        &[],
    ];

    /// One change: a service (by index) gone (`None`), or its instances as (tags, port,
    /// passing, created).
    type Change = (usize, Option<Vec<(usize, u16, bool, u64)>>);

    fn change() -> impl Strategy<Value = Change> {
        let instance = (0..TAGS.len(), 9000u16..9003, any::<bool>(), 1u64..5);
        (
            0..SERVICES.len(),
            prop::option::weighted(0.8, prop::collection::vec(instance, 1..3)),
        )
    }

    fn view(service: &str, instances: &[(usize, u16, bool, u64)]) -> Arc<ServiceView> {
        let instances = instances
            .iter()
            .enumerate()
            .map(|(i, (tags, port, passing, created))| {
                instance_at(
                    service,
                    &format!("{service}-{i}"),
                    *port,
                    TAGS[*tags],
                    *passing,
                    *created,
                )
                .1
            })
            .collect();
        Arc::new(ServiceView {
            name: service.to_string(),
            instances,
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn snapshots_assembled_from_changes_equal_a_compile_from_scratch(
            batches in prop::collection::vec(prop::collection::vec(change(), 1..4), 1..12),
        ) {
            let mut compiler = Compiler::new(Settings::default(), Health::Passing);
            let mut current: Catalog = BTreeMap::new();
            for batch in batches {
                for (service, instances) in batch {
                    let name = SERVICES[service].to_string();
                    let view = instances.map(|i| view(&name, &i));
                    compiler.apply(&[(name.clone(), view.clone())].into());
                    match view {
                        Some(view) => current.insert(name, Some(view)),
                        None => current.remove(&name),
                    };
                }
                let got = compiler.compiled();
                let expected = compile(&current);
                prop_assert_eq!(&got.snapshot, &expected.snapshot);
                prop_assert_eq!(&got.version, &expected.version);
                prop_assert_eq!(&got.errors, &expected.errors);
            }
        }
    }
}
