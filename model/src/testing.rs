//! Short constructors for the proto's matcher, route and cluster messages, for this crate's tests.

use berth_proto::v1::{
    header_matcher, host_matcher, matcher, path_matcher, query_matcher, ClientIpMatcher, Cluster, Endpoint,
    HeaderMatcher, HostMatcher, Matcher, MatcherList, PathMatcher, QueryMatcher, Route,
};

fn kind(k: matcher::Kind) -> Matcher {
    Matcher { kind: Some(k) }
}

fn host_kind(k: host_matcher::Kind) -> Matcher {
    kind(matcher::Kind::Host(HostMatcher { kind: Some(k) }))
}

fn path_kind(k: path_matcher::Kind) -> Matcher {
    kind(matcher::Kind::Path(PathMatcher { kind: Some(k) }))
}

pub(crate) fn host(h: &str) -> Matcher {
    host_kind(host_matcher::Kind::Exact(h.into()))
}

pub(crate) fn wildcard(suffix: &str) -> Matcher {
    host_kind(host_matcher::Kind::Wildcard(suffix.into()))
}

pub(crate) fn host_re(re: &str) -> Matcher {
    host_kind(host_matcher::Kind::Regexp(re.into()))
}

pub(crate) fn path_exact(p: &str) -> Matcher {
    path_kind(path_matcher::Kind::Exact(p.into()))
}

pub(crate) fn path_prefix(p: &str) -> Matcher {
    path_kind(path_matcher::Kind::Prefix(p.into()))
}

pub(crate) fn path_segment(p: &str) -> Matcher {
    path_kind(path_matcher::Kind::SegmentPrefix(p.into()))
}

pub(crate) fn path_re(re: &str) -> Matcher {
    path_kind(path_matcher::Kind::Regexp(re.into()))
}

pub(crate) fn method(m: &str) -> Matcher {
    kind(matcher::Kind::Method(m.into()))
}

pub(crate) fn header(name: &str, value: &str) -> Matcher {
    kind(matcher::Kind::Header(HeaderMatcher {
        name: name.into(),
        value: Some(header_matcher::Value::Exact(value.into())),
    }))
}

pub(crate) fn header_re(name: &str, re: &str) -> Matcher {
    kind(matcher::Kind::Header(HeaderMatcher {
        name: name.into(),
        value: Some(header_matcher::Value::Regexp(re.into())),
    }))
}

pub(crate) fn query(name: &str, value: &str) -> Matcher {
    kind(matcher::Kind::Query(QueryMatcher {
        name: name.into(),
        value: Some(query_matcher::Value::Exact(value.into())),
    }))
}

pub(crate) fn query_present(name: &str) -> Matcher {
    kind(matcher::Kind::Query(QueryMatcher {
        name: name.into(),
        value: Some(query_matcher::Value::Present(true)),
    }))
}

pub(crate) fn query_re(name: &str, re: &str) -> Matcher {
    kind(matcher::Kind::Query(QueryMatcher {
        name: name.into(),
        value: Some(query_matcher::Value::Regexp(re.into())),
    }))
}

pub(crate) fn client_ip(ranges: &[&str]) -> Matcher {
    kind(matcher::Kind::ClientIp(ClientIpMatcher {
        ranges: ranges.iter().map(|r| r.to_string()).collect(),
    }))
}

pub(crate) fn all_of(matchers: Vec<Matcher>) -> Matcher {
    kind(matcher::Kind::All(MatcherList { matchers }))
}

pub(crate) fn any_of(matchers: Vec<Matcher>) -> Matcher {
    kind(matcher::Kind::Any(MatcherList { matchers }))
}

pub(crate) fn not(m: Matcher) -> Matcher {
    kind(matcher::Kind::Not(Box::new(m)))
}

