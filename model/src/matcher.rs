//! Matchers compiled for the request path: [`CompiledMatcher::compile`] checks a route's
//! [`Matcher`] tree and turns it into a form that [`CompiledMatcher::matches`] evaluates without
//! locks and, but for a percent-encoded query, without allocating.
//!
//! Each kind means what the Traefik v3 matcher of the same name means (`pkg/muxer/http`):
//!
//! - `host.exact`: the request host ([`RequestView::host`], normalized by
//!   [`crate::request_host`]) equals the value. Traefik compares case-insensitively and tries
//!   with and without a trailing dot on either side; normalizing both sides gives the same answer.
//! - `host.wildcard` (suffix `s`): the host ends with `.s` and is longer; any number of labels
//!   may stand before it (Fabio's `*.s`). Traefik's ``Host(`*.s`)`` takes exactly one label: a
//!   dialect keeps that by writing `all[host.wildcard s, host.regexp ^[^.]+\.s$]`, which
//!   [`crate::host_keys`] still files under the suffix.
//! - `host.regexp`: the regexp finds a match in the host (unanchored, like Go's `MatchString`).
//!   Traefik matches the host as sent (lower-cased, port removed) and so sees a trailing dot that
//!   Berth has removed: `^a\.b$` takes `a.b.` here, not there.
//! - `path.exact`, `path.prefix`, `path.regexp`: compared with the routing path
//!   ([`crate::routing_path`]): the path as sent with every escape decoded except those of
//!   reserved characters (`%2F`...), which are kept in upper case. Neither Go's decoded
//!   `URL.Path` nor the raw path: exactly what Traefik v3 compares. `prefix` is a plain byte
//!   prefix (`/api` takes `/apis`); the regexp is unanchored.
//! - `path.segment_prefix` (no dialect emits it today: Traefik v1's and Fabio's prefixes are plain
//!   string prefixes, as in Traefik v3): the path equals the prefix, or starts with it followed
//!   by '/' (or the prefix ends with '/').
//! - `method`: the request method equals the value, case-sensitively (Traefik upper-cases its
//!   rule and compares with the method as sent).
//! - `header` (name, exact or regexp): some value of the header (each field line on its own,
//!   not split on commas) equals the value, or the regexp finds a match in it. As in Go, whose
//!   server moves `Host` out of the header map, a header matcher on `host` never matches.
//! - `query` (name; present, exact or regexp): over the parameters as Traefik reads them: ';'
//!   separates pairs as '&' does (Traefik's default `encodeQuerySemicolons=false` rewrites it),
//!   keys and values are percent-decoded with '+' as a space (Go's `URL.Query()`), a pair with a
//!   broken escape is dropped. `present` takes the name with any value, `exact` some value
//!   equal, `regexp` some value the regexp finds a match in. Traefik's ``Query(`name`)`` is
//!   `exact ""` (`?mobile` matches, `?mobile=true` does not), not `present`.
//! - `client_ip`: the connection's peer address is one of the addresses or in one of the
//!   networks; an IPv4-mapped IPv6 peer counts as its IPv4 address (as Go's `net.IP` does).
//! - `all`, `any`, `not`: conjunction (true when empty), disjunction (false when empty), negation.
//!
//! Not for: choosing among routes (priorities, the host index); see [`crate::host_keys`].

use std::net::IpAddr;

use berth_proto::v1::{
    header_matcher, host_matcher, matcher, path_matcher, query_matcher, HeaderMatcher, HostMatcher, Matcher,
    PathMatcher, QueryMatcher,
};

use crate::host::normalize_host;
use crate::ip::{parse_ip_range, IpRanges};
use crate::pattern::{compile_bytes_regex, compile_regex};
use crate::problem::Problem;
use crate::request::{query_pairs, RequestView};

/// A matcher tree that failed to compile: every problem found, each with where it is in the tree
/// (`all[1].path.regexp`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", display_problems(.problems))]
pub struct MatcherError {
    /// The problems, in tree order.
    pub problems: Vec<MatcherProblem>,
}

/// One problem in a matcher tree.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{at}: {problem}")]
pub struct MatcherProblem {
    /// Where in the tree, e.g. `all[1].path.regexp` (`kind` for the root's missing kind).
    pub at: String,
    /// What is wrong there.
    pub problem: Problem,
}

