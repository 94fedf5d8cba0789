//! Tests of building route tables and looking routes up.

use std::net::IpAddr;

use berth_model::RequestView;
use http::{HeaderMap, HeaderValue, Method};

use super::testing::*;
use super::*;

/// What a request looks like to the table.
struct Req {
    host: &'static str,
    path: &'static str,
    method: Method,
    headers: HeaderMap,
    query: Option<&'static str>,
    ip: IpAddr,
}

fn req(host: &'static str, path: &'static str) -> Req {
    Req {
        host,
        path,
        method: Method::GET,
        headers: HeaderMap::new(),
        query: None,
        ip: IpAddr::from([10, 0, 0, 1]),
    }
}

fn build(snapshot: &Snapshot) -> RouteTable {
    RouteTable::build("v1", snapshot, &["http", "internal"], None).expect("valid snapshot")
}

fn found_on(table: &RouteTable, entrypoint: usize, r: &Req) -> Option<String> {
    let host = berth_model::request_host(r.host);
    let path = berth_model::routing_path(r.path).expect("path");
    let view = RequestView {
        host: &host,
        path: &path,
        method: &r.method,
        headers: &r.headers,
        query: r.query,
        client_ip: r.ip,
    };
    match table.lookup(entrypoint, &view) {
        Found::Route(route) => Some(route.name.clone()),
        _ => None,
    }
}

fn found(table: &RouteTable, r: &Req) -> Option<String> {
    found_on(table, 0, r)
}

fn one_cluster(routes: Vec<berth_proto::v1::Route>) -> Snapshot {
    snapshot(routes, vec![cluster("c", vec![endpoint("127.0.0.1", 9001, 1)])])
}

#[test]
fn hosts_exact_wildcard_regexp_and_any() {
    let t = build(&one_cluster(vec![
        route("exact", host("go.example"), "c"),
        route("wild", wildcard("go.example"), "c"),
        route("re", host_regexp("^[a-z]+\\.re\\.example$"), "c"),
        route("api-anywhere", all(vec![prefix("/only-api")]), "c"),
    ]));
    assert_eq!(found(&t, &req("go.example", "/")).as_deref(), Some("exact"));
    assert_eq!(found(&t, &req("Go.Example:8080", "/")).as_deref(), Some("exact"));
    assert_eq!(found(&t, &req("GO.EXAMPLE.", "/")).as_deref(), Some("exact"));
    assert_eq!(found(&t, &req("a.go.example", "/")).as_deref(), Some("wild"));
    assert_eq!(found(&t, &req("a.b.go.example", "/")).as_deref(), Some("wild"));
    assert_eq!(
        found(&t, &req("xgo.example", "/")),
        None,
        "a wildcard needs the dot"
    );
    assert_eq!(found(&t, &req("abc.re.example", "/")).as_deref(), Some("re"));
    assert_eq!(found(&t, &req("a1.re.example", "/")), None);
    assert_eq!(
        found(&t, &req("nowhere.example", "/only-api/x")).as_deref(),
        Some("api-anywhere")
    );
    assert_eq!(found(&t, &req("nowhere.example", "/")), None);
}

#[test]
fn priority_wins_across_buckets() {
    // Traefik orders every router by priority, whatever its host condition: a catch-all with a
    // higher priority takes requests for a host another route names.
    let mut catch_all = route("catch-all", prefix("/"), "c");
    catch_all.priority = 100;
    let mut named = route("named", host("a.example"), "c");
    named.priority = 10;
    let mut wild = route("wild", wildcard("example"), "c");
    wild.priority = 50;
    let t = build(&one_cluster(vec![named.clone(), catch_all.clone(), wild.clone()]));
    assert_eq!(found(&t, &req("a.example", "/")).as_deref(), Some("catch-all"));
    catch_all.priority = 1;
    let t = build(&one_cluster(vec![named.clone(), catch_all, wild.clone()]));
    assert_eq!(found(&t, &req("a.example", "/")).as_deref(), Some("wild"));
    wild.priority = 5;
    let t = build(&one_cluster(vec![
        named,
        wild,
        route("catch-all", prefix("/"), "c"),
    ]));
    assert_eq!(found(&t, &req("a.example", "/")).as_deref(), Some("named"));
    assert_eq!(found(&t, &req("b.example", "/")).as_deref(), Some("wild"));
    assert_eq!(found(&t, &req("b.other", "/")).as_deref(), Some("catch-all"));
}

