//! Builders of snapshot messages for the proxy's unit tests.
//!
//! For: short, readable snapshots: matchers by kind, routes and clusters whose `requires` the
//! model fills (see [`snapshot`]), so a test states only what it is about.
//! Not for: production code.

use berth_proto::v1::{
    header_matcher, host_matcher, matcher, path_matcher, query_matcher, route_update, ClientIpMatcher,
    Cluster, Endpoint, HeaderMatcher, HostMatcher, Matcher, MatcherList, Middleware, PathMatcher,
    QueryMatcher, Route, RouteUpdate, Snapshot,
};

fn m(kind: matcher::Kind) -> Matcher {
    Matcher { kind: Some(kind) }
}

pub(crate) fn host(h: &str) -> Matcher {
    m(matcher::Kind::Host(HostMatcher {
        kind: Some(host_matcher::Kind::Exact(h.into())),
    }))
}

pub(crate) fn wildcard(suffix: &str) -> Matcher {
    m(matcher::Kind::Host(HostMatcher {
        kind: Some(host_matcher::Kind::Wildcard(suffix.into())),
    }))
}

pub(crate) fn host_regexp(re: &str) -> Matcher {
    m(matcher::Kind::Host(HostMatcher {
        kind: Some(host_matcher::Kind::Regexp(re.into())),
    }))
}

pub(crate) fn prefix(p: &str) -> Matcher {
    m(matcher::Kind::Path(PathMatcher {
        kind: Some(path_matcher::Kind::Prefix(p.into())),
    }))
}

pub(crate) fn method(name: &str) -> Matcher {
    m(matcher::Kind::Method(name.into()))
}

pub(crate) fn header(name: &str, value: &str) -> Matcher {
    m(matcher::Kind::Header(HeaderMatcher {
        name: name.into(),
        value: Some(header_matcher::Value::Exact(value.into())),
    }))
}

pub(crate) fn query(name: &str, value: &str) -> Matcher {
    m(matcher::Kind::Query(QueryMatcher {
        name: name.into(),
        value: Some(query_matcher::Value::Exact(value.into())),
    }))
}

pub(crate) fn client_ip(ranges: &[&str]) -> Matcher {
    m(matcher::Kind::ClientIp(ClientIpMatcher {
        ranges: ranges.iter().map(|r| r.to_string()).collect(),
    }))
}

pub(crate) fn all(matchers: Vec<Matcher>) -> Matcher {
    m(matcher::Kind::All(MatcherList { matchers }))
}

pub(crate) fn any(matchers: Vec<Matcher>) -> Matcher {
    m(matcher::Kind::Any(MatcherList { matchers }))
}

pub(crate) fn not(matcher: Matcher) -> Matcher {
    m(matcher::Kind::Not(Box::new(matcher)))
}

pub(crate) fn route(name: &str, matcher: Matcher, cluster: &str) -> Route {
    Route {
        name: name.into(),
        matcher: Some(matcher),
        cluster: cluster.into(),
        service: format!("{name}-svc"),
        ..Default::default()
    }
}

pub(crate) fn with_middlewares(mut route: Route, middlewares: Vec<Middleware>) -> Route {
    route.middlewares = middlewares;
    route
}

pub(crate) fn endpoint(address: &str, port: u32, weight: u32) -> Endpoint {
    Endpoint {
        address: address.into(),
        port,
        weight,
        id: format!("{address}-{port}"),
    }
}

pub(crate) fn cluster(name: &str, endpoints: Vec<Endpoint>) -> Cluster {
    Cluster {
        name: name.into(),
        endpoints,
        ..Default::default()
    }
}

/// A snapshot of these routes and clusters, each `requires` filled with what it uses.
pub(crate) fn snapshot(mut routes: Vec<Route>, mut clusters: Vec<Cluster>) -> Snapshot {
    berth_model::fill_requires(&mut routes, &mut clusters);
    Snapshot { routes, clusters }
}

/// An update carrying `snapshot`.
pub(crate) fn update(version: &str, nonce: &str, snapshot: Snapshot) -> RouteUpdate {
    RouteUpdate {
        version: version.into(),
        nonce: nonce.into(),
        body: Some(route_update::Body::Snapshot(snapshot)),
    }
}
