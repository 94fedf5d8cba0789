//! Matcher semantics, case by case after Traefik v3's `matcher_test.go`, plus the compile errors.

use super::*;
use crate::testing::*;

fn compiled(m: Matcher) -> CompiledMatcher {
    CompiledMatcher::compile(&m).unwrap()
}

/// Asserts, for each (url, expected), whether the matcher takes a GET of that URL.
fn check_urls(m: Matcher, cases: &[(&str, bool)]) {
    let c = compiled(m.clone());
    for (url, expected) in cases {
        assert_eq!(c.matches(&Req::new(url).view()), *expected, "{m:?} on {url}");
    }
}

fn errors(m: Matcher) -> Vec<String> {
    CompiledMatcher::compile(&m)
        .unwrap_err()
        .problems
        .iter()
        .map(ToString::to_string)
        .collect()
}

#[test]
fn host_exact() {
    check_urls(
        host("example.com"),
        &[
            ("example.com", true),
            ("example.com:8080", true),
            ("example.com/path", true),
            ("EXAMPLE.COM/path", true),
            ("example.com.", true),
            ("example.com./path", true),
            ("example.org", false),
            ("", false),
        ],
    );
}

#[test]
fn host_wildcard_takes_any_depth_but_not_the_suffix() {
    check_urls(
        wildcard("example.com"),
        &[
            ("test.example.com", true),
            ("a.b.example.com", true),
            ("TEST.example.com:80", true),
            ("example.com", false),
            ("test.otherexample.com", false),
            ("xexample.com", false),
        ],
    );
}

#[test]
fn traefik_one_label_wildcard_as_a_dialect_writes_it() {
    check_urls(
        all_of(vec![wildcard("example.com"), host_re(r"^[^.]+\.example\.com$")]),
        &[
            ("test.example.com", true),
            ("a.b.example.com", false),
            ("example.com", false),
        ],
    );
}

#[test]
fn host_regexp_is_unanchored_and_case_sensitive() {
    check_urls(
        host_re(r"^[a-zA-Z-]+\.com$"),
        &[
            ("example.com", true),
            ("example.com:8080", true),
            ("example.org", false),
        ],
    );
    // The host is lower-cased before matching, so an upper-case class never matches.
    check_urls(
        host_re(r"^[A-Z]+\.com$"),
        &[("example.com", false), ("EXAMPLE.com", false)],
    );
    check_urls(host_re("ample"), &[("example.com", true)]);
    // A Traefik v2 template left in a v3 regexp is literal braces in Go: the dialect writes them
    // escaped; unescaped they are no regexp here.
    check_urls(host_re(r"\{domain:[a-zA-Z-]+\.com\}"), &[("example.com", false)]);
    assert!(CompiledMatcher::compile(&host_re(r"{domain:[a-z]+}")).is_err());
}

#[test]
fn path_exact_takes_the_whole_path() {
    check_urls(
        path_exact("/css"),
        &[
            ("example.com", false),
            ("example.com/html", false),
            ("example.org/css", true),
            ("example.com/css/", false),
            ("example.com/css/main.css", false),
        ],
    );
}

#[test]
fn path_prefix_is_a_plain_prefix() {
    check_urls(
        path_prefix("/css"),
        &[
            ("example.com", false),
            ("example.com/html", false),
            ("example.com/css", true),
            ("example.com/css/", true),
            ("example.com/css/main.css", true),
            ("example.com/cssx", true),
        ],
    );
}

#[test]
fn path_segment_prefix_takes_whole_segments() {
    check_urls(
        path_segment("/api"),
        &[
            ("e/api", true),
            ("e/api/", true),
            ("e/api/x", true),
            ("e/apis", false),
            ("e/ap", false),
            ("e/", false),
        ],
    );
    check_urls(
        path_segment("/api/"),
        &[("e/api/", true), ("e/api/x", true), ("e/api", false)],
    );
    check_urls(path_segment("/"), &[("e/", true), ("e/anything", true)]);
}

#[test]
fn path_regexp() {
    check_urls(
        path_re("^/(css|js)"),
        &[
            ("example.com", false),
            ("example.com/html", false),
            ("example.com/CSS", false),
            ("example.com/css", true),
            ("example.com/css/main.css", true),
            ("example.com/js/", true),
        ],
    );
    // A v2 template, as the dialect writes it from Go syntax, is literal and matches its
    // decoded form too.
    check_urls(
        path_re(r"/\{path:(css|js)\}"),
        &[
            ("e/{path:css}", true),
            ("e/{path:css}/", true),
            ("e/%7Bpath:css%7D", true),
            ("e/%7Bpath:js%7D/", true),
            ("e/css", false),
            ("e/html", false),
        ],
    );
}

