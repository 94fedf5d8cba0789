//! The FEATURES of the contract (see the header of `routes.proto`): the names a route or cluster
//! lists in `requires`, which ones this build knows ([`KNOWN_FEATURES`]), and which ones a route
//! or cluster uses ([`required_features`], [`cluster_required_features`]). The control plane
//! fills `requires` with exactly what these return; [`crate::validate`] checks both rules.
//!
//! A feature is added here when the proxy can execute it; a proxy built before it then NACKs
//! routes that need it instead of serving them without it.
//!
//! Not for: deciding what to do with a feature; only naming it.

use std::collections::BTreeSet;

use berth_proto::v1::{
    header_matcher, host_matcher, matcher, middleware, path_matcher, query_matcher, Cluster, HostHeader,
    Matcher, Route,
};

/// A host matcher with an exact host.
pub(crate) const MATCHER_HOST: &str = "matcher/host";
/// A host matcher with a wildcard suffix.
pub(crate) const MATCHER_HOST_WILDCARD: &str = "matcher/host_wildcard";
/// A host matcher with a regexp.
pub(crate) const MATCHER_HOST_REGEXP: &str = "matcher/host_regexp";
/// An exact path matcher.
pub(crate) const MATCHER_PATH: &str = "matcher/path";
/// A plain path-prefix matcher.
pub(crate) const MATCHER_PATH_PREFIX: &str = "matcher/path_prefix";
/// A path regexp matcher.
pub(crate) const MATCHER_PATH_REGEXP: &str = "matcher/path_regexp";
/// A whole-segment path-prefix matcher.
pub(crate) const MATCHER_PATH_SEGMENT_PREFIX: &str = "matcher/path_segment_prefix";
/// A method matcher.
pub(crate) const MATCHER_METHOD: &str = "matcher/method";
/// A header matcher with an exact value.
pub(crate) const MATCHER_HEADER: &str = "matcher/header";
/// A header matcher with a regexp.
pub(crate) const MATCHER_HEADER_REGEXP: &str = "matcher/header_regexp";
/// A query matcher (present or exact value).
pub(crate) const MATCHER_QUERY: &str = "matcher/query";
/// A query matcher with a regexp.
pub(crate) const MATCHER_QUERY_REGEXP: &str = "matcher/query_regexp";
/// A client address matcher.
pub(crate) const MATCHER_CLIENT_IP: &str = "matcher/client_ip";
/// A negation.
pub(crate) const MATCHER_NOT: &str = "matcher/not";
/// The strip_prefix middleware.
pub(crate) const MIDDLEWARE_STRIP_PREFIX: &str = "middleware/strip_prefix";
/// The strip_prefix_regex middleware.
pub(crate) const MIDDLEWARE_STRIP_PREFIX_REGEX: &str = "middleware/strip_prefix_regex";
/// The add_prefix middleware.
pub(crate) const MIDDLEWARE_ADD_PREFIX: &str = "middleware/add_prefix";
/// The replace_path middleware.
pub(crate) const MIDDLEWARE_REPLACE_PATH: &str = "middleware/replace_path";
/// The replace_path_regex middleware.
pub(crate) const MIDDLEWARE_REPLACE_PATH_REGEX: &str = "middleware/replace_path_regex";
/// The headers middleware.
pub(crate) const MIDDLEWARE_HEADERS: &str = "middleware/headers";
/// The redirect_scheme middleware.
pub(crate) const MIDDLEWARE_REDIRECT_SCHEME: &str = "middleware/redirect_scheme";
/// The redirect_regex middleware.
pub(crate) const MIDDLEWARE_REDIRECT_REGEX: &str = "middleware/redirect_regex";
/// The basic_auth middleware.
pub(crate) const MIDDLEWARE_BASIC_AUTH: &str = "middleware/basic_auth";
/// The rate_limit middleware.
pub(crate) const MIDDLEWARE_RATE_LIMIT: &str = "middleware/rate_limit";
/// The in_flight_req middleware.
pub(crate) const MIDDLEWARE_IN_FLIGHT_REQ: &str = "middleware/in_flight_req";
/// The ip_allow_list middleware.
pub(crate) const MIDDLEWARE_IP_ALLOW_LIST: &str = "middleware/ip_allow_list";
/// The retry middleware.
pub(crate) const MIDDLEWARE_RETRY: &str = "middleware/retry";
/// The circuit_breaker middleware.
pub(crate) const MIDDLEWARE_CIRCUIT_BREAKER: &str = "middleware/circuit_breaker";
/// A cluster reached over cleartext HTTP/2 (scheme "h2c").
pub(crate) const CLUSTER_H2C: &str = "cluster/h2c";
/// A cluster reached over HTTPS.
pub(crate) const CLUSTER_HTTPS: &str = "cluster/https";
/// A cluster whose endpoints receive their own address as `Host` (`HOST_HEADER_ENDPOINT`,
/// Traefik's `passHostHeader=false`).
pub(crate) const CLUSTER_ENDPOINT_HOST: &str = "cluster/endpoint_host";
/// A cluster with sticky-cookie sessions.
pub(crate) const CLUSTER_STICKY_COOKIE: &str = "cluster/sticky_cookie";
/// A route served only on TLS entrypoints (`Route.tls`).
pub(crate) const ROUTE_TLS: &str = "route/tls";

