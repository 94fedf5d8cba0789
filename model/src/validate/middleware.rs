//! The checks of one middleware of a route's chain: its kind is set (an unknown, newer kind
//! arrives unset and is refused), and its settings are in range. Regexps compile with
//! [`crate::compile_regex`], the same function the proxy's middlewares use. Places read
//! `middlewares[2](auth@consulcatalog).basic_auth.users[0]`.

use berth_proto::v1::{
    middleware::Kind, BasicAuth, CircuitBreaker, Headers, IpAllowList, Middleware, RedirectScheme,
    SourceCriterion,
};

use super::{has_control, htpasswd, Scope};
use crate::ip::parse_ip_range;
use crate::pattern::compile_regex;
use crate::problem::Problem;

/// Checks middleware `index` of a route.
pub(super) fn check(scope: &mut Scope<'_>, index: usize, m: &Middleware) {
    let base = if m.name.is_empty() {
        format!("middlewares[{index}]")
    } else {
        format!("middlewares[{index}]({})", m.name)
    };
    let Some(kind) = &m.kind else {
        scope.add(base, Problem::KindNotSet);
        return;
    };
    let mut c = Check { scope, base };
    match kind {
        Kind::StripPrefix(s) => {
            c.non_empty_list("strip_prefix.prefixes", &s.prefixes, |c, at, prefix| {
                c.text(at, prefix, false);
            });
        }
        Kind::StripPrefixRegex(s) => {
            c.non_empty_list("strip_prefix_regex.regexps", &s.regexps, |c, at, re| {
                c.regexp(at, re)
            });
        }
        Kind::AddPrefix(a) => c.text("add_prefix.prefix", &a.prefix, false),
        Kind::ReplacePath(r) => c.text("replace_path.path", &r.path, false),
        Kind::ReplacePathRegex(r) => {
            c.regexp("replace_path_regex.regexp", &r.regexp);
            c.text("replace_path_regex.replacement", &r.replacement, true);
        }
        Kind::Headers(h) => c.headers(h),
        Kind::RedirectScheme(r) => c.redirect_scheme(r),
        Kind::RedirectRegex(r) => {
            c.regexp("redirect_regex.regexp", &r.regexp);
            c.text("redirect_regex.replacement", &r.replacement, false);
        }
        Kind::BasicAuth(b) => c.basic_auth(b),
        Kind::RateLimit(r) => {
            if r.average <= 0 {
                c.out_of_range("rate_limit.average", r.average.into(), "more than 0");
            }
            if r.period_ms == 0 {
                c.out_of_range("rate_limit.period_ms", 0, "more than 0");
            }
            if r.burst < 0 {
                c.out_of_range("rate_limit.burst", r.burst.into(), "0 or more");
            }
            c.source("rate_limit.source", r.source.as_ref(), false);
        }
        Kind::InFlightReq(i) => {
            if i.amount <= 0 {
                c.out_of_range("in_flight_req.amount", i.amount.into(), "more than 0");
            }
            c.source("in_flight_req.source", i.source.as_ref(), false);
        }
        Kind::IpAllowList(a) => c.ip_allow_list(a),
        Kind::Retry(r) => {
            if !(1..=10).contains(&r.attempts) {
                c.out_of_range("retry.attempts", r.attempts.into(), "1 to 10");
            }
            if r.initial_interval_ms > 60_000 {
                c.out_of_range(
                    "retry.initial_interval_ms",
                    r.initial_interval_ms.into(),
                    "at most 60000",
                );
            }
        }
        Kind::CircuitBreaker(b) => c.circuit_breaker(b),
    }
}

/// One middleware's checks, with its place.
struct Check<'s, 'r> {
    scope: &'s mut Scope<'r>,
    base: String,
}

impl Check<'_, '_> {
    fn add(&mut self, at: &str, problem: Problem) {
        self.scope.add(format!("{}.{at}", self.base), problem);
    }

    fn out_of_range(&mut self, at: &str, value: i128, allowed: &'static str) {
        self.add(at, Problem::OutOfRange { value, allowed });
    }

    /// A list that must have members, each checked by `each` with its place.
    fn non_empty_list(&mut self, at: &str, list: &[String], mut each: impl FnMut(&mut Self, &str, &str)) {
        if list.is_empty() {
            self.add(at, Problem::Empty);
        }
        for (i, item) in list.iter().enumerate() {
            each(self, &format!("{at}[{i}]"), item);
        }
    }