#[test]
fn paths_compare_with_the_routing_path() {
    // Unreserved escapes are decoded before matching...
    check_urls(path_prefix("/foo bar"), &[("e/foo%20bar", true)]);
    check_urls(path_exact("/café"), &[("e/caf%C3%A9", true)]);
    // ...reserved ones are kept, so an encoded slash is not a separator.
    check_urls(
        path_prefix("/a/"),
        &[("e/a%2Fb", false), ("e/a/b", true), ("e/a%2fb", false)],
    );
    check_urls(path_exact("/a%2Fb"), &[("e/a%2Fb", true), ("e/a/b", false)]);
}

#[test]
fn method_is_compared_as_sent() {
    let c = compiled(method("GET"));
    assert!(c.matches(&Req::new("e/").method("GET").view()));
    assert!(!c.matches(&Req::new("e/").method("POST").view()));
    assert!(!c.matches(&Req::new("e/").method("get").view()));
    let c = compiled(method("PURGE"));
    assert!(c.matches(&Req::new("e/").method("PURGE").view()));
}

#[test]
fn header_exact_takes_any_of_the_values() {
    let c = compiled(header("x-forwarded-proto", "https"));
    assert!(c.matches(&Req::new("e/").header("X-Forwarded-Proto", "https").view()));
    assert!(c.matches(
        &Req::new("e/")
            .header("X-Forwarded-Proto", "http")
            .header("X-Forwarded-Proto", "https")
            .view()
    ));
    assert!(!c.matches(&Req::new("e/").header("X-Forwarded-Proto", "http, https").view()));
    assert!(!c.matches(&Req::new("e/").header("X-Forwarded-Proto", "HTTPS").view()));
    assert!(!c.matches(&Req::new("e/").view()));
    let c = compiled(header("X-Empty", ""));
    assert!(c.matches(&Req::new("e/").header("X-Empty", "").view()));
    assert!(!c.matches(&Req::new("e/").view()));
}

#[test]
fn says_whether_it_may_read_headers() {
    let reads = |m: Matcher| compiled(m).reads_headers();
    assert!(reads(header("X-Forwarded-Proto", "https")));
    assert!(reads(header_re("x-api-key", "^a")));
    assert!(!reads(all_of(vec![
        host("e"),
        path_prefix("/a"),
        query("x-forwarded-proto", "1")
    ])));
    assert!(!reads(all_of(vec![method("GET"), client_ip(&["10.0.0.0/8"])])));
    // Anywhere in the tree, whatever the operators around it.
    assert!(reads(all_of(vec![
        host("e"),
        any_of(vec![method("GET"), not(header("X-Forwarded-Port", "80"))]),
    ])));
}

#[test]
fn header_regexp() {
    let c = compiled(header_re("X-Forwarded-Proto", "^https?$"));
    assert!(c.matches(&Req::new("e/").header("X-Forwarded-Proto", "http").view()));
    assert!(c.matches(&Req::new("e/").header("x-forwarded-proto", "https").view()));
    assert!(!c.matches(&Req::new("e/").header("X-Forwarded-Proto", "HTTPS").view()));
    assert!(c.matches(
        &Req::new("e/")
            .header("X-Forwarded-Proto", "ws")
            .header("X-Forwarded-Proto", "https")
            .view()
    ));
    assert!(!c.matches(&Req::new("e/").header("X-Forwarded-Host", "https").view()));
}

#[test]
fn header_host_never_matches_as_in_go() {
    let c = compiled(header("Host", "example.com"));
    assert!(!c.matches(&Req::new("example.com/").header("host", "example.com").view()));
}

#[test]
fn query_exact() {
    check_urls(
        query("q", "traefik"),
        &[
            ("e/", false),
            ("e/?q=traefik", true),
            ("e/?rel=ddg&q=traefik", true),
            ("e/?q=traefik&q=proxy", true),
            ("e/?q=awesome&q=traefik", true),
            ("e/?q=nginx", false),
            ("e/?q=TRAEFIK", false),
            ("e/?Q=traefik", false),
            ("e/?rel=traefik", false),
            ("e/?q=tra%65fik", true),
            ("e/?%71=traefik", true),
            ("e/?x=1;q=traefik", true),
        ],
    );
    check_urls(
        query("q", "a b"),
        &[("e/?q=a+b", true), ("e/?q=a%20b", true), ("e/?q=a%2Bb", false)],
    );
}

#[test]
fn traefik_query_with_one_argument_is_exact_empty() {
    check_urls(
        query("mobile", ""),
        &[
            ("e/", false),
            ("e/?mobile", true),
            ("e/?mobile=", true),
            ("e/?mobile=true", false),
        ],
    );
}