#[test]
fn ties_go_to_the_lower_order_then_the_name() {
    let mut young = route("a-young", host("x.example"), "c");
    young.order = 7;
    let mut old = route("z-old", host("x.example"), "c");
    old.order = 3;
    let t = build(&one_cluster(vec![young.clone(), old.clone()]));
    assert_eq!(found(&t, &req("x.example", "/")).as_deref(), Some("z-old"));
    young.order = 3;
    let t = build(&one_cluster(vec![old, young]));
    assert_eq!(found(&t, &req("x.example", "/")).as_deref(), Some("a-young"));
    let names: Vec<_> = t.routes().iter().map(|r| r.name.as_str()).collect();
    assert_eq!(
        names,
        ["a-young", "z-old"],
        "routes are listed in the order they are tried"
    );
}

#[test]
fn falls_through_to_the_next_candidate() {
    let mut api = route("api", all(vec![host("a.example"), prefix("/api")]), "c");
    api.priority = 20;
    let t = build(&one_cluster(vec![api, route("site", host("a.example"), "c")]));
    assert_eq!(found(&t, &req("a.example", "/api/v1")).as_deref(), Some("api"));
    assert_eq!(found(&t, &req("a.example", "/apx")).as_deref(), Some("site"));
}

#[test]
fn method_header_query_and_client_ip() {
    let t = build(&one_cluster(vec![
        route("post", all(vec![host("m.example"), method("POST")]), "c"),
        route("beta", all(vec![host("m.example"), header("X-Beta", "1")]), "c"),
        route("debug", all(vec![host("m.example"), query("debug", "true")]), "c"),
        route(
            "office",
            all(vec![host("m.example"), client_ip(&["192.0.2.0/24"])]),
            "c",
        ),
        route(
            "not-office",
            all(vec![host("m.example"), not(client_ip(&["192.0.2.0/24"]))]),
            "c",
        ),
    ]));
    // Equal priorities: the name decides which of several matching routes wins.
    let mut r = req("m.example", "/");
    r.method = Method::POST;
    assert_eq!(found(&t, &r).as_deref(), Some("not-office"));
    let t = build(&one_cluster(vec![
        {
            let mut x = route("post", all(vec![host("m.example"), method("POST")]), "c");
            x.priority = 5;
            x
        },
        {
            let mut x = route("beta", all(vec![host("m.example"), header("X-Beta", "1")]), "c");
            x.priority = 4;
            x
        },
        {
            let mut x = route("debug", all(vec![host("m.example"), query("debug", "true")]), "c");
            x.priority = 3;
            x
        },
        {
            let mut x = route(
                "office",
                all(vec![host("m.example"), client_ip(&["192.0.2.0/24"])]),
                "c",
            );
            x.priority = 2;
            x
        },
    ]));
    let mut r = req("m.example", "/");
    r.method = Method::POST;
    assert_eq!(found(&t, &r).as_deref(), Some("post"));
    let mut r = req("m.example", "/");
    r.headers.insert("x-beta", HeaderValue::from_static("1"));
    assert_eq!(found(&t, &r).as_deref(), Some("beta"));
    let mut r = req("m.example", "/");
    r.query = Some("a=b&debug=true");
    assert_eq!(found(&t, &r).as_deref(), Some("debug"));
    let mut r = req("m.example", "/");
    r.ip = "192.0.2.44".parse().unwrap();
    assert_eq!(found(&t, &r).as_deref(), Some("office"));
    assert_eq!(found(&t, &req("m.example", "/")), None);
}

#[test]
fn entrypoints_filter_routes() {
    let mut internal = route("internal", host("i.example"), "c");
    internal.entrypoints = vec!["internal".into()];
    let mut elsewhere = route("elsewhere", host("e.example"), "c");
    elsewhere.entrypoints = vec!["not-on-this-proxy".into()];
    let t = build(&one_cluster(vec![
        internal,
        elsewhere,
        route("all", host("a.example"), "c"),
    ]));
    assert_eq!(found_on(&t, 0, &req("i.example", "/")), None);
    assert_eq!(
        found_on(&t, 1, &req("i.example", "/")).as_deref(),
        Some("internal")
    );
    assert_eq!(found_on(&t, 1, &req("a.example", "/")).as_deref(), Some("all"));
    assert_eq!(found_on(&t, 0, &req("e.example", "/")), None);
    assert_eq!(found_on(&t, 1, &req("e.example", "/")), None);
    assert_eq!(t.routes().len(), 3, "kept for the admin API");
    assert_eq!(
        found_on(&t, 7, &req("a.example", "/")),
        None,
        "no panic for a bad index"
    );
}