/// Every feature this build of Berth executes, as listed under FEATURES in `routes.proto`.
pub const KNOWN_FEATURES: &[&str] = &[
    MATCHER_HOST,
    MATCHER_HOST_WILDCARD,
    MATCHER_HOST_REGEXP,
    MATCHER_PATH,
    MATCHER_PATH_PREFIX,
    MATCHER_PATH_REGEXP,
    MATCHER_PATH_SEGMENT_PREFIX,
    MATCHER_METHOD,
    MATCHER_HEADER,
    MATCHER_HEADER_REGEXP,
    MATCHER_QUERY,
    MATCHER_QUERY_REGEXP,
    MATCHER_CLIENT_IP,
    MATCHER_NOT,
    MIDDLEWARE_STRIP_PREFIX,
    MIDDLEWARE_STRIP_PREFIX_REGEX,
    MIDDLEWARE_ADD_PREFIX,
    MIDDLEWARE_REPLACE_PATH,
    MIDDLEWARE_REPLACE_PATH_REGEX,
    MIDDLEWARE_HEADERS,
    MIDDLEWARE_REDIRECT_SCHEME,
    MIDDLEWARE_REDIRECT_REGEX,
    MIDDLEWARE_BASIC_AUTH,
    MIDDLEWARE_RATE_LIMIT,
    MIDDLEWARE_IN_FLIGHT_REQ,
    MIDDLEWARE_IP_ALLOW_LIST,
    MIDDLEWARE_RETRY,
    MIDDLEWARE_CIRCUIT_BREAKER,
    CLUSTER_HTTPS,
    CLUSTER_H2C,
    CLUSTER_ENDPOINT_HOST,
    CLUSTER_STICKY_COOKIE,
    ROUTE_TLS,
];

/// Whether this build knows the feature.
pub fn is_known_feature(name: &str) -> bool {
    KNOWN_FEATURES.contains(&name)
}

/// The features a route uses: one per kind of matcher node (`all` and `any` need none) and one
/// per kind of middleware in its chain, and `route/tls` when it is served only on TLS entrypoints.
/// A node or middleware whose kind is not set adds nothing (validation rejects it on its own).
pub fn required_features(route: &Route) -> BTreeSet<&'static str> {
    let mut features = BTreeSet::new();
    if route.tls {
        features.insert(ROUTE_TLS);
    }
    if let Some(matcher) = &route.matcher {
        matcher_features(matcher, &mut features);
    }
    for m in &route.middlewares {
        if let Some(kind) = &m.kind {
            features.insert(middleware_feature(kind));
        }
    }
    features
}