/// A valid route named `name` to cluster `cluster`, with `requires` filled in.
pub(crate) fn route(name: &str, cluster: &str, matcher: Matcher) -> Route {
    let mut route = Route {
        name: name.into(),
        cluster: cluster.into(),
        matcher: Some(matcher),
        ..Route::default()
    };
    route.requires = crate::required_features(&route)
        .into_iter()
        .map(String::from)
        .collect();
    route
}

/// A valid cluster with one endpoint.
pub(crate) fn cluster(name: &str) -> Cluster {
    Cluster {
        name: name.into(),
        endpoints: vec![Endpoint {
            address: "10.0.0.1".into(),
            port: 8080,
            weight: 1,
            id: "a".into(),
        }],
        ..Cluster::default()
    }
}

/// Any text, biased toward the characters validation cares about.
pub(crate) fn text() -> impl proptest::strategy::Strategy<Value = String> {
    use proptest::prelude::*;
    prop_oneof![
        any::<String>(),
        "[a-zA-Z0-9./:*%()\\[\\]{}$^?+|\\\\ -]{0,12}",
        Just(String::new()),
        Just("/".to_string()),
        Just("a.example".to_string()),
    ]
}

/// A middleware of any kind (or none) with arbitrary settings.
pub(crate) fn arbitrary_middleware() -> impl proptest::strategy::Strategy<Value = berth_proto::v1::Middleware>
{
    use berth_proto::v1::{middleware::Kind, *};
    use proptest::prelude::*;
    let texts = || prop::collection::vec(text(), 0..3);
    let source = || {
        prop::option::of((any::<u32>(), texts(), text(), any::<bool>())).prop_map(|s| {
            s.map(
                |(depth, excluded, request_header, request_host)| SourceCriterion {
                    depth: depth % 3,
                    excluded,
                    request_header,
                    request_host,
                },
            )
        })
    };
    let kind = prop_oneof![
        (texts(), any::<bool>()).prop_map(|(prefixes, force_slash)| Kind::StripPrefix(StripPrefix {
            prefixes,
            force_slash
        })),
        texts().prop_map(|regexps| Kind::StripPrefixRegex(StripPrefixRegex { regexps })),
        text().prop_map(|prefix| Kind::AddPrefix(AddPrefix { prefix })),
        text().prop_map(|path| Kind::ReplacePath(ReplacePath { path })),
        (text(), text()).prop_map(|(regexp, replacement)| Kind::ReplacePathRegex(ReplacePathRegex {
            regexp,
            replacement
        })),
        (texts(), texts()).prop_map(|(a, b)| Kind::Headers(Headers {
            request: a
                .iter()
                .zip(&b)
                .map(|(n, v)| HeaderValue {
                    name: n.clone(),
                    value: v.clone()
                })
                .collect(),
            response: b
                .iter()
                .map(|n| HeaderValue {
                    name: n.clone(),
                    value: n.clone()
                })
                .collect(),
        })),
        (text(), text(), any::<bool>()).prop_map(|(scheme, port, permanent)| Kind::RedirectScheme(
            RedirectScheme {
                scheme,
                port,
                permanent
            }
        )),
        (text(), text(), any::<bool>()).prop_map(|(regexp, replacement, permanent)| Kind::RedirectRegex(
            RedirectRegex {
                regexp,
                replacement,
                permanent
            }
        )),
        (texts(), text(), text()).prop_map(|(users, realm, header_field)| Kind::BasicAuth(BasicAuth {
            users,
            realm,
            remove_header: false,
            header_field
        })),
        (any::<i64>(), any::<u64>(), any::<i64>(), source()).prop_map(
            |(average, period_ms, burst, source)| {
                Kind::RateLimit(RateLimit {
                    average,
                    period_ms,
                    burst,
                    source,
                })
            }
        ),
        (any::<i64>(), source())
            .prop_map(|(amount, source)| Kind::InFlightReq(InFlightReq { amount, source })),
        (texts(), any::<u32>(), source()).prop_map(|(ranges, reject_status, source)| Kind::IpAllowList(
            IpAllowList {
                ranges,
                reject_status: reject_status % 1000,
                source
            }
        )),
    ];
    (text(), prop::option::of(kind)).prop_map(|(name, kind)| Middleware { name, kind })
}