fn display_problems(problems: &[MatcherProblem]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// A route's matcher, checked and ready to evaluate. Cheap to share between threads.
#[derive(Debug, Clone)]
pub struct CompiledMatcher {
    root: Node,
}

#[derive(Debug, Clone)]
enum Node {
    All(Box<[Node]>),
    Any(Box<[Node]>),
    Not(Box<Node>),
    HostExact(Box<str>),
    /// The suffix with its leading dot: ".example.com".
    HostWildcard(Box<str>),
    HostRegexp(regex::Regex),
    PathExact(Box<[u8]>),
    PathPrefix(Box<[u8]>),
    PathSegmentPrefix(Box<[u8]>),
    PathRegexp(regex::bytes::Regex),
    Method(Box<str>),
    Header(http::HeaderName, ValueTest),
    Query(Box<[u8]>, QueryTest),
    ClientIp(IpRanges),
    /// Matches nothing (a header matcher on `host`).
    Never,
}

#[derive(Debug, Clone)]
enum ValueTest {
    Exact(Box<[u8]>),
    Regexp(regex::bytes::Regex),
}

impl ValueTest {
    fn test(&self, value: &[u8]) -> bool {
        match self {
            ValueTest::Exact(expected) => **expected == *value,
            ValueTest::Regexp(re) => re.is_match(value),
        }
    }
}

#[derive(Debug, Clone)]
enum QueryTest {
    Present,
    Value(ValueTest),
}

impl CompiledMatcher {
    /// Checks a matcher tree (every node's kind set, values well formed, regexps compiling) and
    /// compiles it. Reports every problem, not only the first.
    pub fn compile(matcher: &Matcher) -> Result<CompiledMatcher, MatcherError> {
        let mut compiler = Compiler::default();
        let root = compiler.node(matcher);
        match root {
            Some(root) if compiler.problems.is_empty() => Ok(CompiledMatcher { root }),
            _ => Err(MatcherError {
                problems: compiler.problems,
            }),
        }
    }

    /// Whether the request is one this matcher takes.
    pub fn matches(&self, req: &RequestView<'_>) -> bool {
        self.root.matches(req)
    }

    /// Whether evaluating this matcher may read the request's header fields (a proxy that keeps
    /// some out of its header map asks it whether to put them in before matching).
    pub fn reads_headers(&self) -> bool {
        self.root.reads_headers()
    }
}

impl Node {
    fn reads_headers(&self) -> bool {
        match self {
            Node::All(nodes) | Node::Any(nodes) => nodes.iter().any(Node::reads_headers),
            Node::Not(node) => node.reads_headers(),
            Node::Header(..) => true,
            _ => false,
        }
    }

    fn matches(&self, req: &RequestView<'_>) -> bool {
        match self {
            Node::All(nodes) => nodes.iter().all(|n| n.matches(req)),
            Node::Any(nodes) => nodes.iter().any(|n| n.matches(req)),
            Node::Not(node) => !node.matches(req),
            Node::HostExact(host) => req.host == &**host,
            Node::HostWildcard(dot_suffix) => {
                req.host.len() > dot_suffix.len() && req.host.ends_with(&**dot_suffix)
            }
            Node::HostRegexp(re) => re.is_match(req.host),
            Node::PathExact(path) => req.path == &**path,
            Node::PathPrefix(prefix) => req.path.starts_with(prefix),
            Node::PathSegmentPrefix(prefix) => segment_prefix_matches(prefix, req.path),
            Node::PathRegexp(re) => re.is_match(req.path),
            Node::Method(method) => req.method.as_str() == &**method,
            Node::Header(name, test) => req.headers.get_all(name).iter().any(|v| test.test(v.as_bytes())),
            Node::Query(name, test) => req.query.is_some_and(|q| {
                query_pairs(q).any(|(key, value)| {
                    *key == **name
                        && match test {
                            QueryTest::Present => true,
                            QueryTest::Value(t) => t.test(&value),
                        }
                })
            }),
            Node::ClientIp(ranges) => ranges.contains(req.client_ip),
            Node::Never => false,
        }
    }
}

fn segment_prefix_matches(prefix: &[u8], path: &[u8]) -> bool {
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || prefix.ends_with(b"/") || rest.starts_with(b"/"),
        None => false,
    }
}

