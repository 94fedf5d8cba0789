//! A route's middleware chain: what happens to a request between matching and forwarding, and to
//! the response on its way back.
//!
//! For: compiling each middleware of a snapshot (one module per kind, each following Traefik's
//! middleware of the same name and saying where in its docs), and running a chain: the request
//! half in chain order, where any middleware may answer the request itself (a redirect, a 401, a
//! 429); the response half in reverse order, over whatever response comes back — the backend's,
//! a proxy error, or the answer of a later middleware — as Traefik's response modifiers see it;
//! and what a chain touches as a whole ([`Chain`]): which request fields it reads or changes, so
//! the request path puts only those in the header map, and whether its response halves can work
//! on a backend's head kept as it came.
//! Not for: matching (see `table`) or anything after the chain (see `proxy`).

mod add_prefix;
mod basic_auth;
mod circuit_breaker;
mod headers;
mod htpasswd;
mod in_flight_req;
mod ip_allow_list;
mod rate_limit;
mod redirect;
mod redirect_regex;
mod redirect_scheme;
mod replace_path;
mod replace_path_regex;
mod reply;
mod retry;
mod source;
mod strip_prefix;
mod strip_prefix_regex;

use std::ops::Deref;

use berth_proto::v1::middleware::Kind as ProtoKind;
use http::{request, response, HeaderName, Response};
use thiserror::Error;

use super::context::RequestContext;
use super::Body;
use crate::http1::wire::KeptHead;
pub(crate) use in_flight_req::InFlightSlot;
pub(crate) use source::IpRanges;

/// What a middleware's request half decided.
#[derive(Debug)]
pub(crate) enum Flow {
    /// Go on to the next middleware (or the backend).
    Next,
    /// Answer the client with this, now.
    Answer(Response<Body>),
}

/// Why a middleware of a snapshot cannot be run. The text goes into a NACK.
#[derive(Debug, Error, PartialEq, Eq)]
pub(crate) enum CompileError {
    #[error("middleware {name:?} has no kind this proxy knows (a newer middleware?)")]
    UnknownKind { name: String },
    #[error("middleware {name:?} ({kind}): {reason}")]
    Invalid {
        name: String,
        kind: &'static str,
        reason: String,
    },
}

/// One compiled middleware of a route's chain.
#[derive(Debug)]
pub(crate) struct Middleware {
    /// As in the snapshot (for example `strip@consulcatalog`).
    pub name: String,
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    StripPrefix(strip_prefix::StripPrefix),
    StripPrefixRegex(strip_prefix_regex::StripPrefixRegex),
    AddPrefix(add_prefix::AddPrefix),
    ReplacePath(replace_path::ReplacePath),
    ReplacePathRegex(replace_path_regex::ReplacePathRegex),
    Headers(headers::Headers),
    RedirectScheme(redirect_scheme::RedirectScheme),
    RedirectRegex(redirect_regex::RedirectRegex),
    BasicAuth(basic_auth::BasicAuth),
    RateLimit(rate_limit::RateLimit),
    InFlightReq(in_flight_req::InFlightReq),
    IpAllowList(ip_allow_list::IpAllowList),
    Retry(retry::Retry),
    CircuitBreaker(circuit_breaker::CircuitBreaker),
}