/// Sets every route's and cluster's `requires` to exactly the features it uses (sorted), as
/// the control plane publishes them.
pub fn fill_requires(routes: &mut [Route], clusters: &mut [Cluster]) {
    for route in routes {
        route.requires = required_features(route).into_iter().map(String::from).collect();
    }
    for cluster in clusters {
        cluster.requires = cluster_required_features(cluster)
            .into_iter()
            .map(String::from)
            .collect();
    }
}

/// The features a cluster uses: `cluster/https` for scheme "https", `cluster/h2c` for "h2c",
/// `cluster/endpoint_host` for
/// `HOST_HEADER_ENDPOINT`, `cluster/sticky_cookie` when `sticky` is set.
pub fn cluster_required_features(cluster: &Cluster) -> BTreeSet<&'static str> {
    let mut features = BTreeSet::new();
    match cluster.scheme.as_str() {
        "https" => {
            features.insert(CLUSTER_HTTPS);
        }
        "h2c" => {
            features.insert(CLUSTER_H2C);
        }
        _ => {}
    }
    if cluster.host_header == HostHeader::Endpoint as i32 {
        features.insert(CLUSTER_ENDPOINT_HOST);
    }
    if cluster.sticky.is_some() {
        features.insert(CLUSTER_STICKY_COOKIE);
    }
    features
}

fn matcher_features(m: &Matcher, features: &mut BTreeSet<&'static str>) {
    let Some(kind) = &m.kind else { return };
    let feature = match kind {
        matcher::Kind::All(list) | matcher::Kind::Any(list) => {
            for child in &list.matchers {
                matcher_features(child, features);
            }
            return;
        }
        matcher::Kind::Not(inner) => {
            matcher_features(inner, features);
            MATCHER_NOT
        }
        matcher::Kind::Host(h) => match &h.kind {
            Some(host_matcher::Kind::Exact(_)) => MATCHER_HOST,
            Some(host_matcher::Kind::Wildcard(_)) => MATCHER_HOST_WILDCARD,
            Some(host_matcher::Kind::Regexp(_)) => MATCHER_HOST_REGEXP,
            None => return,
        },
        matcher::Kind::Path(p) => match &p.kind {
            Some(path_matcher::Kind::Exact(_)) => MATCHER_PATH,
            Some(path_matcher::Kind::Prefix(_)) => MATCHER_PATH_PREFIX,
            Some(path_matcher::Kind::Regexp(_)) => MATCHER_PATH_REGEXP,
            Some(path_matcher::Kind::SegmentPrefix(_)) => MATCHER_PATH_SEGMENT_PREFIX,
            None => return,
        },
        matcher::Kind::Method(_) => MATCHER_METHOD,
        matcher::Kind::Header(h) => match &h.value {
            Some(header_matcher::Value::Regexp(_)) => MATCHER_HEADER_REGEXP,
            Some(header_matcher::Value::Exact(_)) | None => MATCHER_HEADER,
        },
        matcher::Kind::Query(q) => match &q.value {
            Some(query_matcher::Value::Regexp(_)) => MATCHER_QUERY_REGEXP,
            Some(query_matcher::Value::Exact(_) | query_matcher::Value::Present(_)) | None => MATCHER_QUERY,
        },
        matcher::Kind::ClientIp(_) => MATCHER_CLIENT_IP,
    };
    features.insert(feature);
}