#[test]
fn tls_routes_are_filed_only_under_tls_entrypoints() {
    // web (plain) and websecure (TLS), as with `--tls websecure`.
    let mut secure = route("secure", host("app.example"), "c");
    secure.entrypoints = vec!["websecure".into()];
    secure.tls = true;
    let mut secure_everywhere = route("secure-everywhere", host("s.example"), "c");
    secure_everywhere.tls = true;
    let mut secure_on_web = route("secure-on-web", host("w.example"), "c");
    secure_on_web.entrypoints = vec!["web".into()];
    secure_on_web.tls = true;
    let plain = route("plain", host("p.example"), "c");
    let s = one_cluster(vec![secure, secure_everywhere, secure_on_web, plain]);
    assert!(s.routes[0].requires.iter().any(|r| r == "route/tls"));
    let t = RouteTable::build_on("v1", &s, &["web", "websecure"], &["websecure"], None).expect("valid");
    let (web, websecure) = (0, 1);
    assert_eq!(
        found_on(&t, web, &req("app.example", "/")),
        None,
        "not over plain HTTP"
    );
    assert_eq!(
        found_on(&t, websecure, &req("app.example", "/")).as_deref(),
        Some("secure")
    );
    assert_eq!(found_on(&t, web, &req("s.example", "/")), None);
    assert_eq!(
        found_on(&t, websecure, &req("s.example", "/")).as_deref(),
        Some("secure-everywhere")
    );
    assert_eq!(
        found_on(&t, web, &req("w.example", "/")),
        None,
        "a TLS route on a plain entrypoint only is served nowhere"
    );
    assert_eq!(found_on(&t, websecure, &req("w.example", "/")), None);
    // A route without tls is served on both, as under Traefik's entrypoint-level TLS.
    assert_eq!(
        found_on(&t, web, &req("p.example", "/")).as_deref(),
        Some("plain")
    );
    assert_eq!(
        found_on(&t, websecure, &req("p.example", "/")).as_deref(),
        Some("plain")
    );
    assert_eq!(t.routes().len(), 4, "kept for the admin API");

    // With no TLS entrypoint, no TLS route is served at all.
    let t = RouteTable::build("v1", &s, &["web", "websecure"], None).expect("valid");
    assert_eq!(found_on(&t, websecure, &req("app.example", "/")), None);
    assert_eq!(
        found_on(&t, websecure, &req("p.example", "/")).as_deref(),
        Some("plain")
    );
}

#[test]
fn on_a_tls_entrypoint_a_tls_route_wins_a_tie() {
    // Traefik's pair on every entrypoint: a plain router redirecting to https, and the TLS router
    // with the same rule. Over TLS the TLS router serves, whatever the names and claim order.
    let mut redirect = route("a-redirect", host("app.example"), "c");
    redirect.order = 1;
    let mut secure = route("z-secure", host("app.example"), "c");
    secure.order = 2;
    secure.tls = true;
    let s = one_cluster(vec![redirect, secure]);
    let t = RouteTable::build_on("v1", &s, &["web", "websecure"], &["websecure"], None).expect("valid");
    assert_eq!(
        found_on(&t, 0, &req("app.example", "/")).as_deref(),
        Some("a-redirect")
    );
    assert_eq!(
        found_on(&t, 1, &req("app.example", "/")).as_deref(),
        Some("z-secure")
    );
}

#[test]
fn lookup_does_not_walk_the_whole_table() {
    // 5000 host routes and one catch-all: a request for one host tries its own route and the
    // catch-all, nothing else.
    let mut routes: Vec<_> = (0..5000)
        .map(|i| {
            let mut r = route(&format!("r{i}"), host(&format!("h{i}.example")), "c");
            r.priority = 10;
            r
        })
        .collect();
    routes.push(route("catch-all", prefix("/"), "c"));
    let t = build(&one_cluster(routes));
    let tried = t.by_entrypoint[0].candidates_for("h4321.example");
    assert_eq!(tried, ["r4321", "catch-all"]);
    assert_eq!(found(&t, &req("h4321.example", "/")).as_deref(), Some("r4321"));
    assert_eq!(found(&t, &req("h9.example", "/")).as_deref(), Some("r9"));
}