impl Middleware {
    /// Compiles one middleware. `previous` is the middleware at the same place of the same route
    /// in the table being replaced: a rate limit, in-flight limit or circuit breaker with the same
    /// settings keeps its counters (and the breaker its state).
    pub(crate) fn compile(
        proto: &berth_proto::v1::Middleware,
        previous: Option<&Middleware>,
    ) -> Result<Self, CompileError> {
        let Some(kind) = &proto.kind else {
            return Err(CompileError::UnknownKind {
                name: proto.name.clone(),
            });
        };
        let compiled = match kind {
            ProtoKind::StripPrefix(c) => strip_prefix::StripPrefix::compile(c).map(Kind::StripPrefix),
            ProtoKind::StripPrefixRegex(c) => {
                strip_prefix_regex::StripPrefixRegex::compile(c).map(Kind::StripPrefixRegex)
            }
            ProtoKind::AddPrefix(c) => add_prefix::AddPrefix::compile(c).map(Kind::AddPrefix),
            ProtoKind::ReplacePath(c) => replace_path::ReplacePath::compile(c).map(Kind::ReplacePath),
            ProtoKind::ReplacePathRegex(c) => {
                replace_path_regex::ReplacePathRegex::compile(c).map(Kind::ReplacePathRegex)
            }
            ProtoKind::Headers(c) => headers::Headers::compile(c).map(Kind::Headers),
            ProtoKind::RedirectScheme(c) => {
                redirect_scheme::RedirectScheme::compile(c).map(Kind::RedirectScheme)
            }
            ProtoKind::RedirectRegex(c) => redirect_regex::RedirectRegex::compile(c).map(Kind::RedirectRegex),
            ProtoKind::BasicAuth(c) => basic_auth::BasicAuth::compile(c).map(Kind::BasicAuth),
            ProtoKind::RateLimit(c) => {
                let previous = previous.and_then(|p| match &p.kind {
                    Kind::RateLimit(r) => Some(r),
                    _ => None,
                });
                rate_limit::RateLimit::compile(c, previous).map(Kind::RateLimit)
            }
            ProtoKind::InFlightReq(c) => {
                let previous = previous.and_then(|p| match &p.kind {
                    Kind::InFlightReq(r) => Some(r),
                    _ => None,
                });
                in_flight_req::InFlightReq::compile(c, previous).map(Kind::InFlightReq)
            }
            ProtoKind::IpAllowList(c) => ip_allow_list::IpAllowList::compile(c).map(Kind::IpAllowList),
            ProtoKind::Retry(c) => retry::Retry::compile(c).map(Kind::Retry),
            ProtoKind::CircuitBreaker(c) => {
                let previous = previous.and_then(|p| match &p.kind {
                    Kind::CircuitBreaker(b) => Some(b),
                    _ => None,
                });
                circuit_breaker::CircuitBreaker::compile(c, previous).map(Kind::CircuitBreaker)
            }
        };
        match compiled {
            Ok(kind) => Ok(Self {
                name: proto.name.clone(),
                kind,
            }),
            Err(reason) => Err(CompileError::Invalid {
                name: proto.name.clone(),
                kind: kind_name(kind),
                reason,
            }),
        }
    }

