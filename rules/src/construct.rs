//! Short constructors for the route model's messages (matchers and middlewares), so the dialects
//! read as what they build rather than as protobuf plumbing.
//!
//! Not for: checking anything; the dialects check values before they build.

use berth_proto::v1::{
    header_matcher, host_matcher, matcher, middleware, path_matcher, query_matcher, HeaderMatcher,
    HostMatcher, Matcher, MatcherList, Middleware, PathMatcher, QueryMatcher,
};

fn of(kind: matcher::Kind) -> Matcher {
    Matcher { kind: Some(kind) }
}

/// All of `matchers`; a single matcher stands for itself.
pub(crate) fn all(mut matchers: Vec<Matcher>) -> Matcher {
    if matchers.len() == 1 {
        if let Some(only) = matchers.pop() {
            return only;
        }
    }
    of(matcher::Kind::All(MatcherList { matchers }))
}

/// Any of `matchers`; a single matcher stands for itself.
pub(crate) fn any(mut matchers: Vec<Matcher>) -> Matcher {
    if matchers.len() == 1 {
        if let Some(only) = matchers.pop() {
            return only;
        }
    }
    of(matcher::Kind::Any(MatcherList { matchers }))
}

pub(crate) fn not(inner: Matcher) -> Matcher {
    of(matcher::Kind::Not(Box::new(inner)))
}

fn host(kind: host_matcher::Kind) -> Matcher {
    of(matcher::Kind::Host(HostMatcher { kind: Some(kind) }))
}

pub(crate) fn host_exact(host: &str) -> Matcher {
    self::host(host_matcher::Kind::Exact(host.to_string()))
}

pub(crate) fn host_wildcard(suffix: &str) -> Matcher {
    self::host(host_matcher::Kind::Wildcard(suffix.to_string()))
}

pub(crate) fn host_regexp(regexp: &str) -> Matcher {
    self::host(host_matcher::Kind::Regexp(regexp.to_string()))
}

fn path(kind: path_matcher::Kind) -> Matcher {
    of(matcher::Kind::Path(PathMatcher { kind: Some(kind) }))
}

pub(crate) fn path_exact(path: &str) -> Matcher {
    self::path(path_matcher::Kind::Exact(path.to_string()))
}

pub(crate) fn path_prefix(prefix: &str) -> Matcher {
    self::path(path_matcher::Kind::Prefix(prefix.to_string()))
}

pub(crate) fn path_regexp(regexp: &str) -> Matcher {
    self::path(path_matcher::Kind::Regexp(regexp.to_string()))
}

pub(crate) fn method(method: &str) -> Matcher {
    of(matcher::Kind::Method(method.to_string()))
}

pub(crate) fn header_exact(name: &str, value: &str) -> Matcher {
    of(matcher::Kind::Header(HeaderMatcher {
        name: name.to_string(),
        value: Some(header_matcher::Value::Exact(value.to_string())),
    }))
}

pub(crate) fn header_regexp(name: &str, regexp: &str) -> Matcher {
    of(matcher::Kind::Header(HeaderMatcher {
        name: name.to_string(),
        value: Some(header_matcher::Value::Regexp(regexp.to_string())),
    }))
}

pub(crate) fn query_present(name: &str) -> Matcher {
    of(matcher::Kind::Query(QueryMatcher {
        name: name.to_string(),
        value: Some(query_matcher::Value::Present(true)),
    }))
}

pub(crate) fn query_exact(name: &str, value: &str) -> Matcher {
    of(matcher::Kind::Query(QueryMatcher {
        name: name.to_string(),
        value: Some(query_matcher::Value::Exact(value.to_string())),
    }))
}

pub(crate) fn query_regexp(name: &str, regexp: &str) -> Matcher {
    of(matcher::Kind::Query(QueryMatcher {
        name: name.to_string(),
        value: Some(query_matcher::Value::Regexp(regexp.to_string())),
    }))
}

pub(crate) fn client_ip(ranges: Vec<String>) -> Matcher {
    of(matcher::Kind::ClientIp(berth_proto::v1::ClientIpMatcher {
        ranges,
    }))
}

/// A middleware named `name` of the given kind.
pub(crate) fn middleware(name: &str, kind: middleware::Kind) -> Middleware {
    Middleware {
        name: name.to_string(),
        kind: Some(kind),
    }
}