fn middleware_feature(kind: &middleware::Kind) -> &'static str {
    match kind {
        middleware::Kind::StripPrefix(_) => MIDDLEWARE_STRIP_PREFIX,
        middleware::Kind::StripPrefixRegex(_) => MIDDLEWARE_STRIP_PREFIX_REGEX,
        middleware::Kind::AddPrefix(_) => MIDDLEWARE_ADD_PREFIX,
        middleware::Kind::ReplacePath(_) => MIDDLEWARE_REPLACE_PATH,
        middleware::Kind::ReplacePathRegex(_) => MIDDLEWARE_REPLACE_PATH_REGEX,
        middleware::Kind::Headers(_) => MIDDLEWARE_HEADERS,
        middleware::Kind::RedirectScheme(_) => MIDDLEWARE_REDIRECT_SCHEME,
        middleware::Kind::RedirectRegex(_) => MIDDLEWARE_REDIRECT_REGEX,
        middleware::Kind::BasicAuth(_) => MIDDLEWARE_BASIC_AUTH,
        middleware::Kind::RateLimit(_) => MIDDLEWARE_RATE_LIMIT,
        middleware::Kind::InFlightReq(_) => MIDDLEWARE_IN_FLIGHT_REQ,
        middleware::Kind::IpAllowList(_) => MIDDLEWARE_IP_ALLOW_LIST,
        middleware::Kind::Retry(_) => MIDDLEWARE_RETRY,
        middleware::Kind::CircuitBreaker(_) => MIDDLEWARE_CIRCUIT_BREAKER,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::*;
    use berth_proto::v1::{BasicAuth, Middleware, StickyCookie, StripPrefix};

    #[test]
    fn known_features_are_the_protos_list() {
        // The FEATURES paragraph of routes.proto, word for word.
        let proto = include_str!("../../proto/proto/berth/routes/v1/routes.proto");
        let start = proto.find("// FEATURES").unwrap();
        let end = start + proto[start..].find("// A proxy that meets").unwrap();
        let listed: BTreeSet<&str> = proto[start..end]
            .split(|c: char| c.is_whitespace() || c == ',' || c == '.')
            .filter(|w| w.contains('/') && !w.starts_with("//"))
            .collect();
        let known: BTreeSet<&str> = KNOWN_FEATURES.iter().copied().collect();
        assert_eq!(listed, known);
        assert_eq!(known.len(), KNOWN_FEATURES.len(), "no duplicates");
    }

    #[test]
    fn route_features_follow_the_matcher_and_the_chain() {
        let mut r = route(
            "r",
            "c",
            all_of(vec![
                host("a.example"),
                any_of(vec![path_prefix("/a"), path_segment("/b")]),
                not(header_re("x", "y")),
                query_present("q"),
            ]),
        );
        r.middlewares = vec![
            Middleware {
                name: "s".into(),
                kind: Some(middleware::Kind::StripPrefix(StripPrefix::default())),
            },
            Middleware {
                name: "auth".into(),
                kind: Some(middleware::Kind::BasicAuth(BasicAuth::default())),
            },
            Middleware {
                name: "unknown".into(),
                kind: None,
            },
        ];
        let got: Vec<_> = required_features(&r).into_iter().collect();
        assert_eq!(
            got,
            vec![
                MATCHER_HEADER_REGEXP,
                MATCHER_HOST,
                MATCHER_NOT,
                MATCHER_PATH_PREFIX,
                MATCHER_PATH_SEGMENT_PREFIX,
                MATCHER_QUERY,
                MIDDLEWARE_BASIC_AUTH,
                MIDDLEWARE_STRIP_PREFIX,
            ]
        );
    }

    #[test]
    fn a_tls_route_needs_route_tls() {
        let mut r = route("r", "c", all_of(vec![]));
        r.tls = true;
        assert_eq!(
            required_features(&r).into_iter().collect::<Vec<_>>(),
            vec![ROUTE_TLS]
        );
    }

    #[test]
    fn a_plain_match_all_needs_nothing() {
        assert!(required_features(&route("r", "c", all_of(vec![]))).is_empty());
        assert!(required_features(&Route::default()).is_empty());
    }

    #[test]
    fn cluster_features() {
        let mut c = cluster("c");
        assert!(cluster_required_features(&c).is_empty());
        c.scheme = "https".into();
        c.host_header = HostHeader::Endpoint as i32;
        c.sticky = Some(StickyCookie::default());
        let got: Vec<_> = cluster_required_features(&c).into_iter().collect();
        assert_eq!(
            got,
            vec![CLUSTER_ENDPOINT_HOST, CLUSTER_HTTPS, CLUSTER_STICKY_COOKIE]
        );
    }

    #[test]
    fn every_required_feature_is_known() {
        assert!(is_known_feature("matcher/host"));
        assert!(!is_known_feature("middleware/forward_auth"));
    }
}