    /// The kind's name as in the proto (`strip_prefix`, ...), for the admin API and logs.
    pub(crate) fn kind(&self) -> &'static str {
        match &self.kind {
            Kind::StripPrefix(_) => "strip_prefix",
            Kind::StripPrefixRegex(_) => "strip_prefix_regex",
            Kind::AddPrefix(_) => "add_prefix",
            Kind::ReplacePath(_) => "replace_path",
            Kind::ReplacePathRegex(_) => "replace_path_regex",
            Kind::Headers(_) => "headers",
            Kind::RedirectScheme(_) => "redirect_scheme",
            Kind::RedirectRegex(_) => "redirect_regex",
            Kind::BasicAuth(_) => "basic_auth",
            Kind::RateLimit(_) => "rate_limit",
            Kind::InFlightReq(_) => "in_flight_req",
            Kind::IpAllowList(_) => "ip_allow_list",
            Kind::Retry(_) => "retry",
            Kind::CircuitBreaker(_) => "circuit_breaker",
        }
    }

    /// The request half.
    async fn request(&self, ctx: &mut RequestContext, head: &mut request::Parts) -> Flow {
        match &self.kind {
            Kind::StripPrefix(m) => m.request(ctx, head),
            Kind::StripPrefixRegex(m) => m.request(ctx, head),
            Kind::AddPrefix(m) => m.request(ctx, head),
            Kind::ReplacePath(m) => m.request(ctx, head),
            Kind::ReplacePathRegex(m) => m.request(ctx, head),
            Kind::Headers(m) => m.request(ctx, head),
            Kind::RedirectScheme(m) => m.request(ctx, head),
            Kind::RedirectRegex(m) => m.request(ctx, head),
            Kind::BasicAuth(m) => m.request(ctx, head).await,
            Kind::RateLimit(m) => m.request(ctx, head).await,
            Kind::InFlightReq(m) => m.request(ctx, head),
            Kind::IpAllowList(m) => m.request(ctx, head),
            // Acted on by the forward loop (see `retry_policy`).
            Kind::Retry(_) => Flow::Next,
            Kind::CircuitBreaker(m) => m.request(),
        }
    }

    /// The response half (`headers` changes the head; `circuit_breaker` records the outcome).
    /// `kept`: the backend's head as it came, whose fields are not in `head` (see
    /// [`Chain::keeps_heads`]).
    fn response(&self, ctx: &RequestContext, head: &mut response::Parts, kept: Option<&mut KeptHead>) {
        match &self.kind {
            Kind::Headers(m) => m.response(head, kept),
            Kind::CircuitBreaker(m) => m.response(head.status, ctx.started),
            _ => {}
        }
    }

    /// The names of the request's header fields the request half reads or changes; `None`: any
    /// field (see [`Fields`]). Asked once, when the route table is built.
    fn request_fields(&self) -> Option<Vec<HeaderName>> {
        match &self.kind {
            Kind::StripPrefix(_) | Kind::StripPrefixRegex(_) => Some(vec![strip_prefix::X_FORWARDED_PREFIX]),
            Kind::ReplacePath(_) | Kind::ReplacePathRegex(_) => Some(vec![replace_path::X_REPLACED_PATH]),
            Kind::Headers(m) => m.request_fields(),
            // The path, host and entrypoint only (from the context).
            Kind::AddPrefix(_) | Kind::RedirectRegex(_) => Some(Vec::new()),
            Kind::Retry(_) | Kind::CircuitBreaker(_) => Some(Vec::new()),
            // `X-Forwarded-Proto`; `Authorization` and the user field; a source criterion's
            // header or `X-Forwarded-For`.
            Kind::RedirectScheme(_)
            | Kind::BasicAuth(_)
            | Kind::RateLimit(_)
            | Kind::InFlightReq(_)
            | Kind::IpAllowList(_) => None,
        }
    }

    /// Whether the response half changes nothing a kept head's writer decides itself (see
    /// [`Chain::keeps_heads`]).
    fn keeps_heads(&self) -> bool {
        match &self.kind {
            Kind::Headers(m) => m.keeps_heads(),
            _ => true,
        }
    }

    fn has_response_half(&self) -> bool {
        matches!(self.kind, Kind::Headers(_) | Kind::CircuitBreaker(_))
    }
}

/// Which of a request's header fields a route's request halves read or change: the request path keeps
/// the client's other fields out of the header map, as they came (`http1::RawFields`,
/// `proxy::accept`), where that costs less.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fields<'a> {
    /// Only fields with these names (lower case, as `HeaderName`s are).
    Named(&'a [HeaderName]),
    /// Any field, or the forwarded headers the entrypoint sets: all must be in the map.
    Any,
}

/// A route's middlewares, in order, with what the request path asks of them as a whole (worked
/// out once, when the route table is built).
#[derive(Debug)]
pub(crate) struct Chain {
    middlewares: Box<[Middleware]>,
    /// What the request halves read or change, together; `None`: any field.
    fields: Option<Box<[HeaderName]>>,
    keeps_heads: bool,
}

impl From<Vec<Middleware>> for Chain {
    fn from(middlewares: Vec<Middleware>) -> Self {
        let mut names: Option<Vec<HeaderName>> = Some(Vec::new());
        for m in &middlewares {
            match (m.request_fields(), &mut names) {
                (Some(these), Some(names)) => {
                    for name in these {
                        if !names.contains(&name) {
                            names.push(name);
                        }
                    }
                }
                _ => names = None,
            }
        }
        // A forwarded header the entrypoint sets waits outside the map too, as a whole.
        if names
            .as_ref()
            .is_some_and(|n| n.iter().any(super::accept::is_set_late))
        {
            names = None;
        }
        Self {
            fields: names.map(Vec::into_boxed_slice),
            keeps_heads: middlewares.iter().all(Middleware::keeps_heads),
            middlewares: middlewares.into_boxed_slice(),
        }
    }
}