#[test]
fn a_route_under_two_suffixes_is_tried_once() {
    let r = route(
        "multi",
        any(vec![wildcard("example.com"), wildcard("b.example.com")]),
        "c",
    );
    let t = build(&one_cluster(vec![r]));
    assert_eq!(t.by_entrypoint[0].candidates_for("a.b.example.com"), ["multi"]);
}

#[test]
fn round_robin_position_survives_unchanged_swaps() {
    let s = snapshot(
        vec![route("api", host("a.example"), "api")],
        vec![cluster(
            "api",
            vec![endpoint("127.0.0.1", 9002, 1), endpoint("::1", 9003, 1)],
        )],
    );
    let first = build(&s);
    let api = |t: &RouteTable| t.clusters()["api"].clone();
    assert_eq!(api(&first).pick(), Some(0));
    let second = RouteTable::build("v2", &s, &["http"], Some(&first)).expect("valid");
    assert_eq!(api(&second).pick(), Some(1));
    let mut changed = s.clone();
    changed.clusters[0].endpoints.push(endpoint("127.0.0.1", 9004, 1));
    let third = RouteTable::build("v3", &changed, &["http"], Some(&second)).expect("valid");
    assert_eq!(api(&third).pick(), Some(0), "changed cluster starts over");
    assert_eq!(api(&third).endpoints[1].authority.as_str(), "[::1]:9003");
}

fn rejection(s: &Snapshot) -> String {
    RouteTable::build("bad", s, &["http"], None)
        .expect_err("must be rejected")
        .to_string()
}

#[test]
fn invalid_snapshots_are_rejected_with_the_models_reason() {
    let mut s = one_cluster(vec![route("go", host("go.example"), "ghost")]);
    let text = rejection(&s);
    assert!(text.contains("\"go\"") && text.contains("ghost"), "{text}");

    s.routes[0].cluster = "c".into();
    s.routes[0].matcher = None;
    let text = rejection(&s);
    assert!(text.contains("\"go\""), "{text}");

    let mut s = one_cluster(vec![route("go", host("go.example"), "c")]);
    s.clusters[0].endpoints[0].address = "not a host!".into();
    let text = rejection(&s);
    assert!(text.contains("not a host!"), "{text}");
}

#[test]
fn an_unknown_feature_is_rejected_naming_route_and_feature() {
    let mut s = one_cluster(vec![route("go", host("go.example"), "c")]);
    s.routes[0].requires.push("middleware/teleport".into());
    let text = rejection(&s);
    assert!(text.contains("\"go\""), "{text}");
    assert!(text.contains("middleware/teleport"), "{text}");
}

#[test]
fn a_middleware_of_an_unknown_kind_is_rejected() {
    let s = one_cluster(vec![with_middlewares(
        route("go", host("go.example"), "c"),
        vec![berth_proto::v1::Middleware {
            name: "future".into(),
            kind: None,
        }],
    )]);
    let text = rejection(&s);
    assert!(text.contains("\"go\""), "{text}");
}

#[test]
fn empty_cluster_is_valid() {
    let s = snapshot(
        vec![route("go", host("go.example"), "c")],
        vec![cluster("c", vec![])],
    );
    let t = build(&s);
    assert!(t.clusters()["c"].pick().is_none());
}

#[test]
fn rules_are_rendered_for_operators() {
    let t = build(&one_cluster(vec![route(
        "go",
        all(vec![host("go.example"), prefix("/api")]),
        "c",
    )]));
    assert_eq!(t.routes()[0].rule, "Host(`go.example`) && PathPrefix(`/api`)");
}

#[test]
fn knows_whether_a_matcher_reads_a_header() {
    let reads = |routes| build(&one_cluster(routes)).reads_headers();
    assert!(!reads(vec![route("a", host("a.example"), "c")]));
    assert!(!reads(vec![route(
        "q",
        all(vec![host("a.example"), query("x-api-key", "k")]),
        "c"
    )]));
    for name in ["X-Api-Key", "X-Forwarded-Proto", "Cookie"] {
        let matcher = all(vec![host("b.example"), not(header(name, "v"))]);
        assert!(
            reads(vec![route("a", host("a.example"), "c"), route("b", matcher, "c")]),
            "{name}"
        );
    }
}
