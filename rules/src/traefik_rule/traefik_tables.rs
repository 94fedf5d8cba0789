//! Traefik's own test tables (`pkg/rules/parser_test.go`, `pkg/muxer/http/matcher_test.go`,
//! `matcher_v2_test.go`, `mux_test.go`), replayed: every rule they hold gets the same verdict
//! (accepted or rejected) here, and where a table lists requests with the answer Traefik gives,
//! a small evaluator of the route model (the proxy's semantics, as the .proto states them) gives
//! the same answers.
//!
//! Intentional differences, each marked where it occurs below:
//! - v2 `HostRegexp(`(example.com`)` is accepted by both, but Traefik's table expects it to match
//!   nothing while it becomes `host.exact("(example.com")` here, which also matches nothing a
//!   client can send.
//! - Requests whose host ends with a dot: the proxy strips the dot before matching, so
//!   `https://example.com.` is routed like `https://example.com`, as Traefik's v3 `Host` does.

use berth_proto::v1::{header_matcher, host_matcher, matcher, path_matcher, query_matcher, Matcher};

use super::syntax;
use super::{parse, RuleSyntax};

/// A request as the proxy sees it when matching.
#[derive(Debug, Clone, Default)]
struct Request {
    /// Lower case, no port, no trailing dot.
    host: String,
    path: String,
    method: String,
    headers: Vec<(String, String)>,
    query: Vec<(String, String)>,
}

impl Request {
    fn url(url: &str) -> Request {
        let rest = url.split_once("://").map_or(url, |(_, r)| r);
        let (authority, path_query) = match rest.find(['/', '?']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        let host = authority
            .rsplit_once(':')
            .map_or(authority, |(h, _)| h)
            .to_ascii_lowercase();
        let host = host.strip_suffix('.').unwrap_or(&host).to_string();
        let (path, query) = path_query.split_once('?').unwrap_or((path_query, ""));
        let path = if path.is_empty() {
            "/".to_string()
        } else {
            path.to_string()
        };
        let query = query
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                (k.to_string(), v.to_string())
            })
            .collect();
        Request {
            host,
            path,
            method: "GET".into(),
            headers: Vec::new(),
            query,
        }
    }
}

fn re(pattern: &str) -> regex::Regex {
    regex::Regex::new(pattern).unwrap_or_else(|e| panic!("{pattern:?}: {e}"))
}

fn eval(m: &Matcher, req: &Request) -> bool {
    let Some(kind) = &m.kind else { return false };
    match kind {
        matcher::Kind::All(l) => l.matchers.iter().all(|m| eval(m, req)),
        matcher::Kind::Any(l) => l.matchers.iter().any(|m| eval(m, req)),
        matcher::Kind::Not(m) => !eval(m, req),
        matcher::Kind::Method(method) => *method == req.method,
        matcher::Kind::Host(h) => match &h.kind {
            Some(host_matcher::Kind::Exact(e)) => *e == req.host,
            Some(host_matcher::Kind::Regexp(r)) => re(r).is_match(&req.host),
            _ => false,
        },
        matcher::Kind::Path(p) => match &p.kind {
            Some(path_matcher::Kind::Exact(e)) => *e == req.path,
            Some(path_matcher::Kind::Prefix(e)) => req.path.starts_with(e.as_str()),
            Some(path_matcher::Kind::Regexp(r)) => re(r).is_match(&req.path),
            _ => false,
        },
        matcher::Kind::Header(h) => req
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(&h.name))
            .any(|(_, v)| match &h.value {
                Some(header_matcher::Value::Exact(e)) => e == v,
                Some(header_matcher::Value::Regexp(r)) => re(r).is_match(v),
                None => false,
            }),
        matcher::Kind::Query(q) => {
            req.query
                .iter()
                .filter(|(n, _)| *n == q.name)
                .any(|(_, v)| match &q.value {
                    Some(query_matcher::Value::Present(_)) => true,
                    Some(query_matcher::Value::Exact(e)) => e == v,
                    Some(query_matcher::Value::Regexp(r)) => re(r).is_match(v),
                    None => false,
                })
        }
        matcher::Kind::ClientIp(_) => false,
    }
}