impl Deref for Chain {
    type Target = [Middleware];

    fn deref(&self) -> &[Middleware] {
        &self.middlewares
    }
}

impl Chain {
    /// Which of a request's header fields the request halves read or change.
    pub(crate) fn request_fields(&self) -> Fields<'_> {
        match &self.fields {
            Some(names) => Fields::Named(names),
            None => Fields::Any,
        }
    }

    /// Whether a backend's response head kept as it came (`http1::wire::KeptHead`, written
    /// without a header map between) may pass through the response halves: they change only
    /// fields the kept head's writer does not decide itself (see `KeptHead::manages`), taking
    /// the backend's fields of a name they set or remove out of the kept head.
    pub(crate) fn keeps_heads(&self) -> bool {
        self.keeps_heads
    }
}

fn kind_name(kind: &ProtoKind) -> &'static str {
    match kind {
        ProtoKind::StripPrefix(_) => "strip_prefix",
        ProtoKind::StripPrefixRegex(_) => "strip_prefix_regex",
        ProtoKind::AddPrefix(_) => "add_prefix",
        ProtoKind::ReplacePath(_) => "replace_path",
        ProtoKind::ReplacePathRegex(_) => "replace_path_regex",
        ProtoKind::Headers(_) => "headers",
        ProtoKind::RedirectScheme(_) => "redirect_scheme",
        ProtoKind::RedirectRegex(_) => "redirect_regex",
        ProtoKind::BasicAuth(_) => "basic_auth",
        ProtoKind::RateLimit(_) => "rate_limit",
        ProtoKind::InFlightReq(_) => "in_flight_req",
        ProtoKind::IpAllowList(_) => "ip_allow_list",
        ProtoKind::Retry(_) => "retry",
        ProtoKind::CircuitBreaker(_) => "circuit_breaker",
    }
}

/// Runs the request halves of `chain` in order. `Some((n, answer))` when middleware `n` answered:
/// the response halves of the `n` before it still apply to that answer.
pub(crate) async fn run_request(
    chain: &[Middleware],
    ctx: &mut RequestContext,
    head: &mut request::Parts,
) -> Option<(usize, Response<Body>)> {
    for (i, middleware) in chain.iter().enumerate() {
        if let Flow::Answer(response) = middleware.request(ctx, head).await {
            return Some((i, response));
        }
    }
    None
}

/// The retry policy of the chain's last `retry` middleware, which replaces the cluster's.
pub(crate) fn retry_policy(chain: &[Middleware]) -> Option<&crate::health::RetryPolicy> {
    chain.iter().rev().find_map(|m| match &m.kind {
        Kind::Retry(r) => Some(&r.policy),
        _ => None,
    })
}

/// The wait before retry `n` of a `retry` middleware's policy (see `retry::backoff`).
pub(crate) fn retry_backoff(policy: &crate::health::RetryPolicy, n: u32) -> std::time::Duration {
    retry::backoff(policy.interval, policy.attempts, n, 0.5 + fastrand::f64())
}

/// Runs the response halves of `chain` over `response`, last middleware first; over the
/// backend's head as it came too, when it was kept so (see [`Chain::keeps_heads`]).
pub(crate) fn run_response(
    chain: &[Middleware],
    ctx: &RequestContext,
    response: Response<Body>,
) -> Response<Body> {
    if !chain.iter().any(Middleware::has_response_half) {
        return response;
    }
    let (mut head, mut body) = response.into_parts();
    let mut kept = body.kept_mut();
    for middleware in chain.iter().rev() {
        middleware.response(ctx, &mut head, kept.as_deref_mut());
    }
    Response::from_parts(head, body)
}

/// A regexp as the route model compiles it (one dialect for validation and execution), with the
/// reason on one line.
fn compile_regex(pattern: &str) -> Result<regex::Regex, String> {
    berth_model::compile_regex(pattern).map_err(|e| e.to_string())
}

/// A regexp over bytes (a decoded path may not be UTF-8); accepts exactly what
/// [`compile_regex`] accepts.
fn compile_bytes_regex(pattern: &str) -> Result<regex::bytes::Regex, String> {
    compile_regex(pattern)?;
    regex::bytes::Regex::new(pattern).map_err(|e| e.to_string())
}