/// A request to evaluate matchers against, owned; `view()` borrows it as the proxy would.
#[derive(Debug, Clone)]
pub(crate) struct Req {
    host: String,
    path: Vec<u8>,
    method: http::Method,
    headers: http::HeaderMap,
    query: Option<String>,
    client_ip: std::net::IpAddr,
}

impl Req {
    /// From a URL-ish string: "host/path?query" (host may carry a port).
    pub(crate) fn new(url: &str) -> Req {
        let (rest, query) = match url.split_once('?') {
            Some((r, q)) => (r, Some(q.to_string())),
            None => (url, None),
        };
        let (host, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        Req {
            host: crate::request_host(host).into_owned(),
            path: crate::routing_path(path).unwrap().into_owned(),
            method: http::Method::GET,
            headers: http::HeaderMap::new(),
            query,
            client_ip: "10.0.0.1".parse().unwrap(),
        }
    }

    pub(crate) fn method(mut self, m: &str) -> Req {
        self.method = http::Method::from_bytes(m.as_bytes()).unwrap();
        self
    }

    pub(crate) fn header(mut self, name: &str, value: &str) -> Req {
        self.headers.append(
            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            http::HeaderValue::from_str(value).unwrap(),
        );
        self
    }

    pub(crate) fn peer(mut self, ip: &str) -> Req {
        self.client_ip = ip.parse().unwrap();
        self
    }

    pub(crate) fn view(&self) -> crate::RequestView<'_> {
        crate::RequestView {
            host: &self.host,
            path: &self.path,
            method: &self.method,
            headers: &self.headers,
            query: self.query.as_deref(),
            client_ip: self.client_ip,
        }
    }
}

/// A matcher tree of valid leaves over a small vocabulary, so that random requests hit them.
pub(crate) fn valid_tree() -> impl proptest::strategy::Strategy<Value = Matcher> {
    use proptest::prelude::*;
    let leaf = prop_oneof![
        Just(host("a.example")),
        Just(host("b.example")),
        Just(wildcard("example")),
        Just(host_re("^a")),
        Just(path_prefix("/a")),
        Just(path_exact("/a/b")),
        Just(path_segment("/a")),
        Just(path_re("b$")),
        Just(method("GET")),
        Just(method("POST")),
        Just(header("x-k", "1")),
        Just(header_re("x-k", "^2")),
        Just(query("q", "1")),
        Just(query_present("p")),
        Just(query_re("q", "^2")),
        Just(client_ip(&["10.0.0.0/8"])),
    ];
    leaf.prop_recursive(4, 32, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(all_of),
            prop::collection::vec(inner.clone(), 0..4).prop_map(any_of),
            inner.prop_map(not),
        ]
    })
}

/// A request over the vocabulary of [`valid_tree`].
pub(crate) fn small_request() -> impl proptest::strategy::Strategy<Value = Req> {
    use proptest::prelude::*;
    (
        prop::sample::select(vec![
            "a.example",
            "b.example",
            "x.example",
            "c.d.example",
            "example",
            "other",
        ]),
        prop::sample::select(vec!["/", "/a", "/a/b", "/ab", "/b", "/a%2Fb"]),
        prop::sample::select(vec!["", "?q=1", "?q=2&p", "?p=3", "?q=1&q=2"]),
        prop::sample::select(vec!["GET", "POST"]),
        prop::sample::subsequence(vec!["1", "2"], 0..=2),
        prop::sample::select(vec!["10.1.2.3", "192.168.0.1", "::ffff:10.0.0.9"]),
    )
        .prop_map(|(host, path, query, method, values, ip)| {
            let mut req = Req::new(&format!("{host}{path}{query}")).method(method).peer(ip);
            for v in values {
                req = req.header("x-k", v);
            }
            req
        })
}