fn accepts(syntax: RuleSyntax, rule: &str) -> Matcher {
    match parse(rule, syntax) {
        Ok(m) => m,
        Err(e) => panic!("{syntax:?} {rule:?} should be accepted: {e}"),
    }
}

fn rejects(syntax: RuleSyntax, rule: &str) {
    if let Ok(m) = parse(rule, syntax) {
        panic!("{syntax:?} {rule:?} should be rejected, got {m:?}");
    }
}

/// Checks Traefik's verdicts (`true`: accepted) for rules.
fn verdicts(syntax: RuleSyntax, rows: &[(&str, bool)]) {
    for (rule, ok) in rows {
        if *ok {
            accepts(syntax, rule);
        } else {
            rejects(syntax, rule);
        }
    }
}

/// Checks Traefik's answers for URLs (`true`: 200, `false`: 404).
fn urls(syntax: RuleSyntax, rule: &str, rows: &[(&str, bool)]) {
    let m = accepts(syntax, rule);
    for (url, expected) in rows {
        assert_eq!(
            eval(&m, &Request::url(url)),
            *expected,
            "{syntax:?} {rule:?} on {url}: {m:?}"
        );
    }
}

/// Checks Traefik's answers for header sets.
fn headers(syntax: RuleSyntax, rule: &str, rows: &[(&[(&str, &str)], bool)]) {
    let m = accepts(syntax, rule);
    for (set, expected) in rows {
        let mut req = Request::url("https://example.com");
        // Go's http.Header is keyed by canonical name: a non-canonical key is never seen.
        req.headers = set
            .iter()
            .filter(|(k, _)| {
                let canonical: String = k
                    .split('-')
                    .map(|w| {
                        let mut c = w.chars();
                        c.next().map_or(String::new(), |f| {
                            f.to_ascii_uppercase().to_string() + &c.as_str().to_ascii_lowercase()
                        })
                    })
                    .collect::<Vec<_>>()
                    .join("-");
                canonical == *k
            })
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(eval(&m, &req), *expected, "{rule:?} on {set:?}");
    }
}

use RuleSyntax::{V2, V3};

// ---------------------------------------------------------------------------------------------
// pkg/rules/parser_test.go: the expression grammar with one matcher `m`.

#[test]
fn rules_parser_test() {
    let parses = |rule: &str| syntax::parse(rule).is_ok();
    assert!(!parses(""));
    assert!(!parses("m"));
    assert!(parses("m()"));
    assert!(parses("m(``)"));
    assert!(!parses("m(`1`) &&"));
    assert!(!parses("m(`1`) ||"));
    assert!(!parses("m(`1)"));
    assert!(!parses("m(`1`))"));
    assert!(!parses("(m(`1`)"));
    assert!(parses("m(`1`)"));
    assert!(parses("(m(`1`))"));
    assert!(parses("m(`1`, `2`)"));
    assert!(parses("!m(`1`)"));
    assert!(parses("m(`1`) && m(`2`)"));
    assert!(parses("m(`1`) || m(`2`)"));
    assert!(parses("!(m(`1`) && m(`2`))"));
    assert!(parses("!(m(`1`) || m(`2`))"));
    assert!(parses("m(`1`) && m()"));
    // CheckRule: no value, empty value (here through v2 Method, which takes any number).
    rejects(V2, "Method()");
    rejects(V2, "Method(``)");
    rejects(V2, "Method(`1`) && Method()");
    // Names: as registered, lower, upper, title; nothing else.
    accepts(V2, "METHOD(`1`)");
    rejects(V2, "w(`1`)");
}

// ---------------------------------------------------------------------------------------------
// pkg/muxer/http/matcher_test.go (v3)