#[test]
fn query_present_takes_any_value() {
    check_urls(
        query_present("mobile"),
        &[
            ("e/", false),
            ("e/?mobile", true),
            ("e/?mobile=true", true),
            ("e/?mobiles=1", false),
            ("e/?mobile=%zz", false),
        ],
    );
}

#[test]
fn query_regexp() {
    check_urls(
        query_re("q", "^(traefik|nginx)$"),
        &[
            ("e/", false),
            ("e/?q=traefik", true),
            ("e/?rel=ddg&q=nginx", true),
            ("e/?q=awesome&q=traefik", true),
            ("e/?q=NGINX", false),
            ("e/?Q=nginx", false),
            ("e/?q=haproxy", false),
        ],
    );
    check_urls(query_re("q", "^.*$"), &[("e/?q=", true), ("e/?rel=1", false)]);
}

#[test]
fn client_ip_uses_the_peer_address() {
    let c = compiled(client_ip(&["127.0.0.1", "192.168.1.0/24", "2001:db8::/32"]));
    let from = |ip: &str| c.matches(&Req::new("e/").peer(ip).view());
    assert!(from("127.0.0.1"));
    assert!(from("192.168.1.1"));
    assert!(from("::ffff:192.168.1.200"));
    assert!(from("2001:db8::1"));
    assert!(!from("127.0.0.2"));
    assert!(!from("10.0.0.1"));
    assert!(!from("::1"));
    // X-Forwarded-For does not count.
    assert!(!c.matches(&Req::new("e/").header("X-Forwarded-For", "127.0.0.1").view()));
}

#[test]
fn client_ip_mapped_forms() {
    let c = compiled(client_ip(&["::ffff:10.0.0.0/104"]));
    assert!(c.matches(&Req::new("e/").peer("10.1.2.3").view()));
    assert!(!c.matches(&Req::new("e/").peer("11.1.2.3").view()));
    let c = compiled(client_ip(&["::ffff:10.0.0.1"]));
    assert!(c.matches(&Req::new("e/").peer("10.0.0.1").view()));
    let c = compiled(client_ip(&["10.0.0.5/8"]));
    assert!(c.matches(&Req::new("e/").peer("10.200.0.1").view()));
}

#[test]
fn combinators() {
    let m = all_of(vec![host("a.example"), path_prefix("/api")]);
    check_urls(
        m,
        &[
            ("a.example/api/x", true),
            ("a.example/web", false),
            ("b.example/api", false),
        ],
    );
    let m = any_of(vec![host("a.example"), path_prefix("/api")]);
    check_urls(
        m,
        &[
            ("a.example/web", true),
            ("b.example/api", true),
            ("b.example/web", false),
        ],
    );
    check_urls(
        not(host("a.example")),
        &[("a.example/", false), ("b.example/", true)],
    );
    check_urls(all_of(vec![]), &[("e/", true)]);
    check_urls(any_of(vec![]), &[("e/", false)]);
}

#[test]
fn every_problem_is_reported_with_its_place() {
    let m = all_of(vec![
        host("Example.com"),
        path_re("/(css"),
        Matcher { kind: None },
        any_of(vec![
            not(method("get")),
            header("", "x"),
            client_ip(&["1.2.3.4", "nope"]),
        ]),
    ]);
    assert_eq!(
        errors(m),
        vec![
            r#"all[0].host.exact: "Example.com" is not in canonical form, write "example.com""#,
            r#"all[1].path.regexp: regexp "/(css" does not compile: unclosed group"#,
            "all[2].kind: kind is not set (or is one this version of Berth does not know)",
            r#"all[3].any[0].not.method: "get" is not upper case"#,
            "all[3].any[1].header.name: is empty",
            r#"all[3].any[2].client_ip.ranges[1]: "nope" is neither an IP address nor a CIDR network"#,
        ]
    );
}