/// Walks a matcher tree, compiling what it can and noting every problem with its place.
#[derive(Default)]
struct Compiler {
    at: String,
    problems: Vec<MatcherProblem>,
}

impl Compiler {
    fn problem(&mut self, field: &str, problem: Problem) {
        let at = match (self.at.is_empty(), field.is_empty()) {
            (true, _) => field.to_string(),
            (false, true) => self.at.clone(),
            (false, false) => format!("{}.{field}", self.at),
        };
        self.problems.push(MatcherProblem { at, problem });
    }

    /// Runs `f` with `segment` appended to the current place.
    fn within<T>(&mut self, segment: &str, f: impl FnOnce(&mut Self) -> T) -> T {
        let len = self.at.len();
        if !self.at.is_empty() && !segment.starts_with('[') {
            self.at.push('.');
        }
        self.at.push_str(segment);
        let out = f(self);
        self.at.truncate(len);
        out
    }

    fn node(&mut self, matcher: &Matcher) -> Option<Node> {
        let Some(kind) = &matcher.kind else {
            self.problem("kind", Problem::KindNotSet);
            return None;
        };
        match kind {
            matcher::Kind::All(list) => self.within("all", |c| c.list(&list.matchers)).map(Node::All),
            matcher::Kind::Any(list) => self.within("any", |c| c.list(&list.matchers)).map(Node::Any),
            matcher::Kind::Not(inner) => self
                .within("not", |c| c.node(inner))
                .map(|n| Node::Not(Box::new(n))),
            matcher::Kind::Host(host) => self.within("host", |c| c.host(host)),
            matcher::Kind::Path(path) => self.within("path", |c| c.path(path)),
            matcher::Kind::Method(method) => self.within("method", |c| c.method(method)),
            matcher::Kind::Header(header) => self.within("header", |c| c.header(header)),
            matcher::Kind::Query(query) => self.within("query", |c| c.query(query)),
            matcher::Kind::ClientIp(ips) => self.within("client_ip", |c| c.client_ip(&ips.ranges)),
        }
    }

    fn list(&mut self, matchers: &[Matcher]) -> Option<Box<[Node]>> {
        let mut nodes = Vec::with_capacity(matchers.len());
        let mut ok = true;
        for (i, m) in matchers.iter().enumerate() {
            match self.within(&format!("[{i}]"), |c| c.node(m)) {
                Some(node) => nodes.push(node),
                None => ok = false,
            }
        }
        ok.then(|| nodes.into_boxed_slice())
    }

    fn host(&mut self, host: &HostMatcher) -> Option<Node> {
        match &host.kind {
            None => {
                self.problem("kind", Problem::KindNotSet);
                None
            }
            Some(host_matcher::Kind::Exact(value)) => self
                .canonical_host("exact", value)
                .map(|h| Node::HostExact(h.into())),
            Some(host_matcher::Kind::Wildcard(suffix)) => {
                let suffix = self.canonical_host("wildcard", suffix)?;
                if suffix.parse::<IpAddr>().is_ok() {
                    self.problem("wildcard", Problem::WildcardIp(suffix));
                    return None;
                }
                Some(Node::HostWildcard(format!(".{suffix}").into()))
            }
            Some(host_matcher::Kind::Regexp(pattern)) => self
                .regexp("regexp", pattern, compile_regex)
                .map(Node::HostRegexp),
        }
    }

    /// A host that follows the host-name rule and is written in canonical form.
    fn canonical_host(&mut self, field: &str, value: &str) -> Option<String> {
        match normalize_host(value) {
            Ok(canonical) if canonical == value => Some(canonical),
            Ok(canonical) => {
                self.problem(
                    field,
                    Problem::NotCanonical {
                        value: value.to_string(),
                        expected: canonical,
                    },
                );
                None
            }
            Err(e) => {
                self.problem(field, Problem::Host(e));
                None
            }
        }
    }

    fn regexp<R>(
        &mut self,
        field: &str,
        pattern: &str,
        compile: impl FnOnce(&str) -> Result<R, crate::pattern::RegexError>,
    ) -> Option<R> {
        if pattern.is_empty() {
            self.problem(field, Problem::Empty);
            return None;
        }
        compile(pattern)
            .map_err(|e| self.problem(field, Problem::Regex(e)))
            .ok()
    }