#[test]
fn v3_client_ip() {
    verdicts(
        V3,
        &[
            ("ClientIP(`1`)", false),
            ("ClientIP()", false),
            ("ClientIP(``)", false),
            ("ClientIP(`127.0.0.1`, `192.168.1.0/24`)", false),
            ("ClientIP(`127.0.0.1`)", true),
            ("ClientIP(`192.168.1.0/24`)", true),
        ],
    );
}

#[test]
fn v3_method() {
    verdicts(
        V3,
        &[
            ("Method()", false),
            ("Method(``)", false),
            ("Method(`GET`, `POST`)", false),
        ],
    );
    for rule in ["Method(`GET`)", "Method(`get`)"] {
        let m = accepts(V3, rule);
        for (method, expected) in [("GET", true), ("POST", false), ("get", false)] {
            let req = Request {
                method: method.into(),
                ..Request::url("https://example.com")
            };
            assert_eq!(eval(&m, &req), expected, "{rule} {method}");
        }
    }
}

#[test]
fn v3_host() {
    verdicts(
        V3,
        &[
            ("Host()", false),
            ("Host(``)", false),
            ("Host(`🦭.com`)", false),
            ("Host(`example.com`, `example.org`)", false),
        ],
    );
    let example = &[
        ("https://example.com", true),
        ("https://example.com:8080", true),
        ("https://example.com/path", true),
        ("https://EXAMPLE.COM/path", true),
        ("https://example.org", false),
        ("https://example.org/path", false),
    ];
    urls(V3, "Host(`example.com`)", example);
    let dotted = &[
        ("https://example.com", true),
        ("https://example.com/path", true),
        ("https://example.org", false),
        ("https://example.com.", true),
        ("https://example.com./path", true),
        ("https://example.org.", false),
    ];
    urls(V3, "Host(`example.com.`)", dotted);
    urls(V3, "Host(`example.com`)", dotted);
    urls(
        V3,
        "Host(`EXAMPLE.COM`)",
        &[("https://example.com", true), ("https://example.org", false)],
    );
    urls(
        V3,
        "Host(`xn--9t9h.com`)",
        &[
            ("https://xn--9t9h.com", true),
            ("https://example.com", false),
            ("https://🦭.com", false),
        ],
    );
    urls(
        V3,
        "Host(`*.example.com`)",
        &[
            ("https://test.example.com", true),
            ("https://other.example.com", true),
            ("https://example.com", false),
            ("https://test.otherexample.com", false),
        ],
    );
    urls(
        V3,
        "Host(`*`)",
        &[
            ("https://test.example.com", true),
            ("https://example.com", true),
            ("https://localhost", true),
        ],
    );
}

#[test]
fn v3_host_regexp() {
    verdicts(
        V3,
        &[
            ("HostRegexp()", false),
            ("HostRegexp(``)", false),
            ("HostRegexp(`🦭.com`)", false),
            ("HostRegexp(`(example.com`)", false),
            ("HostRegexp(`example.com`, `example.org`)", false),
        ],
    );
    urls(
        V3,
        r"HostRegexp(`^[a-zA-Z-]+\.com$`)",
        &[
            ("https://example.com", true),
            ("https://example.com:8080", true),
            ("https://example.com/path", true),
            ("https://example.org", false),
        ],
    );
    urls(
        V3,
        r"HostRegexp(`^[A-Z]+\.com$`)",
        &[("https://example.com", false), ("https://EXAMPLE.com", false)],
    );
    urls(
        V3,
        r"HostRegexp(`{domain:[a-zA-Z-]+\.com}`)",
        &[("https://example.com", false), ("https://example.org", false)],
    );
}

#[test]
fn v3_path() {
    verdicts(
        V3,
        &[
            ("Path()", false),
            ("Path(``)", false),
            ("Path(`css`)", false),
            ("Path(`/css`, `/js`)", false),
        ],
    );
    urls(
        V3,
        "Path(`/css`)",
        &[
            ("https://example.com", false),
            ("https://example.com/html", false),
            ("https://example.org/css", true),
            ("https://example.com/css", true),
            ("https://example.com/css/", false),
            ("https://example.com/css/main.css", false),
        ],
    );
}