#[test]
fn malformed_leaves() {
    assert_eq!(
        errors(Matcher { kind: None }),
        vec!["kind: kind is not set (or is one this version of Berth does not know)"]
    );
    assert_eq!(errors(host("")), vec![r#"host.exact: host "": is empty"#]);
    assert_eq!(
        errors(host("a.b.")),
        vec![r#"host.exact: "a.b." is not in canonical form, write "a.b""#]
    );
    assert_eq!(
        errors(wildcard("1.2.3.4")),
        vec![r#"host.wildcard: "1.2.3.4" is an IP address, not a domain suffix"#]
    );
    assert_eq!(errors(wildcard("*.a.b")).len(), 1);
    assert_eq!(errors(host_re("")), vec!["host.regexp: is empty"]);
    assert_eq!(
        errors(path_exact("css")),
        vec![r#"path.exact: "css" does not start with '/'"#]
    );
    assert_eq!(errors(path_prefix("")), vec!["path.prefix: is empty"]);
    assert_eq!(errors(path_segment("x")).len(), 1);
    assert_eq!(errors(method("")), vec!["method: is empty"]);
    assert_eq!(
        errors(method("GE T")),
        vec![r#"method: "GE T" is not an HTTP method"#]
    );
    assert_eq!(
        errors(header("x y", "1")),
        vec![r#"header.name: "x y" is not an HTTP header name"#]
    );
    assert_eq!(errors(header_re("x", "(")).len(), 1);
    assert_eq!(
        errors(Matcher {
            kind: Some(matcher::Kind::Header(HeaderMatcher {
                name: "x".into(),
                value: None
            }))
        }),
        vec!["header.value: is not set"]
    );
    assert_eq!(errors(query("", "x")), vec!["query.name: is empty"]);
    assert_eq!(
        errors(Matcher {
            kind: Some(matcher::Kind::Query(QueryMatcher {
                name: "q".into(),
                value: Some(query_matcher::Value::Present(false))
            }))
        }),
        vec!["query.present: present must be true (write absence as not(query))"]
    );
    assert_eq!(errors(client_ip(&[])), vec!["client_ip.ranges: is empty"]);
    assert_eq!(errors(client_ip(&["fe80::1%eth0"])).len(), 1);
    assert_eq!(
        errors(Matcher {
            kind: Some(matcher::Kind::Host(HostMatcher { kind: None }))
        }),
        vec!["host.kind: kind is not set (or is one this version of Berth does not know)"]
    );
    assert_eq!(
        errors(Matcher {
            kind: Some(matcher::Kind::Path(PathMatcher { kind: None }))
        })
        .len(),
        1
    );
}

#[test]
fn error_display_joins_problems() {
    let e = CompiledMatcher::compile(&all_of(vec![host(""), path_exact("x")])).unwrap_err();
    assert_eq!(
        e.to_string(),
        r#"all[0].host.exact: host "": is empty; all[1].path.exact: "x" does not start with '/'"#
    );
}

/// The logical meaning of a tree, with each leaf evaluated on its own.
fn reference(m: &Matcher, req: &Req) -> bool {
    match m.kind.as_ref().unwrap() {
        matcher::Kind::All(list) => list.matchers.iter().all(|c| reference(c, req)),
        matcher::Kind::Any(list) => list.matchers.iter().any(|c| reference(c, req)),
        matcher::Kind::Not(inner) => !reference(inner, req),
        _ => compiled(m.clone()).matches(&req.view()),
    }
}

mod laws {
    use super::*;
    use proptest::prelude::*;

    fn eval(m: &Matcher, req: &Req) -> bool {
        compiled(m.clone()).matches(&req.view())
    }

    proptest! {
        #[test]
        fn a_tree_evaluates_as_its_logical_definition(m in valid_tree(), req in small_request()) {
            prop_assert_eq!(eval(&m, &req), reference(&m, &req));
        }

        #[test]
        fn double_negation_and_singletons(m in valid_tree(), req in small_request()) {
            let plain = eval(&m, &req);
            prop_assert_eq!(eval(&not(not(m.clone())), &req), plain);
            prop_assert_eq!(eval(&not(m.clone()), &req), !plain);
            prop_assert_eq!(eval(&all_of(vec![m.clone()]), &req), plain);
            prop_assert_eq!(eval(&any_of(vec![m.clone()]), &req), plain);
            prop_assert!(eval(&all_of(vec![]), &req));
            prop_assert!(!eval(&any_of(vec![]), &req));
        }

        #[test]
        fn de_morgan(a in valid_tree(), b in valid_tree(), req in small_request()) {
            let lhs = eval(&not(all_of(vec![a.clone(), b.clone()])), &req);
            let rhs = eval(&any_of(vec![not(a.clone()), not(b.clone())]), &req);
            prop_assert_eq!(lhs, rhs);
            let both = eval(&all_of(vec![a.clone(), b.clone()]), &req);
            prop_assert_eq!(both, eval(&a, &req) && eval(&b, &req));
            let either = eval(&any_of(vec![a.clone(), b.clone()]), &req);
            prop_assert_eq!(either, eval(&a, &req) || eval(&b, &req));
        }
    }
}

#[test]
fn compiled_matchers_are_shared_between_threads() {
    fn shareable<T: Send + Sync + 'static>() {}
    shareable::<CompiledMatcher>();
}