#[cfg(test)]
pub(crate) mod testing {
    //! Helpers for the middlewares' unit tests.

    use http::request::Parts;
    use http::{HeaderName, Response};
    use http_body_util::BodyExt;

    use super::Flow;
    use crate::proxy::context::RequestContext;
    use crate::proxy::Body;

    /// The head of a request `method uri`.
    pub(crate) fn head(method: &str, uri: &str) -> Parts {
        http::Request::builder()
            .method(method)
            .uri(uri)
            .body(())
            .expect("test request")
            .into_parts()
            .0
    }

    /// A request step run on `GET path` (Host `h`), and what it left.
    pub(crate) struct Stepped {
        /// The status the step answered with; `None` when it let the request through.
        pub status: Option<u16>,
        pub ctx: RequestContext,
        pub head: Parts,
    }

    impl Stepped {
        /// The first value of header `name` on the request.
        pub(crate) fn header(&self, name: &HeaderName) -> Option<String> {
            self.head
                .headers
                .get(name)
                .map(|v| v.to_str().unwrap().to_owned())
        }

        /// All values of header `name` on the request.
        pub(crate) fn headers(&self, name: &HeaderName) -> Vec<String> {
            self.head
                .headers
                .get_all(name)
                .iter()
                .map(|v| v.to_str().unwrap().to_owned())
                .collect()
        }
    }

    /// Runs a middleware's request step on `GET path`.
    pub(crate) fn step_get(
        path: &str,
        step: impl FnOnce(&mut RequestContext, &mut Parts) -> Flow,
    ) -> Stepped {
        let mut ctx = RequestContext::for_test("GET", path, "h", "10.0.0.1:1");
        let mut head = head("GET", path);
        let status = match step(&mut ctx, &mut head) {
            Flow::Next => None,
            Flow::Answer(r) => Some(r.status().as_u16()),
        };
        Stepped { status, ctx, head }
    }

    /// A redirect middleware's outcome: the status (200 when it let the request through) and the
    /// `Location` it answered with.
    pub(crate) fn redirect_outcome(flow: Flow) -> (u16, Option<String>) {
        match flow {
            Flow::Next => (200, None),
            Flow::Answer(r) => (
                r.status().as_u16(),
                r.headers()
                    .get("location")
                    .map(|l| l.to_str().unwrap().to_owned()),
            ),
        }
    }