#[test]
fn v3_path_regexp() {
    verdicts(
        V3,
        &[
            ("PathRegexp()", false),
            ("PathRegexp(``)", false),
            ("PathRegexp(`/(css`)", false),
            ("PathRegexp(`/css`, `/js`)", false),
        ],
    );
    urls(
        V3,
        "PathRegexp(`^/(css|js)`)",
        &[
            ("https://example.com", false),
            ("https://example.com/html", false),
            ("https://example.org/css", true),
            ("https://example.com/css", true),
            ("https://example.com/css/", true),
            ("https://example.com/css/main.css", true),
            ("https://example.com/js", true),
            ("https://example.com/js/main.js", true),
        ],
    );
    urls(
        V3,
        r#"PathRegexp("/{path:(css|js)}")"#,
        &[
            ("https://example.com", false),
            ("https://example.com/html", false),
            ("https://example.org/css", false),
            ("https://example.com/{path:css}", true),
            ("https://example.com/{path:css}/", true),
            ("https://example.com/{path:js}", true),
        ],
    );
}

#[test]
fn v3_path_prefix() {
    verdicts(
        V3,
        &[
            ("PathPrefix()", false),
            ("PathPrefix(``)", false),
            ("PathPrefix(`css`)", false),
            ("PathPrefix(`/css`, `/js`)", false),
        ],
    );
    urls(
        V3,
        r#"PathPrefix("/css")"#,
        &[
            ("https://example.com", false),
            ("https://example.com/html", false),
            ("https://example.org/css", true),
            ("https://example.com/css/", true),
            ("https://example.com/css/main.css", true),
        ],
    );
}

#[test]
fn v3_header() {
    verdicts(
        V3,
        &[
            ("Header()", false),
            ("Header(`X-Forwarded-Host`)", false),
            ("Header(`X-Forwarded-Host`, ``)", false),
            ("Header(``, `example.com`)", false),
            ("Header(`X-Forwarded-Host`, `example.com`, `example.org`)", false),
        ],
    );
    for rule in [
        "Header(`X-Forwarded-Proto`, `https`)",
        "Header(`x-forwarded-proto`, `https`)",
    ] {
        headers(
            V3,
            rule,
            &[
                (&[("X-Forwarded-Proto", "https")], true),
                (&[("x-forwarded-proto", "https")], false),
                (
                    &[("X-Forwarded-Proto", "http"), ("X-Forwarded-Proto", "https")],
                    true,
                ),
                (&[("X-Forwarded-Host", "example.com")], false),
            ],
        );
    }
}

#[test]
fn v3_header_regexp() {
    verdicts(
        V3,
        &[
            ("HeaderRegexp()", false),
            ("HeaderRegexp(`X-Forwarded-Host`)", false),
            ("HeaderRegexp(`X-Forwarded-Host`, ``)", false),
            ("HeaderRegexp(``, `example.com`)", false),
            ("HeaderRegexp(`X-Forwarded-Host`,`(example.com`)", false),
            (
                "HeaderRegexp(`X-Forwarded-Host`, `example.com`, `example.org`)",
                false,
            ),
        ],
    );
    for rule in [
        "HeaderRegexp(`X-Forwarded-Proto`, `^https?$`)",
        "HeaderRegexp(`x-forwarded-proto`, `^https?$`)",
    ] {
        headers(
            V3,
            rule,
            &[
                (&[("X-Forwarded-Proto", "http")], true),
                (&[("x-forwarded-proto", "http")], false),
                (&[("X-Forwarded-Proto", "https")], true),
                (&[("X-Forwarded-Proto", "HTTPS")], false),
                (
                    &[("X-Forwarded-Proto", "ws"), ("X-Forwarded-Proto", "https")],
                    true,
                ),
                (&[("X-Forwarded-Host", "example.com")], false),
            ],
        );
    }
    headers(
        V3,
        "HeaderRegexp(`X-Forwarded-Proto`, `http{secure:s?}`)",
        &[
            (&[("X-Forwarded-Proto", "http")], false),
            (&[("X-Forwarded-Proto", "https")], false),
            (&[("X-Forwarded-Proto", "http{secure:}")], true),
            (&[("X-Forwarded-Proto", "HTTP{secure:}")], false),
            (&[("X-Forwarded-Proto", "http{secure:s}")], true),
            (&[("X-Forwarded-Proto", "http{secure:S}")], false),
        ],
    );
}