    /// Text that goes into a path, URL or header: no control characters; empty only if allowed.
    fn text(&mut self, at: &str, value: &str, may_be_empty: bool) {
        if value.is_empty() && !may_be_empty {
            self.add(at, Problem::Empty);
        } else if has_control(value) {
            self.add(at, Problem::ControlCharacter(value.to_string()));
        }
    }

    fn regexp(&mut self, at: &str, pattern: &str) {
        if pattern.is_empty() {
            self.add(at, Problem::Empty);
        } else if let Err(e) = compile_regex(pattern) {
            self.add(at, Problem::Regex(e));
        }
    }

    fn header_name(&mut self, at: &str, name: &str) {
        if name.is_empty() {
            self.add(at, Problem::Empty);
        } else if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
            self.add(at, Problem::HeaderName(name.to_string()));
        }
    }

    fn ip_ranges(&mut self, at: &str, ranges: &[String]) {
        for (i, range) in ranges.iter().enumerate() {
            if parse_ip_range(range).is_none() {
                self.add(&format!("{at}[{i}]"), Problem::IpRange(range.clone()));
            }
        }
    }

    fn headers(&mut self, h: &Headers) {
        for (side, values) in [("request", &h.request), ("response", &h.response)] {
            for (i, header) in values.iter().enumerate() {
                self.header_name(&format!("headers.{side}[{i}].name"), &header.name);
                // An empty value removes the header.
                if http::HeaderValue::from_str(&header.value).is_err() {
                    self.add(
                        &format!("headers.{side}[{i}].value"),
                        Problem::HeaderValue(header.value.clone()),
                    );
                }
            }
        }
    }

    fn redirect_scheme(&mut self, r: &RedirectScheme) {
        if !matches!(r.scheme.as_str(), "http" | "https") {
            self.add("redirect_scheme.scheme", Problem::Scheme(r.scheme.clone()));
        }
        let port_ok = r.port.is_empty()
            || (r.port.bytes().all(|b| b.is_ascii_digit()) && r.port.parse::<u16>().is_ok_and(|p| p >= 1));
        if !port_ok {
            self.add("redirect_scheme.port", Problem::Port(r.port.clone()));
        }
    }

    fn basic_auth(&mut self, b: &BasicAuth) {
        if b.users.is_empty() {
            self.add("basic_auth.users", Problem::Empty);
        }
        for (i, line) in b.users.iter().enumerate() {
            if let Err(problem) = htpasswd::check_line(line) {
                self.add(&format!("basic_auth.users[{i}]"), problem);
            }
        }
        if has_control(&b.realm) || b.realm.contains('"') {
            self.add("basic_auth.realm", Problem::Realm(b.realm.clone()));
        }
        if !b.header_field.is_empty() {
            self.header_name("basic_auth.header_field", &b.header_field);
        }
    }

    fn ip_allow_list(&mut self, a: &IpAllowList) {
        if a.ranges.is_empty() {
            self.add("ip_allow_list.ranges", Problem::Empty);
        }
        self.ip_ranges("ip_allow_list.ranges", &a.ranges);
        let status = a.reject_status;
        let known = status == 0
            || u16::try_from(status)
                .ok()
                .and_then(|s| http::StatusCode::from_u16(s).ok())
                .is_some_and(|s| s.canonical_reason().is_some());
        if !known {
            self.add("ip_allow_list.reject_status", Problem::Status(status));
        }
        self.source("ip_allow_list.source", a.source.as_ref(), true);
    }

    /// The expression parses as oxy's would; the status is one a client can be answered with.
    fn circuit_breaker(&mut self, b: &CircuitBreaker) {
        if let Err(error) = crate::circuit_breaker::Expression::parse(&b.expression) {
            self.add(
                "circuit_breaker.expression",
                Problem::CircuitBreakerExpression {
                    expression: b.expression.clone(),
                    error,
                },
            );
        }
        if b.response_code != 0 && !(200..=599).contains(&b.response_code) {
            self.out_of_range(
                "circuit_breaker.response_code",
                b.response_code.into(),
                "0 for 503, or 200 to 599",
            );
        }
    }

    /// Which client a per-client middleware counts. As in Traefik, an address strategy (depth,
    /// excluded), a request header and the request host exclude each other; an allow list takes
    /// an address strategy only.
    fn source(&mut self, at: &str, source: Option<&SourceCriterion>, address_only: bool) {
        let Some(s) = source else { return };
        self.ip_ranges(&format!("{at}.excluded"), &s.excluded);
        if !s.request_header.is_empty() {
            self.header_name(&format!("{at}.request_header"), &s.request_header);
        }
        let by_address = s.depth > 0 || !s.excluded.is_empty();
        let by_header = !s.request_header.is_empty();
        if address_only {
            if by_header {
                self.add(
                    &format!("{at}.request_header"),
                    Problem::Meaningless("request_header"),
                );
            }
            if s.request_host {
                self.add(
                    &format!("{at}.request_host"),
                    Problem::Meaningless("request_host"),
                );
            }
            return;
        }
        let exclusive = [
            (by_address, "an address strategy (depth, excluded)"),
            (by_header, "request_header"),
            (s.request_host, "request_host"),
        ];
        let set: Vec<&'static str> = exclusive
            .iter()
            .filter(|(on, _)| *on)
            .map(|(_, name)| *name)
            .collect();
        if let [first, second, ..] = set.as_slice() {
            self.add(at, Problem::Exclusive(first, second));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{all_of, cluster, route};
    use crate::validate::validate;
    use berth_proto::v1::{
        AddPrefix, HeaderValue, InFlightReq, RateLimit, RedirectRegex, ReplacePath, ReplacePathRegex,
        Snapshot, StripPrefix, StripPrefixRegex,
    };

    /// The problems of a route with this one middleware (named "m"), `requires` filled in.
    fn problems(kind: Option<Kind>) -> Vec<String> {
        let mut r = route("r", "c", all_of(vec![]));
        r.middlewares.push(Middleware {
            name: "m".into(),
            kind,
        });
        r.requires = crate::required_features(&r)
            .into_iter()
            .map(String::from)
            .collect();
        let snapshot = Snapshot {
            routes: vec![r],
            clusters: vec![cluster("c")],
        };
        match validate(&snapshot) {
            Ok(()) => vec![],
            Err(e) => e
                .problems
                .iter()
                .map(|p| format!("{}: {}", p.at, p.problem))
                .collect(),
        }
    }

    const SHA_TEST: &str = "test:{SHA}qUqP5cyxm6YcTAhz05Hph5gvu9M=";

    fn valid() -> Vec<Kind> {
        vec![
            Kind::StripPrefix(StripPrefix {
                prefixes: vec!["/api".into()],
                force_slash: true,
            }),
            Kind::StripPrefixRegex(StripPrefixRegex {
                regexps: vec!["^/v[0-9]+".into()],
            }),
            Kind::AddPrefix(AddPrefix { prefix: "/x".into() }),
            Kind::ReplacePath(ReplacePath { path: "/new".into() }),
            Kind::ReplacePathRegex(ReplacePathRegex {
                regexp: "^/old/(.*)".into(),
                replacement: "/new/$1".into(),
            }),
            Kind::Headers(Headers {
                request: vec![HeaderValue {
                    name: "X-Script-Name".into(),
                    value: "test".into(),
                }],
                response: vec![HeaderValue {
                    name: "Server".into(),
                    value: String::new(),
                }],
            }),
            Kind::RedirectScheme(RedirectScheme {
                scheme: "https".into(),
                port: "8443".into(),
                permanent: true,
            }),
            Kind::RedirectRegex(RedirectRegex {
                regexp: "^http://localhost/(.*)".into(),
                replacement: "http://example.com/${1}".into(),
                permanent: false,
            }),
            Kind::BasicAuth(BasicAuth {
                users: vec![SHA_TEST.into()],
                realm: "my realm".into(),
                remove_header: true,
                header_field: "X-WebAuth-User".into(),
            }),
            Kind::RateLimit(RateLimit {
                average: 100,
                period_ms: 1000,
                burst: 0,
                source: Some(SourceCriterion {
                    depth: 1,
                    excluded: vec!["10.0.0.0/8".into()],
                    ..SourceCriterion::default()
                }),
            }),
            Kind::InFlightReq(InFlightReq {
                amount: 10,
                source: Some(SourceCriterion {
                    request_host: true,
                    ..SourceCriterion::default()
                }),
            }),
            Kind::IpAllowList(IpAllowList {
                ranges: vec!["127.0.0.1/32".into(), "::1".into()],
                reject_status: 404,
                source: None,
            }),
        ]
    }

    #[test]
    fn valid_middlewares_pass() {
        for kind in valid() {
            assert_eq!(problems(Some(kind.clone())), Vec::<String>::new(), "{kind:?}");
        }
    }

    #[test]
    fn retry() {
        use berth_proto::v1::Retry;
        assert!(problems(Some(Kind::Retry(Retry {
            attempts: 3,
            initial_interval_ms: 100,
        })))
        .is_empty());
        assert_eq!(
            problems(Some(Kind::Retry(Retry {
                attempts: 0,
                initial_interval_ms: 60_001,
            }))),
            vec![
                "middlewares[0](m).retry.attempts: 0 is out of range (1 to 10)",
                "middlewares[0](m).retry.initial_interval_ms: 60001 is out of range (at most 60000)",
            ]
        );
    }

    #[test]
    fn an_unknown_kind_is_refused() {
        assert_eq!(
            problems(None),
            vec!["middlewares[0](m): kind is not set (or is one this version of Berth does not know)"]
        );
    }

    #[test]
    fn path_rewrites() {
        assert_eq!(
            problems(Some(Kind::StripPrefix(StripPrefix::default()))),
            vec!["middlewares[0](m).strip_prefix.prefixes: is empty"]
        );
        assert_eq!(
            problems(Some(Kind::StripPrefix(StripPrefix {
                prefixes: vec!["/a".into(), String::new(), "/b\r\n".into()],
                force_slash: false
            }))),
            vec![
                "middlewares[0](m).strip_prefix.prefixes[1]: is empty",
                r#"middlewares[0](m).strip_prefix.prefixes[2]: "/b\r\n" holds a control character"#,
            ]
        );
        assert_eq!(
            problems(Some(Kind::StripPrefixRegex(StripPrefixRegex {
                regexps: vec!["(".into()]
            }))),
            vec![
                r#"middlewares[0](m).strip_prefix_regex.regexps[0]: regexp "(" does not compile: unclosed group"#
            ]
        );
        assert_eq!(
            problems(Some(Kind::AddPrefix(AddPrefix::default()))),
            vec!["middlewares[0](m).add_prefix.prefix: is empty"]
        );
        assert_eq!(
            problems(Some(Kind::ReplacePath(ReplacePath::default()))),
            vec!["middlewares[0](m).replace_path.path: is empty"]
        );
        assert_eq!(
            problems(Some(Kind::ReplacePathRegex(ReplacePathRegex {
                regexp: String::new(),
                replacement: "\u{0}".into()
            }))),
            vec![
                "middlewares[0](m).replace_path_regex.regexp: is empty",
                r#"middlewares[0](m).replace_path_regex.replacement: "\0" holds a control character"#,
            ]
        );
    }

    #[test]
    fn headers_and_redirects() {
        assert_eq!(
            problems(Some(Kind::Headers(Headers {
                request: vec![HeaderValue {
                    name: "Bad Name".into(),
                    value: "a\nb".into()
                }],
                response: vec![],
            }))),
            vec![
                r#"middlewares[0](m).headers.request[0].name: "Bad Name" is not an HTTP header name"#,
                r#"middlewares[0](m).headers.request[0].value: "a\nb" is not a valid HTTP header value"#,
            ]
        );
        assert_eq!(
            problems(Some(Kind::RedirectScheme(RedirectScheme {
                scheme: "ftp".into(),
                port: "x80".into(),
                permanent: false
            }))),
            vec![
                r#"middlewares[0](m).redirect_scheme.scheme: "ftp" is not a scheme Berth knows (http or https)"#,
                r#"middlewares[0](m).redirect_scheme.port: "x80" is not a port number (1-65535)"#,
            ]
        );
        for port in ["0", "65536", "+1", " 1"] {
            assert_eq!(
                problems(Some(Kind::RedirectScheme(RedirectScheme {
                    scheme: "http".into(),
                    port: port.into(),
                    permanent: false
                })))
                .len(),
                1,
                "{port}"
            );
        }
        assert_eq!(
            problems(Some(Kind::RedirectRegex(RedirectRegex {
                regexp: "a[".into(),
                replacement: String::new(),
                permanent: false
            })))
            .len(),
            2
        );
    }

    #[test]
    fn basic_auth() {
        assert_eq!(
            problems(Some(Kind::BasicAuth(BasicAuth::default()))),
            vec!["middlewares[0](m).basic_auth.users: is empty"]
        );
        assert_eq!(
            problems(Some(Kind::BasicAuth(BasicAuth {
                users: vec![SHA_TEST.into(), "bob:plain".into(), "nocolon".into()],
                realm: "a\"b".into(),
                remove_header: false,
                header_field: "a b".into(),
            }))),
            vec![
                r#"middlewares[0](m).basic_auth.users[1]: the hash of user "bob" is in no format Berth checks (bcrypt $2y$/$2a$/$2b$, Apache MD5 $apr1$ or SHA-1 {SHA})"#,
                r#"middlewares[0](m).basic_auth.users[2]: is not a "user:hash" line"#,
                r#"middlewares[0](m).basic_auth.realm: "a\"b" holds a '"' or a control character"#,
                r#"middlewares[0](m).basic_auth.header_field: "a b" is not an HTTP header name"#,
            ]
        );
    }

    #[test]
    fn limits() {
        assert_eq!(
            problems(Some(Kind::RateLimit(RateLimit {
                average: 0,
                period_ms: 0,
                burst: -1,
                source: None
            }))),
            vec![
                "middlewares[0](m).rate_limit.average: 0 is out of range (more than 0)",
                "middlewares[0](m).rate_limit.period_ms: 0 is out of range (more than 0)",
                "middlewares[0](m).rate_limit.burst: -1 is out of range (0 or more)",
            ]
        );
        assert_eq!(
            problems(Some(Kind::InFlightReq(InFlightReq {
                amount: -3,
                source: Some(SourceCriterion {
                    depth: 2,
                    request_header: "X-User".into(),
                    request_host: true,
                    ..SourceCriterion::default()
                })
            }))),
            vec![
                "middlewares[0](m).in_flight_req.amount: -3 is out of range (more than 0)",
                "middlewares[0](m).in_flight_req.source: sets both an address strategy (depth, excluded) and request_header, which exclude each other",
            ]
        );
    }

    #[test]
    fn allow_list() {
        assert_eq!(
            problems(Some(Kind::IpAllowList(IpAllowList {
                ranges: vec![],
                reject_status: 299,
                source: Some(SourceCriterion {
                    excluded: vec!["x".into()],
                    request_header: "X-Real-Ip".into(),
                    request_host: true,
                    ..SourceCriterion::default()
                })
            }))),
            vec![
                "middlewares[0](m).ip_allow_list.ranges: is empty",
                "middlewares[0](m).ip_allow_list.reject_status: 299 is not an HTTP status code Berth knows",
                r#"middlewares[0](m).ip_allow_list.source.excluded[0]: "x" is neither an IP address nor a CIDR network"#,
                "middlewares[0](m).ip_allow_list.source.request_header: request_header has no meaning here",
                "middlewares[0](m).ip_allow_list.source.request_host: request_host has no meaning here",
            ]
        );
        assert_eq!(
            problems(Some(Kind::IpAllowList(IpAllowList {
                ranges: vec!["10.0.0.0/33".into()],
                reject_status: 70000,
                source: None
            })))
            .len(),
            2
        );
    }

    #[test]
    fn a_middleware_without_a_name_is_named_by_position() {
        let mut r = route("r", "c", all_of(vec![]));
        r.middlewares.push(Middleware {
            name: String::new(),
            kind: None,
        });
        let e = validate(&Snapshot {
            routes: vec![r],
            clusters: vec![cluster("c")],
        })
        .unwrap_err();
        assert_eq!(e.problems[0].at, "middlewares[0]");
    }

    #[test]
    fn circuit_breaker_expression_and_status() {
        let cb = |expression: &str, response_code| {
            Some(Kind::CircuitBreaker(berth_proto::v1::CircuitBreaker {
                expression: expression.into(),
                response_code,
                ..Default::default()
            }))
        };
        assert_eq!(
            problems(cb(
                "ResponseCodeRatio(500, 600, 0, 600) > 0.25 || LatencyAtQuantileMS(50.0) > 100",
                0
            )),
            Vec::<String>::new()
        );
        assert_eq!(
            problems(cb("NetworkErrorRatio() > 1", 999)),
            vec![
                r#"middlewares[0](m).circuit_breaker.expression: "NetworkErrorRatio() > 1" at column 23: expected a decimal number to compare a ratio with (write 1.0), found 1"#,
                "middlewares[0](m).circuit_breaker.response_code: 999 is out of range (0 for 503, or 200 to 599)",
            ]
        );
        assert_eq!(
            problems(cb("", 503)),
            vec![
                r#"middlewares[0](m).circuit_breaker.expression: "" at column 1: expected a metric such as NetworkErrorRatio(), a number or "(", found the end of the expression"#
            ]
        );
    }
}