    /// A response's body as text.
    pub(crate) async fn body_text(response: Response<Body>) -> String {
        let bytes = response.into_body().collect().await.expect("body").to_bytes();
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_proto::v1::{HeaderValue as H, Headers, Middleware as P, StripPrefix};

    /// A `headers` middleware setting (or, with an empty value, removing) these response headers.
    fn headers(name: &str, response: &[(&str, &str)]) -> P {
        request_headers(name, &[], response)
    }

    /// A `headers` middleware with request and response changes.
    fn request_headers(name: &str, request: &[(&str, &str)], response: &[(&str, &str)]) -> P {
        let list = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(n, v)| H {
                    name: n.to_string(),
                    value: v.to_string(),
                })
                .collect()
        };
        P {
            name: name.into(),
            kind: Some(ProtoKind::Headers(Headers {
                request: list(request),
                response: list(response),
            })),
        }
    }

    /// `strip_prefix` of `/api`.
    fn strip_api() -> P {
        P {
            name: "strip".into(),
            kind: Some(ProtoKind::StripPrefix(StripPrefix {
                prefixes: vec!["/api".into()],
                force_slash: false,
            })),
        }
    }

    /// `ip_allow_list` of one range.
    fn allow(name: &str, range: &str) -> P {
        P {
            name: name.into(),
            kind: Some(ProtoKind::IpAllowList(berth_proto::v1::IpAllowList {
                ranges: vec![range.into()],
                reject_status: 0,
                source: None,
            })),
        }
    }

    fn compile_all(protos: &[P]) -> Vec<Middleware> {
        protos
            .iter()
            .map(|p| Middleware::compile(p, None).expect("compiles"))
            .collect()
    }

    #[test]
    fn unknown_kind_and_invalid_settings_name_the_middleware() {
        let err = Middleware::compile(
            &P {
                name: "future@consulcatalog".into(),
                kind: None,
            },
            None,
        )
        .expect_err("no kind");
        assert_eq!(
            err.to_string(),
            r#"middleware "future@consulcatalog" has no kind this proxy knows (a newer middleware?)"#
        );
        let err = Middleware::compile(&headers("h", &[("bad name", "x")]), None).expect_err("bad header");
        assert!(
            err.to_string().starts_with(r#"middleware "h" (headers): "#),
            "{err}"
        );
    }

    fn compiled(protos: &[P]) -> Chain {
        Chain::from(compile_all(protos))
    }

    /// What a chain's request halves read or change, together: the names of the fields they
    /// set, or every field when one reads more (an allow list's `X-Forwarded-For`), changes the
    /// host, or sets a forwarded header the entrypoint keeps aside until it is written.
    #[test]
    fn a_chain_names_the_request_fields_it_touches() {
        let strip = strip_api();
        let allow = allow("allow", "0.0.0.0/0");
        let names = |chain: &Chain| match chain.request_fields() {
            Fields::Named(names) => Some(names.iter().map(|n| n.as_str().to_owned()).collect::<Vec<_>>()),
            Fields::Any => None,
        };
        let set = request_headers("h", &[("X-Bench", "1"), ("x-bench", ""), ("Cookie", "")], &[]);
        assert_eq!(
            names(&compiled(&[strip.clone(), set.clone()])),
            Some(vec![
                "x-forwarded-prefix".into(),
                "x-bench".into(),
                "cookie".into()
            ])
        );
        assert_eq!(names(&compiled(&[])), Some(vec![]));
        assert_eq!(names(&compiled(&[set.clone(), allow])), None);
        for any in [
            ("Host", "b.example"),
            ("X-Forwarded-For", ""),
            ("X-Forwarded-Proto", "https"),
        ] {
            let chain = compiled(&[strip.clone(), request_headers("h", &[any], &[])]);
            assert_eq!(names(&chain), None, "{any:?}");
        }
        // A header named Host but removed is a field like any other.
        assert_eq!(
            names(&compiled(&[request_headers("h", &[("Host", "")], &[])])),
            Some(vec!["host".into()])
        );
    }

    /// A backend's head kept as it came passes through response halves that change fields its
    /// writer does not decide (not `Content-Length`, `Transfer-Encoding`, `Date`, `Connection`).
    #[test]
    fn a_chain_keeps_heads_unless_it_changes_what_their_writer_decides() {
        assert!(compiled(&[]).keeps_heads());
        assert!(compiled(&[headers("h", &[("Server", ""), ("X-Frame-Options", "DENY")])]).keeps_heads());
        for managed in ["Content-Length", "transfer-encoding", "Date", "Connection"] {
            let chain = compiled(&[headers("ok", &[("X-A", "1")]), headers("h", &[(managed, "")])]);
            assert!(!chain.keeps_heads(), "{managed}");
        }
    }

    #[tokio::test]
    async fn chain_order_and_early_answers() {
        let chain = compile_all(&[
            headers("outer", &[("x-order", "outer")]),
            strip_api(),
            headers("inner", &[("x-order", "inner"), ("x-inner", "yes")]),
            allow("deny", "192.0.2.1"),
        ]);
        let mut ctx = RequestContext::for_test("GET", "/api/x", "h", "10.0.0.1:1");
        let mut head = testing::head("GET", "/api/x");
        let (at, answer) = run_request(&chain, &mut ctx, &mut head)
            .await
            .expect("the allow list answers");
        assert_eq!(at, 3);
        assert_eq!(ctx.path(), "/x", "middlewares before it ran");
        let response = run_response(&chain[..at], &ctx, answer);
        assert_eq!(response.status(), 403);
        assert_eq!(
            response.headers()["x-order"],
            "outer",
            "the outer middleware's response half runs last"
        );
        assert_eq!(response.headers()["x-inner"], "yes");
    }
}