#[test]
fn v3_query() {
    verdicts(
        V3,
        &[
            ("Query()", false),
            ("Query(``)", false),
            ("Query(``, `traefik`)", false),
            ("Query(`q`, ``)", false),
            ("Query(`q`, `traefik`, `proxy`)", false),
        ],
    );
    urls(
        V3,
        "Query(`q`, `traefik`)",
        &[
            ("https://example.com", false),
            ("https://example.com?q=traefik", true),
            ("https://example.com?rel=ddg&q=traefik", true),
            ("https://example.com?q=traefik&q=proxy", true),
            ("https://example.com?q=awesome&q=traefik", true),
            ("https://example.com?q=nginx", false),
            ("https://example.com?q=TRAEFIK", false),
            ("https://example.com?Q=traefik", false),
            ("https://example.com?rel=traefik", false),
        ],
    );
    urls(
        V3,
        "Query(`mobile`)",
        &[
            ("https://example.com", false),
            ("https://example.com?mobile", true),
            ("https://example.com?mobile=true", false),
        ],
    );
}

#[test]
fn v3_query_regexp() {
    verdicts(
        V3,
        &[
            ("QueryRegexp()", false),
            ("QueryRegexp(``)", false),
            ("QueryRegexp(`q`, `(traefik`)", false),
            ("QueryRegexp(`q`, `traefik`, `proxy`)", false),
        ],
    );
    urls(
        V3,
        "QueryRegexp(`q`, `^(traefik|nginx)$`)",
        &[
            ("https://example.com", false),
            ("https://example.com?q=traefik", true),
            ("https://example.com?q=awesome&q=traefik", true),
            ("https://example.com?q=TRAEFIK", false),
            ("https://example.com?Q=traefik", false),
            ("https://example.com?q=nginx", true),
            ("https://example.com?q=haproxy", false),
        ],
    );
    urls(
        V3,
        "QueryRegexp(`q`, `^.*$`)",
        &[("https://example.com", false), ("https://example.com?q=x", true)],
    );
    urls(
        V3,
        "QueryRegexp(`q`, `{value:(traefik|nginx)}`)",
        &[
            ("https://example.com?q=traefik", false),
            ("https://example.com?q={value:traefik}", true),
        ],
    );
}

// ---------------------------------------------------------------------------------------------
// pkg/muxer/http/mux_test.go (v3, the default syntax)