    fn path(&mut self, path: &PathMatcher) -> Option<Node> {
        let absolute = |c: &mut Self, field: &str, value: &str| -> Option<Box<[u8]>> {
            if value.is_empty() {
                c.problem(field, Problem::Empty);
                None
            } else if !value.starts_with('/') {
                c.problem(field, Problem::NotAbsolute(value.to_string()));
                None
            } else {
                Some(value.as_bytes().into())
            }
        };
        match &path.kind {
            None => {
                self.problem("kind", Problem::KindNotSet);
                None
            }
            Some(path_matcher::Kind::Exact(v)) => absolute(self, "exact", v).map(Node::PathExact),
            Some(path_matcher::Kind::Prefix(v)) => absolute(self, "prefix", v).map(Node::PathPrefix),
            Some(path_matcher::Kind::SegmentPrefix(v)) => {
                absolute(self, "segment_prefix", v).map(Node::PathSegmentPrefix)
            }
            Some(path_matcher::Kind::Regexp(pattern)) => self
                .regexp("regexp", pattern, compile_bytes_regex)
                .map(Node::PathRegexp),
        }
    }

    fn method(&mut self, method: &str) -> Option<Node> {
        if method.is_empty() {
            self.problem("", Problem::Empty);
            return None;
        }
        if http::Method::from_bytes(method.as_bytes()).is_err() {
            self.problem("", Problem::Method(method.to_string()));
            return None;
        }
        if method.bytes().any(|b| b.is_ascii_lowercase()) {
            self.problem("", Problem::MethodCase(method.to_string()));
            return None;
        }
        Some(Node::Method(method.into()))
    }

    fn header(&mut self, header: &HeaderMatcher) -> Option<Node> {
        let name = self.header_name("name", &header.name);
        let test = match &header.value {
            None => {
                self.problem("value", Problem::NotSet);
                None
            }
            Some(header_matcher::Value::Exact(v)) => Some(ValueTest::Exact(v.as_bytes().into())),
            Some(header_matcher::Value::Regexp(pattern)) => self
                .regexp("regexp", pattern, compile_bytes_regex)
                .map(ValueTest::Regexp),
        };
        let (name, test) = (name?, test?);
        if name == http::header::HOST {
            return Some(Node::Never);
        }
        Some(Node::Header(name, test))
    }

    fn header_name(&mut self, field: &str, name: &str) -> Option<http::HeaderName> {
        if name.is_empty() {
            self.problem(field, Problem::Empty);
            return None;
        }
        http::HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| self.problem(field, Problem::HeaderName(name.to_string())))
            .ok()
    }

    fn query(&mut self, query: &QueryMatcher) -> Option<Node> {
        if query.name.is_empty() {
            self.problem("name", Problem::Empty);
        }
        let test = match &query.value {
            None => {
                self.problem("value", Problem::NotSet);
                None
            }
            Some(query_matcher::Value::Present(true)) => Some(QueryTest::Present),
            Some(query_matcher::Value::Present(false)) => {
                self.problem("present", Problem::PresentFalse);
                None
            }
            Some(query_matcher::Value::Exact(v)) => {
                Some(QueryTest::Value(ValueTest::Exact(v.as_bytes().into())))
            }
            Some(query_matcher::Value::Regexp(pattern)) => self
                .regexp("regexp", pattern, compile_bytes_regex)
                .map(|re| QueryTest::Value(ValueTest::Regexp(re))),
        };
        if query.name.is_empty() {
            return None;
        }
        Some(Node::Query(query.name.as_bytes().into(), test?))
    }

    fn client_ip(&mut self, ranges: &[String]) -> Option<Node> {
        if ranges.is_empty() {
            self.problem("ranges", Problem::Empty);
            return None;
        }
        let mut ok = true;
        for (i, range) in ranges.iter().enumerate() {
            if parse_ip_range(range).is_none() {
                self.problem(&format!("ranges[{i}]"), Problem::IpRange(range.clone()));
                ok = false;
            }
        }
        if !ok {
            return None;
        }
        IpRanges::parse(ranges).ok().map(Node::ClientIp)
    }
}

#[cfg(test)]
mod tests;