#[test]
fn v3_mux() {
    verdicts(
        V3,
        &[
            ("", false),
            ("rulewithnotmatcher", false),
            ("Host(example.com)", false),
            ("Host(`127.0.0.1`)", true),
            ("Host(`10::10`)", true),
            ("Host(`localhost`) && PathPrefix(`/css`)", true),
            ("Host(`example.com`) || Host(`example.org`)", true),
            (
                r#"Host("example.com") || (Host("example.org") && Path("/css"))"#,
                true,
            ),
            (
                r#"Host("example.com") || Host("example.org") && Path("/css")"#,
                true,
            ),
            (
                r#"(Host("example.com") || Host("example.org")) && Path("/css")"#,
                true,
            ),
            (
                r#"(Host("example.com") && Path("/js")) || ((Host("example.org")) && Path("/css"))"#,
                true,
            ),
            (r#"PATHPREFIX("/css")"#, true),
            (r#"pathprefix("/css")"#, true),
            (r#"PathPrefix("/css")"#, true),
            (r#"Pathprefix("/css")"#, true),
            (r#"!Host("example.com")"#, true),
            (r#"!(Host("example.com") || Host("example.org"))"#, true),
            (r#"!(Host("example.com") && Path("/css"))"#, true),
            (r#"!(Host("example.com") && !Path("/css"))"#, true),
            (r#"!Host("example.com") || !Path("/css")"#, true),
            (r#"!(!(Host("example.com") && Pathprefix("/css")))"#, true),
            (r#"!Host("example.com") && Pathprefix("/css")"#, true),
        ],
    );
    // Precedence: && binds tighter than ||.
    let rule = r#"Host("example.com") || Host("example.org") && Path("/css")"#;
    urls(
        V3,
        rule,
        &[
            ("http://example.com/css", true),
            ("http://example.com/html", true),
            ("http://example.org/css", true),
            ("http://example.org/html", false),
        ],
    );
    urls(
        V3,
        r#"!(Host("example.com") && !Path("/css"))"#,
        &[
            ("http://example.com/css", true),
            ("http://example.com/html", false),
            ("http://example.org/x", true),
        ],
    );
    urls(
        V3,
        r#"!(!(Host("example.com") && Pathprefix("/css")))"#,
        &[
            ("http://example.com/css/a", true),
            ("http://example.org/css", false),
        ],
    );
}

// ---------------------------------------------------------------------------------------------
// pkg/muxer/http/matcher_v2_test.go

#[test]
fn v2_client_ip_and_method() {
    verdicts(
        V2,
        &[
            ("ClientIP(`1`)", false),
            ("ClientIP()", false),
            ("ClientIP(``)", false),
            ("ClientIP(`127.0.0.1`, `192.168.1.0/24`)", true),
            ("ClientIP(`127.0.0.1`)", true),
            ("ClientIP(`192.168.1.0/24`)", true),
            ("Method()", false),
            ("Method(``)", false),
            ("Method(`GET`, `POST`)", true),
            ("Method(`GET`)", true),
            ("Method(`get`)", true),
        ],
    );
    let m = accepts(V2, "Method(`GET`, `POST`)");
    for (method, expected) in [("GET", true), ("POST", true), ("PUT", false)] {
        let req = Request {
            method: method.into(),
            ..Request::url("https://example.com")
        };
        assert_eq!(eval(&m, &req), expected);
    }
}

#[test]
fn v2_host() {
    verdicts(
        V2,
        &[("Host()", false), ("Host(``)", false), ("Host(`🦭.com`)", false)],
    );
    urls(
        V2,
        "Host(`example.com`, `example.org`)",
        &[
            ("https://example.com", true),
            ("https://example.org/path", true),
            ("https://example.net", false),
        ],
    );
    urls(
        V2,
        "Host(`example.com.`)",
        &[("https://example.com", true), ("https://example.com.", true)],
    );
    urls(V2, "Host(`EXAMPLE.COM`)", &[("https://example.com", true)]);
}

#[test]
fn v2_host_regexp() {
    verdicts(
        V2,
        &[
            ("HostRegexp()", false),
            ("HostRegexp(``)", false),
            ("HostRegexp(`🦭.com`)", false),
        ],
    );
    // Accepted by Traefik ("This is weird."): the whole template is literal text.
    urls(
        V2,
        "HostRegexp(`(example.com`)",
        &[("https://example.com", false), ("https://example.org", false)],
    );
    urls(
        V2,
        "HostRegexp(`example.com`, `example.org`)",
        &[
            ("https://example.com", true),
            ("https://example.com:8080", true),
            ("https://example.org/path", true),
        ],
    );
    urls(
        V2,
        r"HostRegexp(`^[A-Z]+\.com$`)",
        &[("https://example.com", false), ("https://EXAMPLE.com", false)],
    );
    urls(
        V2,
        r"HostRegexp(`{domain:[a-zA-Z-]+\.com}`)",
        &[
            ("https://example.com", true),
            ("https://example.com/path", true),
            ("https://example.org", false),
        ],
    );
    // TestHostRegexp
    let rows = &[
        ("http://foo.bar.com", true),
        ("http://bar.com", true),
        ("http://fooubar.com", false),
        ("http://barucom", false),
        ("http://barcom", false),
    ];
    urls(V2, r"HostRegexp(`{subdomain:(foo\.)?bar\.com}`)", rows);
    urls(V2, r"HostRegexp(`{subdomain:(?:foo\.)?bar\.com}`)", rows);
    let rows = &[
        ("http://FOO.bar.com", true),
        ("http://foo.bar.com", true),
        ("http://fooubar.com", false),
        ("http://barucom", false),
    ];
    urls(V2, r"HostRegexp(`{dummy:[A-Za-z-]+\.bar\.com}`)", rows);
    urls(V2, r"HostRegexp(`{dummy:[a-z-]+\.bar\.com}`)", rows);
    urls(V2, "HostRegexp(`foo.bar.com`)", rows);
}

#[test]
fn v2_path_and_prefix() {
    verdicts(
        V2,
        &[
            ("Path()", false),
            ("Path(``)", false),
            ("Path(`css`)", false),
            ("PathPrefix()", false),
            ("PathPrefix(``)", false),
            ("PathPrefix(`css`)", false),
        ],
    );
    urls(
        V2,
        "Path(`/css`, `/js`)",
        &[
            ("https://example.com", false),
            ("https://example.org/css", true),
            ("https://example.com/css/", false),
            ("https://example.com/js", true),
            ("https://example.com/js/main.js", false),
        ],
    );
    urls(
        V2,
        "Path(`/css{path:(/.*)?}`)",
        &[
            ("https://example.com", false),
            ("https://example.com/css/main.css", true),
            ("https://example.com/css/components/component.css", true),
            ("https://example.com/css.css", false),
            ("https://example.com/js/main.js", false),
        ],
    );
    urls(
        V2,
        "PathPrefix(`/css`, `/js`)",
        &[
            ("https://example.com/css/", true),
            ("https://example.com/js/main.js", true),
            ("https://example.com/html", false),
        ],
    );
    urls(
        V2,
        "PathPrefix(`/css-{name:[0-9]?}`)",
        &[
            ("https://example.com", false),
            ("https://example.com/css-1/main.css", true),
            ("https://example.org/css-222/main.css", true),
            ("https://example.com/css-333333/components/component.css", true),
            ("https://example.com/css.css", false),
            ("https://example.com/js/main.js", false),
        ],
    );
}

#[test]
fn v2_headers() {
    verdicts(
        V2,
        &[
            ("Headers()", false),
            ("Headers(`X-Forwarded-Host`)", false),
            ("Headers(`X-Forwarded-Host`, ``)", false),
            ("Headers(``, `example.com`)", false),
            ("Headers(`X-Forwarded-Host`, `example.com`, `example.org`)", false),
            // HeaderRegexp is not a v2 matcher.
            ("HeaderRegexp()", false),
            ("HeadersRegexp(`X-Forwarded-Host`)", false),
            ("HeadersRegexp(`X-Forwarded-Host`, ``)", false),
            ("HeadersRegexp(``, `example.com`)", false),
            ("HeadersRegexp(`X-Forwarded-Host`,`(example.com`)", false),
            (
                "HeadersRegexp(`X-Forwarded-Host`, `example.com`, `example.org`)",
                false,
            ),
        ],
    );
    for rule in [
        "Headers(`X-Forwarded-Proto`, `https`)",
        "Headers(`x-forwarded-proto`, `https`)",
    ] {
        headers(
            V2,
            rule,
            &[
                (&[("X-Forwarded-Proto", "https")], true),
                (&[("x-forwarded-proto", "https")], false),
                (
                    &[("X-Forwarded-Proto", "http"), ("X-Forwarded-Proto", "https")],
                    true,
                ),
                (&[("X-Forwarded-Host", "example.com")], false),
            ],
        );
    }
    headers(
        V2,
        "HeadersRegexp(`X-Forwarded-Proto`, `http{secure:s?}`)",
        &[
            (&[("X-Forwarded-Proto", "http")], false),
            (&[("X-Forwarded-Proto", "http{secure:}")], true),
            (&[("X-Forwarded-Proto", "http{secure:s}")], true),
            (&[("X-Forwarded-Proto", "http{secure:S}")], false),
        ],
    );
    headers(
        V2,
        "HeadersRegexp(`Content-Type`, `application/(text|json)`)",
        &[
            (&[("Content-Type", "application/json")], true),
            (&[("Content-Type", "application/foo")], false),
        ],
    );
}

#[test]
fn v2_add_route() {
    verdicts(
        V2,
        &[
            ("", false),
            ("rulewithnotmatcher", false),
            ("Host(``)", false),
            ("PathPrefix(``)", false),
            ("PathPrefix(`/foo`)", true),
            ("Host(`localhost`)", true),
            ("Host(`127.0.0.1`)", true),
            ("Host(`10::10`)", true),
            ("Host(`locàlhost`)", false),
            ("HostRegexp(`locàlhost`)", false),
            ("HostHeader(`localhost`)", true),
            ("Host(`localhost.`)", true),
            ("Host(`localhost`) && PathPrefix(`/foo`)", true),
            ("Host(`nope`,`localhost`) && PathPrefix(`/foo`)", true),
            ("Host(`nope,localhost`) && PathPrefix(`/bar`)", true),
            (r"HostRegexp(`{subdomain:(foo\.)?bar\.com}`)", true),
            ("Method(`GET`,`POST`)", true),
            ("Headers(`Content-Type`,`application/json`)", true),
            ("HeadersRegexp(`Content-Type`, `application/(text|json)`)", true),
            ("Query(`foo=bar`, `bar=baz`)", true),
            ("Query(`foo=b=ar`)", true),
            (r#"Path("/a")"#, true),
            (r#"Host("plop")"#, true),
            (r#"(Host("tchouk","pouet")) && Path("/powpow")"#, true),
            (r#"Host("tchouk","pouet") && Path("/powpow", "/titi")"#, true),
            ("Host(tchouk)", false),
            (r#"(HOST("tchouk") && PATHPREFIX("/titi"))"#, true),
            (r#"(host("tchouk") && pathprefix("/titi"))"#, true),
            (r#"(Host("tchouk") && Pathprefix("/titi"))"#, true),
            (r#"Path("titi")"#, false),
            (r#"PathPrefix("titi")"#, false),
            (r#"HostRegexp("{test")"#, false),
            (r#"Headers("titi")"#, false),
            (r#"HeadersRegexp("titi")"#, false),
            (r#"Query("titi")"#, false),
            (r#"Query("titi={test")"#, false),
            (r#"Host("tchouk") && Path()"#, false),
            (r#"Host("tchouk") && Path("")"#, false),
            (r#"Host("tchouk") && Path("", "/titi")"#, false),
            (r#"!(Host("tchouk","pouet") && Path("/powpow", "/titi"))"#, true),
            ("ClientIP(``)", false),
            ("ClientIP(`invalid`)", false),
            ("ClientIP(`10.0.0.1`, `10.0.0.0`)", true),
            ("ClientIP(`11::/16`)", true),
            ("ClientIP(`11.0.0.0/16`, `10.0.0.0`)", true),
        ],
    );
    urls(
        V2,
        "Query(`foo=bar`, `bar=baz`)",
        &[
            ("http://localhost?foo=bar&bar=baz", true),
            ("http://localhost?foo=bar&bar=bar", false),
        ],
    );
    urls(
        V2,
        "Query(`foo=b=ar`)",
        &[
            ("http://localhost?foo=b=ar", true),
            ("http://localhost?foo=bar", false),
        ],
    );
    urls(
        V2,
        "Host(`nope`,`localhost`) && PathPrefix(`/foo`)",
        &[
            ("http://localhost/foo", true),
            ("http://nope/foo", true),
            ("http://localhost/bar", false),
        ],
    );
    urls(
        V2,
        "Host(`nope,localhost`) && PathPrefix(`/bar`)",
        &[("http://localhost/bar", false)],
    );
}
